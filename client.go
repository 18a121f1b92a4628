package ghostcomm

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/errs"
	"github.com/ghostcomm/ghostcomm/internal/layer"
	"github.com/ghostcomm/ghostcomm/internal/transport"
	"github.com/ghostcomm/ghostcomm/internal/wire"

	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"
)

// Defaults of ClientConfig.
const (
	DefaultClientTimeout = 60 * time.Second
	DefaultPadHops       = 8
)

// ClientConfig configures a Client. The zero value sends through every node
// of the cycle in a random order and waits at most a minute per message.
type ClientConfig struct {
	// Key is the client's OpenPGP private key (unlocked, curve25519), to
	// which the Primary encrypts payloads. The Client works on a copy,
	// which Close wipes. Nil generates one per Client.
	Key *pgp.Key
	// Route picks the hops of a message: indexes into cycle.Nodes, first
	// hop first, each index at most once. Nil: every node of the cycle, in
	// a fresh uniformly random order per message drawn from Rand, so that
	// a hop cannot tell its position from its place in the payload; of
	// nodes that share a non-empty NodeInfo.Operator, only the first in
	// that order is kept, so that no operator serves two hops. In a sealed
	// cycle the default route keeps the first MaxSealedHops of that order,
	// and a longer route of this func is ErrBadProtocol.
	Route func(cycle *Cycle) []int
	// PadHops hides route length: the innermost layer is padded by a
	// random amount up to what PadHops-n more hops would add. Zero:
	// DefaultPadHops. Negative: no padding.
	PadHops int
	// Timeout bounds Fetch and Send when their ctx has no deadline. Zero:
	// DefaultClientTimeout.
	Timeout time.Duration
	// RefreshBefore: Send fetches a new payload when the cached cycle ends
	// within this long. Zero: 5 seconds.
	RefreshBefore time.Duration
	// PrefetchBefore: this long before the cached cycle ends (at most an
	// eighth of the cycle's length before), the client fetches the next
	// cycle in the background and opens streams to its nodes (when it has
	// at most WarmNodes), so that the first messages of the next cycle wait
	// for neither. Zero: 30 seconds. Negative: no prefetch; Send fetches
	// when it must.
	PrefetchBefore time.Duration
	// MaxFrameSize bounds a frame's body. Zero: DefaultMaxFrameSize.
	MaxFrameSize int
	// IdleTimeout closes a stream to a first hop that carried nothing for
	// this long. Zero: DefaultIdleTimeout.
	IdleTimeout time.Duration
	// IOTimeout bounds writing one frame, and how long the stream to a
	// first hop may leave a ping unanswered while messages wait on it.
	// Zero: DefaultIOTimeout.
	IOTimeout time.Duration
	// DialTimeout bounds one dial of a first hop. Zero: DefaultDialTimeout.
	DialTimeout time.Duration
	// Clock is the time source. Nil: SystemClock.
	Clock Clock
	// Rand is the source of keys, IVs, nonces and padding. Nil: crypto/rand.
	Rand io.Reader
	// Logger receives debug records. Nil: silent.
	Logger *slog.Logger
	// Authorizer receives the invite's client authorization key, if it has
	// one, before the first fetch. Nil: the Dialer, if it implements
	// ClientAuthorizer; otherwise the key must already be known to tor.
	Authorizer ClientAuthorizer
	// MaxInFlight bounds how many Sends are under way at once. A Send over
	// the bound waits for its turn, in the order the Sends were called, for
	// as long as its ctx (or Timeout) allows; the wait is part of its
	// Timeout. With many concurrent senders on busy cores, a bound of a
	// few messages per core keeps later messages from overtaking earlier
	// ones, which shortens the slowest round trips (docs/PERFORMANCE.md
	// measures it). Over Tor, where a round trip is mostly time on the
	// network, it caps the Client at MaxInFlight messages a round trip.
	// A Send keeps its turn until it returns, so Sends held up by a slow
	// hop keep theirs for as long as their own deadlines allow, and the
	// others wait behind them. Zero or negative: no bound.
	MaxInFlight int
}

