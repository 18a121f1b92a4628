package bench

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/layer"
	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// cycleTS is the lock-cycle's NotBefore (unix seconds), every layer's Fernet
// timestamp.
const cycleTS = 1_700_000_000

// message is a message body's two parts: the onion layer for a hop and the
// data box for that hop.
type message struct {
	layer, data []byte
}

// messageHeaderSize is the fixed part of a message body (budget, layer
// length), before the layer and the data.
const messageHeaderSize = 8

// writeMessageFrame writes the frame that carries m, as node.relay and
// Client.sendVia do: wire.WriteFrame of a wire.Msg.
func writeMessageFrame(w io.Writer, id, budgetMS uint32, m message) error {
	msg := &wire.Msg{BudgetMS: budgetMS, Layer: m.layer, Data: m.data}
	return wire.WriteFrame(w, wire.Message, id, msg.Parts()...)
}

// messageBody is the body of a message frame, as the receiving hop's
// wire.ReadFrame returns it.
func messageBody(m message) []byte {
	msg := &wire.Msg{BudgetMS: 60_000, Layer: m.layer, Data: m.data}
	return bytes.Join(msg.Parts(), nil)
}

// parseMessage is wire.ParseMsg, as node.handle calls it.
func parseMessage(b []byte) (message, uint32, error) {
	m, err := wire.ParseMsg(b)
	if err != nil {
		return message{}, 0, err
	}
	return message{layer: m.Layer, data: m.Data}, m.BudgetMS, nil
}

// replaySet mirrors internal/replay.Cache, with a forget the benchmarks need: the first 16 bytes of each
// layer's tag, under a mutex.
type replaySet struct {
	mu   sync.Mutex
	seen map[[16]byte]struct{}
}

func newReplaySet() *replaySet { return &replaySet{seen: map[[16]byte]struct{}{}} }

var errReplay = errors.New("replayed layer")

func (r *replaySet) add(tag []byte) error {
	var k [16]byte
	copy(k[:], tag)
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.seen[k]; dup {
		return errReplay
	}
	r.seen[k] = struct{}{}
	return nil
}

// forget removes a tag again, so that a benchmark may peel the same layer
// b.N times and still pay for one insertion per peel.
func (r *replaySet) forget(tag []byte) {
	var k [16]byte
	copy(k[:], tag)
	r.mu.Lock()
	delete(r.seen, k)
	r.mu.Unlock()
}

// route is a chain of ghostcomm hops with the private keys the nodes of a
// lock-cycle hold, and the route a client picks through them: hop i+1 is
// node i of the cycle.
type route struct {
	keys []*layer.KeyPair
	pubs []*layer.PublicKey
	next []byte // next[i]: the node index hop i+1 forwards to
	ts   int64
	proc ghostcomm.Processor
}

func newRoute(n int) (*route, error) {
	proc, err := ghostcomm.NewProcessor(ghostcomm.IdentitySpec)
	if err != nil {
		return nil, err
	}
	r := &route{next: make([]byte, n-1), ts: cycleTS, proc: proc}
	for i := range n {
		kp, err := layer.GenerateKeyPair("ghostcomm bench node")
		if err != nil {
			return nil, err
		}
		r.keys = append(r.keys, kp)
		r.pubs = append(r.pubs, &kp.PublicKey)
		if i > 0 {
			r.next[i-1] = byte(i)
		}
	}
	return r, nil
}

// prefix returns the route through the first n of r's hops.
func (r *route) prefix(n int) *route {
	return &route{keys: r.keys[:n], pubs: r.pubs[:n], next: r.next[:n-1], ts: r.ts, proc: r.proc}
}

// meanPad is the mean of the padding Client.sendVia draws for an n-hop route
// with the default PadHops: the micro benchmarks use it as a fixed pad so
// that their onions have a client's typical size.
func meanPad(n int) int {
	return max(ghostcomm.DefaultPadHops-n, 0) * layer.Overhead / 2
}

// clientPad draws the padding exactly as Client.sendVia does with the
// default PadHops.
func clientPad(n int, rnd io.Reader) (int, error) {
	extra := ghostcomm.DefaultPadHops - n
	if extra <= 0 {
		return 0, nil
	}
	v, err := rand.Int(rnd, big.NewInt(int64(extra*layer.Overhead+1)))
	if err != nil {
		return 0, err
	}
	return int(v.Int64()), nil
}

