package ghostcomm

import (
	"context"
	"errors"
)

// Action is what a program should do after an error from Client.Fetch or
// Client.Send; ActionFor tells which.
type Action int

const (
	// ActionNone: there was no error.
	ActionNone Action = iota
	// ActionRetry: the failure may pass (a hop busy or slow, an onion
	// unreachable for a moment, the caller's own deadline): send again,
	// with backoff if it repeats. The client keeps its cycle.
	ActionRetry
	// ActionRefetch: the cycle the message was made for can no longer
	// carry it (it ended, a hop is gone or no longer knows its keys). The
	// client has already dropped it: the next Send fetches the current
	// cycle first, or call Fetch.
	ActionRefetch
	// ActionGiveUp: the same call will fail the same way: the caller
	// cancelled it, the client is closed, the message cannot fit, a hop's
	// processing failed or was not what the route promised, or the
	// Primary is not the one the invite pins.
	ActionGiveUp
)

// String names the action.
func (a Action) String() string {
	switch a {
	case ActionNone:
		return "none"
	case ActionRetry:
		return "retry"
	case ActionRefetch:
		return "refetch"
	case ActionGiveUp:
		return "give up"
	}
	return "unknown"
}

// ActionFor classifies an error from Client.Fetch or Client.Send:
//
//   - ActionGiveUp: context.Canceled, ErrClosed, ErrFrameTooLarge,
//     ErrProcessing, ErrVerify, ErrMalformed, ErrBadInvite, ErrWrongPrimary,
//     ErrBadSignature, ErrUnknownProcessor, ErrUnsupportedVersion, and any
//     error it does not know;
//   - ActionRefetch: ErrStaleCycle, ErrHopUnreachable, ErrOnionNotFound,
//     ErrAuth, ErrReplay;
//   - ActionRetry: context.DeadlineExceeded, ErrHopTimeout, ErrBusy,
//     ErrBudget, ErrOnionUnreachable, ErrRejected.
//
// The first list that matches wins: a hop that timed out because the
// caller's deadline passed is ActionRetry, a hop that could not be reached
// is ActionRefetch.
func ActionFor(err error) Action {
	is := func(targets ...error) bool {
		for _, t := range targets {
			if errors.Is(err, t) {
				return true
			}
		}
		return false
	}
	switch {
	case err == nil:
		return ActionNone
	case is(context.Canceled, ErrClosed, ErrFrameTooLarge, ErrProcessing, ErrVerify, ErrMalformed,
		ErrBadInvite, ErrWrongPrimary, ErrBadSignature, ErrUnknownProcessor, ErrUnsupportedVersion):
		return ActionGiveUp
	case is(ErrStaleCycle, ErrHopUnreachable, ErrOnionNotFound, ErrAuth, ErrReplay):
		return ActionRefetch
	case is(context.DeadlineExceeded, ErrHopTimeout, ErrBusy, ErrBudget, ErrOnionUnreachable, ErrRejected):
		return ActionRetry
	}
	return ActionGiveUp
}
