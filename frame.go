package ghostcomm

import (
	"errors"

	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// DefaultMaxFrameSize bounds a frame body when a Config leaves MaxFrameSize
// zero: 4 MiB, room for a 1 MiB message with any number of hops. The frame
// format is in internal/wire and docs/PROTOCOL.md.
const DefaultMaxFrameSize = 4 << 20

// rejectErr is the error a reject code stands for.
func rejectErr(c wire.RejectCode) error {
	switch c {
	case wire.RejectMalformed:
		return ErrMalformed
	case wire.RejectAuth:
		return ErrAuth
	case wire.RejectReplay:
		return ErrReplay
	case wire.RejectStale:
		return ErrStaleCycle
	case wire.RejectBusy:
		return ErrBusy
	case wire.RejectTooLarge:
		return ErrFrameTooLarge
	case wire.RejectVersion:
		return ErrUnsupportedVersion
	case wire.RejectClosed:
		return ErrClosed
	case wire.RejectBudget:
		return ErrBudget
	case wire.RejectNotEnrolled:
		return ErrNotEnrolled
	case wire.RejectWrongCycle:
		return ErrWrongCycle
	case wire.RejectLate:
		return ErrLate
	case wire.RejectNotFormed:
		return ErrTooFewNodes
	case wire.RejectSignature:
		return ErrBadSignature
	case wire.RejectDescReplay:
		return ErrDescriptorReplay
	}
	return ErrRejected
}

// rejectFor is the reject code that says err.
func rejectFor(err error) wire.RejectCode {
	switch {
	case errors.Is(err, ErrReplay):
		return wire.RejectReplay
	case errors.Is(err, ErrDescriptorReplay):
		return wire.RejectDescReplay
	case errors.Is(err, ErrNotEnrolled):
		return wire.RejectNotEnrolled
	case errors.Is(err, ErrWrongCycle):
		return wire.RejectWrongCycle
	case errors.Is(err, ErrLate):
		return wire.RejectLate
	case errors.Is(err, ErrTooFewNodes):
		return wire.RejectNotFormed
	case errors.Is(err, ErrBadSignature):
		return wire.RejectSignature
	case errors.Is(err, ErrStaleCycle):
		return wire.RejectStale
	case errors.Is(err, ErrBusy):
		return wire.RejectBusy
	case errors.Is(err, ErrFrameTooLarge):
		return wire.RejectTooLarge
	case errors.Is(err, ErrUnsupportedVersion):
		return wire.RejectVersion
	case errors.Is(err, ErrClosed):
		return wire.RejectClosed
	case errors.Is(err, ErrAuth):
		return wire.RejectAuth
	case errors.Is(err, ErrBudget):
		return wire.RejectBudget
	}
	return wire.RejectMalformed
}

// rejectCodeOf reads a Reject frame's body.
func rejectCodeOf(body []byte) wire.RejectCode {
	if len(body) == 1 {
		return wire.RejectCode(body[0])
	}
	return 0
}