// Client sends messages through a network: it fetches the lock-cycle payload
// from the Primary, builds one layer per hop, sends the message to the first
// hop and reads the answer, which only it can open.
//
// A Client is safe for concurrent use. Close ends its streams.
type Client struct {
	cfg    ClientConfig
	dialer Dialer
	invite Invite
	keys   *layer.KeyPair
	pool   *transport.Pool

	closed   atomic.Bool
	closing  context.Context // cancelled by Close
	closeNow context.CancelFunc

	fetchSem   chan struct{} // holds a token while a fetch is under way (one at a time); guards authorized
	inFlight   chan struct{} // a token per Send under way, MaxInFlight at most; nil: no bound
	waiting    atomic.Int32  // Sends waiting for a token
	authorized bool
	mu         sync.Mutex
	cycle      *Cycle
	prefetch   func() bool // stops the prefetch timer of the cached cycle
	bg         sync.WaitGroup

	keyMu    sync.RWMutex // read-held while the private key is used; Close wipes it
	keyWiped bool
}

// Result is the answer to one message.
type Result struct {
	// Data is the route's final output, as the last hop sealed it.
	Data []byte
	// Verified reports that every hop's processor is deterministic and
	// Data equals the output the client computed for the route itself (in
	// sealed mode's relay form, where only the exit processes the data:
	// for the exit).
	Verified bool
	// Cycle is the id of the lock-cycle the message went through.
	Cycle [16]byte
	// Route lists the hops, first hop first.
	Route []NodeInfo
	// RoundTrip is the time from sending to the first hop until the
	// answer arrived.
	RoundTrip time.Duration
}

