package ghostcomm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ghostcomm/ghostcomm/internal/sealed"
	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// FuzzSealedReply: whatever an opened sealed reply says (its author's depth,
// type, code and body), the client returns the exit's answer or a typed
// error, and a *HopError names a hop of the route.
func FuzzSealedReply(f *testing.F) {
	route := seedPayload(f, 3).cycle.Nodes
	f.Add(3, byte(sealed.Answer), byte(0), []byte("result"))
	f.Add(2, byte(sealed.Failure), byte(wire.ReportNextRejected), []byte{byte(wire.RejectAuth)})
	f.Add(1, byte(sealed.Failure), byte(wire.ReportBudget), []byte{0})
	f.Add(0, byte(9), byte(0), []byte(nil))
	f.Fuzz(func(t *testing.T, depth int, typ, code byte, body []byte) {
		rep := sealed.Reply{Depth: depth, Type: sealed.ReplyType(typ), Code: code, Body: body}
		out, err := openedReply(rep, route)
		if err == nil {
			if depth != len(route) || rep.Type != sealed.Answer || !bytes.Equal(out, body) {
				t.Fatalf("accepted %+v", rep)
			}
			return
		}
		if !isAny(err, ErrMalformed, ErrAuth, ErrHopUnreachable, ErrHopTimeout, ErrProcessing, ErrBudget, ErrRejected,
			ErrReplay, ErrStaleCycle, ErrBusy, ErrFrameTooLarge, ErrUnsupportedVersion, ErrClosed, ErrNotEnrolled,
			ErrWrongCycle, ErrLate, ErrTooFewNodes, ErrBadSignature, ErrDescriptorReplay) {
			t.Fatalf("untyped error %v", err)
		}
		var he *HopError
		if errors.As(err, &he) && (he.Hop < 1 || he.Hop > len(route) || he.Onion != route[he.Hop-1].Onion.Addr()) {
			t.Fatalf("%+v: error names hop %d (%q) of %d", rep, he.Hop, he.Onion, len(route))
		}
	})
}

func isAny(err error, targets ...error) bool {
	for _, e := range targets {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
