package ghostcomm

import (
	"context"
	"crypto/rand"

	"github.com/ghostcomm/ghostcomm/internal/wire"

	"io"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/layer"
	"github.com/ghostcomm/ghostcomm/internal/sealed"

	"github.com/ProtonMail/go-crypto/openpgp/ecdh"
	"github.com/ProtonMail/go-crypto/openpgp/eddsa"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Internals exposed to the package's external tests, which cannot be
// internal tests because they use torctl/tortest, which imports ghostcomm.

type Prepared = prepared

const (
	FrameVersion   = wire.Version
	FrameChunk     = wire.Chunk
	FrameMessage   = uint8(wire.Message)
	FrameReply     = uint8(wire.Reply)
	FrameReject    = uint8(wire.Reject)
	RejectReplay   = uint8(wire.RejectReplay)
	RejectBusy     = uint8(wire.RejectBusy)
	RejectTooLarge = uint8(wire.RejectTooLarge)

	FramePayloadRequest  = uint8(wire.PayloadRequest)
	FramePayloadResponse = uint8(wire.PayloadResponse)
)

// PayloadWaiting returns the number of payload requests waiting for their
// turn.
func (p *Primary) PayloadWaiting() int { return p.gate.waiting() }

func (c *Client) Prepare(cy *Cycle, data []byte) (*Prepared, error) { return c.prepare(cy, data) }

// Body returns the message frame's body with a budget of nine tenths of
// the time before ctx's deadline, or of timeout.
func (pm *prepared) Body(ctx context.Context, timeout time.Duration) [][]byte {
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	return pm.body(timeout * 9 / 10)
}

func (pm *prepared) FirstHop() string { return pm.route[0].Onion.Addr() }

func (c *Client) Answer(pm *Prepared, typ uint8, body []byte) ([]byte, error) {
	return c.answer(pm, wire.Header{Type: wire.Type(typ)}, body)
}

func WriteFrame(w io.Writer, typ uint8, id uint32, parts ...[]byte) error {
	return wire.WriteFrame(w, wire.Type(typ), id, parts...)
}

func ReadFrame(r io.Reader, max int) (typ uint8, body []byte, err error) {
	h, b, err := wire.ReadFrame(r, max)
	return uint8(h.Type), b, err
}

func FrameHeader(typ uint8, id, n uint32) []byte {
	return wire.Header{Type: wire.Type(typ), ID: id, Len: n}.Append(nil)
}

func (p *Primary) StopRotation() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopNext != nil {
		p.stopNext()
	}
}

func (c *Cycle) Clone() *Cycle { return c.clone() }

// PayloadRequest builds a payload request for a client.
func (c *Client) PayloadRequest() (body []byte, nonce [32]byte) {
	req := payloadRequest{client: c.keys.Raw}
	copy(req.nonce[:], "0123456789abcdef0123456789abcdef")
	return req.marshal(), req.nonce
}

// OpenPayload checks a sealed payload as Fetch does.
func (c *Client) OpenPayload(box []byte, nonce [32]byte) (*Cycle, error) {
	return c.openPayload(box, nonce)
}

// Answer answers a payload request as the Primary's server does.
func (p *Primary) AnswerRequest(body []byte) ([]byte, error) { return p.answer(body) }

// ForgePayload seals for client c a payload of cycle cy signed by signer
// (any Primary), with the body altered by mutate after signing if not nil.
func ForgePayload(signer *Primary, c *Client, cy *Cycle, nonce [32]byte, mutate func([]byte)) ([]byte, error) {
	return ForgePayloadWith(signer, c, cy, nonce, Forgery{Signed: mutate})
}

// Forgery says how ForgePayloadWith departs from a genuine payload.
type Forgery struct {
	// Cycle alters a copy of the cycle before it is signed.
	Cycle func(*Cycle)
	// Client, if set, is the client fingerprint signed into the payload
	// instead of the recipient's.
	Client *Fingerprint
	// BoxTS, if set, is the sealed box's Fernet timestamp instead of the
	// cycle's NotBefore.
	BoxTS *int64
	// Signed alters the signed form (signature and content) after signing.
	Signed func([]byte)
}

// ForgePayloadWith seals for client c a payload of cycle cy signed by signer
// (any Primary), altered as f says.
func ForgePayloadWith(signer *Primary, c *Client, cy *Cycle, nonce [32]byte, f Forgery) ([]byte, error) {
	cy = cy.clone()
	if f.Cycle != nil {
		f.Cycle(cy)
	}
	pl := payload{cycle: *cy, nonce: nonce, client: Fingerprint(c.keys.Fpr), primary: signer.keys.Raw}
	if f.Client != nil {
		pl.client = *f.Client
	}
	content, err := pl.marshal()
	if err != nil {
		return nil, err
	}
	signed, err := signPayload(signer.keys, content)
	if err != nil {
		return nil, err
	}
	if f.Signed != nil {
		f.Signed(signed)
	}
	ts := cy.NotBefore.Unix()
	if f.BoxTS != nil {
		ts = *f.BoxTS
	}
	k, err := layer.NewKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return layer.Seal(nil, c.keys.Enc, &k, ts, signed, rand.Reader)
}

