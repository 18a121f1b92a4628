package transport

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

	"github.com/ghostcomm/ghostcomm/internal/errs"
	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// ServerConfig bounds a Server. MaxFrame, MaxConcurrent, MaxConns and
// MaxInflight must be positive; other zero fields take the defaults.
type ServerConfig struct {
	// MaxFrame bounds a frame's body.
	MaxFrame int
	// MaxConcurrent is the number of work slots: requests being computed
	// at once. Parked requests hold none.
	MaxConcurrent int
	// MaxConns bounds the streams kept open.
	MaxConns int
	// MaxInflight bounds the bytes charged at once over all streams:
	// bodies being read or handled, HandlerCost per request, and what
	// parked requests keep. It is raised to MaxFrame+HandlerCost if lower.
	MaxInflight int64
	// MaxStreamBytes bounds what one stream's requests are charged at
	// once. Zero: MaxInflight/4. It is raised to MaxFrame+HandlerCost if
	// lower.
	MaxStreamBytes int64
	// IdleTimeout closes a stream that carries no frame for this long
	// while no request of its is being handled.
	IdleTimeout time.Duration
	// IOTimeout bounds the rest of a frame header once its first byte has
	// arrived, a body's grace before MinReadRate applies, and every write.
	IOTimeout time.Duration
	// MinReadRate is the slowest a body may arrive, in bytes per second,
	// after IOTimeout's grace.
	MinReadRate int
	// Logger receives debug records. Nil: silent.
	Logger *slog.Logger
	// Refused, if set, is called for every request frame refused before a
	// handler saw it, with why: an error matching errs.ErrBusy (no room,
	// no slot) or errs.ErrFrameTooLarge.
	Refused func(typ wire.Type, why error)
}

// Handler answers one request. It returns the answer's type and parts; a
// zero type sends nothing. It may call r.Park before it waits on others.
type Handler func(ctx context.Context, r *Request) (wire.Type, [][]byte)

// Request is one request frame handed to a Handler.
type Request struct {
	Type wire.Type
	// Body is the frame's body. Park sets it to nil: after Park, the
	// handler may keep only what Park's hold pays for.
	Body []byte

	st     *stream
	charge int64
	slot   bool
}

// NewRequest returns a request that no stream carries, for calling a
// Handler directly (tests, benchmarks): Park and Accept do nothing.
func NewRequest(typ wire.Type, body []byte) *Request {
	return &Request{Type: typ, Body: body}
}

// Park gives back the request's work slot, because the handler is about to
// wait, and changes what the request is charged from its body to hold
// bytes (plus HandlerCost) until the handler returns. It fails, matching
// errs.ErrBusy, if hold more bytes find no room. Park is idempotent.
func (r *Request) Park(hold int) error {
	if r.st == nil {
		r.Body = nil
		return nil
	}
	if !r.slot {
		return nil
	}
	want := HandlerCost + int64(hold)
	if d := want - r.charge; d > 0 {
		if !r.st.take(d) {
			return fmt.Errorf("%w: no room to hold %d bytes while waiting", errs.ErrBusy, hold)
		}
	} else {
		r.st.give(-d)
	}
	r.charge = want
	r.Body = nil
	r.slot = false
	<-r.st.s.slots
	r.st.s.parked.Add(1)
	return nil
}

// Gone returns a channel closed when the request's stream ends (never, for
// a request from NewRequest).
func (r *Request) Gone() <-chan struct{} {
	if r.st == nil {
		return nil
	}
	return r.st.gone
}

// Accept marks the request's stream as one that carried a genuine request:
// when streams must be evicted, such streams go last.
func (r *Request) Accept() {
	if r.st != nil {
		r.st.proven.Store(true)
	}
}

// ServerStats are a Server's counters.
type ServerStats struct {
	Streams        int    // streams open now
	StreamsTotal   uint64 // streams accepted since the start
	Evicted        uint64 // idle streams closed to make room for a new one
	StreamsRefused uint64 // new streams refused because every stream was busy
	Busy           uint64 // requests refused for lack of room or of a work slot
	Working        int    // requests holding a work slot now
	Parked         int64  // requests waiting without a work slot now
	BytesHeld      int64  // bytes charged now
}

