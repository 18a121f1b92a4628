package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/errs"
	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// framesBy serves a pool's stream as echoServe does and records, for each
// frame, the stream it came on and its header.
type framesBy struct {
	mu     sync.Mutex
	frames []streamFrame
}

type streamFrame struct {
	stream int
	h      wire.Header
}

func (f *framesBy) serve(n int, c net.Conn) {
	for {
		h, body, err := wire.ReadFrame(c, 1<<20)
		if err != nil {
			return
		}
		f.mu.Lock()
		f.frames = append(f.frames, streamFrame{n, h})
		f.mu.Unlock()
		if h.Type == wire.Ping {
			err = wire.WriteFrame(c, wire.Pong, h.ID, body)
		} else {
			err = wire.WriteFrame(c, wire.Reply, h.ID, body)
		}
		if err != nil {
			return
		}
	}
}

// Pool.Ping goes on the stream the requests to the same peer take: no dial
// of its own, the peer sees it on the requests' stream, with an id no
// request has (a pong can then answer only it). Catches a ping that dials a
// stream of its own (it would measure another tor circuit than the
// messages'), or that reuses id 0 or a request's id.
func TestPoolPingUsesTheRequestsStream(t *testing.T) {
	var f framesBy
	peer := newFakePeer(t, f.serve)
	p := newTestPool(t, PoolConfig{})
	ctx := testCtx(t)
	roundTrip(t, ctx, p, peer.addr, []byte("one"))
	for range 3 {
		rtt, err := p.Ping(ctx, peer.addr, nil, 0)
		if err != nil {
			t.Fatalf("Ping: %v", err)
		}
		if rtt <= 0 {
			t.Fatalf("Ping measured %v", rtt)
		}
	}
	roundTrip(t, ctx, p, peer.addr, []byte("two"))
	checkStats(t, p, PoolStats{Dials: 1})
	if n := peer.streams(); n != 1 {
		t.Fatalf("the peer accepted %d streams; want 1", n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := map[uint32]bool{}
	pings := 0
	for _, fr := range f.frames {
		if fr.stream != 1 {
			t.Errorf("a %v frame on stream %d", fr.h.Type, fr.stream)
		}
		if fr.h.ID == 0 || ids[fr.h.ID] {
			t.Errorf("a %v frame with id %d, already used or the stream's own", fr.h.Type, fr.h.ID)
		}
		ids[fr.h.ID] = true
		if fr.h.Type == wire.Ping {
			pings++
			if fr.h.Len != 0 {
				t.Errorf("a ping with a %d-byte body", fr.h.Len)
			}
		}
	}
	if pings != 3 {
		t.Errorf("the peer saw %d pings; want 3", pings)
	}
}

// A ping is answered only by the Pong with its own id: a Pong with another
// id (a stale one, the stream's own id 0) or a Reply with its id does not
// end it. The peer sends those first and the right Pong only `hold` later,
// so a ping that took a wrong answer would measure less than hold. Catches
// a ping that takes any Pong as its own.
func TestPoolPingWaitsForItsOwnPong(t *testing.T) {
	const hold = 50 * time.Millisecond
	peer := newFakePeer(t, func(n int, c net.Conn) {
		for {
			h, body, err := wire.ReadFrame(c, 1<<20)
			if err != nil {
				return
			}
			if h.Type != wire.Ping {
				wire.WriteFrame(c, wire.Reply, h.ID, body)
				continue
			}
			wire.WriteFrame(c, wire.Pong, h.ID+1)
			wire.WriteFrame(c, wire.Pong, 0)
			wire.WriteFrame(c, wire.Reply, h.ID, []byte("not a pong"))
			time.Sleep(hold)
			if wire.WriteFrame(c, wire.Pong, h.ID) != nil {
				return
			}
		}
	})
	p := newTestPool(t, PoolConfig{})
	ctx := testCtx(t)
	rtt, err := p.Ping(ctx, peer.addr, nil, 0)
	if err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if rtt < hold {
		t.Fatalf("Ping measured %v, before its own pong was sent (%v after the ping)", rtt, hold)
	}
	// The stray frames broke nothing: a request still gets its answer on
	// the same stream.
	if got := roundTrip(t, ctx, p, peer.addr, []byte("after")); string(got) != "after" {
		t.Fatalf("answer %q", got)
	}
	checkStats(t, p, PoolStats{Dials: 1})
}

// A ping on a stream whose peer has gone silent ends within its deadline:
// with the caller's deadline first, context.DeadlineExceeded and the stream
// left as it is; with none, ErrStreamLost after IOTimeout, the stream judged
// dead and the next request sent on a fresh one. Catches a ping that waits
// for ever on a dead stream, and one that leaves a dead stream in the pool.
func TestPoolPingOnSilentStream(t *testing.T) {
	const io = 300 * time.Millisecond
	silent := &pingCounter{requests: make(chan wire.Header, 10)}
	peer := newFakePeer(t, func(n int, c net.Conn) {
		if n == 1 {
			silent.serve(c, new(sync.Mutex))
			return
		}
		echoServe(c)
	})
	p := newTestPool(t, PoolConfig{IOTimeout: io})
	if err := p.Warm(testCtx(t), peer.addr); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), io/3)
	defer cancel()
	_, err := p.Ping(ctx, peer.addr, nil, 0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ping with a deadline on a silent stream: %v; want context.DeadlineExceeded", err)
	}
	checkStats(t, p, PoolStats{Dials: 1})

	start := time.Now()
	_, err = p.Ping(testCtx(t), peer.addr, nil, 0)
	took := time.Since(start)
	if !errors.Is(err, ErrStreamLost) {
		t.Fatalf("Ping on a silent stream: %v; want ErrStreamLost", err)
	}
	if took < io || took > waitLimit/2 {
		t.Errorf("the unanswered ping ended after %v; want after the I/O timeout (%v), well within the caller's deadline", took, io)
	}
	if got := roundTrip(t, testCtx(t), p, peer.addr, []byte("fresh")); string(got) != "fresh" {
		t.Fatalf("answer %q", got)
	}
	checkStats(t, p, PoolStats{Dials: 2})
	if n := silent.pings.Load(); n != 2 {
		t.Errorf("the silent peer saw %d pings; want 2", n)
	}
}

