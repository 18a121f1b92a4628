package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/errs"
	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// roundTrip sends body as a Message and returns the answer's body, failing
// the test unless a Reply comes.
func roundTrip(t testing.TB, ctx context.Context, p *Pool, addr string, body []byte) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	h, got, err := p.RoundTrip(ctx, addr, wire.Message, [][]byte{body})
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	if h.Type != wire.Reply {
		t.Fatalf("answer is a %v frame %q; want a reply", h.Type, trim(got))
	}
	return got
}

func checkStats(t testing.TB, p *Pool, want PoolStats) {
	t.Helper()
	got := p.Stats()
	got.Streams = want.Streams // checked only where a test says so
	if got != want {
		t.Fatalf("pool stats %+v; want %+v", got, want)
	}
}

// Rule 1: a request's deadline or cancellation ends that request alone. It
// returns ctx's error; requests pending on the same stream still get their
// answers, and later requests reuse the stream. Catches a mux that fails the
// whole stream when one request gives up (the 8-of-8 failures of issue 8,
// finding 1), or that returns a wrapped error errors.Is cannot match.
func TestPoolRequestDeadlineIsItsOwn(t *testing.T) {
	t.Parallel()
	hh := newHoldHandler()
	_, addr := startServer(t, hh.handle, baseServerConfig())
	p := newTestPool(t, PoolConfig{})
	ctx := testCtx(t)
	roundTrip(t, ctx, p, addr, []byte("warm"))

	const others = 4
	answers := make(chan error, others)
	for i := range others {
		go func() {
			body := []byte(fmt.Sprintf("hold %d", i))
			h, got, err := p.RoundTrip(ctx, addr, wire.Message, [][]byte{body})
			if err == nil && (h.Type != wire.Reply || !bytes.Equal(got, body)) {
				err = fmt.Errorf("answer %v %q", h.Type, got)
			}
			answers <- err
		}()
		<-hh.started
	}

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, _, err := p.RoundTrip(short, addr, wire.Message, [][]byte{[]byte("hold: times out")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timed-out request: %v; want context.DeadlineExceeded", err)
	}
	cancelled, cancelNow := context.WithCancel(ctx)
	go func() { <-hh.started; cancelNow() }()
	if _, _, err := p.RoundTrip(cancelled, addr, wire.Message, [][]byte{[]byte("hold: cancelled")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v; want context.Canceled", err)
	}

	close(hh.release)
	for range others {
		if err := <-answers; err != nil {
			t.Fatalf("a request sharing the stream: %v", err)
		}
	}
	roundTrip(t, ctx, p, addr, []byte("later"))
	checkStats(t, p, PoolStats{Dials: 1})
}

// slowLink is a stream over a slow network: every write waits 5 ms before
// it goes out.
type slowLink struct{ net.Conn }

func (c slowLink) Write(b []byte) (int, error) {
	time.Sleep(5 * time.Millisecond)
	return c.Conn.Write(b)
}

// Rule 3: writes are bounded by the I/O timeout, never by a request's ctx.
// Over a slow link, requests with 1 ms deadlines (their frames still being
// written when the deadline passes), each followed by an honest request,
// break nothing: every honest request is answered on the one stream. Then
// the same with large bodies, all at once. Catches a write deadline taken
// from the request's ctx (the write fails, the stream is judged dead, every
// request on it is resent on a new one).
func TestPoolShortDeadlineDoesNotBreakStream(t *testing.T) {
	t.Parallel()
	cfg := baseServerConfig()
	cfg.MaxFrame = 1 << 20
	cfg.MaxInflight = 64 << 20
	cfg.MaxStreamBytes = 64 << 20
	cfg.MaxConcurrent = 64
	_, addr := startServer(t, echo, cfg)
	slowDial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := tcpDial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return slowLink{c}, nil
	}
	p := newTestPool(t, PoolConfig{Dial: slowDial, MaxFrame: cfg.MaxFrame})
	ctx := testCtx(t)
	roundTrip(t, ctx, p, addr, []byte("warm"))

	shortRequest := func(body []byte) error {
		c, cancel := context.WithTimeout(ctx, time.Millisecond)
		defer cancel()
		_, _, err := p.RoundTrip(c, addr, wire.Message, [][]byte{body})
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("1 ms request: %v", err)
		}
		return nil
	}
	honestRequest := func(i int) error {
		body := []byte(fmt.Sprintf("honest %d", i))
		h, got, err := p.RoundTrip(ctx, addr, wire.Message, [][]byte{body})
		if err == nil && (h.Type != wire.Reply || !bytes.Equal(got, body)) {
			err = fmt.Errorf("answer %v %q", h.Type, trim(got))
		}
		if err != nil {
			return fmt.Errorf("honest request: %v", err)
		}
		return nil
	}
	for i := range 10 {
		if err := shortRequest([]byte("short")); err != nil {
			t.Fatal(err)
		}
		if err := honestRequest(i); err != nil {
			t.Fatal(err)
		}
	}
	checkStats(t, p, PoolStats{Dials: 1})

	big := bytes.Repeat([]byte("x"), 512<<10)
	var wg sync.WaitGroup
	errc := make(chan error, 100)
	for i := range 20 {
		wg.Add(2)
		go func() { defer wg.Done(); errc <- shortRequest(big) }()
		go func() { defer wg.Done(); errc <- honestRequest(i) }()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Error(err)
		}
	}
	checkStats(t, p, PoolStats{Dials: 1})
}