// Server accepts streams on a listener and answers request frames, each in
// a goroutine of its own while it runs (one that has finished takes the next
// request that comes within a second), on the stream it came from.
type Server struct {
	cfg       ServerConfig
	ln        net.Listener
	handle    Handler
	log       *slog.Logger
	slots     chan struct{}
	inflight  budget
	streamMax int64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	streams map[*stream]struct{}
	closed  bool

	streamsTotal, evicted, refusedStreams, busy atomic.Uint64
	parked                                      atomic.Int64

	idle    chan job      // a request handed to a worker waiting for one
	idleN   atomic.Int32  // workers waiting for a request
	idleFor time.Duration // how long a worker waits for one
	workers atomic.Uint64 // workers started
}

// job is a dispatched request for a worker.
type job struct {
	st *stream
	id uint32
	r  *Request
}

// NewServer starts serving ln with h.
func NewServer(ln net.Listener, h Handler, cfg ServerConfig) *Server {
	return newServer(ln, h, cfg, workerIdle)
}

// newServer is NewServer with idleFor, how long a worker that has finished
// waits for the next request.
func newServer(ln net.Listener, h Handler, cfg ServerConfig, idleFor time.Duration) *Server {
	c := cfg
	floor := int64(c.MaxFrame) + HandlerCost
	c.MaxInflight = max(c.MaxInflight, floor)
	if c.MaxStreamBytes <= 0 {
		c.MaxStreamBytes = c.MaxInflight / 4
	}
	c.MaxStreamBytes = max(c.MaxStreamBytes, floor)
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.IOTimeout <= 0 {
		c.IOTimeout = DefaultIOTimeout
	}
	if c.MinReadRate <= 0 {
		c.MinReadRate = DefaultMinReadRate
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: c, ln: ln, handle: h, log: loggerOr(c.Logger),
		slots: make(chan struct{}, max(c.MaxConcurrent, 1)), streamMax: c.MaxStreamBytes,
		ctx: ctx, cancel: cancel, streams: map[*stream]struct{}{}, idle: make(chan job), idleFor: idleFor,
	}
	s.inflight.max = c.MaxInflight
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

// Stats returns the server's counters.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	n := len(s.streams)
	s.mu.Unlock()
	return ServerStats{
		Streams: n, StreamsTotal: s.streamsTotal.Load(), Evicted: s.evicted.Load(),
		StreamsRefused: s.refusedStreams.Load(), Busy: s.busy.Load(), Working: len(s.slots),
		Parked: s.parked.Load(), BytesHeld: s.inflight.used.Load(),
	}
}

func (s *Server) acceptLoop() {
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
		st := &stream{s: s, c: c, gone: make(chan struct{})}
		st.last.Store(time.Now().UnixNano())
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		if len(s.streams) >= s.cfg.MaxConns {
			v := s.victimLocked()
			if v == nil {
				s.mu.Unlock()
				s.refusedStreams.Add(1)
				s.log.Debug("every stream busy; refusing a new one", "max", s.cfg.MaxConns)
				c.SetWriteDeadline(time.Now().Add(time.Second))
				wire.WriteFrame(c, wire.Reject, 0, []byte{byte(wire.RejectBusy)})
				c.Close()
				continue
			}
			delete(s.streams, v)
			v.c.Close()
			s.evicted.Add(1)
		}
		s.streams[st] = struct{}{}
		s.streamsTotal.Add(1)
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(st)
	}
}

// victimLocked picks the stream to evict for a new one: among those with no
// request dispatched, one that never carried an accepted request if any,
// and the longest since its last complete frame. s.mu is held.
func (s *Server) victimLocked() *stream {
	var best *stream
	var bestProven bool
	var bestLast int64
	for st := range s.streams {
		if st.active.Load() > 0 {
			continue
		}
		proven, last := st.proven.Load(), st.last.Load()
		if best == nil || (bestProven && !proven) || (bestProven == proven && last < bestLast) {
			best, bestProven, bestLast = st, proven, last
		}
	}
	return best
}

// stream is one accepted stream.
type stream struct {
	s        *Server
	c        net.Conn
	wmu      sync.Mutex
	charged  atomic.Int64  // bytes charged to this stream's requests
	active   atomic.Int32  // requests dispatched and not finished
	proven   atomic.Bool   // carried an accepted request
	last     atomic.Int64  // unix nanoseconds of the last complete frame
	gone     chan struct{} // closed when the stream ends
	handlers sync.WaitGroup
}