// A ping on a stream that breaks while it waits (the peer closes it) fails
// at once with ErrStreamLost, and is not sent again.
func TestPoolPingStreamBreaks(t *testing.T) {
	peer := newFakePeer(t, func(n int, c net.Conn) {
		if n == 1 {
			wire.ReadFrame(c, 1<<20) // the ping: then close
			return
		}
		echoServe(c)
	})
	p := newTestPool(t, PoolConfig{IOTimeout: time.Hour})
	if _, err := p.Ping(testCtx(t), peer.addr, nil, 0); !errors.Is(err, ErrStreamLost) {
		t.Fatalf("Ping on a stream closed by its peer: %v; want ErrStreamLost", err)
	}
	if n := peer.streams(); n != 1 {
		t.Errorf("the peer accepted %d streams; want 1 (a ping is never sent again)", n)
	}
}

// The caller's cancellation ends its ping alone: the error matches
// context.Canceled, and the stream still carries the requests (and the
// pongs) that follow. Closing the pool ends a ping with errs.ErrClosed.
func TestPoolPingCancelAndClose(t *testing.T) {
	var release = make(chan struct{})
	peer := newFakePeer(t, func(n int, c net.Conn) {
		first := true
		for {
			h, body, err := wire.ReadFrame(c, 1<<20)
			if err != nil {
				return
			}
			if h.Type == wire.Ping {
				if first {
					first = false
					<-release // hold the first pong until the test says
				}
				err = wire.WriteFrame(c, wire.Pong, h.ID, body)
			} else {
				err = wire.WriteFrame(c, wire.Reply, h.ID, body)
			}
			if err != nil {
				return
			}
		}
	})
	p := newTestPool(t, PoolConfig{IOTimeout: time.Hour})
	ctx, cancel := context.WithCancel(testCtx(t))
	errc := make(chan error, 1)
	go func() {
		_, err := p.Ping(ctx, peer.addr, nil, 0)
		errc <- err
	}()
	waitFor(t, "the ping's stream", func() bool { return peer.streams() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Ping: %v; want context.Canceled", err)
	}
	close(release)
	if _, err := p.Ping(testCtx(t), peer.addr, nil, 0); err != nil {
		t.Fatalf("Ping after a cancelled one: %v", err)
	}
	if got := roundTrip(t, testCtx(t), p, peer.addr, []byte("still")); string(got) != "still" {
		t.Fatalf("answer %q", got)
	}
	checkStats(t, p, PoolStats{Dials: 1})

	p.Close()
	if _, err := p.Ping(testCtx(t), peer.addr, nil, 0); !errors.Is(err, errs.ErrClosed) {
		t.Fatalf("Ping after Close: %v; want errs.ErrClosed", err)
	}
}

// Closing the pool while a ping waits ends it with errs.ErrClosed.
func TestPoolPingWaitingWhenClosed(t *testing.T) {
	silent := &pingCounter{requests: make(chan wire.Header, 10)}
	peer := newFakePeer(t, func(n int, c net.Conn) { silent.serve(c, new(sync.Mutex)) })
	p := newTestPool(t, PoolConfig{IOTimeout: time.Hour})
	errc := make(chan error, 1)
	go func() {
		_, err := p.Ping(testCtx(t), peer.addr, nil, 0)
		errc <- err
	}()
	waitFor(t, "the ping", func() bool { return silent.pings.Load() == 1 })
	p.Close()
	if err := <-errc; !errors.Is(err, errs.ErrClosed) {
		t.Fatalf("Ping when the pool closed: %v; want errs.ErrClosed", err)
	}
}

// writeCounter is a stream as a SOCKS dialer returns it: a net.Conn that is
// not a *net.TCPConn, so that net.Buffers cannot gather a frame's parts
// into one writev. It counts the writes and their sizes.
type writeCounter struct {
	net.Conn
	mu     sync.Mutex
	writes []int
}

func (w *writeCounter) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.writes = append(w.writes, len(b))
	w.mu.Unlock()
	return w.Conn.Write(b)
}

