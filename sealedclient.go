package ghostcomm

// A Client in sealed mode (docs/PROTOCOL.md, "Sealed mode in the network").

import (
	"context"
	"fmt"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/sealed"
	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// sealedClass is the packet class for data of n bytes in cycle cy: the
// smallest that holds it, within the cycle's largest class and the
// client's frame limit; otherwise ErrFrameTooLarge.
func (c *Client) sealedClass(cy *Cycle, n int) (sealed.Class, error) {
	maxSize := min(cy.Sealed.MaxPacket, c.cfg.MaxFrameSize)
	cls, err := sealed.ClassFor(n)
	if err == nil && cls.Size() <= maxSize {
		return cls, nil
	}
	holds := 0
	for _, k := range []sealed.Class{sealed.Small, sealed.Large} {
		if k.Size() <= maxSize {
			holds = k.Capacity()
		}
	}
	return 0, fmt.Errorf("ghostcomm: %w: a message of %d bytes; a sealed packet here holds at most %d",
		ErrFrameTooLarge, n, holds)
}

// sealedPrepared is a sealed packet built for a route and not yet sent.
type sealedPrepared struct {
	res  *Result // Cycle and Route set
	mode sealed.Mode
	pkt  []byte
	sent *sealed.Sent
}

// prepareSealed builds a sealed packet for data on a route of cy, every
// hop with the given budget.
func (c *Client) prepareSealed(cy *Cycle, data []byte, budget time.Duration) (*sealedPrepared, error) {
	idx, err := c.route(cy)
	if err != nil {
		return nil, err
	}
	if len(idx) > MaxSealedHops {
		return nil, fmt.Errorf("%w: a route of %d hops, sealed mode carries at most %d", ErrBadProtocol, len(idx), MaxSealedHops)
	}
	cls, err := c.sealedClass(cy, len(data))
	if err != nil {
		return nil, err
	}
	sp := &sealedPrepared{res: &Result{Cycle: cy.ID, Route: make([]NodeInfo, len(idx))}, mode: sealed.Chain}
	hops := make([]sealed.Hop, len(idx))
	for i, j := range idx {
		sp.res.Route[i] = cy.Nodes[j]
		hops[i] = sealed.Hop{Index: byte(j), Key: sealed.PublicKey(cy.Nodes[j].SealedKey)}
	}
	// Every hop gets the same budget: it says nothing of its position.
	sealed.EqualBudgets(hops, budgetMS(budget))
	if cy.Sealed.Form == FormRelay {
		sp.mode = sealed.Relay
	}
	if sp.pkt, sp.sent, err = sealed.Build(c.cfg.Rand, cls, sp.mode, hops, data); err != nil {
		return nil, fmt.Errorf("ghostcomm: building a sealed packet: %w", err)
	}
	return sp, nil
}

// sendSealed sends data through a sealed-mode route of cy.
func (c *Client) sendSealed(ctx context.Context, cy *Cycle, data []byte) (*Result, error) {
	if _, err := c.sealedClass(cy, len(data)); err != nil {
		return nil, err // too large, whatever the time left
	}
	budget, err := firstBudget(time.Until(deadlineOf(ctx)), c.cfg.Rand)
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: reading randomness: %w", err)
	}
	if budget < MinBudget {
		return nil, fmt.Errorf("%w: %v left before the deadline", ErrBudget, time.Until(deadlineOf(ctx)))
	}
	sp, err := c.prepareSealed(cy, data, budget)
	if err != nil {
		return nil, err
	}
	res, pkt, sent, mode := sp.res, sp.pkt, sp.sent, sp.mode
	defer sent.Wipe() // the route's backward keys, once the reply is read
	first := res.Route[0].Onion
	start := time.Now()
	h, body, err := c.pool.RoundTrip(ctx, first.Addr(), wire.SealedPacket, [][]byte{pkt})
	res.RoundTrip = time.Since(start)
	if err != nil {
		return nil, c.transportError(first, err)
	}
	out, err := sealedAnswer(sent, res.Route, h.Type, body)
	if err != nil {
		return nil, err
	}
	res.Data = out
	// In chain form every hop processed the data; in relay form the exit
	// alone did.
	processed := res.Route
	if mode == sealed.Relay {
		processed = res.Route[len(res.Route)-1:]
	}
	if ok, err := verifyResult(processed, data, out); ok {
		res.Verified = true
	} else if err != nil {
		return res, err
	}
	return res, nil
}

// sealedAnswer interprets the first hop's answer to a sealed packet: the
// exit's answer, a failure report attributed to the hop that wrote it (the
// depth at which the reply opened), or the first hop's plain reject.
func sealedAnswer(sent *sealed.Sent, route []NodeInfo, typ wire.Type, body []byte) ([]byte, error) {
	switch typ {
	case wire.SealedReply:
	case wire.Reject:
		return nil, hopError(route, 0, rejectErr(rejectCodeOf(body)))
	default:
		return nil, hopError(route, 0, fmt.Errorf("%w: answered with %v", ErrMalformed, typ))
	}
	if len(body) != sent.Class().Size() {
		// Every hop passes on a reply of its packet's size: the first
		// hop sent this one.
		return nil, hopError(route, 0, fmt.Errorf("%w: sealed reply of %d bytes for a packet of %d", ErrMalformed, len(body), sent.Class().Size()))
	}
	rep, err := sent.OpenReply(body)
	if err != nil {
		// No depth opens it: altered on the way back, by a hop that
		// cannot be named.
		return nil, fmt.Errorf("ghostcomm: sealed reply: %w", err)
	}
	return openedReply(rep, route)
}

// openedReply interprets an opened reply: the exit's answer, or a failure
// report attributed to the hop that wrote it.
func openedReply(rep sealed.Reply, route []NodeInfo) ([]byte, error) {
	if rep.Depth < 1 || rep.Depth > len(route) {
		return nil, fmt.Errorf("%w: sealed reply from depth %d of %d", ErrMalformed, rep.Depth, len(route))
	}
	switch rep.Type {
	case sealed.Answer:
		if rep.Depth != len(route) {
			return nil, hopError(route, rep.Depth-1, fmt.Errorf("%w: an answer from a hop that is not the exit", ErrMalformed))
		}
		return rep.Body, nil
	case sealed.Failure:
		var detail byte
		if len(rep.Body) > 0 {
			detail = rep.Body[0]
		}
		if len(rep.Body) > 1 {
			return nil, hopError(route, rep.Depth-1, fmt.Errorf("%w: failure report with %d detail bytes", ErrMalformed, len(rep.Body)))
		}
		switch wire.ReportCode(rep.Code) {
		case wire.ReportNextNotFound, wire.ReportNextUnreached, wire.ReportNextTimeout, wire.ReportNextRejected, wire.ReportNextBrokeReply:
			if rep.Depth == len(route) {
				// The exit has no next hop to report on.
				return nil, hopError(route, rep.Depth-1, fmt.Errorf("%w: the exit reports on a next hop (code %d)", ErrMalformed, rep.Code))
			}
		}
		return nil, reportError(rep.Depth-1, route, []byte{rep.Code, detail})
	}
	return nil, hopError(route, rep.Depth-1, fmt.Errorf("%w: reply type %d", ErrMalformed, rep.Type))
}
