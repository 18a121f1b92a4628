package ghostcomm

// The layers of a message, at the level of routes, hops and answers: what a
// client wraps for a route, what a hop peels and checks, and how the client
// opens the answer. The primitives (sealed box, nested onion layers, keys)
// are in internal/layer; the byte layouts in docs/PROTOCOL.md.

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/layer"
	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// prepared is a message built for a route and not yet sent.
type prepared struct {
	route []NodeInfo
	onion *layer.Onion
	data  []byte // the data box for hop 1
}

// prepare builds a message's layers for a route of cycle cy.
func (c *Client) prepare(cy *Cycle, data []byte) (*prepared, error) {
	route, err := c.route(cy)
	if err != nil {
		return nil, err
	}
	return c.prepareRoute(cy, route, data)
}

// prepareRoute builds a message's layers for route, indexes into cy.Nodes
// that the caller has checked.
func (c *Client) prepareRoute(cy *Cycle, route []int, data []byte) (*prepared, error) {
	hops := make([]*layer.PublicKey, len(route))
	next := make([]byte, len(route)-1)
	pm := &prepared{route: make([]NodeInfo, len(route))}
	for i, idx := range route {
		hops[i] = cy.Nodes[idx].pub
		pm.route[i] = cy.Nodes[idx]
		if i > 0 {
			next[i-1] = byte(idx)
		}
	}
	var err error
	pad := 0
	if extra := c.cfg.PadHops - len(route); extra > 0 {
		n, err := rand.Int(c.cfg.Rand, big.NewInt(int64(extra*LayerOverhead+1)))
		if err != nil {
			return nil, fmt.Errorf("ghostcomm: reading randomness: %w", err)
		}
		pad = int(n.Int64())
	}
	ts := cy.NotBefore.Unix()
	if pm.onion, err = layer.Build(hops, next, ts, pad, c.cfg.Rand); err != nil {
		return nil, err
	}
	k, err := layer.NewKey(c.cfg.Rand)
	if err != nil {
		return nil, err
	}
	pm.data, err = layer.Seal(make([]byte, 0, len(data)+2*LayerOverhead), hops[0].Enc, &k, ts, data, c.cfg.Rand)
	k.Wipe()
	if err != nil {
		return nil, err
	}
	return pm, nil
}

// body returns the message frame's body, with the given budget.
func (pm *prepared) body(budget time.Duration) [][]byte {
	m := &wire.Msg{BudgetMS: budgetMS(budget), Layer: pm.onion.Layer, Data: pm.data}
	return m.Parts()
}

// peel opens a hop's onion layer and checks it before anything else is done
// with the message: the layer must open with the node's key, carry its
// cycle's timestamp at a time the cycle is valid, and not be a replay of
// one already recorded in this cycle (unless it may be a resent copy of a
// message whose answer the node keeps: see answerTable). Until the layer
// opens, nothing said back can be authenticated, so these refusals travel
// as plain Reject frames; the error says which (ErrAuth, ErrMalformed,
// ErrStaleCycle, ErrReplay). The tag is only looked up here: relay records
// it once the data box has opened too (see record).
func (n *Node) peel(m *wire.Msg, now time.Time) (*layer.Peeled, error) {
	p, err := layer.Peel(n.keys.Dec, m.Layer)
	if err != nil {
		return nil, err
	}
	if err := n.checkCycle(p.TS, now); err != nil {
		return nil, err
	}
	if n.replay.Seen(p.Tag) && !n.answers.has(p.Tag) {
		return nil, ErrReplay
	}
	return p, nil
}

// record enters a layer's tag in the replay cache, once its data box has
// opened: a genuine layer with a garbage data box leaves no trace, so that
// filling the cache costs a whole message per tag. Of copies of a message
// that arrive together, only the first is recorded; the others get
// ErrReplay, and a full cache ErrBusy, before anything is processed or
// forwarded. Like peel's refusals these travel as plain Reject frames.
func (n *Node) record(p *layer.Peeled) error { return n.recordTag(p.Tag) }