// A frame goes out in one write on a stream that is not a *net.TCPConn (a
// SOCKS connection through tor): over Tor, a frame's header and parts
// written one by one leave tor to send each as cells of its own, and on the
// private network that costs a whole latency step (about 40 ms) on some
// circuits. Catches a pool that writes a frame part by part on such a
// stream.
func TestPoolWritesFrameAtOnce(t *testing.T) {
	var mu sync.Mutex
	var conns []*writeCounter
	sc := baseServerConfig()
	sc.MaxFrame = 1 << 20
	_, addr := startServer(t, echo, sc)
	p := newTestPool(t, PoolConfig{MaxFrame: 1 << 20, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := tcpDial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		wc := &writeCounter{Conn: c}
		mu.Lock()
		conns = append(conns, wc)
		mu.Unlock()
		return wc, nil
	}})
	ctx := testCtx(t)
	parts := [][]byte{[]byte("budget+len"), bytes.Repeat([]byte("l"), 800), bytes.Repeat([]byte("d"), 1200)}
	h, body, err := p.RoundTrip(ctx, addr, wire.Message, parts)
	if err != nil || h.Type != wire.Reply || len(body) != 2010 {
		t.Fatalf("RoundTrip: %v %v, %d bytes", err, h.Type, len(body))
	}
	if _, err := p.Ping(ctx, addr, nil, 0); err != nil {
		t.Fatal(err)
	}
	// A frame over wire.CoalesceMax is written as its header and parts, uncopied.
	big := bytes.Repeat([]byte("b"), wire.CoalesceMax)
	if h, body, err := p.RoundTrip(ctx, addr, wire.Message, [][]byte{[]byte("x"), big}); err != nil || h.Type != wire.Reply || len(body) != wire.CoalesceMax+1 {
		t.Fatalf("RoundTrip of a large frame: %v %v, %d bytes", err, h.Type, len(body))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(conns) != 1 {
		t.Fatalf("%d streams", len(conns))
	}
	conns[0].mu.Lock()
	defer conns[0].mu.Unlock()
	if want := []int{wire.HeaderSize + 2010, wire.HeaderSize, wire.HeaderSize, 1, wire.CoalesceMax}; !slices.Equal(conns[0].writes, want) {
		t.Fatalf("writes of %v bytes; want %v (each frame of up to %d bytes in one write, a larger one as its parts)", conns[0].writes, want, wire.CoalesceMax)
	}
}