// Rules 1 and 7: a stream that has carried no new request for IdleTimeout is
// closed only if nothing waits on it: a request that waits longer than
// IdleTimeout for its answer keeps its stream. Catches an idle check that
// counts from the last request sent and ignores pending ones (the request
// would be resent, and a hop would see it twice).
func TestPoolIdleTimeoutSparesWaitingRequests(t *testing.T) {
	t.Parallel()
	hh := newHoldHandler()
	_, addr := startServer(t, hh.handle, baseServerConfig())
	// IOTimeout 1 s: the janitor looks every 125 ms, and no ping is due.
	p := newTestPool(t, PoolConfig{IdleTimeout: 20 * time.Millisecond, IOTimeout: time.Second})
	go func() {
		<-hh.started
		time.Sleep(300 * time.Millisecond) // 15 idle timeouts
		close(hh.release)
	}()
	if got := roundTrip(t, testCtx(t), p, addr, []byte("hold")); string(got) != "hold" {
		t.Fatalf("answer %q", got)
	}
	checkStats(t, p, PoolStats{Dials: 1})
	waitFor(t, "the stream closed once idle", func() bool { return p.Stats().Streams == 0 })
}

// pingCounter serves a pool's stream: it answers pings with pongs if pong is
// set, counts them, and hands every other frame to requests.
type pingCounter struct {
	pong     bool
	pings    atomic.Int32
	requests chan wire.Header
}

func (pc *pingCounter) serve(c net.Conn, wmu *sync.Mutex) {
	for {
		h, body, err := wire.ReadFrame(c, 1<<20)
		if err != nil {
			return
		}
		if h.Type == wire.Ping {
			pc.pings.Add(1)
			if pc.pong {
				wmu.Lock()
				err := wire.WriteFrame(c, wire.Pong, h.ID, body)
				wmu.Unlock()
				if err != nil {
					return
				}
			}
			continue
		}
		pc.requests <- h
	}
}

// echoServe serves a pool's stream as an honest peer would: pongs for pings,
// and each request's body back as its reply.
func echoServe(c net.Conn) {
	for {
		h, body, err := wire.ReadFrame(c, 1<<20)
		if err != nil {
			return
		}
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

// Rule 2: a peer that reads frames but never answers, not even pings, while
// a request waits: the stream is failed after about IOTimeout/2 + IOTimeout
// and the request is sent again on a fresh stream, where it is answered.
// Catches a pool without liveness checks (the request would wait for its
// ctx, here 10 s), one that fails the stream without pinging first, and one
// that gives up on the request instead of resending it.
func TestPoolFailsSilentStreamAndResends(t *testing.T) {
	t.Parallel()
	const io = 200 * time.Millisecond
	silent := &pingCounter{requests: make(chan wire.Header, 10)}
	peer := newFakePeer(t, func(n int, c net.Conn) {
		if n == 1 {
			silent.serve(c, new(sync.Mutex))
			return
		}
		echoServe(c)
	})
	p := newTestPool(t, PoolConfig{IOTimeout: io})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	start := time.Now()
	if got := roundTrip(t, ctx, p, peer.addr, []byte("hello")); string(got) != "hello" {
		t.Fatalf("answer %q", got)
	}
	if took := time.Since(start); took < io {
		t.Errorf("the silent stream was failed after %v, before one I/O timeout (%v)", took, io)
	}
	if silent.pings.Load() == 0 {
		t.Error("the silent stream was failed without a ping")
	}
	checkStats(t, p, PoolStats{Dials: 2, Resends: 1, StreamsLost: 1})
}

// Rule 2: a peer that answers pings keeps a stream alive while a request
// waits several I/O timeouts for its answer: no resend, one dial. Catches a
// pool that judges a stream by how long one request waits (a slow route
// would then be sent again and again) or that ignores pongs.
func TestPoolPingsKeepLongRequestAlive(t *testing.T) {
	t.Parallel()
	const io = 300 * time.Millisecond
	pc := &pingCounter{pong: true, requests: make(chan wire.Header, 10)}
	var wmu sync.Mutex
	var peerConn net.Conn
	peer := newFakePeer(t, func(n int, c net.Conn) {
		if n > 1 { // a resend: answered at once, for the stats to tell
			echoServe(c)
			return
		}
		wmu.Lock()
		peerConn = c
		wmu.Unlock()
		pc.serve(c, &wmu)
	})
	p := newTestPool(t, PoolConfig{IOTimeout: io})
	go func() {
		h := <-pc.requests
		time.Sleep(4 * io)
		wmu.Lock()
		wire.WriteFrame(peerConn, wire.Reply, h.ID, []byte("late"))
		wmu.Unlock()
	}()
	if got := roundTrip(t, context.Background(), p, peer.addr, []byte("slow")); string(got) != "late" {
		t.Fatalf("answer %q", got)
	}
	if n := pc.pings.Load(); n < 2 {
		t.Errorf("%d pings while the request waited 4 I/O timeouts; want at least 2", n)
	}
	checkStats(t, p, PoolStats{Dials: 1})
}

// Rule 2: a ping that could not be written because a frame was being written
// is tried again at the next check, not counted as sent and unanswered.
// (White-box: the test holds the stream's write right, as a large request
// being written would.) Catches the stream being failed an I/O timeout later
// although its peer answers every ping it is sent.
func TestPoolPingSkippedWhileWritingIsRetried(t *testing.T) {
	t.Parallel()
	const io = 300 * time.Millisecond
	pc := &pingCounter{pong: true, requests: make(chan wire.Header, 10)}
	var wmu sync.Mutex
	var peerConn net.Conn
	peer := newFakePeer(t, func(n int, c net.Conn) {
		if n > 1 { // a resend: answered at once, for the stats to tell
			echoServe(c)
			return
		}
		wmu.Lock()
		peerConn = c
		wmu.Unlock()
		pc.serve(c, &wmu)
	})
	p := newTestPool(t, PoolConfig{IOTimeout: io})
	answer := func(body string) {
		h := <-pc.requests
		wmu.Lock()
		wire.WriteFrame(peerConn, wire.Reply, h.ID, []byte(body))
		wmu.Unlock()
	}
	go answer("warm")
	roundTrip(t, context.Background(), p, peer.addr, []byte("warm"))
	p.mu.Lock()
	m := p.peers[peer.addr].conn
	p.mu.Unlock()

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		_, _, err := p.RoundTrip(ctx, peer.addr, wire.Message, [][]byte{[]byte("slow")})
		done <- err
	}()
	h := <-pc.requests
	// A frame is being written for an I/O timeout: the pings due from
	// IOTimeout/2 on (the janitor looks every IOTimeout/8) find the write
	// right taken.
	m.wsem <- struct{}{}
	time.Sleep(io)
	<-m.wsem
	time.Sleep(3 * io)
	wmu.Lock()
	wire.WriteFrame(peerConn, wire.Reply, h.ID, []byte("slow"))
	wmu.Unlock()
	if err := <-done; err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	checkStats(t, p, PoolStats{Dials: 1})
}

// Rule 7: a request whose stream dies after it was written (the peer closes
// without answering, once) is sent again on a fresh stream and answered.
// Catches a pool that returns the dead stream's error to the caller (issue 8,
// finding 4: about one message in 30 lost after a circuit break).
func TestPoolResendsWhenStreamDies(t *testing.T) {
	t.Parallel()
	peer := newFakePeer(t, func(n int, c net.Conn) {
		for {
			h, body, err := wire.ReadFrame(c, 1<<20)
			if err != nil || n == 1 {
				return // the first stream dies with the request unanswered
			}
			wire.WriteFrame(c, wire.Reply, h.ID, body)
		}
	})
	p := newTestPool(t, PoolConfig{})
	if got := roundTrip(t, context.Background(), p, peer.addr, []byte("again")); string(got) != "again" {
		t.Fatalf("answer %q", got)
	}
	checkStats(t, p, PoolStats{Dials: 2, Resends: 1, StreamsLost: 1})
}

// Rule 7: after Attempts sends on streams that died, the request fails with
// ErrStreamLost. Catches resending forever (a peer that always drops the
// stream would hold the caller until its ctx ends) and giving up early.
func TestPoolGivesUpAfterAttempts(t *testing.T) {
	t.Parallel()
	peer := newFakePeer(t, func(n int, c net.Conn) {
		wire.ReadFrame(c, 1<<20) // read the request, then close
	})
	p := newTestPool(t, PoolConfig{Attempts: 3})
	_, _, err := p.RoundTrip(testCtx(t), peer.addr, wire.Message, [][]byte{[]byte("doomed")})
	if !errors.Is(err, ErrStreamLost) {
		t.Fatalf("RoundTrip: %v; want ErrStreamLost", err)
	}
	checkStats(t, p, PoolStats{Dials: 3, Resends: 2, StreamsLost: 3})
}

// Rule 7: a pooled stream the peer closes while it is idle is replaced
// without the next request failing, however soon that request comes: either
// the pool noticed the close and dials, or the request is lost on the dead
// stream and sent again. Catches losing the first request after a peer's
// close.
func TestPoolReplacesStreamClosedWhileIdle(t *testing.T) {
	t.Parallel()
	peer := newFakePeer(t, func(n int, c net.Conn) {
		h, body, err := wire.ReadFrame(c, 1<<20)
		if err == nil {
			wire.WriteFrame(c, wire.Reply, h.ID, body)
		}
		// One answer per stream, then the peer closes it.
	})
	p := newTestPool(t, PoolConfig{Attempts: 2})
	for i := range 20 {
		body := []byte(fmt.Sprintf("request %d", i))
		if got := roundTrip(t, context.Background(), p, peer.addr, body); !bytes.Equal(got, body) {
			t.Fatalf("answer %q; want %q", got, body)
		}
		if i%2 == 1 { // every other time, let the pool see the close first
			waitFor(t, "the closed stream noticed", func() bool { return p.Stats().Streams == 0 })
		}
	}
	if st := p.Stats(); st.Dials != 20 {
		t.Fatalf("stats %+v; want 20 dials", st)
	}
}

// gatedDialer is a Pool's Dial whose first dials stall: dial number i (from
// 1) waits for stall(i) to return before dialing TCP, and fails with ctx's
// error if ctx ends first.
type gatedDialer struct {
	calls     atomic.Int32
	stall     func(i int, ctx context.Context) error
	deadlines chan time.Duration // how long each dial's ctx gives it, if set
}

func (g *gatedDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	i := int(g.calls.Add(1))
	if g.deadlines != nil {
		dl, ok := ctx.Deadline()
		if !ok {
			dl = time.Time{}
		}
		g.deadlines <- time.Until(dl)
	}
	if g.stall != nil {
		if err := g.stall(i, ctx); err != nil {
			return nil, err
		}
	}
	return tcpDial(ctx, network, addr)
}

// stallForever stalls a dial until its ctx ends.
func stallForever(_ int, ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// Rule 8: callers that arrive while a dial is in progress share it. Catches
// one dial per caller (a burst of messages to a new hop would open a burst of
// circuits).
func TestPoolSharesOneDial(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t, echo, baseServerConfig())
	gate := make(chan struct{})
	g := &gatedDialer{stall: func(_ int, ctx context.Context) error {
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	p := newTestPool(t, PoolConfig{Dial: g.dial})
	const callers = 10
	errc := make(chan error, callers)
	for i := range callers {
		go func() {
			_, _, err := p.RoundTrip(testCtx(t), addr, wire.Message, [][]byte{[]byte(fmt.Sprint(i))})
			errc <- err
		}()
	}
	waitFor(t, "the dial started", func() bool { return g.calls.Load() >= 1 })
	time.Sleep(50 * time.Millisecond) // the callers gather; well before any hedge
	close(gate)
	for range callers {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	checkStats(t, p, PoolStats{Dials: 1})
}

// Rule 8: a dial that stalls does not hold a later caller with a fresh
// deadline hostage: the caller starts a dial of its own and is answered well
// before its deadline. Catches every caller sharing the first dial's fate
// (issue 8, finding 5: a 5 s send failed behind a 2-minute dial).
func TestPoolHedgesStalledDial(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t, echo, baseServerConfig())
	g := &gatedDialer{stall: func(i int, ctx context.Context) error {
		if i == 1 {
			return stallForever(i, ctx)
		}
		return nil
	}}
	p := newTestPool(t, PoolConfig{Dial: g.dial}) // DialTimeout: a minute
	first, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := p.RoundTrip(first, addr, wire.Message, [][]byte{[]byte("first")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first caller behind the stalled dial: %v; want DeadlineExceeded", err)
	}
	fresh, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if got := roundTrip(t, fresh, p, addr, []byte("fresh")); string(got) != "fresh" {
		t.Fatalf("answer %q", got)
	}
	checkStats(t, p, PoolStats{Dials: 2, Hedged: 1})
}

// Rule 8: each caller starts at most one dial of its own. One caller with a
// long deadline, behind dials that all stall until the dial timeout: two
// dials (the first and its hedge), and the caller gets the hedge's failure.
// Catches a caller that hedges again and again while it waits.
func TestPoolHedgesOncePerCaller(t *testing.T) {
	t.Parallel()
	g := &gatedDialer{stall: stallForever}
	p := newTestPool(t, PoolConfig{Dial: g.dial, DialTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, _, err := p.RoundTrip(ctx, "127.0.0.1:1", wire.Message, [][]byte{[]byte("x")})
	var de *DialError
	if !errors.As(err, &de) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RoundTrip: %v; want a *DialError for the dial timeout", err)
	}
	checkStats(t, p, PoolStats{Dials: 2, Hedged: 1, DialFailures: 2})
}

// Rule 8: no dial storm. While every dial stalls, callers with short
// deadlines come and go; a new dial starts only once the newest has had
// minHedge, so dials grow with time, not with callers. Catches hedging on
// every caller's own short deadline (here: hundreds of dials).
func TestPoolNoDialStorm(t *testing.T) {
	t.Parallel()
	g := &gatedDialer{stall: stallForever}
	p := newTestPool(t, PoolConfig{Dial: g.dial})
	const callers = 8
	start := time.Now()
	var wg sync.WaitGroup
	var calls atomic.Int32
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < time.Second {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Millisecond)
				_, _, err := p.RoundTrip(ctx, "127.0.0.1:1", wire.Message, [][]byte{[]byte("x")})
				cancel()
				calls.Add(1)
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("caller behind stalled dials: %v; want DeadlineExceeded", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	st := p.Stats()
	if limit := uint64(elapsed/minHedge) + 2; st.Dials > limit {
		t.Fatalf("%d dials for %d calls in %v; want at most %d (one per %v)", st.Dials, calls.Load(), elapsed, limit, minHedge)
	}
	if st.Hedged != st.Dials-1 {
		t.Fatalf("stats %+v: every dial but the first should be a hedge", st)
	}
	t.Logf("%d calls, %d dials in %v", calls.Load(), st.Dials, elapsed)
}

var errDialRefused = errors.New("test: dial refused")

// Rule 8: a dial failure is returned to every caller waiting on that dial,
// as a *DialError that unwraps to the dialer's error, and the failed dial is
// not retried in a loop. Catches a bare or reformatted error (callers could
// not tell "onion not found" from other failures: issue 8, finding 8) and a
// pool that redials until the callers' deadlines.
func TestPoolDialErrorReturnedToWaiters(t *testing.T) {
	t.Parallel()
	g := &gatedDialer{stall: func(int, context.Context) error {
		time.Sleep(50 * time.Millisecond)
		return errDialRefused
	}}
	p := newTestPool(t, PoolConfig{Dial: g.dial})
	const callers = 5
	errc := make(chan error, callers)
	for range callers {
		go func() {
			_, _, err := p.RoundTrip(testCtx(t), "127.0.0.1:1", wire.Message, [][]byte{[]byte("x")})
			errc <- err
		}()
	}
	for range callers {
		err := <-errc
		var de *DialError
		if !errors.As(err, &de) || de.Addr != "127.0.0.1:1" || !errors.Is(err, errDialRefused) {
			t.Fatalf("RoundTrip: %v; want a *DialError for 127.0.0.1:1 wrapping the dialer's error", err)
		}
	}
	checkStats(t, p, PoolStats{Dials: 1, DialFailures: 1})
}

// Rule 8: DialTimeout bounds a dial, whoever waits for it: the dialer's ctx
// carries a deadline no later than DialTimeout, and a caller with a far
// deadline gets the dial's failure, not its own timeout. Catches a dial
// bounded only by the caller's ctx (a stalled dial would then hold the peer
// for as long as its longest caller) or by none.
func TestPoolDialTimeoutBoundsDial(t *testing.T) {
	t.Parallel()
	const dialTimeout = 300 * time.Millisecond
	g := &gatedDialer{stall: stallForever, deadlines: make(chan time.Duration, 10)}
	p := newTestPool(t, PoolConfig{Dial: g.dial, DialTimeout: dialTimeout})
	_, _, err := p.RoundTrip(testCtx(t), "127.0.0.1:1", wire.Message, [][]byte{[]byte("x")})
	var de *DialError
	if !errors.As(err, &de) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RoundTrip: %v; want a *DialError for the dial timeout", err)
	}
	for range g.calls.Load() {
		if left := <-g.deadlines; left <= 0 || left > dialTimeout {
			t.Fatalf("a dial's ctx gives it %v; want at most DialTimeout %v", left, dialTimeout)
		}
	}
}

// Rule 6 (pool side): a peer that refuses the stream itself (reject 5 on
// stream id 0, every stream busy) fails the request with ErrStreamRefused,
// which matches errs.ErrBusy, and neither the request is sent again nor the
// stream dialed again. Catches resending into a full peer (more load where
// there is none to spare), a caller that dials again because the stream it
// waited for broke before it could use it, and reading the refusal as an
// answer to a request.
func TestPoolStreamRefusedIsNotResent(t *testing.T) {
	t.Parallel()
	hh := newHoldHandler()
	_, addr := startServer(t, hh.handle, withConns(1))
	busy := dialRaw(t, addr)
	send(t, busy, wire.Message, 1, []byte("hold"))
	<-hh.started
	defer close(hh.release)

	// The dialer gives the refusal time to arrive before the stream is
	// handed over, as a slow network would.
	slowDial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := tcpDial(ctx, network, addr)
		time.Sleep(20 * time.Millisecond)
		return c, err
	}
	p := newTestPool(t, PoolConfig{Dial: slowDial})
	const tries = 5
	for range tries {
		_, _, err := p.RoundTrip(testCtx(t), addr, wire.Message, [][]byte{[]byte("x")})
		if !errors.Is(err, ErrStreamRefused) || !errors.Is(err, errs.ErrBusy) {
			t.Fatalf("RoundTrip: %v; want ErrStreamRefused matching errs.ErrBusy", err)
		}
	}
	checkStats(t, p, PoolStats{Dials: tries})
}

// Rule 9: Pool.Close makes requests waiting on a stream or on a dial return
// errs.ErrClosed, later RoundTrips ErrClosed, leaves no goroutine, and is
// idempotent. Catches waiters that get "use of closed network connection"
// (issue 8, finding 8), a RoundTrip that still dials after Close, and
// goroutines left reading or dialing.
func TestPoolCloseFailsWaiters(t *testing.T) {
	t.Parallel()
	hh := newHoldHandler()
	s, addr := startServer(t, hh.handle, baseServerConfig())
	settled := goroutines(t)

	g := &gatedDialer{stall: func(i int, ctx context.Context) error {
		if i > 1 {
			return stallForever(i, ctx)
		}
		return nil
	}}
	p := NewPool(PoolConfig{Dial: g.dial, MaxFrame: 1 << 20})
	const waiting = 3
	errc := make(chan error, waiting+1)
	for i := range waiting {
		go func() {
			_, _, err := p.RoundTrip(testCtx(t), addr, wire.Message, [][]byte{[]byte(fmt.Sprint("hold ", i))})
			errc <- err
		}()
		<-hh.started
	}
	go func() { // waits on a dial that stalls
		_, _, err := p.RoundTrip(testCtx(t), "127.0.0.1:1", wire.Message, [][]byte{[]byte("x")})
		errc <- err
	}()
	waitFor(t, "the second dial", func() bool { return g.calls.Load() == 2 })

	p.Close()
	for range waiting + 1 {
		if err := <-errc; !errors.Is(err, errs.ErrClosed) {
			t.Fatalf("a request waiting at Close: %v; want errs.ErrClosed", err)
		}
	}
	if _, _, err := p.RoundTrip(testCtx(t), addr, wire.Message, [][]byte{[]byte("x")}); !errors.Is(err, errs.ErrClosed) {
		t.Fatalf("RoundTrip after Close: %v; want errs.ErrClosed", err)
	}
	p.Close()
	if d := p.Stats().Dials; d != 2 {
		t.Fatalf("%d dials; want 2 (none after Close)", d)
	}
	close(hh.release)
	waitFor(t, "the server's streams closed", func() bool { return s.Stats().Streams == 0 })
	settled()
}

// Rule 10: RoundTrip refuses a frame larger than MaxFrame with
// errs.ErrFrameTooLarge before dialing. Catches sending it anyway (the peer
// would cut the stream and the caller would retry a message that can never
// fit: issue 8, finding 8).
func TestPoolRefusesOversizedFrame(t *testing.T) {
	t.Parallel()
	g := &gatedDialer{}
	p := newTestPool(t, PoolConfig{Dial: g.dial, MaxFrame: 1000})
	_, _, err := p.RoundTrip(context.Background(), "127.0.0.1:1", wire.Message, [][]byte{make([]byte, 600), make([]byte, 401)})
	if !errors.Is(err, errs.ErrFrameTooLarge) {
		t.Fatalf("RoundTrip of 1001 bytes: %v; want ErrFrameTooLarge", err)
	}
	if g.calls.Load() != 0 {
		t.Fatal("the pool dialed for a frame it could not send")
	}
	checkStats(t, p, PoolStats{})
}

// A dial that was hedged over and completes after its peer's stream has
// idled out is kept track of: Close still ends it. Catches the late dial's
// stream being orphaned (the janitor forgot the peer while a dial was still
// running), so that Close waits forever for its reader.
func TestPoolLateDialAfterIdleIsClosed(t *testing.T) {
	t.Parallel()
	s, addr := startServer(t, echo, baseServerConfig())
	gate := make(chan struct{})
	g := &gatedDialer{stall: func(i int, ctx context.Context) error {
		if i == 1 {
			<-gate
		}
		return nil
	}}
	p := NewPool(PoolConfig{Dial: g.dial, MaxFrame: 1 << 10, IdleTimeout: 20 * time.Millisecond, IOTimeout: 80 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	roundTrip(t, ctx, p, addr, []byte("hedged")) // hedges after 500 ms
	waitFor(t, "the hedge's stream idled out", func() bool { return p.Stats().Streams == 0 && s.Stats().Streams == 0 })
	time.Sleep(50 * time.Millisecond) // a few janitor rounds
	close(gate)
	waitFor(t, "the late dial's stream", func() bool { return s.Stats().StreamsTotal == 2 })

	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatal("Close hangs: the late dial's stream was orphaned")
	}
}

// A Pong answers no request, whatever stream id it carries: a request whose
// id a Pong names still gets its own answer after it. Catches a Pong that
// takes the request off the pending list (it would then wait for its ctx,
// and not be woken or resent when the stream dies).
func TestPoolPongDoesNotAnswerRequest(t *testing.T) {
	t.Parallel()
	peer := newFakePeer(t, func(n int, c net.Conn) {
		h, body, err := wire.ReadFrame(c, 1<<20)
		if err != nil {
			return
		}
		wire.WriteFrame(c, wire.Pong, h.ID)
		wire.WriteFrame(c, wire.Reply, h.ID, body)
		echoServe(c)
	})
	p := newTestPool(t, PoolConfig{})
	if got := roundTrip(t, testCtx(t), p, peer.addr, []byte("mine")); string(got) != "mine" {
		t.Fatalf("answer %q", got)
	}
	checkStats(t, p, PoolStats{Dials: 1})
}

// RetryDial: a dial whose failure RetryDial calls worth it is tried once
// more, within the same dial, and the caller gets the stream; a failure it
// does not call worth it, or a second failure, is returned as it is.
func TestPoolRetryDial(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t, echo, baseServerConfig())
	errOnce := errors.New("circuit failed")
	for _, c := range []struct {
		name      string
		fail      int // dials that fail
		retryable bool
		wantErr   bool
		wantDials uint64
	}{
		{"one retryable failure", 1, true, false, 2},
		{"two retryable failures", 2, true, true, 2},
		{"not retryable", 1, false, true, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := &gatedDialer{stall: func(i int, _ context.Context) error {
				if i <= c.fail {
					return errOnce
				}
				return nil
			}}
			p := newTestPool(t, PoolConfig{Dial: g.dial, RetryDial: func(err error) bool {
				return c.retryable && errors.Is(err, errOnce)
			}})
			_, body, err := p.RoundTrip(testCtx(t), addr, wire.Message, [][]byte{[]byte("x")})
			if c.wantErr != (err != nil) || (err != nil && !errors.Is(err, errOnce)) {
				t.Fatalf("RoundTrip: %v (body %q); want error %v", err, body, c.wantErr)
			}
			if d := p.Stats().Dials; d != c.wantDials {
				t.Fatalf("%d dials, want %d", d, c.wantDials)
			}
		})
	}
}
