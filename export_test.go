package ghostcomm

import (
	"context"
	"io"
	"time"
)

// Internals exposed to the package's external tests, which cannot be
// internal tests because they use torctl/tortest, which imports ghostcomm.

type Prepared = prepared

const (
	FrameVersion   = frameVersion
	FrameChunk     = frameChunk
	FrameMessage   = uint8(frameMessage)
	FrameReply     = uint8(frameReply)
	FrameReject    = uint8(frameReject)
	RejectReplay   = uint8(rejectReplay)
	RejectTooLarge = uint8(rejectTooLarge)
)

func (c *Client) Prepare(cy *Cycle, data []byte) (*Prepared, error) { return c.prepare(cy, data) }

func (pm *prepared) Body(ctx context.Context, timeout time.Duration) [][]byte {
	return pm.body(ctx, timeout)
}

func (pm *prepared) FirstHop() string { return pm.route[0].Onion.Addr() }

func (c *Client) Answer(pm *Prepared, typ uint8, body []byte) ([]byte, error) {
	return c.answer(pm, frameHeader{typ: frameType(typ)}, body)
}

func WriteFrame(w io.Writer, typ uint8, id uint32, parts ...[]byte) error {
	return writeFrame(w, frameType(typ), id, parts...)
}

func ReadFrame(r io.Reader, max int) (typ uint8, body []byte, err error) {
	h, b, err := readFrame(r, max)
	return uint8(h.typ), b, err
}

func FrameHeader(typ uint8, id, n uint32) []byte {
	return frameHeader{typ: frameType(typ), id: id, len: n}.append(nil)
}

func (p *Primary) StopRotation() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopNext != nil {
		p.stopNext()
	}
}

func (c *Cycle) Clone() *Cycle { return c.clone() }