// recordTag enters a tag in the replay cache, and says once when the cache
// passes half full.
func (n *Node) recordTag(tag []byte) error {
	if err := n.replay.Add(tag); err != nil {
		return err
	}
	if f := n.cfg.replayHalf; f != nil && 2*n.replay.Len() > n.replay.Cap() && n.halfSaid.CompareAndSwap(false, true) {
		f()
	}
	return nil
}

func (n *Node) checkCycle(ts int64, now time.Time) error {
	if ts != n.ts {
		return fmt.Errorf("%w: layer made for another cycle", ErrStaleCycle)
	}
	if now.Before(n.cfg.NotBefore.Add(-maxClockSkew)) || now.After(n.cfg.NotAfter.Add(n.cfg.Grace)) {
		return fmt.Errorf("%w: cycle not valid now", ErrStaleCycle)
	}
	return nil
}

// openReply opens the answer: the last hop's result under the reply key, or
// a hop's failure report under that hop's error key. Both are padded to a
// size bucket (layer.SealAnswer); the key that opens the token names the hop
// that wrote it, and an answer whose padding is not exactly the one
// layer.SealAnswer makes is that hop's error, matching ErrMalformed.
func (c *Client) openReply(o *layer.Onion, route []NodeInfo, tok []byte) ([]byte, error) {
	n := len(o.Keys)
	rk := o.Keys[n-1].Derive(layer.PurposeReply)
	p, _, err := layer.FernetOpen(&rk, tok)
	rk.Wipe()
	if err == nil {
		out, err := layer.UnpadAnswer(p)
		if err != nil {
			return nil, hopError(route, n-1, err)
		}
		return out, nil
	}
	for i := n - 1; i >= 0; i-- {
		ek := o.Keys[i].Derive(layer.PurposeError)
		p, _, err := layer.FernetOpen(&ek, tok)
		ek.Wipe()
		if err != nil {
			continue
		}
		msg, err := layer.UnpadAnswer(p)
		if err != nil {
			return nil, hopError(route, i, err)
		}
		return nil, reportError(i, route, msg)
	}
	return nil, fmt.Errorf("%w: the answer opens with none of this message's keys", ErrAuth)
}

// hopError is a *HopError about the route's hop j (0-based).
func hopError(route []NodeInfo, j int, err error) error {
	addr := ""
	if j < len(route) {
		addr = route[j].Onion.Addr()
	}
	return &HopError{Hop: j + 1, Onion: addr, Err: err}
}

// reportError turns hop i's (0-based) failure report into a *HopError about
// the hop it concerns.
func reportError(i int, route []NodeInfo, msg []byte) error {
	hop := func(j int, err error) error { return hopError(route, j, err) }
	if len(msg) != 2 {
		return hop(i, fmt.Errorf("%w: failure report of %d bytes", ErrMalformed, len(msg)))
	}
	switch wire.ReportCode(msg[0]) {
	case wire.ReportNextNotFound:
		return hop(i+1, fmt.Errorf("%w: %w", ErrHopUnreachable, ErrOnionNotFound))
	case wire.ReportNextUnreached:
		return hop(i+1, fmt.Errorf("%w: %w", ErrHopUnreachable, ErrOnionUnreachable))
	case wire.ReportNextTimeout:
		return hop(i+1, ErrHopTimeout)
	case wire.ReportNextRejected:
		return hop(i+1, rejectErr(wire.RejectCode(msg[1])))
	case wire.ReportNextBrokeReply:
		return hop(i+1, fmt.Errorf("%w: invalid answer", ErrMalformed))
	case wire.ReportBadData:
		return hop(i, fmt.Errorf("%w: the data from the previous hop did not open", ErrAuth))
	case wire.ReportProcessing:
		return hop(i, ErrProcessing)
	case wire.ReportBadRoute:
		return hop(i, fmt.Errorf("%w: unknown next hop", ErrMalformed))
	case wire.ReportBudget:
		return hop(i, ErrBudget)
	}
	return hop(i, fmt.Errorf("%w: report code %d", ErrRejected, msg[0]))
}