// clientBuild is what Client.sendVia does to a message before it sends it:
// the onion (layer.Build over the route) and the data box for hop 1.
func (r *route) clientBuild(data []byte, pad int, rnd io.Reader) (*layer.Onion, message, error) {
	o, err := layer.Build(r.pubs, r.next, r.ts, pad, rnd)
	if err != nil {
		return nil, message{}, err
	}
	k, err := layer.NewKey(rnd)
	if err != nil {
		return nil, message{}, err
	}
	box, err := layer.Seal(make([]byte, 0, len(data)+2*layer.Overhead), r.pubs[0].Enc, &k, r.ts, data, rnd)
	if err != nil {
		return nil, message{}, err
	}
	return o, message{layer: o.Layer, data: box}, nil
}

// peel is node.handle's and node.relay's opening: layer.Peel of the onion
// layer, layer.Open of the data box.
func (r *route) peel(hop int, in message) (*layer.Peeled, *layer.Opened, error) {
	p, err := layer.Peel(r.keys[hop].Dec, in.layer)
	if err != nil {
		return nil, nil, err
	}
	d, err := layer.Open(r.keys[hop].Dec, in.data)
	if err != nil {
		return nil, nil, err
	}
	return p, d, nil
}

// hopResult is what one hop made of a message: the message for the next
// hop (out, to node next) or, at the last hop, the reply for the client.
type hopResult struct {
	out   message
	next  int
	reply []byte
	tag   []byte // the layer's replay tag
}

// hop is what node.handle and node.relay do to a message, without the
// network: peel, check the cycle and the replay set, open the data, process
// it, then either seal the output for the next hop with a fresh key or, at
// the last hop, pad the reply to its size bucket and seal it for the client
// under the derived reply key.
func (r *route) hop(i int, rs *replaySet, in message, rnd io.Reader) (hopResult, error) {
	p, d, err := r.peel(i, in)
	if err != nil {
		return hopResult{}, err
	}
	if p.TS != r.ts || d.TS != r.ts {
		return hopResult{}, errors.New("stale cycle")
	}
	if err := rs.add(p.Tag); err != nil {
		return hopResult{}, err
	}
	res := hopResult{next: p.Next, tag: p.Tag}
	data, err := r.proc.Process(d.Msg)
	if err != nil {
		return res, err
	}
	if p.Next < 0 {
		key := p.Key.Derive(layer.PurposeReply)
		res.reply, err = layer.SealAnswer(nil, &key, r.ts, data)
		return res, err
	}
	if p.Next >= len(r.pubs) {
		return res, fmt.Errorf("next hop index %d unknown", p.Next)
	}
	k, err := layer.NewKey(rnd)
	if err != nil {
		return res, err
	}
	box, err := layer.Seal(d.SealBuffer(data), r.pubs[p.Next].Enc, &k, r.ts, data, rnd)
	if err != nil {
		return res, err
	}
	res.out = message{layer: p.Inner, data: box}
	return res, nil
}

// openReply is Client.openReply on success: the last hop's reply under the
// reply key derived from its layer key, padded to its size bucket.
func openReply(o *layer.Onion, tok []byte) ([]byte, error) {
	rk := o.Keys[len(o.Keys)-1].Derive(layer.PurposeReply)
	p, _, err := layer.FernetOpen(&rk, tok)
	if err != nil {
		return nil, err
	}
	return layer.UnpadAnswer(p)
}

// roundTrip is all the cryptography one message costs on an n-hop route:
// the client's build and data seal, each hop's peel, open and seal for the
// next hop, the last hop's reply seal and the client's reply open. replays
// holds one replay set per hop.
func (r *route) roundTrip(data []byte, replays []*replaySet, rnd io.Reader) ([]byte, error) {
	pad, err := clientPad(len(r.keys), rnd)
	if err != nil {
		return nil, err
	}
	o, m, err := r.clientBuild(data, pad, rnd)
	if err != nil {
		return nil, err
	}
	node := 0
	for range len(r.keys) {
		res, err := r.hop(node, replays[node], m, rnd)
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", node, err)
		}
		if res.reply != nil {
			return openReply(o, res.reply)
		}
		m, node = res.out, res.next
	}
	return nil, errors.New("route did not end")
}
