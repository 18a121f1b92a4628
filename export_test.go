package ghostcomm

import (
	"context"
	"crypto/rand"

	"github.com/ghostcomm/ghostcomm/internal/wire"

	"io"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/layer"
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
)

func (c *Client) Prepare(cy *Cycle, data []byte) (*Prepared, error) { return c.prepare(cy, data) }

func (pm *prepared) Body(ctx context.Context, timeout time.Duration) [][]byte {
	return pm.body(ctx, timeout)
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
	pl := payload{cycle: *cy, nonce: nonce, client: Fingerprint(c.keys.Fpr), primary: signer.keys.Raw}
	content, err := pl.marshal()
	if err != nil {
		return nil, err
	}
	signed, err := signPayload(signer.keys, content)
	if err != nil {
		return nil, err
	}
	if mutate != nil {
		mutate(signed)
	}
	k, err := layer.NewKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return layer.Seal(nil, c.keys.Enc, &k, cy.NotBefore.Unix(), signed, rand.Reader)
}

// InflightBytes returns the frame bytes the first node of the current cycle
// holds.
func (p *Primary) InflightBytes() int64 {
	p.mu.Lock()
	n := p.current.nodes[0]
	p.mu.Unlock()
	return n.srv.inflightBytes()
}

// ReplayLen returns how many tags the node at onion address addr, of any
// cycle still running, has recorded; -1 if there is no such node.
func (p *Primary) ReplayLen(addr string) int {
	p.mu.Lock()
	cycles := []*cycleState{p.current}
	for cs := range p.retiring {
		cycles = append(cycles, cs)
	}
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
