package ghostcomm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// Defaults for stream timing, used when a Config leaves the field zero.
const (
	// DefaultIdleTimeout is how long an open stream may carry no frame
	// before it is closed, on both ends.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultIOTimeout bounds reading one frame body once its header has
	// arrived, and writing one frame.
	DefaultIOTimeout = 30 * time.Second
	// DefaultMaxConcurrent bounds the messages a Node or Primary handles at
	// once; more are refused with ErrBusy.
	DefaultMaxConcurrent = 256
	// DefaultMaxConns bounds the streams a Node or Primary keeps open; more
	// are closed as soon as they are accepted.
	DefaultMaxConns = 1024
	// DefaultMaxInflightBytes bounds the frame bodies a Node or Primary
	// holds in memory at once, being read or handled, over all its streams.
	// A frame that finds no room is read and discarded, and refused with
	// ErrBusy.
	DefaultMaxInflightBytes = 16 * DefaultMaxFrameSize
)

// handlerFunc answers one request frame. It returns the answer's type and
// parts; a zero type sends nothing.
type handlerFunc func(ctx context.Context, typ wire.Type, body []byte) (wire.Type, [][]byte)

// server accepts streams on a local listener and answers request frames, each
// in its own goroutine, on the stream they came from. One stream's garbage or
// stall never affects another stream.
type server struct {
	ln        net.Listener
	handle    handlerFunc
	maxFrame  int
	maxConns  int
	idle      time.Duration
	ioTimeout time.Duration
	sem       chan struct{}       // one slot per handler running
	inflight  *semaphore.Weighted // bytes of frame bodies held
	held      atomic.Int64        // the same, for inspection
	log       *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// serverLimits are a server's bounds; see NodeConfig.
type serverLimits struct {
	maxFrame, maxConcurrent, maxConns int
	maxInflight                       int64
	idle, ioTimeout                   time.Duration
}

func newServer(ln net.Listener, handle handlerFunc, l serverLimits, log *slog.Logger) *server {
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{
		ln: ln, handle: handle, maxFrame: l.maxFrame, maxConns: l.maxConns, idle: l.idle, ioTimeout: l.ioTimeout,
		sem: make(chan struct{}, l.maxConcurrent), inflight: semaphore.NewWeighted(max(l.maxInflight, int64(l.maxFrame))),
		log: log, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{},
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

func (s *server) acceptLoop() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failure (e.g. out of file descriptors): back off.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
				continue
			case <-s.ctx.Done():
				return
			}
		}
		delay = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		if len(s.conns) >= s.maxConns {
			s.mu.Unlock()
			s.log.Debug("too many streams; closing a new one", "max", s.maxConns)
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

func (s *server) serveConn(c net.Conn) {
	defer s.wg.Done()
	var wmu sync.Mutex
	var handlers sync.WaitGroup
	gone := make(chan struct{}) // closed when the stream ends; see streamGone
	sctx := context.WithValue(s.ctx, streamKey{}, (<-chan struct{})(gone))
	defer func() {
		c.Close()
		close(gone)
		handlers.Wait()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	write := func(typ wire.Type, id uint32, parts [][]byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		c.SetWriteDeadline(time.Now().Add(s.ioTimeout))
		err := wire.WriteFrame(c, typ, id, parts...)
		if err != nil {
			c.Close() // a half-written frame leaves the stream unusable
		}
		return err
	}
	for {
		c.SetReadDeadline(time.Now().Add(s.idle))
		r := &deadlineReader{c: c, after: s.ioTimeout}
		h, err := wire.ReadHeader(r, s.maxFrame)
		if err != nil {
			if errors.Is(err, ErrFrameTooLarge) {
				// The body was not read, so the stream cannot be resynchronized:
				// say why, then close it.
				write(wire.Reject, h.ID, [][]byte{{byte(wire.RejectTooLarge)}})
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && s.ctx.Err() == nil {
				s.log.Debug("closing stream", "err", err)
			}
			return
		}
		// Room for the body in the server-wide budget, before reading it.
		n := int64(h.Len)
		actx, cancel := context.WithTimeout(s.ctx, s.ioTimeout)
		errRoom := s.inflight.Acquire(actx, n)
		cancel()
		if errRoom == nil {
			s.held.Add(n)
		}
		c.SetReadDeadline(time.Now().Add(s.ioTimeout))
		if errRoom != nil {
			// No room: read the body past without keeping it, so that the
			// stream stays in step, and refuse the frame.
			if _, err := io.CopyN(io.Discard, c, n); err != nil {
				return
			}
			if write(wire.Reject, h.ID, [][]byte{{byte(wire.RejectBusy)}}) != nil {
				return
			}
			continue
		}
		body, err := wire.ReadBody(c, h)
		if err != nil {
			s.give(n)
			if s.ctx.Err() == nil {
				s.log.Debug("closing stream", "err", err)
			}
			return
		}
		select {
		case s.sem <- struct{}{}:
		default:
			s.give(n)
			if write(wire.Reject, h.ID, [][]byte{{byte(wire.RejectBusy)}}) != nil {
				return
			}
			continue
		}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			defer s.give(n)
			defer func() { <-s.sem }()
			typ, parts := s.handle(sctx, h.Type, body)
			if typ != 0 {
				write(typ, h.ID, parts)
			}
		}()
	}
}

// give returns n bytes to the in-flight budget.
func (s *server) give(n int64) {
	s.held.Add(-n)
	s.inflight.Release(n)
}

// inflightBytes reports the bytes of frame bodies held now.
func (s *server) inflightBytes() int64 { return s.held.Load() }

// deadlineReader moves the read deadline to now+after once the first byte of
// a frame has arrived, so a peer may idle between frames but not within one.
type deadlineReader struct {
	c       net.Conn
	after   time.Duration
	started bool
}

func (r *deadlineReader) Read(p []byte) (int, error) {
	n, err := r.c.Read(p)
	if n > 0 && !r.started {
		r.started = true
		r.c.SetReadDeadline(time.Now().Add(r.after))
	}
	return n, err
}

// close stops accepting, cancels every handler's context, closes every stream
// and waits for all goroutines. It does not close the listener's onion.
func (s *server) close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	err := s.ln.Close()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// errConnLost: a stream broke while a request on it waited for its answer.
var errConnLost = errors.New("stream to peer lost")

type muxResult struct {
	h    wire.Header
	body []byte
}

// muxConn carries many concurrent requests to one peer over one stream, each
// matched to its answer by stream id.
type muxConn struct {
	c         net.Conn
	maxFrame  int
	ioTimeout time.Duration

	wmu sync.Mutex

	mu       sync.Mutex
	pending  map[uint32]chan muxResult
	next     uint32
	err      error // set once the stream is broken
	lastUsed time.Time
	lastRecv time.Time
	done     chan struct{}
}

func newMuxConn(c net.Conn, maxFrame int, ioTimeout time.Duration) *muxConn {
	m := &muxConn{c: c, maxFrame: maxFrame, ioTimeout: ioTimeout,
		pending: map[uint32]chan muxResult{}, lastUsed: time.Now(), done: make(chan struct{})}
	go m.readLoop()
	return m
}

func (m *muxConn) readLoop() {
	defer close(m.done)
	for {
		h, body, err := wire.ReadFrame(m.c, m.maxFrame)
		if err != nil {
			m.fail(err)
			return
		}
		m.mu.Lock()
		ch := m.pending[h.ID]
		delete(m.pending, h.ID)
		m.lastUsed = time.Now()
		m.lastRecv = m.lastUsed
		m.mu.Unlock()
		if ch != nil {
			ch <- muxResult{h: h, body: body} // buffered: never blocks
		}
	}
}

// fail marks the stream broken and wakes every waiting request.
func (m *muxConn) fail(err error) {
	m.mu.Lock()
	if m.err == nil {
		m.err = fmt.Errorf("%w: %v", errConnLost, err)
	}
	for id, ch := range m.pending {
		delete(m.pending, id)
		close(ch)
	}
	m.mu.Unlock()
	m.c.Close()
}

func (m *muxConn) broken() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err != nil
}

// idleSince reports whether no request is pending and the stream was last
// used before t.
func (m *muxConn) idleSince(t time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pending) == 0 && m.lastUsed.Before(t)
}

func (m *muxConn) roundTrip(ctx context.Context, typ wire.Type, parts [][]byte) (wire.Header, []byte, error) {
	ch := make(chan muxResult, 1)
	m.mu.Lock()
	if m.err != nil {
		err := m.err
		m.mu.Unlock()
		return wire.Header{}, nil, err
	}
	m.next++
	id := m.next
	m.pending[id] = ch
	sent := time.Now()
	m.lastUsed = sent
	m.mu.Unlock()

	m.wmu.Lock()
	dl := time.Now().Add(m.ioTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	m.c.SetWriteDeadline(dl)
	err := wire.WriteFrame(m.c, typ, id, parts...)
	m.wmu.Unlock()
	if err != nil {
		m.fail(err)
		return wire.Header{}, nil, fmt.Errorf("%w: %v", errConnLost, err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			m.mu.Lock()
			err := m.err
			m.mu.Unlock()
			return wire.Header{}, nil, err
		}
		return r.h, r.body, nil
	case <-ctx.Done():
		m.mu.Lock()
		delete(m.pending, id)
		silent := m.lastRecv.Before(sent)
		m.mu.Unlock()
		if silent {
			// Nothing at all came back on this stream since the request
			// went out: treat the stream as dead, so the next request dials
			// afresh instead of queueing behind it.
			m.fail(ctx.Err())
		}
		return wire.Header{}, nil, ctx.Err()
	}
}

func (m *muxConn) close() {
	m.fail(net.ErrClosed)
	<-m.done
}

// dialPool keeps one multiplexed stream open per peer address and reuses it
// for every message to that peer (over Tor: one circuit per next hop, not one
// per message). Streams idle for longer than idle are closed.
type dialPool struct {
	dialer    Dialer
	maxFrame  int
	ioTimeout time.Duration
	idle      time.Duration

	mu      sync.Mutex
	conns   map[string]*muxConn
	dialing map[string]*dialCall
	closed  bool
	ctx     context.Context // cancelled by close
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type dialCall struct {
	done chan struct{}
	m    *muxConn
	err  error
}

func newDialPool(d Dialer, maxFrame int, ioTimeout, idle time.Duration) *dialPool {
	p := &dialPool{dialer: d, maxFrame: maxFrame, ioTimeout: ioTimeout, idle: idle,
		conns: map[string]*muxConn{}, dialing: map[string]*dialCall{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.janitor()
	return p
}

func (p *dialPool) janitor() {
	defer p.wg.Done()
	t := time.NewTicker(max(p.idle/2, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case now := <-t.C:
			var old []*muxConn
			p.mu.Lock()
			for addr, m := range p.conns {
				if m.broken() || m.idleSince(now.Add(-p.idle)) {
					delete(p.conns, addr)
					old = append(old, m)
				}
			}
			p.mu.Unlock()
			for _, m := range old {
				m.close()
			}
		}
	}
}

// get returns an open stream to addr, dialing one if needed. Concurrent
// callers for the same address share one dial.
func (p *dialPool) get(ctx context.Context, addr string) (*muxConn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if m := p.conns[addr]; m != nil && !m.broken() {
		p.mu.Unlock()
		return m, nil
	}
	call := p.dialing[addr]
	if call == nil {
		call = &dialCall{done: make(chan struct{})}
		p.dialing[addr] = call
		p.wg.Add(1)
		go p.dial(addr, call)
	}
	p.mu.Unlock()
	select {
	case <-call.done:
		return call.m, call.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// dialTimeout bounds one shared dial, which outlives the context of the
// caller that started it (another caller may still want it).
const dialTimeout = 2 * time.Minute

func (p *dialPool) dial(addr string, call *dialCall) {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(p.ctx, dialTimeout)
	c, err := p.dialer.DialContext(ctx, "tcp", addr)
	cancel()
	p.mu.Lock()
	delete(p.dialing, addr)
	if err == nil && p.closed {
		c.Close()
		err = ErrClosed
	}
	if err != nil {
		call.err = fmt.Errorf("dial %s: %w", addr, err)
	} else {
		call.m = newMuxConn(c, p.maxFrame, p.ioTimeout)
		p.conns[addr] = call.m
	}
	p.mu.Unlock()
	close(call.done)
}

func (p *dialPool) roundTrip(ctx context.Context, addr string, typ wire.Type, parts [][]byte) (wire.Header, []byte, error) {
	m, err := p.get(ctx, addr)
	if err != nil {
		return wire.Header{}, nil, err
	}
	return m.roundTrip(ctx, typ, parts)
}

func (p *dialPool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	conns := p.conns
	p.conns = map[string]*muxConn{}
	p.mu.Unlock()
	p.cancel()
	for _, m := range conns {
		m.close()
	}
	p.wg.Wait()
}

// discardLogger is the logger of a zero Config: silent.
var discardLogger = slog.New(slog.DiscardHandler)

func loggerOr(l *slog.Logger) *slog.Logger {
	if l == nil {
		return discardLogger
	}
	return l
}
