package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/errs"
	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// Rule 2 (server side): a Ping is answered at once with a Pong on the same
// stream id: an empty Ping with an empty Pong, an echo request
// (wire.PingBody) with the bytes it asks back, up to wire.MaxEcho bytes in
// all. A Ping announcing a longer body, too short for its prefix, or asking
// for more than it carries, breaks the protocol and closes its stream (the
// long one unread), while other streams are served. Catches a server that
// ignores pings (a pool would then fail every stream whose requests wait
// longer than its I/O timeout), answers on another id, answers without the
// bytes or with others, or reads a body longer than MaxEcho to echo it.
func TestServerAnswersPingWithPong(t *testing.T) {
	t.Parallel()
	cfg := baseServerConfig()
	cfg.MaxFrame = 1 << 20
	s, addr := startServer(t, echo, cfg)
	c := dialRaw(t, addr)
	send(t, c, wire.Ping, 7, nil)
	expectFrame(t, c, wire.Pong, 7, nil)
	send(t, c, wire.Message, 8, []byte("after the ping"))
	expectFrame(t, c, wire.Reply, 8, []byte("after the ping"))
	send(t, c, wire.Ping, 9, wire.PingBody([]byte("xyz"), 2))
	expectFrame(t, c, wire.Pong, 9, []byte("xy"))
	most := make([]byte, wire.MaxEcho-wire.EchoPrefix)
	rand.Read(most)
	send(t, c, wire.Ping, 10, wire.PingBody(most, len(most)))
	expectFrame(t, c, wire.Pong, 10, most)
	send(t, c, wire.Ping, 11, wire.PingBody(most, 0))
	expectFrame(t, c, wire.Pong, 11, nil)
	waitFor(t, "the echoes' charges given back", func() bool { return s.Stats().BytesHeld == 0 })

	other := dialRaw(t, addr)
	alive(t, other, 1)
	for i, bad := range [][]byte{
		header(wire.Ping, 12, wire.MaxEcho+1),
		append(header(wire.Ping, 13, 3), "abc"...),
		append(header(wire.Ping, 14, 6), 0, 0, 0, 3, 'a', 'b'),
	} {
		c := dialRaw(t, addr)
		sendRaw(t, c, bad)
		expectClosed(t, c)
		alive(t, other, uint32(2+i))
	}
}

// Rule 4 (pings): a ping's body is charged like a request's; one that finds
// no room is read past and refused busy on the ping's id, the stream kept.
// Catches echoing bodies outside the memory bounds (a flood of 64 KiB pings
// on many streams would hold memory no budget counts) and closing the
// stream instead of refusing.
func TestServerRefusesPingWithoutRoom(t *testing.T) {
	t.Parallel()
	cfg := baseServerConfig()
	cfg.MaxInflight = 1 // raised to MaxFrame+HandlerCost = 72 KiB
	s, addr := startServer(t, echo, cfg)
	fillers, _ := fillBudget(t, s, addr, cfg)

	c := dialRaw(t, addr)
	out := bytes.Repeat([]byte("p"), 100)
	body := wire.PingBody(out, len(out))
	send(t, c, wire.Ping, 9, body)
	expectFrame(t, c, wire.Reject, 9, []byte{byte(wire.RejectBusy)})
	send(t, c, wire.Ping, 10, nil) // an empty ping needs no room
	expectFrame(t, c, wire.Pong, 10, nil)

	for _, f := range fillers {
		f.Close()
	}
	waitFor(t, "the fillers' charges given back", func() bool { return s.Stats().BytesHeld == 0 })
	send(t, c, wire.Ping, 11, body)
	expectFrame(t, c, wire.Pong, 11, out)
}

