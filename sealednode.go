package ghostcomm

// A Node in sealed mode (docs/PROTOCOL.md, "Sealed mode in the network"):
// the packet format itself is internal/sealed; here is what a hop does
// around it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/sealed"
	"github.com/ghostcomm/ghostcomm/internal/transport"
	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// newSealedKey makes a node's sealed-mode key for a cycle starting at
// notBefore: a dedicated OpenPGP key (EdDSA primary, one cv25519 subkey)
// whose subkey's X25519 key the node uses, and for nothing else; the
// OpenPGP key's secrets are wiped at once, the X25519 key being their only
// copy.
func newSealedKey(rnd io.Reader, notBefore time.Time) (*sealed.PrivateKey, error) {
	_, k, err := sealed.GenerateOpenPGPKeyPair(rnd, "ghostcomm sealed-mode node key", notBefore)
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: sealed-mode key: %w", err)
	}
	return k, nil
}

// sealedPublic is the node's sealed-mode public key, or nil.
func (n *Node) sealedPublic() []byte {
	if n.sealedKey == nil {
		return nil
	}
	pk := n.sealedKey.PublicKey()
	return pk[:]
}

// errDuplicate is what the replay hook returns for a resent copy of a
// packet the node is handling or has just answered.
var errDuplicate = errors.New("ghostcomm: copy of a packet under way")

// handleSealed answers one frame of a sealed-mode node. Until the packet's
// header has checked, nothing said back can be authenticated: refusals are
// plain Reject frames (bad size or version, a header that does not check,
// a replay, a full replay cache). From then on every failure is a failure
// report the client attributes to this hop (sealed.Result.Fail).
func (n *Node) handleSealed(ctx context.Context, r *transport.Request, start, now time.Time) (wire.Type, [][]byte) {
	if r.Type != wire.SealedPacket {
		return n.refuse(start, wire.RejectType, fmt.Errorf("%w: frame type %v in a sealed cycle", ErrMalformed, r.Type))
	}
	if n.closed.Load() {
		return n.refuse(start, wire.RejectClosed, ErrClosed)
	}
	if len(r.Body) > n.cfg.Sealed.MaxPacket {
		return n.refuse(start, wire.RejectTooLarge, fmt.Errorf("%w: sealed packet of %d bytes, class limit %d", ErrFrameTooLarge, len(r.Body), n.cfg.Sealed.MaxPacket))
	}
	if now.Before(n.cfg.NotBefore.Add(-maxClockSkew)) || now.After(n.cfg.NotAfter.Add(n.cfg.Grace)) {
		return n.refuse(start, wire.RejectStale, fmt.Errorf("%w: cycle not valid now", ErrStaleCycle))
	}
	pkt := r.Body
	var (
		res  sealed.Result
		call *answerCall
		dup  bool
	)
	// The replay check comes after the header MAC (sealed.Process calls
	// the hook only then): a forged packet costs no tag. A copy of a
	// packet this node is handling, or has just answered, sent again
	// because a stream broke, gets the first copy's answer.
	hook := sealed.ReplayFunc(func(tag []byte) error {
		var err error
		call, dup, err = n.answers.begin(tag, pkt, func() error { return n.recordTag(tag) })
		if err != nil {
			return err
		}
		if dup {
			return errDuplicate
		}
		return nil
	})
	err := sealed.Process(n.sealedKey, pkt, hook, &res)
	if dup {
		r.Accept()
		n.stats.duplicates.Add(1)
		typ, parts := n.sealedDuplicate(ctx, r, call)
		n.observe(HopEvent{Onion: n.onion, Processor: n.cfg.Processor, Start: start, Duplicate: true})
		return typ, parts
	}
	if err != nil {
		if call != nil { // recorded, then refused (a bad slot): answer copies the same way
			n.answers.finish(call, wire.Reject, [][]byte{{byte(rejectFor(err))}}, err)
		}
		return n.refuse(start, rejectFor(err), err)
	}
	r.Accept()
	n.stats.accepted.Add(1)
	n.stats.inflight.Add(1)
	defer n.stats.inflight.Add(-1)
	ev := HopEvent{Onion: n.onion, Processor: n.cfg.Processor, Start: start, Last: res.Command == sealed.CmdExit}
	typ, parts, err := n.sealedHop(ctx, r, pkt, &res, &ev)
	res.Wipe() // the reply is written: the hop's keys are done with
	n.answers.finish(call, typ, parts, err)
	if err != nil {
		n.stats.failed.Add(1)
	}
	ev.Total = time.Since(start)
	ev.Err = err
	n.observe(ev)
	return typ, parts
}