// NewClient makes a client of the network an invite describes. It does not
// connect until Fetch or Send.
func NewClient(dialer Dialer, invite Invite, cfg ClientConfig) (*Client, error) {
	if dialer == nil {
		return nil, errors.New("ghostcomm: NewClient needs a Dialer")
	}
	if invite.Primary.ServiceID == "" || invite.Primary.Port == 0 {
		return nil, fmt.Errorf("%w: no Primary address", ErrBadInvite)
	}
	c := cfg
	if c.PadHops == 0 {
		c.PadHops = DefaultPadHops
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultClientTimeout
	}
	if c.RefreshBefore <= 0 {
		c.RefreshBefore = 5 * time.Second
	}
	if c.PrefetchBefore == 0 {
		c.PrefetchBefore = 30 * time.Second
	}
	if c.MaxFrameSize <= 0 {
		c.MaxFrameSize = DefaultMaxFrameSize
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.IOTimeout <= 0 {
		c.IOTimeout = DefaultIOTimeout
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Clock == nil {
		c.Clock = SystemClock
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	c.Logger = loggerOr(c.Logger)
	keys, err := keyPairOr(c.Key, "ghostcomm client")
	if err != nil {
		return nil, err
	}
	cl := &Client{cfg: c, dialer: dialer, invite: invite, keys: keys, fetchSem: make(chan struct{}, 1),
		pool: newPool(dialer, c.MaxFrameSize, c.IOTimeout, c.IdleTimeout, c.DialTimeout, c.Logger)}
	if c.MaxInFlight > 0 {
		cl.inFlight = make(chan struct{}, c.MaxInFlight)
	}
	cl.closing, cl.closeNow = context.WithCancel(context.Background())
	return cl, nil
}

// admit waits for one of MaxInFlight turns, which leave gives back.
// Waiting Sends are admitted in the order they asked: a channel hands its
// freed room to the sender that has waited longest, and a full channel
// stays full while any waits, so a newcomer cannot take it first.
func (c *Client) admit(ctx context.Context) error {
	if c.inFlight == nil {
		return nil
	}
	select {
	case c.inFlight <- struct{}{}:
		return nil
	default:
	}
	c.waiting.Add(1)
	defer c.waiting.Add(-1)
	select {
	case c.inFlight <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ghostcomm: send: waiting for one of MaxInFlight (%d) sends under way to finish: %w", cap(c.inFlight), ctx.Err())
	}
}

// leave gives back the turn admit took.
func (c *Client) leave() {
	if c.inFlight != nil {
		<-c.inFlight
	}
}

// Fingerprint returns the fingerprint of the client's key.
func (c *Client) Fingerprint() Fingerprint { return c.keys.Fpr }

// opContext bounds one Fetch or Send: by ctx, by Timeout when ctx has no
// deadline, and by Close.
func (c *Client) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	var cancel context.CancelFunc
	if _, ok := ctx.Deadline(); ok {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithTimeout(ctx, c.cfg.Timeout)
	}
	stop := context.AfterFunc(c.closing, cancel)
	return ctx, func() { stop(); cancel() }
}

// closedErr returns ErrClosed, wrapped, once Close has been called.
func (c *Client) closedErr(op string) error {
	if c.closed.Load() {
		return fmt.Errorf("ghostcomm: %s: %w", op, ErrClosed)
	}
	return nil
}

// Fetch asks the Primary for the current lock-cycle payload, checks it and
// caches it. Errors: ErrWrongPrimary, ErrBadSignature, ErrAuth and
// ErrMalformed for a payload that is not genuine; ErrStaleCycle for one that
// is not valid now (a cycle that has ended, handed out by a Primary whose
// next cycle is late, is fetched again after a pause, up to 2 s apart, for
// as long as ctx leaves time for another try, and Send does the same); a dial error matching ErrOnionNotFound or
// ErrOnionUnreachable when the Primary cannot be reached; ErrBusy when the
// Primary's queue of payload requests is full (PrimaryConfig.PayloadRate);
// ctx's own error when it ends first, together with ErrOnionUnreachable if
// the Primary had not been reached by then (also when ctx ends while another
// caller's fetch is under way: a caller waits for it only until its own
// deadline); ErrClosed after Close. ActionFor says
// what to do.
func (c *Client) Fetch(ctx context.Context) (*Cycle, error) {
	if err := c.closedErr("fetch"); err != nil {
		return nil, err
	}
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	if err := c.lockFetch(ctx); err != nil {
		return nil, err
	}
	defer c.unlockFetch()
	cy, err := c.fetchAndCache(ctx)
	if err != nil {
		if cerr := c.closedErr("fetch"); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	return cy.clone(), nil
}

// authorize gives the invite's client authorization key to tor once.
// The fetch lock is held.
func (c *Client) authorize(ctx context.Context) error {
	if c.authorized || c.invite.ClientAuthKey == nil {
		return nil
	}
	a := c.cfg.Authorizer
	if a == nil {
		a, _ = c.dialer.(ClientAuthorizer)
	}
	if a != nil {
		if err := a.AddClientAuth(ctx, c.invite.Primary.ServiceID, *c.invite.ClientAuthKey); err != nil {
			return fmt.Errorf("ghostcomm: adding the invite's client authorization: %w", err)
		}
	}
	c.authorized = true
	return nil
}

// fetch fetches and opens a payload. A stream to the Primary that breaks
// before the answer (tor closed the circuit, the Primary's end went away)
// is tried once more on a fresh one, as a message is, if ctx allows; if
// that breaks too the error matches ErrOnionUnreachable (ActionRetry).
func (c *Client) fetch(ctx context.Context) (*Cycle, error) {
	cy, err := c.fetchOnce(ctx)
	if err != nil && errors.Is(err, errPrimaryStreamBroke) && errs.CtxEnded(ctx) == nil {
		c.cfg.Logger.Debug("the stream to the primary broke; fetching again on a fresh one", "err", err)
		cy, err = c.fetchOnce(ctx)
	}
	return cy, err
}

// errPrimaryStreamBroke marks a fetch whose stream broke before the answer.
var errPrimaryStreamBroke = fmt.Errorf("%w: the stream to the primary broke before its answer", ErrOnionUnreachable)

// streamBroke is err, the failure of a write or read on the stream to the
// Primary: the caller's own cancel or deadline if that is what ended it, a
// malformed or oversized frame as it is, and otherwise errPrimaryStreamBroke.
func streamBroke(ctx context.Context, err error) error {
	if cerr := errs.CtxEnded(ctx); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	if errors.Is(err, ErrMalformed) || errors.Is(err, ErrFrameTooLarge) {
		return err
	}
	return fmt.Errorf("%w: %w", errPrimaryStreamBroke, err)
}

func (c *Client) fetchOnce(ctx context.Context) (*Cycle, error) {
	if err := c.authorize(ctx); err != nil {
		return nil, err
	}
	req := payloadRequest{client: c.keys.Raw}
	if _, err := io.ReadFull(c.cfg.Rand, req.nonce[:]); err != nil {
		return nil, fmt.Errorf("ghostcomm: reading randomness: %w", err)
	}
	conn, err := c.dialPrimary(ctx)
	if err != nil {
		if !errors.Is(err, ErrOnionUnreachable) && !errors.Is(err, ErrOnionNotFound) && errors.Is(err, context.DeadlineExceeded) {
			// A dial still under way at the deadline: name the cause.
			return nil, fmt.Errorf("ghostcomm: reaching the primary: %w: no connection before the deadline: %w", ErrOnionUnreachable, err)
		}
		return nil, fmt.Errorf("ghostcomm: reaching the primary: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	if err := wire.WriteFrame(conn, wire.PayloadRequest, 1, req.marshal()); err != nil {
		return nil, fmt.Errorf("ghostcomm: sending payload request: %w", streamBroke(ctx, err))
	}
	h, body, err := wire.ReadFrame(conn, c.cfg.MaxFrameSize)
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: reading payload: %w", streamBroke(ctx, err))
	}
	switch h.Type {
	case wire.PayloadResponse:
	case wire.Reject:
		code := rejectCodeOf(body)
		return nil, fmt.Errorf("ghostcomm: primary refused the request: %w", rejectErr(code))
	default:
		return nil, fmt.Errorf("%w: primary answered with %v", ErrMalformed, h.Type)
	}
	return c.openPayload(body, req.nonce)
}

// primaryRetries are the pauses before each new try of a dial to the
// Primary that failed to reach its onion (not one whose descriptor is
// missing): over Tor, such a failure is often a circuit's, or a descriptor
// that names a Primary's previous instance, and passes within seconds.
var primaryRetries = []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}

// dialPrimary dials the Primary, trying again after primaryRetries while
// the failure is worth it and ctx allows.
func (c *Client) dialPrimary(ctx context.Context) (net.Conn, error) {
	for i := 0; ; i++ {
		conn, err := c.dialer.DialContext(ctx, "tcp", c.invite.Primary.Addr())
		if err == nil || i == len(primaryRetries) || !retryDial(err) {
			return conn, err
		}
		if cerr := errs.CtxEnded(ctx); cerr != nil {
			return nil, fmt.Errorf("%w (last failure: %w)", cerr, err)
		}
		c.cfg.Logger.Debug("primary unreachable; trying again", "err", err, "in", primaryRetries[i])
		t := time.NewTimer(primaryRetries[i])
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (last failure: %w)", ctx.Err(), err)
		}
	}
}

// openPayload checks a sealed payload: it must open with the client's key,
// carry the pinned Primary's valid signature, answer this request and be
// addressed to this client, and its cycle must be valid now.
func (c *Client) openPayload(box []byte, nonce [nonceSize]byte) (*Cycle, error) {
	c.keyMu.RLock()
	if c.keyWiped {
		c.keyMu.RUnlock()
		return nil, fmt.Errorf("ghostcomm: payload: %w", ErrClosed)
	}
	opened, err := layer.Open(c.keys.Dec, box)
	c.keyMu.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: payload: %w", err)
	}
	opened.Key.Wipe()
	signed, ts := opened.Msg, opened.TS
	p, _, err := openSignedPayload(signed, c.invite.Fingerprint)
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: payload: %w", err)
	}
	if p.nonce != nonce {
		return nil, fmt.Errorf("%w: payload answers another request", ErrReplay)
	}
	if p.client != Fingerprint(c.keys.Fpr) {
		return nil, fmt.Errorf("%w: payload made for another client", ErrAuth)
	}
	if ts != p.cycle.NotBefore.Unix() {
		return nil, fmt.Errorf("%w: payload timestamp does not match its cycle", ErrMalformed)
	}
	if now := c.cfg.Clock.Now(); !p.cycle.ValidAt(now) {
		if !now.Before(p.cycle.NotAfter) {
			return nil, fmt.Errorf("%w: %w: cycle %s..%s", ErrStaleCycle, errPrimaryBehind, p.cycle.NotBefore.UTC(), p.cycle.NotAfter.UTC())
		}
		return nil, fmt.Errorf("%w: cycle %s..%s", ErrStaleCycle, p.cycle.NotBefore.UTC(), p.cycle.NotAfter.UTC())
	}
	return &p.cycle, nil
}