// Rule 4: memory is charged as body bytes arrive. Streams that sent only a
// header announcing a large body hold nothing; once one body byte has come,
// each holds exactly firstChunk (4 KiB). Catches charging on the strength of
// the header (16 headers would then hold 16 MiB here) and allocating a whole
// wire.Chunk before the bytes come.
func TestServerChargesBodiesAsTheyArrive(t *testing.T) {
	t.Parallel()
	cfg := baseServerConfig()
	cfg.MaxFrame = 1 << 20
	cfg.MaxInflight = 64 << 20
	cfg.MaxStreamBytes = 64 << 20
	s, addr := startServer(t, echo, cfg)

	const streams = 16
	conns := make([]net.Conn, streams)
	for i := range conns {
		conns[i] = dialRaw(t, addr)
		// A ping first, so the server is known to be reading this stream.
		alive(t, conns[i], 1)
		sendRaw(t, conns[i], header(wire.Message, 2, cfg.MaxFrame))
	}
	waitFor(t, "all streams open", func() bool { return s.Stats().Streams == streams })
	// The headers are being read; give the server a moment to (wrongly)
	// charge for them, then check that it did not.
	time.Sleep(50 * time.Millisecond)
	if got := s.Stats().BytesHeld; got != 0 {
		t.Fatalf("%d header-only streams hold %d bytes; want 0", streams, got)
	}

	for i, c := range conns {
		sendRaw(t, c, []byte{0})
		want := int64(i+1) * firstChunk
		waitFor(t, "the first chunk charged", func() bool { return s.Stats().BytesHeld >= want })
		if got := s.Stats().BytesHeld; got != want {
			t.Fatalf("after one body byte on %d streams, %d bytes held; want %d (firstChunk each)", i+1, got, want)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "the charges given back", func() bool { st := s.Stats(); return st.BytesHeld == 0 && st.Streams == 0 })
}

// Rule 4: a body that finds no room in the server-wide budget is read past
// and refused with reject 5 on its own stream id; the stream stays in step
// and usable for the next frame. Catches closing the stream instead (an
// honest peer's other requests on it would be lost), refusing on the wrong
// id, and leaking the refused body's charge.
func TestServerRefusesBodyWithoutRoomAndKeepsStream(t *testing.T) {
	t.Parallel()
	cfg := baseServerConfig()
	cfg.MaxFrame = 64 << 10
	cfg.MaxInflight = 1 // raised to MaxFrame+HandlerCost = 72 KiB
	cfg.MaxConns = 100
	var refusedBusy atomic.Int32
	cfg.Refused = func(typ wire.Type, why error) {
		if typ == wire.Message && errors.Is(why, errs.ErrBusy) {
			refusedBusy.Add(1)
		}
	}
	s, addr := startServer(t, echo, cfg)
	fillers, floor := fillBudget(t, s, addr, cfg)

	c := dialRaw(t, addr)
	body := bytes.Repeat([]byte("b"), 100)
	send(t, c, wire.Message, 9, body)
	expectFrame(t, c, wire.Reject, 9, []byte{byte(wire.RejectBusy)})
	alive(t, c, 10)
	if st := s.Stats(); st.Busy != 1 || st.BytesHeld != floor {
		t.Fatalf("after the refusal: %+v; want Busy 1 and BytesHeld %d", st, floor)
	}
	if refusedBusy.Load() != 1 {
		t.Fatalf("Refused called %d times with ErrBusy; want 1", refusedBusy.Load())
	}

	for _, f := range fillers {
		f.Close()
	}
	waitFor(t, "the fillers' charges given back", func() bool { return s.Stats().BytesHeld == 0 })
	send(t, c, wire.Message, 11, body)
	expectFrame(t, c, wire.Reply, 11, body)
}

// holdHandler answers by the first byte of a request's body: 'h' holds the
// request (and its work slot) until release is closed, 'p' parks it and then
// holds it, 'a' accepts it, 'c' waits for ctx to end; anything else is
// echoed. started receives each held or parked request once it holds. A held
// request also ends with the server's ctx, so that a failing test's
// Server.Close does not wait for a release that never comes.
type holdHandler struct {
	release chan struct{}
	started chan string
	ctxDone atomic.Int32
}

func newHoldHandler() *holdHandler {
	return &holdHandler{release: make(chan struct{}), started: make(chan string, 100)}
}

func (hh *holdHandler) wait(ctx context.Context) {
	select {
	case <-hh.release:
	case <-ctx.Done():
	}
}

func (hh *holdHandler) handle(ctx context.Context, r *Request) (wire.Type, [][]byte) {
	body := string(r.Body)
	if body == "" {
		return wire.Reply, nil
	}
	switch body[0] {
	case 'h':
		hh.started <- body
		hh.wait(ctx)
	case 'p':
		if err := r.Park(0); err != nil {
			return wire.Reply, [][]byte{[]byte(err.Error())}
		}
		hh.started <- body
		hh.wait(ctx)
	case 'a':
		r.Accept()
	case 'c':
		hh.started <- body
		<-ctx.Done()
		hh.ctxDone.Add(1)
		return 0, nil
	}
	return wire.Reply, [][]byte{[]byte(body)}
}

// Rule 4: the per-stream cap. While one stream's large request is being
// handled, a second large body on the same stream finds no room under
// MaxStreamBytes and is refused busy, while a large body on another stream
// still gets room from the server-wide budget. Catches a missing per-stream
// cap (one stream could then take the whole budget).
func TestServerPerStreamCap(t *testing.T) {
	t.Parallel()
	hh := newHoldHandler()
	cfg := baseServerConfig()
	cfg.MaxFrame = 64 << 10
	cfg.MaxInflight = 1 << 20
	cfg.MaxStreamBytes = 1 // raised to MaxFrame+HandlerCost
	s, addr := startServer(t, hh.handle, cfg)
	big := bytes.Repeat([]byte("h"), cfg.MaxFrame)
	perRequest := int64(cfg.MaxFrame) + HandlerCost

	a := dialRaw(t, addr)
	send(t, a, wire.Message, 1, big)
	<-hh.started
	if got := s.Stats().BytesHeld; got != perRequest {
		t.Fatalf("one large request holds %d bytes; want %d", got, perRequest)
	}
	send(t, a, wire.Message, 2, big)
	expectFrame(t, a, wire.Reject, 2, []byte{byte(wire.RejectBusy)})

	b := dialRaw(t, addr)
	send(t, b, wire.Message, 1, big)
	<-hh.started
	if got := s.Stats().BytesHeld; got != 2*perRequest {
		t.Fatalf("two large requests on two streams hold %d bytes; want %d", got, 2*perRequest)
	}
	close(hh.release)
	expectFrame(t, a, wire.Reply, 1, big)
	expectFrame(t, b, wire.Reply, 1, big)
	waitFor(t, "the charges given back", func() bool { return s.Stats().BytesHeld == 0 })
}

// Rule 4: a body must arrive at MinReadRate after IOTimeout's grace. A body
// trickled far below the rate is cut off (the stream closed, its charge given
// back) long before it would be complete; the same body sent a little faster
// than the rate is answered, so the cut is the rate's doing and not a fixed
// timeout. Catches a body deadline of IOTimeout alone (the second half would
// fail), or none at all (the first half would wait 50 s).
func TestServerCutsTrickleBelowMinReadRate(t *testing.T) {
	t.Parallel()
	// A ping's body (echoed back) is bound by the same rate.
	for typ, answer := range map[wire.Type]wire.Type{wire.Message: wire.Reply, wire.Ping: wire.Pong} {
		t.Run(typ.String(), func(t *testing.T) {
			t.Parallel()
			cfg := baseServerConfig()
			cfg.IOTimeout = 200 * time.Millisecond
			cfg.MinReadRate = 1000 // a 1000-byte body gets 200 ms + 1 s
			s, addr := startServer(t, echo, cfg)
			body := bytes.Repeat([]byte("t"), 1000)
			want := body
			if typ == wire.Ping {
				want = body[:1000-wire.EchoPrefix]
				body = wire.PingBody(want, len(want))
			}

			slow := dialRaw(t, addr)
			sendRaw(t, slow, header(typ, 1, len(body)))
			cut := make(chan struct{})
			go func() { // 20 bytes/s: the whole body would take 50 s
				defer close(cut)
				for i := range body {
					slow.SetWriteDeadline(time.Now().Add(waitLimit))
					if _, err := slow.Write(body[i : i+1]); err != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			expectClosed(t, slow)
			waitFor(t, "the trickling stream gone", func() bool { st := s.Stats(); return st.Streams == 0 && st.BytesHeld == 0 })
			slow.Close()
			<-cut

			fast := dialRaw(t, addr)
			sendRaw(t, fast, header(typ, 2, len(body)))
			for i := 0; i < len(body); i += 100 { // 2000 bytes/s: done in 0.5 s
				sendRaw(t, fast, body[i:i+100])
				time.Sleep(50 * time.Millisecond)
			}
			expectFrame(t, fast, answer, 2, want)
		})
	}
}

// Rule 5: a handler that parks gives back its work slot. With one slot, a
// parked request does not keep a second request from being handled; a
// request held without Park does, and the second is refused busy on its own
// id. Catches Park not releasing the slot (the first half fails) and a
// server that queues rather than refuses (the second half hangs).
func TestServerParkGivesBackWorkSlot(t *testing.T) {
	t.Parallel()
	t.Run("parked", func(t *testing.T) {
		hh := newHoldHandler()
		cfg := baseServerConfig()
		cfg.MaxConcurrent = 1
		s, addr := startServer(t, hh.handle, cfg)
		c := dialRaw(t, addr)
		send(t, c, wire.Message, 1, []byte("park"))
		<-hh.started
		if st := s.Stats(); st.Parked != 1 || st.Working != 0 {
			t.Fatalf("after Park: %+v; want Parked 1, Working 0", st)
		}
		send(t, c, wire.Message, 2, []byte("second"))
		expectFrame(t, c, wire.Reply, 2, []byte("second"))
		close(hh.release)
		expectFrame(t, c, wire.Reply, 1, []byte("park"))
		waitFor(t, "the parked request done", func() bool { st := s.Stats(); return st.Parked == 0 && st.BytesHeld == 0 })
	})
	t.Run("held", func(t *testing.T) {
		hh := newHoldHandler()
		cfg := baseServerConfig()
		cfg.MaxConcurrent = 1
		s, addr := startServer(t, hh.handle, cfg)
		c := dialRaw(t, addr)
		send(t, c, wire.Message, 1, []byte("hold"))
		<-hh.started
		if st := s.Stats(); st.Working != 1 {
			t.Fatalf("while held: %+v; want Working 1", st)
		}
		send(t, c, wire.Message, 2, []byte("second"))
		expectFrame(t, c, wire.Reject, 2, []byte{byte(wire.RejectBusy)})
		close(hh.release)
		expectFrame(t, c, wire.Reply, 1, []byte("hold"))
		if st := s.Stats(); st.Busy != 1 {
			t.Fatalf("Busy = %d; want 1", st.Busy)
		}
	})
}

// Rule 5: Park(hold) changes what the request is charged to hold +
// HandlerCost (its body's charge is given back), and fails with ErrBusy,
// leaving the charge as it was, when hold finds no room. Catches a Park that
// keeps charging the body, charges nothing for what it holds, or lets a
// parked request hold more than the stream's cap.
func TestServerParkCharges(t *testing.T) {
	t.Parallel()
	cfg := baseServerConfig()
	cfg.MaxFrame = 64 << 10
	cfg.MaxInflight = 1 << 20
	cfg.MaxStreamBytes = 1 // raised to MaxFrame+HandlerCost = 72 KiB
	release := make(chan struct{})
	parked := make(chan error, 10)
	h := func(ctx context.Context, r *Request) (wire.Type, [][]byte) {
		hold, _ := strconv.Atoi(string(bytes.TrimRight(r.Body, " ")))
		err := r.Park(hold)
		parked <- err
		if err == nil {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return wire.Reply, nil
	}
	s, addr := startServer(t, h, cfg)
	c := dialRaw(t, addr)

	// A 32 KiB body asking to hold 1000 bytes while it waits.
	body := make([]byte, 32<<10)
	copy(body, "1000")
	for i := 4; i < len(body); i++ {
		body[i] = ' '
	}
	send(t, c, wire.Message, 1, body)
	if err := <-parked; err != nil {
		t.Fatalf("Park(1000): %v", err)
	}
	if got, want := s.Stats().BytesHeld, int64(HandlerCost+1000); got != want {
		t.Fatalf("a request parked holding 1000 bytes is charged %d; want %d", got, want)
	}

	// More than the stream's cap: refused, ErrBusy.
	send(t, c, wire.Message, 2, []byte(strconv.Itoa(100<<10)))
	if err := <-parked; !errors.Is(err, errs.ErrBusy) {
		t.Fatalf("Park(100 KiB) with a 72 KiB cap: %v; want ErrBusy", err)
	}
	expectFrame(t, c, wire.Reply, 2, nil)
	close(release)
	expectFrame(t, c, wire.Reply, 1, nil)
	waitFor(t, "the charges given back", func() bool { return s.Stats().BytesHeld == 0 })
}

// Rule 6: beyond MaxConns a new stream evicts an idle stream, one that never
// carried an accepted request before one that did, even when the accepted
// one has been idle longer. Catches eviction by age alone (an attacker's
// fresh streams would then push out honest ones) and refusing the new stream
// when an idle one could make room.
func TestServerEvictsUnprovenBeforeProven(t *testing.T) {
	t.Parallel()
	s, addr := startServer(t, newHoldHandler().handle, withConns(2))
	proven := dialRaw(t, addr)
	send(t, proven, wire.Message, 1, []byte("accept"))
	expectFrame(t, proven, wire.Reply, 1, []byte("accept"))
	unproven := dialRaw(t, addr)
	alive(t, unproven, 1) // now the most recently used stream

	newer := dialRaw(t, addr)
	expectClosed(t, unproven)
	alive(t, proven, 2)
	alive(t, newer, 1)
	if st := s.Stats(); st.Evicted != 1 || st.StreamsRefused != 0 || st.Streams != 2 {
		t.Fatalf("stats %+v; want Evicted 1, StreamsRefused 0, Streams 2", st)
	}
}

func withConns(n int) ServerConfig {
	cfg := baseServerConfig()
	cfg.MaxConns = n
	return cfg
}

// Rule 6: among streams alike, the one idle longest (by its last complete
// frame, not by when it was opened) is evicted. Catches evicting the oldest
// stream or the newest, or a random one.
func TestServerEvictsLongestIdle(t *testing.T) {
	t.Parallel()
	s, addr := startServer(t, echo, withConns(2))
	first := dialRaw(t, addr)
	alive(t, first, 1)
	second := dialRaw(t, addr)
	alive(t, second, 1)
	// The first stream opened first but is now the more recently used.
	// (Two pings: the second Pong proves the first ping's use was noted.)
	alive(t, first, 2)
	alive(t, first, 3)

	third := dialRaw(t, addr)
	expectClosed(t, second)
	alive(t, first, 4)
	alive(t, third, 1)
	if st := s.Stats(); st.Evicted != 1 || st.Streams != 2 || st.StreamsTotal != 3 {
		t.Fatalf("stats %+v; want Evicted 1, Streams 2, StreamsTotal 3", st)
	}
}

// Rule 6: a stream with a request in flight is never evicted; when every
// stream has one, the new stream gets reject 5 on stream id 0 and is closed.
// Catches evicting busy streams (their requests would be lost) and closing
// the new stream silently (its peer could not tell "busy" from "gone").
func TestServerRefusesStreamWhenAllBusy(t *testing.T) {
	t.Parallel()
	hh := newHoldHandler()
	s, addr := startServer(t, hh.handle, withConns(1))
	busy := dialRaw(t, addr)
	send(t, busy, wire.Message, 1, []byte("hold"))
	<-hh.started

	late := dialRaw(t, addr)
	expectFrame(t, late, wire.Reject, 0, []byte{byte(wire.RejectBusy)})
	expectClosed(t, late)
	if st := s.Stats(); st.StreamsRefused != 1 || st.Evicted != 0 || st.Streams != 1 {
		t.Fatalf("stats %+v; want StreamsRefused 1, Evicted 0, Streams 1", st)
	}
	close(hh.release)
	expectFrame(t, busy, wire.Reply, 1, []byte("hold"))
	alive(t, busy, 2)
}

// Rule 9: Server.Close ends every handler's context, closes every stream,
// waits for every goroutine it started, and is idempotent. Catches a Close
// that leaves handlers blocked on a context that never ends, or goroutines
// behind.
func TestServerCloseEndsHandlersAndGoroutines(t *testing.T) {
	t.Parallel()
	settled := goroutines(t)
	hh := newHoldHandler()
	ln := listen(t)
	s := NewServer(ln, hh.handle, baseServerConfig())
	addr := ln.Addr().String()
	var conns []net.Conn
	for i := range 3 {
		c := dialRaw(t, addr)
		send(t, c, wire.Message, uint32(i+1), []byte("ctx"))
		<-hh.started
		conns = append(conns, c)
	}
	idle := dialRaw(t, addr)
	alive(t, idle, 1)

	closed := make(chan error)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Close did not return")
	}
	if n := hh.ctxDone.Load(); n != 3 {
		t.Fatalf("%d of 3 handlers saw their context end", n)
	}
	for _, c := range append(conns, idle) {
		expectClosed(t, c)
		c.Close()
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	settled()
}

// Handler goroutines serve again: a request that comes while a worker waits
// is handed to it (no new goroutine), at most MaxConcurrent workers wait at
// once however many requests ran together, and a waiting worker exits after
// its idle time, or at Close. Catches a worker set that grows with the
// requests once seen, keeps goroutines forever, or outlives the server.
func TestServerReusesHandlerGoroutines(t *testing.T) {
	settled := goroutines(t)
	hh := newHoldHandler()
	cfg := baseServerConfig()
	cfg.MaxConcurrent = 2
	ln := listen(t)
	s := NewServer(ln, hh.handle, cfg)
	c := dialRaw(t, ln.Addr().String())

	// Six parked requests at once: six workers.
	for i := range 6 {
		send(t, c, wire.Message, uint32(i+1), []byte("park"))
		<-hh.started
	}
	if n := s.workers.Load(); n != 6 {
		t.Fatalf("%d workers for 6 requests at once", n)
	}
	close(hh.release)
	for range 6 {
		recv(t, c)
	}
	waitFor(t, "workers waiting", func() bool { return s.idleN.Load() == 2 })

	// One at a time: each goes to a waiting worker.
	for i := range 5 {
		send(t, c, wire.Message, uint32(10+i), []byte("again"))
		expectFrame(t, c, wire.Reply, uint32(10+i), []byte("again"))
		waitFor(t, "the worker back", func() bool { return s.idleN.Load() == 2 })
	}
	if n := s.workers.Load(); n != 6 {
		t.Fatalf("%d workers started, want the same 6", n)
	}
	if n := s.idleN.Load(); n > int32(cfg.MaxConcurrent) {
		t.Fatalf("%d workers waiting, more than MaxConcurrent", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	settled()
}

func TestServerIdleWorkersExit(t *testing.T) {
	settled := goroutines(t)
	ln := listen(t)
	s := newServer(ln, echo, baseServerConfig(), 20*time.Millisecond)
	defer s.Close()
	c := dialRaw(t, ln.Addr().String())
	send(t, c, wire.Message, 1, []byte("x"))
	expectFrame(t, c, wire.Reply, 1, []byte("x"))
	waitFor(t, "the idle worker gone", func() bool { return s.workers.Load() == 1 && s.idleN.Load() == 0 })
	c.Close()
	s.Close()
	settled()
}

// fillBudget fills the memory budget of a server whose MaxInflight is its
// floor (MaxFrame+HandlerCost) with streams that each began a body and hold
// firstChunk for it, and returns them and the floor.
func fillBudget(t *testing.T, s *Server, addr string, cfg ServerConfig) ([]net.Conn, int64) {
	t.Helper()
	floor := int64(cfg.MaxFrame) + HandlerCost
	var fillers []net.Conn
	for int64(len(fillers))*firstChunk < floor {
		c := dialRaw(t, addr)
		sendRaw(t, c, header(wire.Message, 1, cfg.MaxFrame))
		sendRaw(t, c, []byte{0})
		fillers = append(fillers, c)
	}
	waitFor(t, "the budget full", func() bool { return s.Stats().BytesHeld == floor })
	return fillers, floor
}