// observe hands ev to the Observer, if any.
func (n *Node) observe(ev HopEvent) {
	if n.cfg.Observer != nil {
		if ev.Total == 0 {
			ev.Total = time.Since(ev.Start)
		}
		n.cfg.Observer(ev)
	}
}

// sealedDuplicate waits for the first copy's answer.
func (n *Node) sealedDuplicate(ctx context.Context, r *transport.Request, call *answerCall) (wire.Type, [][]byte) {
	if err := r.Park(0); err != nil {
		return wire.Reject, [][]byte{{byte(rejectFor(err))}}
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.HopTimeout)
	defer cancel()
	select {
	case <-call.done:
		return call.typ, call.parts
	case <-ctx.Done():
		return wire.Reject, [][]byte{{byte(wire.RejectBusy)}}
	}
}

// sealedHop does a hop's work once its packet's header has checked: the
// data (chain form, or the exit), the processing, and forwarding or
// answering.
func (n *Node) sealedHop(ctx context.Context, r *transport.Request, pkt []byte, res *sealed.Result, ev *HopEvent) (wire.Type, [][]byte, error) {
	cls := res.Class()
	budget := time.Duration(res.BudgetMS) * time.Millisecond
	if budget < MinBudget {
		return n.sealedFail(res, cls, wire.ReportBudget, 0, fmt.Errorf("%w: %v", ErrBudget, budget))
	}
	ctx, cancel := context.WithTimeout(ctx, min(budget, n.cfg.HopTimeout))
	defer cancel()
	chain := res.Mode == sealed.Chain
	if chain != (n.cfg.Sealed.Form == FormChain) {
		return n.sealedFail(res, cls, wire.ReportBadData, 0, fmt.Errorf("%w: packet of another sealed-mode form", ErrMalformed))
	}

	exit := res.Command == sealed.CmdExit
	var out []byte
	if chain || exit {
		data, err := res.Data(pkt)
		if err != nil {
			return n.sealedFail(res, cls, wire.ReportBadData, 0, err)
		}
		ev.InSize = len(data)
		if out, err = n.proc.Process(data); err != nil {
			return n.sealedFail(res, cls, wire.ReportProcessing, 0, fmt.Errorf("%w: %v", ErrProcessing, err))
		}
		ev.OutSize = len(out)
	}
	if exit {
		if len(out) > cls.ReplyCapacity() {
			return n.sealedFail(res, cls, wire.ReportProcessing, 0, fmt.Errorf("%w: output of %d bytes, a reply holds %d", ErrProcessing, len(out), cls.ReplyCapacity()))
		}
		reply := make([]byte, cls.Size())
		if err := res.Answer(reply, out); err != nil {
			return n.sealedFail(res, cls, wire.ReportProcessing, 0, err)
		}
		ev.Process = time.Since(ev.Start)
		return wire.SealedReply, [][]byte{reply}, nil
	}
	if chain {
		if len(out) > cls.Capacity() {
			return n.sealedFail(res, cls, wire.ReportProcessing, 0, fmt.Errorf("%w: output of %d bytes, a packet holds %d", ErrProcessing, len(out), cls.Capacity()))
		}
		if err := res.Reseal(pkt, out); err != nil {
			return n.sealedFail(res, cls, wire.ReportProcessing, 0, err)
		}
	}

	peers := *n.peers.Load()
	if int(res.Next) >= len(peers) {
		return n.sealedFail(res, cls, wire.ReportBadRoute, 0, fmt.Errorf("%w: next hop index %d unknown", ErrMalformed, res.Next))
	}
	next := &peers[res.Next]
	if next.Onion.ServiceID == n.onion.ServiceID {
		return n.sealedFail(res, cls, wire.ReportBadRoute, 0, fmt.Errorf("%w: this node as its own next hop", ErrMalformed))
	}
	ev.Process = time.Since(ev.Start)
	remaining := time.Until(deadlineOf(ctx))
	fwd := forwardBudget(remaining)
	if fwd < MinBudget {
		return n.sealedFail(res, cls, wire.ReportNextTimeout, 0, fmt.Errorf("%w: %v left for the rest of the route", ErrHopTimeout, remaining))
	}
	fctx, fcancel := context.WithTimeout(ctx, fwd)
	defer fcancel()
	// From here the node only waits: give back the work slot, and hold
	// only the forwarded packet.
	if err := r.Park(len(pkt)); err != nil {
		return n.sealedFail(res, cls, wire.ReportNextRejected, byte(wire.RejectBusy), err)
	}
	h, body, err := n.pool.RoundTrip(fctx, next.Onion.Addr(), wire.SealedPacket, [][]byte{pkt})
	switch {
	case err == nil:
	case errors.Is(err, ErrClosed):
		return wire.Reject, [][]byte{{byte(wire.RejectClosed)}}, err
	case errors.Is(err, ErrOnionNotFound):
		return n.sealedFail(res, cls, wire.ReportNextNotFound, 0, fmt.Errorf("%w: %w", ErrHopUnreachable, err))
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return n.sealedFail(res, cls, wire.ReportNextTimeout, 0, fmt.Errorf("%w: %w", ErrHopTimeout, err))
	case errors.Is(err, ErrBusy):
		return n.sealedFail(res, cls, wire.ReportNextRejected, byte(wire.RejectBusy), fmt.Errorf("next hop: %w", err))
	case errors.Is(err, ErrFrameTooLarge):
		return n.sealedFail(res, cls, wire.ReportNextRejected, byte(wire.RejectTooLarge), fmt.Errorf("next hop: %w", err))
	default:
		return n.sealedFail(res, cls, wire.ReportNextUnreached, 0, fmt.Errorf("%w: %w", ErrHopUnreachable, err))
	}
	switch h.Type {
	case wire.SealedReply:
		// Re-enciphered under this hop's backward key: no public-key
		// work, and the bytes going back share nothing with those that
		// came.
		if err := res.WrapReply(body); err != nil {
			return n.sealedFail(res, cls, wire.ReportNextBrokeReply, 0, fmt.Errorf("next hop's reply: %w", err))
		}
		return wire.SealedReply, [][]byte{body}, nil
	case wire.Reject:
		code := rejectCodeOf(body)
		return n.sealedFail(res, cls, wire.ReportNextRejected, byte(code), fmt.Errorf("next hop: %w", rejectErr(code)))
	}
	return n.sealedFail(res, cls, wire.ReportNextBrokeReply, 0, fmt.Errorf("%w: next hop answered with %v", ErrMalformed, h.Type))
}

// sealedFail answers with a failure report the client attributes to this
// hop: code, and detail (the next hop's reject code, or 0).
func (n *Node) sealedFail(res *sealed.Result, cls sealed.Class, code wire.ReportCode, detail byte, cause error) (wire.Type, [][]byte, error) {
	n.cfg.Logger.Debug("hop failure", "code", code, "err", cause)
	reply := make([]byte, cls.Size())
	if err := res.Fail(reply, byte(code), []byte{detail}); err != nil {
		return wire.Reject, [][]byte{{byte(wire.RejectMalformed)}}, errors.Join(cause, err)
	}
	return wire.SealedReply, [][]byte{reply}, cause
}