// take charges n bytes to the stream and the server, if both have room.
func (st *stream) take(n int64) bool {
	if st.charged.Add(n) > st.s.streamMax {
		st.charged.Add(-n)
		return false
	}
	if !st.s.inflight.take(n) {
		st.charged.Add(-n)
		return false
	}
	return true
}

func (st *stream) give(n int64) {
	st.charged.Add(-n)
	st.s.inflight.give(n)
}

// write sends one frame, bounded by the I/O timeout. A failed write leaves
// the stream unusable, so it closes it.
func (st *stream) write(typ wire.Type, id uint32, parts ...[]byte) error {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	st.c.SetWriteDeadline(time.Now().Add(st.s.cfg.IOTimeout))
	err := wire.WriteFrame(st.c, typ, id, parts...)
	if err != nil {
		st.c.Close()
	}
	return err
}

func (s *Server) serve(st *stream) {
	defer s.wg.Done()
	defer func() {
		st.c.Close()
		close(st.gone)
		st.handlers.Wait()
		s.mu.Lock()
		delete(s.streams, st)
		s.mu.Unlock()
	}()
	r := &headerReader{c: st.c, after: s.cfg.IOTimeout}
	for {
		st.c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		r.started = false
		h, err := wire.ReadHeader(r, s.cfg.MaxFrame)
		var ne net.Error
		if err != nil && !r.started && st.active.Load() > 0 && errors.As(err, &ne) && ne.Timeout() {
			continue // idle, but answers are still due on this stream
		}
		if err != nil {
			if errors.Is(err, errs.ErrFrameTooLarge) {
				// The body was not read, so the stream cannot be
				// resynchronized: say why, then close it.
				s.refused(h.Type, err)
				st.write(wire.Reject, h.ID, []byte{byte(wire.RejectTooLarge)})
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && s.ctx.Err() == nil {
				s.log.Debug("closing stream", "err", err)
			}
			return
		}
		if h.Type == wire.Ping && h.Len > wire.MaxEcho {
			s.log.Debug("closing stream", "err", fmt.Errorf("%w: a ping of %d bytes", errs.ErrMalformed, h.Len))
			return
		}
		rate := time.Duration(h.Len) * time.Second / time.Duration(s.cfg.MinReadRate)
		st.c.SetReadDeadline(time.Now().Add(s.cfg.IOTimeout + rate))
		body, charge, err := st.readBody(int64(h.Len))
		if h.Type == wire.Ping && err == nil {
			// Answered at once, by this reader, with no work slot: the
			// bytes asked for, charged like any body, go straight back.
			back, perr := wire.PongBody(body)
			if perr == nil {
				perr = st.write(wire.Pong, h.ID, back)
			} else {
				s.log.Debug("closing stream", "err", perr)
			}
			st.give(charge)
			if perr != nil {
				return
			}
			st.last.Store(time.Now().UnixNano())
			continue
		}
		if errors.Is(err, errNoRoom) {
			if s.refuse(st, h, fmt.Errorf("%w: %w", errs.ErrBusy, err)) != nil {
				return
			}
			continue
		}
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Debug("closing stream", "err", err)
			}
			return
		}
		st.last.Store(time.Now().UnixNano())
		if s.dispatch(st, h, body, charge) != nil {
			return
		}
	}
}

// readBody reads a body of n bytes, charging for it as it arrives: nothing
// until its first byte, then firstChunk, then allocations that double as
// each fills (at most twice what arrived). A body that finds no room is read
// past without being kept: errNoRoom.
func (st *stream) readBody(n int64) ([]byte, int64, error) {
	if n == 0 {
		return []byte{}, 0, nil
	}
	var one [1]byte
	if _, err := io.ReadFull(st.c, one[:]); err != nil {
		return nil, 0, truncated(err)
	}
	size := min(n, firstChunk)
	if !st.take(size) {
		return nil, 0, st.discard(n - 1)
	}
	charged := size
	body := make([]byte, 1, size)
	body[0] = one[0]
	for int64(len(body)) < n {
		if len(body) == cap(body) {
			grow := min(n, 2*int64(cap(body)))
			if !st.take(grow - charged) {
				st.give(charged)
				return nil, 0, st.discard(n - int64(len(body)))
			}
			nb := make([]byte, len(body), grow)
			copy(nb, body)
			body, charged = nb, grow
		}
		m, err := io.ReadAtLeast(st.c, body[len(body):cap(body)], 1)
		body = body[:len(body)+m]
		if err != nil && int64(len(body)) < n {
			st.give(charged)
			return nil, 0, truncated(err)
		}
	}
	return body, charged, nil
}

// discard reads n bytes past without keeping them, so that the stream stays
// in step, and returns errNoRoom (or the read's error).
func (st *stream) discard(n int64) error {
	if _, err := io.CopyN(io.Discard, st.c, n); err != nil {
		return truncated(err)
	}
	return errNoRoom
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated frame body", errs.ErrMalformed)
	}
	return err
}

// refuse answers a request frame with reject 5 (busy) and reports it.
func (s *Server) refuse(st *stream, h wire.Header, why error) error {
	s.busy.Add(1)
	s.refused(h.Type, why)
	return st.write(wire.Reject, h.ID, []byte{byte(wire.RejectBusy)})
}

func (s *Server) refused(typ wire.Type, why error) {
	if s.cfg.Refused != nil {
		s.cfg.Refused(typ, why)
	}
}

// dispatch hands a request to its handler if a work slot and room for its
// state are free, and refuses it otherwise. It returns an error only if the
// stream is no longer usable.
func (s *Server) dispatch(st *stream, h wire.Header, body []byte, charge int64) error {
	select {
	case s.slots <- struct{}{}:
	default:
		st.give(charge)
		return s.refuse(st, h, fmt.Errorf("%w: all %d work slots in use", errs.ErrBusy, cap(s.slots)))
	}
	if !st.take(HandlerCost) {
		<-s.slots
		st.give(charge)
		return s.refuse(st, h, fmt.Errorf("%w: no room for the request's state", errs.ErrBusy))
	}
	r := &Request{Type: h.Type, Body: body, st: st, charge: charge + HandlerCost, slot: true}
	st.active.Add(1)
	st.handlers.Add(1)
	j := job{st: st, id: h.ID, r: r}
	select {
	case s.idle <- j:
	default:
		s.workers.Add(1)
		s.wg.Add(1)
		go s.work(j)
	}
	return nil
}

// work runs the request it was started for, then, for as long as one comes
// within workerIdle, the requests dispatch hands it: a goroutine whose stack
// the handlers have grown serves again instead of a new one growing its own.
// At most MaxConcurrent workers wait at once.
func (s *Server) work(j job) {
	defer s.wg.Done()
	var t *time.Timer
	for {
		j.st.run(j.id, j.r)
		if s.idleN.Add(1) > int32(cap(s.slots)) {
			s.idleN.Add(-1)
			return
		}
		if t == nil {
			t = time.NewTimer(s.idleFor)
		} else {
			t.Reset(s.idleFor)
		}
		select {
		case j = <-s.idle:
			s.idleN.Add(-1)
			t.Stop()
		case <-t.C:
			s.idleN.Add(-1)
			return
		case <-s.ctx.Done():
			s.idleN.Add(-1)
			t.Stop()
			return
		}
	}
}

func (st *stream) run(id uint32, r *Request) {
	defer st.handlers.Done()
	typ, parts := st.s.handle(st.s.ctx, r)
	if r.slot {
		<-st.s.slots
	} else {
		st.s.parked.Add(-1)
	}
	if typ != 0 {
		st.write(typ, id, parts...)
	}
	st.give(r.charge)
	st.last.Store(time.Now().UnixNano())
	st.active.Add(-1)
}

// headerReader moves the read deadline to now+after once the first byte of
// a frame has arrived, so a peer may idle between frames but not within one.
type headerReader struct {
	c       net.Conn
	after   time.Duration
	started bool
}

func (r *headerReader) Read(p []byte) (int, error) {
	n, err := r.c.Read(p)
	if n > 0 && !r.started {
		r.started = true
		r.c.SetReadDeadline(time.Now().Add(r.after))
	}
	return n, err
}

// Close stops accepting, cancels every handler's context, closes every
// stream and waits for every goroutine. It does not close what the listener
// stands for (an onion service).
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for st := range s.streams {
		st.c.Close()
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