// errPrimaryBehind: the Primary handed out a cycle that has ended; its
// successor is not ready yet (its onions are still being published).
var errPrimaryBehind = errors.New("the primary has not replaced it yet")

// behindRetries are the pauses before each new fetch while the Primary hands
// out a cycle that has ended; the last one repeats.
var behindRetries = []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second}

// lockFetch takes the fetch lock: one fetch of the cycle at a time. A caller
// whose ctx ends while another caller's fetch is under way gives up then,
// with an error matching ErrOnionUnreachable (that fetch has not reached the
// Primary in time) and ctx's error: a Send does not outlive its deadline
// waiting for another's fetch.
func (c *Client) lockFetch(ctx context.Context) error {
	select {
	case c.fetchSem <- struct{}{}:
		return nil
	default:
	}
	select {
	case c.fetchSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ghostcomm: reaching the primary: %w: a fetch of the cycle under way did not finish in time: %w", ErrOnionUnreachable, ctx.Err())
	}
}

func (c *Client) unlockFetch() { <-c.fetchSem }

// currentCycle returns the cached cycle, fetching a new one when there is
// none or it ends within RefreshBefore.
func (c *Client) currentCycle(ctx context.Context) (*Cycle, error) {
	if cy := c.cached(); cy != nil {
		return cy, nil
	}
	if err := c.lockFetch(ctx); err != nil {
		return nil, err
	}
	defer c.unlockFetch()
	if cy := c.cached(); cy != nil {
		return cy, nil // another goroutine fetched it meanwhile
	}
	return c.fetchAndCache(ctx)
}

