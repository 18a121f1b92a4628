package ghostcomm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// Frame format (docs/PROTOCOL.md, "Frame"): every stream carries a sequence of
// frames in both directions.
//
//	offset size
//	0      1    version, frameVersion
//	1      1    type
//	2      4    stream id, big endian: matches an answer to its request
//	6      4    body length n, big endian; n <= the receiver's limit
//	10     n    body
const (
	frameVersion    = 1
	frameHeaderSize = 10

	// DefaultMaxFrameSize bounds a frame body when a Config leaves
	// MaxFrameSize zero: 4 MiB, room for a 1 MiB message with any number of
	// hops.
	DefaultMaxFrameSize = 4 << 20

	// frameChunk is how much of a body is allocated before that much has
	// actually arrived: a peer that announces a large body and sends
	// nothing costs at most this.
	frameChunk = 64 << 10
)

type frameType uint8

const (
	framePayloadRequest  frameType = 1 // client -> primary
	framePayloadResponse frameType = 2 // primary -> client
	frameMessage         frameType = 3 // to a hop
	frameReply           frameType = 4 // from a hop: an opaque Fernet token
	frameReject          frameType = 5 // from a hop that could not open its layer
)

func (t frameType) String() string {
	switch t {
	case framePayloadRequest:
		return "payload-request"
	case framePayloadResponse:
		return "payload-response"
	case frameMessage:
		return "message"
	case frameReply:
		return "reply"
	case frameReject:
		return "reject"
	}
	return fmt.Sprintf("frame-type-%d", uint8(t))
}

type frameHeader struct {
	typ frameType
	id  uint32
	len uint32
}

func (h frameHeader) append(b []byte) []byte {
	b = append(b, frameVersion, byte(h.typ))
	b = binary.BigEndian.AppendUint32(b, h.id)
	return binary.BigEndian.AppendUint32(b, h.len)
}

// parseFrameHeader checks the version and the length limit.
func parseFrameHeader(b []byte, max int) (frameHeader, error) {
	if len(b) < frameHeaderSize {
		return frameHeader{}, fmt.Errorf("%w: short frame header", ErrMalformed)
	}
	if b[0] != frameVersion {
		return frameHeader{}, fmt.Errorf("%w: frame version %d", ErrUnsupportedVersion, b[0])
	}
	h := frameHeader{
		typ: frameType(b[1]),
		id:  binary.BigEndian.Uint32(b[2:6]),
		len: binary.BigEndian.Uint32(b[6:10]),
	}
	if uint64(h.len) > uint64(max) {
		return h, fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, h.len, max)
	}
	return h, nil
}

// readFrame reads one frame. The body is allocated as it arrives, in chunks,
// never more than the announced length, which is checked against max before
// anything is allocated. io.EOF is returned only at a clean frame boundary.
func readFrame(r io.Reader, max int) (frameHeader, []byte, error) {
	var hb [frameHeaderSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: truncated frame header", ErrMalformed)
		}
		return frameHeader{}, nil, err
	}
	h, err := parseFrameHeader(hb[:], max)
	if err != nil {
		return h, nil, err
	}
	n := int(h.len)
	body := make([]byte, 0, min(n, frameChunk))
	for len(body) < n {
		if len(body) == cap(body) {
			grown := make([]byte, len(body), min(n, 2*cap(body)))
			copy(grown, body)
			body = grown
		}
		m, err := io.ReadFull(r, body[len(body):cap(body)])
		body = body[:len(body)+m]
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("%w: truncated frame body", ErrMalformed)
			}
			return h, nil, err
		}
	}
	return h, body, nil
}

