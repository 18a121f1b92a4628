package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// fuzzSeeds are streams of bytes as a peer might send them: well-formed
// frames, and each way of breaking one.
func fuzzSeeds() [][]byte {
	frame := func(typ wire.Type, id uint32, body []byte) []byte {
		var b bytes.Buffer
		wire.WriteFrame(&b, typ, id, body)
		return b.Bytes()
	}
	msg := frame(wire.Message, 1, []byte("hello"))
	return [][]byte{
		msg,
		append(append([]byte{}, msg...), frame(wire.Ping, 2, nil)...),
		append(frame(wire.Message, 1, []byte("a")), frame(wire.Message, 1, []byte("same id"))...),
		frame(wire.Ping, 0, []byte("a ping with a body")),
		frame(wire.Reply, 3, []byte("a reply sent to a server")),
		frame(wire.Reject, 0, []byte{byte(wire.RejectBusy)}),
		frame(wire.Pong, 1, nil),
		frame(wire.Message, 5, nil),
		header(wire.Message, 1, 1<<20),            // over MaxFrame
		header(wire.Message, 1, 200),              // a body that never comes
		append(header(wire.Message, 1, 200), 'x'), // one that stops short
		msg[:7],                       // a truncated header
		append([]byte{2}, msg[1:]...), // an unknown version
		{},
	}
}

// FuzzServerStream feeds arbitrary bytes to a Server as one stream. Whatever
// they are, the server must not panic, must answer only with frames that
// parse, must close the stream once its peer has finished sending, and must
// give back every byte it charged. Catches parser panics on hostile input,
// charges leaked on an error path, and streams that hang on bad framing.
func FuzzServerStream(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	cfg := baseServerConfig()
	cfg.MaxFrame = 256
	cfg.MaxConcurrent = 2
	cfg.MaxInflight = 1 // raised to MaxFrame+HandlerCost: little room
	cfg.IOTimeout = 2 * time.Second
	s, addr := startServer(f, echo, cfg)

	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.DialTimeout("tcp", addr, waitLimit)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(waitLimit))
		go func() {
			c.Write(in)
			c.(*net.TCPConn).CloseWrite()
		}()
		for {
			h, body, err := wire.ReadFrame(c, cfg.MaxFrame)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("the server did not close a stream whose peer had finished")
				}
				if errors.Is(err, net.ErrClosed) || isReset(err) {
					break
				}
				t.Fatalf("the server sent a frame that does not parse: %v", err)
			}
			switch h.Type {
			case wire.Reply, wire.Pong:
			case wire.Reject:
				if len(body) != 1 {
					t.Fatalf("a reject with a %d-byte body", len(body))
				}
			default:
				t.Fatalf("the server sent a %v frame", h.Type)
			}
		}
		waitFor(t, "the stream closed and its charges given back", func() bool {
			st := s.Stats()
			return st.Streams == 0 && st.BytesHeld == 0 && st.Working == 0
		})
	})
}

// isReset reports whether err is the peer resetting the stream, which a
// server may do when it closes a stream with unread bytes.
func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && !oe.Timeout()
}

// FuzzPoolAnswer feeds arbitrary bytes to a Pool as its peer's answer to a
// request. The pool must not panic, and RoundTrip must return: an answer for
// the request's own stream id, or an error; Close must then end every
// goroutine. Catches parser panics, answers matched to the wrong request,
// and a reader left running on bad framing.
func FuzzPoolAnswer(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		peer := newFakePeer(t, func(n int, c net.Conn) {
			if _, _, err := wire.ReadFrame(c, 1<<20); err != nil {
				return
			}
			c.Write(in)
		})
		p := NewPool(PoolConfig{Dial: tcpDial, MaxFrame: 256, Attempts: 1, IOTimeout: time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		h, _, err := p.RoundTrip(ctx, peer.addr, wire.Message, [][]byte{[]byte("request")})
		if err == nil && h.ID != 1 {
			t.Fatalf("the answer on stream id %d was taken for the request on id 1", h.ID)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("RoundTrip waited for its deadline: the peer's bytes were neither an answer nor an error")
		}
		p.Close()
	})
}