// cached returns the cached cycle if it is still good for a new message.
func (c *Client) cached() *Cycle {
	now := c.cfg.Clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if cy := c.cycle; cy != nil && cy.ValidAt(now) && now.Add(c.cfg.RefreshBefore).Before(cy.NotAfter) {
		return cy
	}
	return nil
}

// fetchAndCache fetches a payload and caches its cycle. The fetch lock is
// held.
//
// A Primary whose next cycle is late (its onions take longer to publish
// than PublishAhead, over a tor that is slow or faulty) hands out the cycle
// that has just ended. Rather than fail at once with ErrStaleCycle, and have
// every caller's refetch fail the same way, fetchAndCache fetches again
// after a pause (behindRetries) for as long as ctx leaves time for another
// try; then it returns the ErrStaleCycle error, before ctx's deadline.
func (c *Client) fetchAndCache(ctx context.Context) (*Cycle, error) {
	for i := 0; ; i++ {
		cy, err := c.fetch(ctx)
		if err == nil {
			c.cache(cy)
			return cy, nil
		}
		if !errors.Is(err, errPrimaryBehind) {
			return nil, err
		}
		pause := behindRetries[min(i, len(behindRetries)-1)]
		if d, ok := ctx.Deadline(); ok && time.Until(d) < 2*pause {
			return nil, err
		}
		c.cfg.Logger.Debug("the primary hands out a cycle that has ended; fetching again", "in", pause, "err", err)
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
	}
}

// cache makes cy the cached cycle and arms its prefetch.
func (c *Client) cache(cy *Cycle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cycle = cy
	c.armPrefetchLocked(cy)
}