// writeFrame writes one frame with a single gathered write.
func writeFrame(w io.Writer, typ frameType, id uint32, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if uint64(n) > 1<<32-1 {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	hdr := frameHeader{typ: typ, id: id, len: uint32(n)}.append(make([]byte, 0, frameHeaderSize))
	bufs := make(net.Buffers, 0, 1+len(parts))
	bufs = append(bufs, hdr)
	for _, p := range parts {
		if len(p) > 0 {
			bufs = append(bufs, p)
		}
	}
	_, err := bufs.WriteTo(w)
	return err
}

// Message body (docs/PROTOCOL.md, "Message"):
//
//	offset size
//	0      4    budget: milliseconds the sender will wait for the answer
//	4      4    r = length of the onion layer
//	8      r    onion layer for this hop
//	8+r    ...  data box for this hop (a sealed box), to the end
type message struct {
	budgetMS uint32
	layer    []byte
	data     []byte
}

func (m *message) parts() [][]byte {
	var h [8]byte
	binary.BigEndian.PutUint32(h[0:4], m.budgetMS)
	binary.BigEndian.PutUint32(h[4:8], uint32(len(m.layer)))
	return [][]byte{h[:], m.layer, m.data}
}

func parseMessage(b []byte) (*message, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%w: short message", ErrMalformed)
	}
	m := &message{budgetMS: binary.BigEndian.Uint32(b[0:4])}
	r := binary.BigEndian.Uint32(b[4:8])
	if uint64(r) > uint64(len(b)-8) {
		return nil, fmt.Errorf("%w: layer length %d exceeds message", ErrMalformed, r)
	}
	m.layer = b[8 : 8+r]
	m.data = b[8+r:]
	if len(m.layer) == 0 || len(m.data) == 0 {
		return nil, fmt.Errorf("%w: message without layer or data", ErrMalformed)
	}
	return m, nil
}

// Reject body: one code byte. A hop sends a Reject only when it could not
// open its own layer, or refuses before opening it; after that, every failure
// travels back as a Reply the client alone can authenticate.
type rejectCode uint8

const (
	rejectMalformed rejectCode = 1
	rejectAuth      rejectCode = 2
	rejectReplay    rejectCode = 3
	rejectStale     rejectCode = 4
	rejectBusy      rejectCode = 5
	rejectTooLarge  rejectCode = 6
	rejectVersion   rejectCode = 7
	rejectClosed    rejectCode = 8
	rejectType      rejectCode = 9
)

func (c rejectCode) err() error {
	switch c {
	case rejectMalformed:
		return ErrMalformed
	case rejectAuth:
		return ErrAuth
	case rejectReplay:
		return ErrReplay
	case rejectStale:
		return ErrStaleCycle
	case rejectBusy:
		return ErrBusy
	case rejectTooLarge:
		return ErrFrameTooLarge
	case rejectVersion:
		return ErrUnsupportedVersion
	case rejectClosed:
		return ErrClosed
	}
	return ErrRejected
}

func rejectFor(err error) rejectCode {
	switch {
	case errors.Is(err, ErrReplay):
		return rejectReplay
	case errors.Is(err, ErrStaleCycle):
		return rejectStale
	case errors.Is(err, ErrBusy):
		return rejectBusy
	case errors.Is(err, ErrFrameTooLarge):
		return rejectTooLarge
	case errors.Is(err, ErrUnsupportedVersion):
		return rejectVersion
	case errors.Is(err, ErrClosed):
		return rejectClosed
	case errors.Is(err, ErrAuth):
		return rejectAuth
	}
	return rejectMalformed
}

// Hop report (docs/PROTOCOL.md, "Reply"): when a hop that opened its layer
// fails, it answers with a Fernet token under its layer key's error key, so
// that only the client can read it and knows which hop wrote it.
//
//	offset size
//	0      1    code
//	1      1    detail (the next hop's reject code, or 0)
type reportCode uint8

const (
	reportNextNotFound   reportCode = 1 // the next hop's onion was not found
	reportNextUnreached  reportCode = 2 // the next hop could not be reached
	reportNextTimeout    reportCode = 3 // the next hop did not answer in time
	reportNextRejected   reportCode = 4 // the next hop rejected the message
	reportBadData        reportCode = 5 // the data box did not open
	reportProcessing     reportCode = 6 // the processor failed
	reportBadRoute       reportCode = 7 // the next hop index is unknown
	reportNextBrokeReply reportCode = 8 // the next hop's answer was not a valid frame
)