// A ping with a body carries it to a Server, and the pong carries back as
// many of its bytes as it asked for: the ping is timed like an empty one,
// and the stream keeps carrying requests. A body over the limit, or asking
// for more back than it carries, fails with errs.ErrFrameTooLarge before
// anything is dialed or sent. Catches a pool that sends the ping empty or
// without its prefix, and one that lets a bad echo break the stream (the
// server would close it) or dial for nothing.
func TestPoolPingEchoesBody(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t, echo, baseServerConfig())
	var dials atomic.Int32
	p := newTestPool(t, PoolConfig{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return tcpDial(ctx, network, addr)
	}})
	ctx := testCtx(t)
	most := wire.MaxEcho - wire.EchoPrefix
	for _, bad := range []struct{ out, back int }{{most + 1, 0}, {10, 11}, {10, -1}} {
		if _, err := p.Ping(ctx, addr, make([]byte, bad.out), bad.back); !errors.Is(err, errs.ErrFrameTooLarge) || dials.Load() != 0 {
			t.Fatalf("Ping of %d bytes, %d back: %v after %d dials; want ErrFrameTooLarge and none", bad.out, bad.back, err, dials.Load())
		}
	}
	for _, c := range []struct{ out, back int }{{1, 1}, {498, 0}, {2500, 300}, {most, most}} {
		out := make([]byte, c.out)
		rand.Read(out)
		if rtt, err := p.Ping(ctx, addr, out, c.back); err != nil || rtt <= 0 {
			t.Fatalf("Ping of %d bytes, %d back: %v, %v", c.out, c.back, rtt, err)
		}
	}
	if got := roundTrip(t, ctx, p, addr, []byte("after")); string(got) != "after" {
		t.Fatalf("answer %q", got)
	}
	checkStats(t, p, PoolStats{Dials: 1})
}

// A peer that answers a ping with a pong carrying other bytes than those
// asked for has not echoed it: the ping fails with ErrStreamLost and the
// stream is judged broken, so the next request goes on a fresh one. A peer
// with no room for the body refuses busy: errs.ErrBusy, and the stream
// stays. Catches a pool that takes any pong with the right id as the echo
// (its figure would then time a frame that never crossed), and one that
// drops a stream for an honest busy refusal.
func TestPoolPingWrongEchoAndBusy(t *testing.T) {
	t.Parallel()
	peer := newFakePeer(t, func(n int, c net.Conn) {
		for {
			h, body, err := wire.ReadFrame(c, 1<<20)
			if err != nil {
				return
			}
			if h.Type != wire.Ping {
				if err := wire.WriteFrame(c, wire.Reply, h.ID, body); err != nil {
					return
				}
				continue
			}
			back, err := wire.PongBody(body)
			if err != nil {
				return
			}
			switch string(body[wire.EchoPrefix:]) {
			case "busy":
				err = wire.WriteFrame(c, wire.Reject, h.ID, []byte{byte(wire.RejectBusy)})
			case "short":
				err = wire.WriteFrame(c, wire.Pong, h.ID, back[:len(back)-1])
			case "whole":
				err = wire.WriteFrame(c, wire.Pong, h.ID, body)
			case "other":
				err = wire.WriteFrame(c, wire.Pong, h.ID, []byte("xxxxx"))
			default:
				err = wire.WriteFrame(c, wire.Pong, h.ID, back)
			}
			if err != nil {
				return
			}
		}
	})
	p := newTestPool(t, PoolConfig{})
	ctx := testCtx(t)
	if _, err := p.Ping(ctx, peer.addr, []byte("busy"), 2); !errors.Is(err, errs.ErrBusy) {
		t.Fatalf("Ping refused busy: %v; want errs.ErrBusy", err)
	}
	if _, err := p.Ping(ctx, peer.addr, []byte("echo"), 2); err != nil {
		t.Fatalf("Ping after the busy refusal: %v", err)
	}
	checkStats(t, p, PoolStats{Dials: 1})
	dials := 1
	for _, bad := range []string{"short", "whole", "other"} {
		if _, err := p.Ping(ctx, peer.addr, []byte(bad), 5); !errors.Is(err, ErrStreamLost) {
			t.Fatalf("Ping answered %s: %v; want ErrStreamLost", bad, err)
		}
		if got := roundTrip(t, ctx, p, peer.addr, []byte("after")); string(got) != "after" {
			t.Fatalf("answer %q", got)
		}
		dials++
		if st := p.Stats(); st.Dials != uint64(dials) {
			t.Fatalf("after a pong that did not echo (%s): %d dials; want %d (a fresh stream)", bad, st.Dials, dials)
		}
	}
}