// armPrefetchLocked arms the background fetch of cy's successor: at
// PrefetchBefore (at most an eighth of cy's length) before cy ends. c.mu is
// held.
func (c *Client) armPrefetchLocked(cy *Cycle) {
	if c.prefetch != nil {
		c.prefetch()
		c.prefetch = nil
	}
	if c.cfg.PrefetchBefore < 0 || c.closed.Load() {
		return
	}
	lead := min(c.cfg.PrefetchBefore, cy.NotAfter.Sub(cy.NotBefore)/8)
	at := cy.NotAfter.Add(-lead)
	if !at.Before(cy.NotAfter.Add(-c.cfg.RefreshBefore)) {
		return // Send will fetch by itself
	}
	c.prefetch = c.cfg.Clock.AfterFunc(at.Sub(c.cfg.Clock.Now()), func() { c.prefetchNext(cy) })
}

// WarmNodes is the largest cycle to whose every node a client (after a
// prefetch) and each node of a new cycle (before the cycle is handed out)
// open streams ahead of the first message.
const WarmNodes = 16

// prefetchNext fetches the successor of cy in the background and opens
// streams to its nodes. If the Primary still hands out cy, it tries once
// more halfway to the point where Send would fetch.
func (c *Client) prefetchNext(cy *Cycle) {
	if !c.startBackground() {
		return
	}
	defer c.bg.Done()
	ctx, cancel := c.opContext(context.Background())
	defer cancel()
	if err := c.lockFetch(ctx); err != nil {
		return
	}
	c.mu.Lock()
	stale := c.cycle != cy
	c.mu.Unlock()
	if stale { // fetched meanwhile
		c.unlockFetch()
		return
	}
	next, err := c.fetch(ctx)
	if err != nil {
		c.unlockFetch()
		c.cfg.Logger.Debug("prefetch of the next cycle failed", "err", err)
		return
	}
	if next.ID == cy.ID {
		c.unlockFetch()
		until := cy.NotAfter.Add(-c.cfg.RefreshBefore).Sub(c.cfg.Clock.Now())
		if until > time.Second {
			c.mu.Lock()
			if c.cycle == cy && !c.closed.Load() {
				c.prefetch = c.cfg.Clock.AfterFunc(until/2, func() { c.prefetchNext(cy) })
			}
			c.mu.Unlock()
		}
		return
	}
	c.cache(next)
	c.unlockFetch()
	c.warm(ctx, next)
}

// warm opens streams to every node of cy, if it has at most WarmNodes.
func (c *Client) warm(ctx context.Context, cy *Cycle) {
	if len(cy.Nodes) > WarmNodes {
		return
	}
	var wg sync.WaitGroup
	for _, n := range cy.Nodes {
		wg.Go(func() {
			if err := c.pool.Warm(ctx, n.Onion.Addr()); err != nil {
				c.cfg.Logger.Debug("opening a stream ahead failed", "onion", n.Onion.Addr(), "err", err)
			}
		})
	}
	wg.Wait()
}

// startBackground registers a background task unless the client is closed.
func (c *Client) startBackground() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return false
	}
	c.bg.Add(1)
	return true
}

