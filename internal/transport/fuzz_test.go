package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/errs"
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
// parse (the last may be cut short when the server closes the stream), must close the stream once its peer has finished sending, and must
// give back every byte it charged. Catches parser panics on hostile input,
// charges leaked on an error path, and streams that hang on bad framing.
// (The streams are in-memory pipes: fuzzing over loopback TCP would use up
// the machine's ephemeral ports.)
func FuzzServerStream(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	cfg := baseServerConfig()
	cfg.MaxFrame = 256
	cfg.MaxConcurrent = 2
	cfg.MaxInflight = 1 // raised to MaxFrame+HandlerCost: little room
	ln := newPipeListener()
	s := NewServer(ln, echo, cfg)
	f.Cleanup(func() { s.Close() })

	f.Fuzz(func(t *testing.T, in []byte) {
		c := ln.dial()
		defer c.Close()
		go func() {
			c.Write(in)
			c.CloseWrite()
		}()
		answered := make(chan error, 1)
		go func() {
			for {
				h, body, err := wire.ReadFrame(c, cfg.MaxFrame)
				// The server closes a stream on bad framing without
				// waiting for its handlers: their answers may be cut off.
				if errors.Is(err, io.EOF) || errors.Is(err, errs.ErrMalformed) {
					answered <- nil
					return
				}
				if err != nil {
					answered <- fmt.Errorf("the server sent a frame that does not parse: %v", err)
					return
				}
				switch {
				case h.Type == wire.Reply, h.Type == wire.Pong:
				case h.Type == wire.Reject && len(body) == 1:
				default:
					answered <- fmt.Errorf("the server sent a %v frame with %d bytes", h.Type, len(body))
					return
				}
			}
		}()
		select {
		case err := <-answered:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(waitLimit):
			t.Fatal("the server did not close a stream whose peer had finished")
		}
		waitFor(t, "the stream closed and its charges given back", func() bool {
			st := s.Stats()
			return st.Streams == 0 && st.BytesHeld == 0 && st.Working == 0
		})
	})
}

// FuzzPoolAnswer feeds arbitrary bytes to a Pool as its peer's answer to a
// request. The pool must not panic, and RoundTrip must return: an answer for
// the request's own stream id, or an error; Close must then end every
// goroutine. Catches parser panics, answers matched to the wrong request,
// and a request left waiting on bad framing.
func FuzzPoolAnswer(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var peers sync.WaitGroup
		defer peers.Wait()
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			a, b := halfPipe()
			peers.Add(1)
			go func() {
				defer peers.Done()
				defer b.Close()
				if _, _, err := wire.ReadFrame(b, 1<<20); err != nil {
					return
				}
				b.Write(in)
			}()
			return a, nil
		}
		p := NewPool(PoolConfig{Dial: dial, MaxFrame: 256, Attempts: 1, IOTimeout: time.Second})
		defer p.Close()
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		h, _, err := p.RoundTrip(ctx, "peer", wire.Message, [][]byte{[]byte("request")})
		if err == nil && h.ID != 1 {
			t.Fatalf("the answer on stream id %d was taken for the request on id 1", h.ID)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("RoundTrip waited for its deadline: the peer's bytes were neither an answer nor an error")
		}
	})
}

// halfConn is one end of an in-memory stream that, unlike net.Pipe, can be
// closed for writing alone, so that a peer can finish sending and still read
// the answers. Deadlines are accepted and ignored.
type halfConn struct {
	r *io.PipeReader
	w *io.PipeWriter
}

func halfPipe() (*halfConn, *halfConn) {
	r1, w1 := io.Pipe()
	r2, w2 := io.Pipe()
	return &halfConn{r: r1, w: w2}, &halfConn{r: r2, w: w1}
}

func (c *halfConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *halfConn) Write(b []byte) (int, error) { return c.w.Write(b) }
func (c *halfConn) CloseWrite() error           { return c.w.Close() }
func (c *halfConn) Close() error {
	c.r.Close()
	return c.w.Close()
}
func (c *halfConn) LocalAddr() net.Addr              { return pipeAddr{} }
func (c *halfConn) RemoteAddr() net.Addr             { return pipeAddr{} }
func (c *halfConn) SetDeadline(time.Time) error      { return nil }
func (c *halfConn) SetReadDeadline(time.Time) error  { return nil }
func (c *halfConn) SetWriteDeadline(time.Time) error { return nil }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// pipeListener hands a Server the far ends of the halfPipes dial makes.
type pipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) dial() *halfConn {
	a, b := halfPipe()
	select {
	case l.conns <- b:
	case <-l.done:
		b.Close()
	}
	return a
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }
