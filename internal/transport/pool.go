package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/errs"
	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// PoolConfig configures a Pool. Dial and MaxFrame are required; other zero
// fields take the defaults.
type PoolConfig struct {
	// Dial opens a stream to a peer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxFrame bounds the frames sent and received.
	MaxFrame int
	// IOTimeout bounds every write, and how long a stream that has
	// requests waiting may stay silent after a ping before it is judged
	// dead.
	IOTimeout time.Duration
	// IdleTimeout closes a stream that has carried no request for this
	// long.
	IdleTimeout time.Duration
	// DialTimeout bounds one dial, whoever waits for it.
	DialTimeout time.Duration
	// Attempts bounds how many times one request is sent when its stream
	// dies before its answer.
	Attempts int
	// RetryDial, if set, says whether a failed dial is worth one more try,
	// dialRetryPause later, within the same DialTimeout. Nil: never.
	RetryDial func(error) bool
	// Logger receives debug records. Nil: silent.
	Logger *slog.Logger
}

// PoolStats are a Pool's counters.
type PoolStats struct {
	Streams      int    // streams open now
	Dials        uint64 // dials started
	DialFailures uint64 // dials that failed
	Hedged       uint64 // dials started because an older one was slow
	Resends      uint64 // requests sent again after their stream died
	StreamsLost  uint64 // streams that died with requests waiting on them
}

// Pool keeps one multiplexed stream open per peer address and sends every
// request to that peer on it (over Tor: one circuit per peer, not one per
// request).
type Pool struct {
	cfg PoolConfig
	log *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	peers  map[string]*peer
	closed bool
	dialEW time.Duration // moving average of successful dial times

	dials, dialFailures, hedged, resends, lost atomic.Uint64
}

// peer is what the pool knows of one address.
type peer struct {
	conn    *mux      // the stream in use, or nil
	dial    *dialCall // the newest dial in progress, or nil
	dialing int       // dials in progress, hedged-over ones included
	ready   chan struct{}
}

type dialCall struct {
	start time.Time
	done  chan struct{}
	conn  *mux
	err   error
}

// NewPool returns a pool. Close it to end its streams and goroutines.
func NewPool(cfg PoolConfig) *Pool {
	c := cfg
	if c.IOTimeout <= 0 {
		c.IOTimeout = DefaultIOTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Attempts <= 0 {
		c.Attempts = DefaultAttempts
	}
	p := &Pool{cfg: c, log: loggerOr(c.Logger), peers: map[string]*peer{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.janitor()
	return p
}

// Stats returns the pool's counters.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	n := 0
	for _, ps := range p.peers {
		if ps.conn != nil && !ps.conn.broken() {
			n++
		}
	}
	p.mu.Unlock()
	return PoolStats{Streams: n, Dials: p.dials.Load(), DialFailures: p.dialFailures.Load(),
		Hedged: p.hedged.Load(), Resends: p.resends.Load(), StreamsLost: p.lost.Load()}
}

// DialError is a failure to open a stream to a peer. It unwraps to the
// dialer's error.
type DialError struct {
	Addr string
	Err  error
}

func (e *DialError) Error() string { return fmt.Sprintf("dial %s: %v", e.Addr, e.Err) }
func (e *DialError) Unwrap() error { return e.Err }

// RoundTrip sends one request frame to addr and returns its answer. Errors:
// ctx's own error (matching context.Canceled or context.DeadlineExceeded)
// when ctx ends first; errs.ErrClosed once the pool is closed;
// errs.ErrFrameTooLarge, before anything is sent, for a frame over MaxFrame;
// a *DialError; ErrStreamRefused; ErrStreamLost after Attempts sends on
// streams that died.
func (p *Pool) RoundTrip(ctx context.Context, addr string, typ wire.Type, parts [][]byte) (wire.Header, []byte, error) {
	size := 0
	for _, b := range parts {
		size += len(b)
	}
	if size > p.cfg.MaxFrame {
		return wire.Header{}, nil, fmt.Errorf("%w: %d bytes, limit %d", errs.ErrFrameTooLarge, size, p.cfg.MaxFrame)
	}
	var err error
	for attempt := range p.cfg.Attempts {
		if attempt > 0 {
			p.resends.Add(1)
		}
		var m *mux
		if m, err = p.get(ctx, addr); err != nil {
			return wire.Header{}, nil, err
		}
		var h wire.Header
		var body []byte
		h, body, err = m.roundTrip(ctx, typ, parts)
		if !errors.Is(err, ErrStreamLost) {
			return h, body, err
		}
		p.log.Debug("stream lost; sending again", "addr", addr, "attempt", attempt+1, "err", err)
	}
	return wire.Header{}, nil, err
}

// Ping sends one transport ping to addr on the stream its requests take (the
// open one; one is dialed, as for a request, if none is) and returns the
// time from writing the ping to reading its pong: the round trip of that
// stream, through the network and the peer's reader, without any handler.
// The ping carries out (nil for none) and asks for its first back bytes
// back (wire.PingBody), so that the round trip is of frames of a chosen
// size each way. It does not count as use of the stream (IdleTimeout).
// Errors: ctx's own error when ctx ends first, the stream left as it is;
// errs.ErrBusy when the peer had no room for the ping's body, the stream
// left up; ErrStreamLost when the stream breaks before the pong, when the
// pong's body is not the bytes asked for, or when no pong comes within
// IOTimeout (the stream is then judged dead, as by the liveness check, and
// the next request dials a fresh one); errs.ErrFrameTooLarge for a body over
// wire.MaxEcho or back outside 0..len(out), with nothing sent;
// errs.ErrClosed once the pool is closed; a *DialError; ErrStreamRefused. A
// ping is never sent again.
func (p *Pool) Ping(ctx context.Context, addr string, out []byte, back int) (time.Duration, error) {
	if back < 0 || back > len(out) || len(out) > wire.MaxEcho-wire.EchoPrefix {
		return 0, fmt.Errorf("%w: a ping of %d bytes asking for %d back (at most %d, and at most as many as it carries)", errs.ErrFrameTooLarge, len(out), back, wire.MaxEcho-wire.EchoPrefix)
	}
	m, err := p.get(ctx, addr)
	if err != nil {
		return 0, err
	}
	return m.ping(ctx, wire.PingBody(out, back), out[:back])
}

// Warm opens a stream to addr, if none is open, without sending anything:
// the first request to addr then finds it ready. Like any stream, it is
// closed after IdleTimeout unused.
func (p *Pool) Warm(ctx context.Context, addr string) error {
	_, err := p.get(ctx, addr)
	return err
}

// get returns an open stream to addr, dialing one if needed. Callers share a
// dial in progress, but one that has taken longer than hedgeAfter does not
// hold a caller hostage: the caller starts a new dial, which later callers
// share in turn.
func (p *Pool) get(ctx context.Context, addr string) (*mux, error) {
	hedged := false // each caller starts at most one dial of its own
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errs.ErrClosed
		}
		ps := p.peers[addr]
		if ps == nil {
			ps = &peer{ready: make(chan struct{})}
			p.peers[addr] = ps
		}
		if ps.conn != nil && !ps.conn.broken() {
			m := ps.conn
			p.mu.Unlock()
			return m, nil
		}
		d := ps.dial
		if d == nil {
			d = p.startDialLocked(addr, ps)
		}
		ready := ps.ready
		wait := time.Until(d.start.Add(p.hedgeAfterLocked()))
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl)/2)
		}
		wait = max(wait, time.Until(d.start.Add(minHedge)))
		if hedged {
			wait = time.Duration(1<<63 - 1)
		}
		p.mu.Unlock()

		t := time.NewTimer(wait)
		select {
		case <-d.done:
			t.Stop()
		case <-ready:
			t.Stop()
		case <-t.C:
			p.mu.Lock()
			if ps.dial == d && !p.closed {
				hedged = true
				p.hedged.Add(1)
				p.startDialLocked(addr, ps)
			}
			p.mu.Unlock()
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-p.ctx.Done():
			t.Stop()
			return nil, errs.ErrClosed
		}
		select {
		case <-d.done:
			// The dial this caller waited on failed: so does the caller,
			// unless another dial has meanwhile opened a stream.
			if d.err != nil {
				p.mu.Lock()
				m := ps.conn
				p.mu.Unlock()
				if m == nil || m.broken() {
					return nil, d.err
				}
				continue
			}
			// It opened a stream: use it even if it has already broken
			// (a peer that refuses the stream does so at once), so that
			// the request fails with the stream's own error rather than
			// dial again and again.
			return d.conn, nil
		default:
		}
	}
}

// dialRetryPause is the pause before a dial's second try (RetryDial).
const dialRetryPause = 250 * time.Millisecond

// minHedge is the least time a dial is given before a caller starts
// another.
const minHedge = 250 * time.Millisecond

// hedgeAfterLocked is how long a dial may take before callers stop waiting
// for it alone: four times the recent dial time, between 250 ms and a
// quarter of the dial timeout; 5 s before any dial has succeeded.
func (p *Pool) hedgeAfterLocked() time.Duration {
	d := 5 * time.Second
	if p.dialEW > 0 {
		d = 4 * p.dialEW
	}
	return min(max(d, minHedge), p.cfg.DialTimeout/4)
}

func (p *Pool) startDialLocked(addr string, ps *peer) *dialCall {
	d := &dialCall{start: time.Now(), done: make(chan struct{})}
	ps.dial = d
	ps.dialing++
	p.dials.Add(1)
	p.wg.Add(1)
	go p.dial(addr, ps, d)
	return d
}

func (p *Pool) dial(addr string, ps *peer, d *dialCall) {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.DialTimeout)
	c, err := p.cfg.Dial(ctx, "tcp", addr)
	if err != nil && p.cfg.RetryDial != nil && p.cfg.RetryDial(err) {
		// Once more, after a pause, within the same DialTimeout: over Tor
		// a dial can fail for a circuit that a second try does not use.
		t := time.NewTimer(dialRetryPause)
		select {
		case <-t.C:
			p.dials.Add(1)
			c, err = p.cfg.Dial(ctx, "tcp", addr)
		case <-ctx.Done():
			t.Stop()
		}
	}
	cancel()
	took := time.Since(d.start)

	p.mu.Lock()
	if ps.dial == d {
		ps.dial = nil
	}
	ps.dialing--
	switch {
	case err == nil && p.closed:
		c.Close()
		d.err = errs.ErrClosed
	case err != nil:
		p.dialFailures.Add(1)
		if p.closed {
			err = errs.ErrClosed
		}
		d.err = &DialError{Addr: addr, Err: err}
	case ps.conn != nil && !ps.conn.broken():
		c.Close() // another dial won; keep the stream in use
		d.conn = ps.conn
	default:
		if p.dialEW == 0 {
			p.dialEW = took
		} else {
			p.dialEW = (3*p.dialEW + took) / 4
		}
		d.conn = newMux(p, c)
		ps.conn = d.conn
	}
	close(d.done)
	close(ps.ready)
	ps.ready = make(chan struct{})
	p.mu.Unlock()
}

// janitor closes idle and dead streams, and pings streams whose requests
// have waited in silence.
func (p *Pool) janitor() {
	defer p.wg.Done()
	t := time.NewTicker(min(max(p.cfg.IOTimeout/8, 5*time.Millisecond), time.Second))
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case now := <-t.C:
			var old []*mux
			p.mu.Lock()
			for addr, ps := range p.peers {
				m := ps.conn
				if m != nil && (m.broken() || m.idleSince(now.Add(-p.cfg.IdleTimeout))) {
					ps.conn = nil
					old = append(old, m)
					m = nil
				}
				if m != nil {
					m.checkLiveness(now)
				}
				// Forget the peer only once no dial is running: a
				// hedged-over dial that completes later must find it, or
				// its stream would be known to no one and never closed.
				if ps.conn == nil && ps.dialing == 0 {
					delete(p.peers, addr)
				}
			}
			p.mu.Unlock()
			for _, m := range old {
				// A caller that took the stream just before may still
				// send on it: it will send again on a fresh one.
				m.close(fmt.Errorf("%w: closed after %v idle", ErrStreamLost, p.cfg.IdleTimeout))
			}
		}
	}
}

// Close ends every stream: requests waiting on them fail with
// errs.ErrClosed. It waits for the pool's goroutines and is idempotent.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	var conns []*mux
	for _, ps := range p.peers {
		if ps.conn != nil {
			conns = append(conns, ps.conn)
		}
	}
	p.peers = map[string]*peer{}
	p.mu.Unlock()
	p.cancel()
	for _, m := range conns {
		m.close(errs.ErrClosed)
	}
	p.wg.Wait()
}

type muxResult struct {
	at   time.Time // when the reader had it
	h    wire.Header
	body []byte
}

// mux carries many concurrent requests to one peer over one stream, each
// matched to its answer by stream id.
type mux struct {
	p    *Pool
	c    net.Conn
	wsem chan struct{} // the right to write, taken with a context

	mu       sync.Mutex
	pending  map[uint32]chan muxResult
	pongs    map[uint32]chan muxResult // Ping's pings awaiting their pong, by id
	next     uint32
	err      error // set once the stream is broken
	lastUsed time.Time
	lastRecv time.Time
	pingSent time.Time // zero when no ping is outstanding
	done     chan struct{}
}

func newMux(p *Pool, c net.Conn) *mux {
	now := time.Now()
	m := &mux{p: p, c: c, wsem: make(chan struct{}, 1), pending: map[uint32]chan muxResult{},
		pongs: map[uint32]chan muxResult{}, lastUsed: now, lastRecv: now, done: make(chan struct{})}
	p.wg.Add(1)
	go m.readLoop()
	return m
}

func (m *mux) readLoop() {
	defer m.p.wg.Done()
	defer close(m.done)
	for {
		h, body, err := wire.ReadFrame(m.c, m.p.cfg.MaxFrame)
		if err != nil {
			m.fail(fmt.Errorf("%w: %v", ErrStreamLost, err))
			return
		}
		if h.ID == 0 && h.Type == wire.Reject {
			// The peer refused the stream itself.
			m.fail(ErrStreamRefused)
			return
		}
		now := time.Now()
		m.mu.Lock()
		m.lastRecv = now
		m.pingSent = time.Time{}
		// A Pong answers no request, whatever its id: a request taken off
		// pending by one would never be answered, nor woken when the
		// stream dies. A Reject with a ping's id refuses that ping (no
		// room for its body).
		var ch chan muxResult
		if pong := m.pongs[h.ID]; pong != nil && (h.Type == wire.Pong || h.Type == wire.Reject) {
			ch = pong
			delete(m.pongs, h.ID)
		} else if h.Type != wire.Pong {
			ch = m.pending[h.ID]
			delete(m.pending, h.ID)
		}
		m.mu.Unlock()
		if ch != nil {
			ch <- muxResult{at: now, h: h, body: body} // buffered: never blocks
		}
	}
}

// fail marks the stream broken with err and wakes every waiting request.
func (m *mux) fail(err error) {
	m.mu.Lock()
	if m.err == nil {
		m.err = err
		if len(m.pending) > 0 && errors.Is(err, ErrStreamLost) {
			m.p.lost.Add(1)
		}
	}
	for id, ch := range m.pending {
		delete(m.pending, id)
		close(ch)
	}
	for id, ch := range m.pongs {
		delete(m.pongs, id)
		close(ch)
	}
	m.mu.Unlock()
	m.c.Close()
}

func (m *mux) broken() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err != nil
}

// idleSince reports whether no request or ping is pending and the stream
// was last used before t.
func (m *mux) idleSince(t time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pending) == 0 && len(m.pongs) == 0 && m.lastUsed.Before(t)
}

// checkLiveness pings a stream whose requests have heard nothing for half
// the I/O timeout, and fails it if the ping goes unanswered for the I/O
// timeout.
func (m *mux) checkLiveness(now time.Time) {
	io := m.p.cfg.IOTimeout
	m.mu.Lock()
	waiting := len(m.pending) > 0 && now.Sub(m.lastRecv) > io/2
	sent := m.pingSent
	if waiting && sent.IsZero() {
		m.pingSent = now
	}
	m.mu.Unlock()
	switch {
	case !waiting:
	case sent.IsZero():
		m.p.wg.Add(1)
		go func() {
			defer m.p.wg.Done()
			select {
			case m.wsem <- struct{}{}:
			default:
				// A frame is being written: try again at the next check,
				// rather than count a ping that was never sent as
				// unanswered.
				m.mu.Lock()
				if m.pingSent.Equal(now) {
					m.pingSent = time.Time{}
				}
				m.mu.Unlock()
				return
			}
			m.c.SetWriteDeadline(time.Now().Add(io))
			err := wire.WriteFrame(m.c, wire.Ping, 0)
			<-m.wsem
			if err != nil {
				m.fail(fmt.Errorf("%w: ping: %v", ErrStreamLost, err))
			}
		}()
	case now.Sub(sent) > io:
		m.fail(fmt.Errorf("%w: no answer to a ping for %v", ErrStreamLost, io))
	}
}

func (m *mux) roundTrip(ctx context.Context, typ wire.Type, parts [][]byte) (wire.Header, []byte, error) {
	ch := make(chan muxResult, 1)
	forget, _, err := m.send(ctx, typ, parts, func(id uint32) func() {
		m.pending[id] = ch
		m.lastUsed = time.Now()
		return func() { delete(m.pending, id) }
	})
	if err != nil {
		return wire.Header{}, nil, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return wire.Header{}, nil, m.error()
		}
		return r.h, r.body, nil
	case <-ctx.Done():
		forget()
		return wire.Header{}, nil, ctx.Err()
	}
}

// send gives a fresh id to the waiter that register puts in place (called
// with m.mu held; the func it returns takes the waiter away, also with m.mu
// held), writes the frame typ with that id, and returns when the write
// began and forget, which takes the waiter away. On an error the waiter is
// gone: taken away, or failed with the stream. A frame that could not be
// written whole fails the stream.
func (m *mux) send(ctx context.Context, typ wire.Type, parts [][]byte, register func(id uint32) func()) (forget func(), start time.Time, err error) {
	m.mu.Lock()
	if m.err != nil {
		err := m.err
		m.mu.Unlock()
		return nil, start, err
	}
	id := m.nextIDLocked()
	unregister := register(id)
	m.mu.Unlock()
	forget = func() {
		m.mu.Lock()
		unregister()
		m.mu.Unlock()
	}

	select {
	case m.wsem <- struct{}{}:
	case <-ctx.Done():
		forget()
		return nil, start, ctx.Err()
	case <-m.done:
		forget()
		return nil, start, m.error()
	}
	start = time.Now()
	m.c.SetWriteDeadline(start.Add(m.p.cfg.IOTimeout))
	err = wire.WriteFrame(m.c, typ, id, parts...) // one Write for a frame of up to wire.CoalesceMax
	<-m.wsem
	if err != nil {
		// A half-written frame leaves the stream unusable.
		m.fail(fmt.Errorf("%w: writing a %v frame: %v", ErrStreamLost, typ, err))
		return nil, start, m.error()
	}
	return forget, start, nil
}

// nextIDLocked returns a stream id for a request or a ping: never 0, which
// is the stream's own (its liveness pings, a refusal of the stream).
func (m *mux) nextIDLocked() uint32 {
	m.next++
	if m.next == 0 {
		m.next = 1
	}
	return m.next
}

// ping sends a Ping with body and an id of its own and waits for the Pong
// with that id, which must carry want: see Pool.Ping.
func (m *mux) ping(ctx context.Context, body, want []byte) (time.Duration, error) {
	ch := make(chan muxResult, 1)
	forget, start, err := m.send(ctx, wire.Ping, [][]byte{body}, func(id uint32) func() {
		m.pongs[id] = ch // not lastUsed: a ping does not keep an idle stream open
		return func() { delete(m.pongs, id) }
	})
	if err != nil {
		return 0, err
	}
	io := m.p.cfg.IOTimeout
	t := time.NewTimer(io)
	defer t.Stop()
	select {
	case r, ok := <-ch:
		if !ok {
			return 0, m.error()
		}
		if r.h.Type == wire.Reject {
			if len(r.body) == 1 && wire.RejectCode(r.body[0]) == wire.RejectBusy {
				return 0, fmt.Errorf("%w: the peer had no room for a ping of %d bytes", errs.ErrBusy, len(body))
			}
			return 0, fmt.Errorf("%w: a ping of %d bytes rejected (%x)", ErrStreamLost, len(body), r.body)
		}
		if !bytes.Equal(r.body, want) {
			// Not the echo of what was sent: the stream, or the peer,
			// cannot be trusted with a message either.
			m.fail(fmt.Errorf("%w: a pong of %d bytes did not echo the %d asked for", ErrStreamLost, len(r.body), len(want)))
			return 0, m.error()
		}
		return r.at.Sub(start), nil
	case <-ctx.Done():
		forget()
		return 0, ctx.Err()
	case <-t.C:
		m.fail(fmt.Errorf("%w: no answer to a ping for %v", ErrStreamLost, io))
		return 0, m.error()
	}
}

func (m *mux) error() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// close fails the stream with err and waits for its reader.
func (m *mux) close(err error) {
	m.fail(err)
	<-m.done
}