// Send sends data through a route of the current lock-cycle (fetching the
// payload first if needed) and returns the last hop's output.
//
// A failure attributed to a hop is a *HopError whose Err matches
// ErrHopUnreachable (with ErrOnionNotFound or ErrOnionUnreachable when the
// hop's onion could not be reached), ErrHopTimeout, ErrReplay,
// ErrStaleCycle, ErrProcessing, ErrBusy, ErrBudget, ErrAuth or ErrRejected.
// When the caller's ctx (or Timeout) ends first the error matches
// context.Canceled or context.DeadlineExceeded; a deadline met after the
// message left is also a *HopError naming hop 1 and matching
// ErrHopTimeout (one met while the Send waited for its turn under
// MaxInFlight names no hop). A message that cannot
// fit in a frame is ErrFrameTooLarge, before anything is sent. Every Send
// under way when Close is called, or started after, returns ErrClosed.
// When every hop's processor is deterministic the client checks the
// output; a mismatch returns the Result together with an error matching
// ErrVerify. ActionFor says whether to retry, refetch or give up; on
// ActionRefetch the client has already dropped its cycle.
//
// In a sealed cycle (Cycle.Protocol) the message travels as one packet of
// the smallest class that holds it; data larger than the cycle's largest
// class holds is ErrFrameTooLarge, a Route longer than MaxSealedHops is
// ErrBadProtocol, and a reply altered on its way back is ErrAuth naming no
// hop. docs/PROTOCOL.md, "Sealed mode in the network".
func (c *Client) Send(ctx context.Context, data []byte) (*Result, error) {
	if err := c.closedErr("send"); err != nil {
		return nil, err
	}
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	if err := c.admit(ctx); err != nil {
		if cerr := c.closedErr("send"); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	defer c.leave()
	cy, err := c.currentCycle(ctx)
	if err != nil {
		if cerr := c.closedErr("send"); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	res, err := c.sendVia(ctx, cy, data)
	if cerr := c.closedErr("send"); cerr != nil && err != nil {
		return nil, cerr
	}
	if ActionFor(err) == ActionRefetch {
		// The cycle may have been replaced or ended under us (a Primary
		// that restarted, a clock that drifted, a hop gone): forget it, so
		// that the next Send fetches the current one.
		c.mu.Lock()
		if c.cycle == cy {
			c.cycle = nil
		}
		c.mu.Unlock()
	}
	return res, err
}

func (c *Client) route(cy *Cycle) ([]int, error) {
	var r []int
	if c.cfg.Route != nil {
		r = c.cfg.Route(cy)
	} else {
		// A fresh, uniformly random order of all the nodes, so that no
		// node is always first or always last. The permutation comes from
		// a ChaCha8 stream keyed by 32 bytes of Rand per message;
		// math/rand/v2's Perm is unbiased.
		var seed [32]byte
		if _, err := io.ReadFull(c.cfg.Rand, seed[:]); err != nil {
			return nil, fmt.Errorf("ghostcomm: reading randomness: %w", err)
		}
		r = mrand.New(mrand.NewChaCha8(seed)).Perm(len(cy.Nodes))
		clear(seed[:])
		r = onePerOperator(r, cy.Nodes)
		if cy.Protocol == ProtocolSealed && len(r) > MaxSealedHops {
			r = r[:MaxSealedHops]
		}
	}
	if len(r) == 0 {
		return nil, errors.New("ghostcomm: empty route")
	}
	seen := make(map[int]bool, len(r))
	for _, i := range r {
		if i < 0 || i >= len(cy.Nodes) || seen[i] {
			return nil, fmt.Errorf("ghostcomm: bad route %v for %d nodes", r, len(cy.Nodes))
		}
		seen[i] = true
	}
	return r, nil
}

// onePerOperator keeps, of a random order r, the first node of each
// non-empty operator label and every node without one, in r's order: a
// uniformly random node of each operator, so that no operator sees two hops
// of a message. A cycle without shared labels keeps every node.
func onePerOperator(r []int, nodes []NodeInfo) []int {
	seen := make(map[string]bool, len(r))
	out := r[:0]
	for _, i := range r {
		op := nodes[i].Operator
		if op != "" {
			if seen[op] {
				continue
			}
			seen[op] = true
		}
		out = append(out, i)
	}
	return out
}

func (c *Client) sendVia(ctx context.Context, cy *Cycle, data []byte) (*Result, error) {
	if cy.Protocol == ProtocolSealed {
		return c.sendSealed(ctx, cy, data)
	}
	pm, err := c.prepare(cy, data)
	if err != nil {
		return nil, err
	}
	defer pm.onion.Wipe()
	res := &Result{Cycle: cy.ID, Route: pm.route}
	first := pm.route[0].Onion
	budget, err := firstBudget(time.Until(deadlineOf(ctx)), c.cfg.Rand)
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: reading randomness: %w", err)
	}
	if budget < MinBudget {
		return nil, fmt.Errorf("%w: %v left before the deadline", ErrBudget, time.Until(deadlineOf(ctx)))
	}
	parts := pm.body(budget)
	if size := partsLen(parts); size > c.cfg.MaxFrameSize {
		return nil, fmt.Errorf("ghostcomm: %w: a message of %d bytes makes a frame of %d bytes, limit %d",
			ErrFrameTooLarge, len(data), size, c.cfg.MaxFrameSize)
	}
	start := time.Now()
	h, body, err := c.pool.RoundTrip(ctx, first.Addr(), wire.Message, parts)
	res.RoundTrip = time.Since(start)
	if err != nil {
		return nil, c.transportError(first, err)
	}
	out, err := c.answer(pm, h, body)
	if err != nil {
		return nil, err
	}
	res.Data = out
	if ok, err := verifyResult(res.Route, data, out); ok {
		res.Verified = true
	} else if err != nil {
		return res, err
	}
	return res, nil
}

// answer interprets the first hop's answer frame.
func (c *Client) answer(pm *prepared, h wire.Header, body []byte) ([]byte, error) {
	first := pm.route[0].Onion
	switch h.Type {
	case wire.Reply:
		return c.openReply(pm.onion, pm.route, body)
	case wire.Reject:
		code := rejectCodeOf(body)
		return nil, &HopError{Hop: 1, Onion: first.Addr(), Err: rejectErr(code)}
	}
	return nil, &HopError{Hop: 1, Onion: first.Addr(), Err: fmt.Errorf("%w: answered with %v", ErrMalformed, h.Type)}
}

// transportError attributes a failure to reach or hear from the first hop.
func (c *Client) transportError(first Onion, err error) error {
	hop := func(err error) error { return &HopError{Hop: 1, Onion: first.Addr(), Err: err} }
	switch {
	case c.closed.Load() || errors.Is(err, ErrClosed):
		return fmt.Errorf("ghostcomm: send: %w", ErrClosed)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("ghostcomm: send: %w", err)
	case errors.Is(err, context.DeadlineExceeded):
		return hop(fmt.Errorf("%w: no answer from the route before the deadline: %w", ErrHopTimeout, err))
	case errors.Is(err, ErrFrameTooLarge):
		return fmt.Errorf("ghostcomm: send: %w", err)
	case errors.Is(err, ErrBusy):
		return hop(err)
	}
	return hop(fmt.Errorf("%w: %w", ErrHopUnreachable, err))
}

func partsLen(parts [][]byte) int {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	return n
}

// verifyResult checks out against the route's output computed locally, when
// every processor is deterministic. It reports whether out was verified; an
// error means the output differs.
func verifyResult(route []NodeInfo, data, out []byte) (bool, error) {
	want, ok := Expected(route, data)
	if !ok {
		return false, nil
	}
	if !bytes.Equal(want, out) {
		return false, fmt.Errorf("%w: got %d bytes, expected %d", ErrVerify, len(out), len(want))
	}
	return true, nil
}

// Expected computes what a route of deterministic processors makes of data.
// ok is false when a processor is not registered or not deterministic.
func Expected(route []NodeInfo, data []byte) (out []byte, ok bool) {
	cur := data
	for i := range route {
		if !isDeterministic(route[i].Processor) {
			return nil, false
		}
		p, err := NewProcessor(route[i].Processor)
		if err != nil {
			return nil, false
		}
		if cur, err = p.Process(cur); err != nil {
			return nil, false
		}
	}
	return cur, true
}

// Close ends the client's streams and wipes its private key: every Fetch
// and Send under way returns ErrClosed, and so does every later one. It is
// idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed.Store(true)
	if c.prefetch != nil {
		c.prefetch()
	}
	c.mu.Unlock()
	c.closeNow()
	c.bg.Wait()
	c.pool.Close()
	c.keyMu.Lock() // waits for a payload being opened
	c.keys.Wipe()
	c.keyWiped = true
	c.keyMu.Unlock()
	return nil
}
