// Package wire is ghostcomm's framing: the frames every stream carries, the
// message a hop receives, and the codes of rejections and failure reports.
// The byte layouts are in docs/PROTOCOL.md ("Frame", "Message", "Reply",
// "Reject").
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/ghostcomm/ghostcomm/internal/errs"
)

// Frame layout:
//
//	offset size
//	0      1    version, Version
//	1      1    type
//	2      4    stream id, big endian: matches an answer to its request
//	6      4    body length n, big endian; n <= the receiver's limit
//	10     n    body
const (
	Version    = 1
	HeaderSize = 10

	// Chunk is how much of a body is allocated before that much has
	// actually arrived: a peer that announces a large body and sends
	// nothing costs at most this.
	Chunk = 64 << 10

	// MaxEcho is the longest body a Ping may carry. A Ping with a longer
	// body breaks the protocol, and its stream is closed.
	MaxEcho = 64 << 10

	// EchoPrefix is the length of the prefix of a non-empty Ping body:
	// how many of the bytes after it the Pong carries back, big endian.
	EchoPrefix = 4
)

// PingBody returns the body of a Ping that carries out to the peer and asks
// for its first back bytes back; nil (an empty Ping, answered by an empty
// Pong) if both are empty. back must be at most len(out).
func PingBody(out []byte, back int) []byte {
	if len(out) == 0 && back == 0 {
		return nil
	}
	b := binary.BigEndian.AppendUint32(make([]byte, 0, EchoPrefix+len(out)), uint32(back))
	return append(b, out...)
}

// PongBody returns the body of the Pong that answers a Ping with body b (a
// subslice of b), or errs.ErrMalformed for a body too short for its prefix
// or asking for more bytes back than it carries.
func PongBody(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) < EchoPrefix {
		return nil, fmt.Errorf("%w: a ping body of %d bytes", errs.ErrMalformed, len(b))
	}
	back := binary.BigEndian.Uint32(b)
	rest := b[EchoPrefix:]
	if uint64(back) > uint64(len(rest)) {
		return nil, fmt.Errorf("%w: a ping asking for %d bytes back of %d", errs.ErrMalformed, back, len(rest))
	}
	return rest[:back], nil
}

// Type is a frame's type.
type Type uint8

// Frame types.
const (
	PayloadRequest  Type = 1 // client -> primary
	PayloadResponse Type = 2 // primary -> client
	Message         Type = 3 // to a hop
	Reply           Type = 4 // from a hop: an opaque Fernet token
	Reject          Type = 5 // from a hop that could not open its layer
	Ping            Type = 6 // liveness probe: empty, or an echo request (PingBody); answered at once
	Pong            Type = 7 // answer to a Ping, same stream id: PongBody of the Ping's

	// Remote nodes and a Primary (docs/PROTOCOL.md, "Remote nodes").
	NodeHello      Type = 8  // remote node -> primary: wait for the next cycle
	NodeCycle      Type = 9  // primary -> remote node: the cycle now open
	NodeDescriptor Type = 10 // remote node -> primary: signed descriptor
	NodePeers      Type = 11 // primary -> remote node: the cycle's peer list
	NodeReady      Type = 12 // remote node -> primary, and its answer: peers set

	// Sealed mode (docs/PROTOCOL.md, "Sealed mode"): the body is exactly
	// one packet class (2 KiB or 32 KiB), nothing else.
	SealedPacket Type = 13 // to a hop: a sealed-mode packet
	SealedReply  Type = 14 // from a hop: a sealed-mode reply, as long as its packet
)

// String names the frame type.
func (t Type) String() string {
	switch t {
	case PayloadRequest:
		return "payload-request"
	case PayloadResponse:
		return "payload-response"
	case Message:
		return "message"
	case Reply:
		return "reply"
	case Reject:
		return "reject"
	case Ping:
		return "ping"
	case Pong:
		return "pong"
	case NodeHello:
		return "node-hello"
	case NodeCycle:
		return "node-cycle"
	case NodeDescriptor:
		return "node-descriptor"
	case NodePeers:
		return "node-peers"
	case NodeReady:
		return "node-ready"
	case SealedPacket:
		return "sealed-packet"
	case SealedReply:
		return "sealed-reply"
	}
	return fmt.Sprintf("frame-type-%d", uint8(t))
}

// Header is a frame's header.
type Header struct {
	Type Type
	ID   uint32
	Len  uint32
}

// Append appends the encoded header to b.
func (h Header) Append(b []byte) []byte {
	b = append(b, Version, byte(h.Type))
	b = binary.BigEndian.AppendUint32(b, h.ID)
	return binary.BigEndian.AppendUint32(b, h.Len)
}

// ParseHeader decodes a header, checking the version and that the body
// length is at most max.
func ParseHeader(b []byte, max int) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: short frame header", errs.ErrMalformed)
	}
	if b[0] != Version {
		return Header{}, fmt.Errorf("%w: frame version %d", errs.ErrUnsupportedVersion, b[0])
	}
	h := Header{
		Type: Type(b[1]),
		ID:   binary.BigEndian.Uint32(b[2:6]),
		Len:  binary.BigEndian.Uint32(b[6:10]),
	}
	if uint64(h.Len) > uint64(max) {
		return h, fmt.Errorf("%w: %d bytes announced, limit %d", errs.ErrFrameTooLarge, h.Len, max)
	}
	return h, nil
}

// ReadFrame reads one frame: ReadHeader, then ReadBody.
func ReadFrame(r io.Reader, max int) (Header, []byte, error) {
	h, err := ReadHeader(r, max)
	if err != nil {
		return h, nil, err
	}
	body, err := ReadBody(r, h)
	return h, body, err
}