// ResealData replaces the message's data box for hop 1 with one holding
// data under Fernet timestamp ts; the onion layers stay as they are.
func (pm *prepared) ResealData(data []byte, ts int64) error {
	k, err := layer.NewKey(rand.Reader)
	if err != nil {
		return err
	}
	box, err := layer.Seal(nil, pm.route[0].pub.Enc, &k, ts, data, rand.Reader)
	if err != nil {
		return err
	}
	pm.data = box
	return nil
}

// InflightBytes returns the frame bytes the first node of the current cycle
// holds.
func (p *Primary) InflightBytes() int64 {
	p.mu.Lock()
	n := p.current.nodes[0]
	p.mu.Unlock()
	return n.Stats().BytesHeld
}

// Reseal returns pm with its data box replaced by data sealed anew for the
// first hop: the same layers, another data box.
func (c *Client) Reseal(pm *Prepared, cy *Cycle, data []byte) (*Prepared, error) {
	k, err := layer.NewKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	box, err := layer.Seal(nil, pm.route[0].pub.Enc, &k, cy.NotBefore.Unix(), data, rand.Reader)
	if err != nil {
		return nil, err
	}
	cp := *pm
	cp.data = box
	return &cp, nil
}

// PrepareRoute builds a message for any route, loops included, as an
// attacker holding the payload could.
func (c *Client) PrepareRoute(cy *Cycle, route []int, data []byte) (*Prepared, error) {
	return c.prepareRoute(cy, route, data)
}

// BodyBudget returns the message frame's body with the given budget.
func (pm *prepared) BodyBudget(budget time.Duration) [][]byte { return pm.body(budget) }

// ReadFrameID reads one frame and returns its stream id too.
func ReadFrameID(r io.Reader, max int) (typ uint8, body []byte, id uint32, err error) {
	h, b, err := wire.ReadFrame(r, max)
	return uint8(h.Type), b, h.ID, err
}

// Route picks a message's route as Send does.
func (c *Client) Route(cy *Cycle) ([]int, error) { return c.route(cy) }

// Peers returns the peers the node keeps.
func (n *Node) Peers() []NodeInfo { return *n.peers.Load() }

// HasKeyRing reports whether the node info holds an OpenPGP key ring.
func (ni *NodeInfo) HasKeyRing() bool { return ni.pub != nil && ni.pub.Ring != nil }

// Nodes returns the nodes of the Primary's current cycle.
func (p *Primary) Nodes() []*Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Node(nil), p.current.nodes...)
}

// KeyMaterial returns the slices holding the client's private keys.
func (c *Client) KeyMaterial() [][]byte {
	var out [][]byte
	for _, k := range c.keys.Priv.GetKeys() {
		e := k.GetEntity()
		pks := []*packet.PrivateKey{e.PrivateKey}
		for _, sk := range e.Subkeys {
			pks = append(pks, sk.PrivateKey)
		}
		for _, pk := range pks {
			switch k := pk.PrivateKey.(type) {
			case *eddsa.PrivateKey:
				out = append(out, k.D)
			case *ecdh.PrivateKey:
				out = append(out, k.D)
			}
		}
	}
	return out
}

// ReplayLen returns how many tags the node at onion address addr, of any
// cycle still running, has recorded; -1 if there is no such node.
func (p *Primary) ReplayLen(addr string) int {
	p.mu.Lock()
	cycles := p.liveCyclesLocked()
	p.mu.Unlock()
	for _, cs := range cycles {
		for _, n := range cs.nodes {
			if n.Onion().Addr() == addr {
				return n.replay.Len()
			}
		}
	}
	return -1
}

// Sealed mode.

const (
	FrameSealedPacket = uint8(wire.SealedPacket)
	FrameSealedReply  = uint8(wire.SealedReply)
)

type SealedPrepared = sealedPrepared

// PrepareSealed builds a sealed packet for data on a route of cy, every hop
// with the given budget.
func (c *Client) PrepareSealed(cy *Cycle, data []byte, budget time.Duration) (*SealedPrepared, error) {
	return c.prepareSealed(cy, data, budget)
}

// Packet returns a copy of the packet.
func (sp *sealedPrepared) Packet() []byte { return append([]byte(nil), sp.pkt...) }

func (sp *sealedPrepared) FirstHop() string { return sp.res.Route[0].Onion.Addr() }

// Answer opens the first hop's answer as Send does (the reply in place).
func (sp *sealedPrepared) Answer(typ uint8, body []byte) ([]byte, error) {
	return sealedAnswer(sp.sent, sp.res.Route, wire.Type(typ), body)
}

// SealedKeys returns the sealed-mode keys of the current cycle's local
// nodes, in payload order.
func (p *Primary) SealedKeys() []*sealed.PrivateKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ks []*sealed.PrivateKey
	for _, n := range p.current.nodes {
		ks = append(ks, n.sealedKey)
	}
	return ks
}

// SealedAnswer opens the first hop's answer to a packet built with sent
// along route, as Send does.
func SealedAnswer(sent *sealed.Sent, route []NodeInfo, typ uint8, body []byte) ([]byte, error) {
	return sealedAnswer(sent, route, wire.Type(typ), body)
}

// SendsWaiting is how many Sends wait for a turn under MaxInFlight.
func (c *Client) SendsWaiting() int { return int(c.waiting.Load()) }