// ReadHeader reads a frame's header and checks the announced length against
// max, before anything is allocated for the body. io.EOF is returned only at
// a clean frame boundary.
func ReadHeader(r io.Reader, max int) (Header, error) {
	var hb [HeaderSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: truncated frame header", errs.ErrMalformed)
		}
		return Header{}, err
	}
	return ParseHeader(hb[:], max)
}

// ReadBody reads the body h announces. It is allocated as it arrives, in
// chunks that double from Chunk, never more than announced; a body cut short
// is ErrMalformed.
func ReadBody(r io.Reader, h Header) ([]byte, error) {
	n := int(h.Len)
	body := make([]byte, 0, min(n, Chunk))
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
				err = fmt.Errorf("%w: truncated frame body", errs.ErrMalformed)
			}
			return nil, err
		}
	}
	return body, nil
}

// CoalesceMax is the largest frame (header and body) WriteFrame copies into
// one buffer to hand the writer in a single Write.
const CoalesceMax = 64 << 10

// frameBufs holds the buffers WriteFrame coalesces frames in.
var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// WriteFrame writes one frame, header and parts. A frame of up to
// CoalesceMax bytes is copied into one pooled buffer and written with a
// single Write, whatever w is: on a stream without Nagle's algorithm each
// Write is a segment of its own and a wakeup of the reader, and only some
// connections (*net.TCPConn) gather a net.Buffers into one system call. A
// larger frame is written as net.Buffers, without the copy.
func WriteFrame(w io.Writer, typ Type, id uint32, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if uint64(n) > 1<<32-1 {
		return fmt.Errorf("%w: %d bytes", errs.ErrFrameTooLarge, n)
	}
	h := Header{Type: typ, ID: id, Len: uint32(n)}
	if HeaderSize+n <= CoalesceMax {
		bp := frameBufs.Get().(*[]byte)
		b := h.Append((*bp)[:0])
		for _, p := range parts {
			b = append(b, p...)
		}
		_, err := w.Write(b)
		*bp = b[:0]
		frameBufs.Put(bp)
		return err
	}
	hdr := h.Append(make([]byte, 0, HeaderSize))
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

// Msg is the body of a Message frame:
//
//	offset size
//	0      4    budget: milliseconds the sender will wait for the answer
//	4      4    r = length of the onion layer
//	8      r    onion layer for this hop
//	8+r    ...  data box for this hop (a sealed box), to the end
type Msg struct {
	BudgetMS uint32
	Layer    []byte
	Data     []byte
}

// Parts returns the body's parts, ready for WriteFrame.
func (m *Msg) Parts() [][]byte {
	var h [8]byte
	binary.BigEndian.PutUint32(h[0:4], m.BudgetMS)
	binary.BigEndian.PutUint32(h[4:8], uint32(len(m.Layer)))
	return [][]byte{h[:], m.Layer, m.Data}
}

// ParseMsg parses a Message frame's body. Layer and Data alias b.
func ParseMsg(b []byte) (*Msg, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%w: short message", errs.ErrMalformed)
	}
	m := &Msg{BudgetMS: binary.BigEndian.Uint32(b[0:4])}
	r := binary.BigEndian.Uint32(b[4:8])
	if uint64(r) > uint64(len(b)-8) {
		return nil, fmt.Errorf("%w: layer length %d exceeds message", errs.ErrMalformed, r)
	}
	m.Layer = b[8 : 8+r]
	m.Data = b[8+r:]
	if len(m.Layer) == 0 || len(m.Data) == 0 {
		return nil, fmt.Errorf("%w: message without layer or data", errs.ErrMalformed)
	}
	return m, nil
}

// RejectCode is the one-byte body of a Reject frame. A hop sends a Reject
// only when it could not open its own layer, or refuses it before use; after
// that, every failure travels back as a Reply the client alone can read.
type RejectCode uint8

// Reject codes.
const (
	RejectMalformed RejectCode = 1
	RejectAuth      RejectCode = 2
	RejectReplay    RejectCode = 3
	RejectStale     RejectCode = 4
	RejectBusy      RejectCode = 5
	RejectTooLarge  RejectCode = 6
	RejectVersion   RejectCode = 7
	RejectClosed    RejectCode = 8
	RejectType      RejectCode = 9
	RejectBudget    RejectCode = 10 // the message's budget is below the hop's floor

	// Refusals of a Primary to a remote node.
	RejectNotEnrolled RejectCode = 11 // the node identity is not enrolled
	RejectWrongCycle  RejectCode = 12 // the descriptor is for no open cycle
	RejectLate        RejectCode = 13 // the cycle's descriptor deadline passed
	RejectNotFormed   RejectCode = 14 // the cycle did not form (too few nodes)
	RejectSignature   RejectCode = 15 // the descriptor's signature does not verify
	RejectDescReplay  RejectCode = 16 // the descriptor was already submitted
)

// ReportCode is the first byte of a hop's failure report: a Fernet token
// under its layer key's error key, whose plaintext is the code and a detail
// byte (the next hop's RejectCode for ReportNextRejected, else 0).
type ReportCode uint8

// Report codes.
const (
	ReportNextNotFound   ReportCode = 1 // the next hop's onion was not found
	ReportNextUnreached  ReportCode = 2 // the next hop could not be reached
	ReportNextTimeout    ReportCode = 3 // the next hop did not answer in time
	ReportNextRejected   ReportCode = 4 // the next hop rejected the message
	ReportBadData        ReportCode = 5 // the data box did not open
	ReportProcessing     ReportCode = 6 // the processor failed
	ReportBadRoute       ReportCode = 7 // the next hop index is unknown
	ReportNextBrokeReply ReportCode = 8 // the next hop's answer was not a valid frame
	ReportBudget         ReportCode = 9 // sealed mode: the hop's budget is below its floor
)
