package ghostcomm

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/layer"
	"github.com/ghostcomm/ghostcomm/internal/wire"

	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"
)

// Defaults of ClientConfig.
const (
	DefaultClientTimeout = 60 * time.Second
	DefaultPadHops       = 8
)

// ClientConfig configures a Client. The zero value sends through every node
// of the cycle in payload order and waits at most a minute per message.
type ClientConfig struct {
	// Key is the client's OpenPGP private key (unlocked, curve25519), to
	// which the Primary encrypts payloads. Nil generates one per Client.
	Key *pgp.Key
	// Route picks the hops of a message: indexes into cycle.Nodes, first
	// hop first, each index at most once. Nil: every node in payload order.
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
	// MaxFrameSize bounds a frame's body. Zero: DefaultMaxFrameSize.
	MaxFrameSize int
	// IdleTimeout closes a stream to a first hop that carried nothing for
	// this long. Zero: DefaultIdleTimeout.
	IdleTimeout time.Duration
	// IOTimeout bounds writing one frame. Zero: DefaultIOTimeout.
	IOTimeout time.Duration
	// Clock is the time source. Nil: SystemClock.
	Clock Clock
	// Rand is the source of keys, nonces and padding. Nil: crypto/rand.
	Rand io.Reader
	// Logger receives debug records. Nil: silent.
	Logger *slog.Logger
	// Authorizer receives the invite's client authorization key, if it has
	// one, before the first fetch. Nil: the Dialer, if it implements
	// ClientAuthorizer; otherwise the key must already be known to tor.
	Authorizer ClientAuthorizer
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
	pool   *dialPool

	fetchMu    sync.Mutex // one fetch at a time; guards authorized
	authorized bool
	mu         sync.Mutex
	cycle      *Cycle
}

// Result is the answer to one message.
type Result struct {
	// Data is the route's final output, as the last hop sealed it.
	Data []byte
	// Verified reports that every hop's processor is deterministic and
	// Data equals the output the client computed for the route itself.
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
	if c.MaxFrameSize <= 0 {
		c.MaxFrameSize = DefaultMaxFrameSize
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.IOTimeout <= 0 {
		c.IOTimeout = DefaultIOTimeout
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
	return &Client{cfg: c, dialer: dialer, invite: invite, keys: keys,
		pool: newDialPool(dialer, c.MaxFrameSize, c.IOTimeout, c.IdleTimeout)}, nil
}

// Fingerprint returns the fingerprint of the client's key.
func (c *Client) Fingerprint() Fingerprint { return c.keys.Fpr }

func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.cfg.Timeout)
}

// Fetch asks the Primary for the current lock-cycle payload, checks it and
// caches it. Errors: ErrWrongPrimary, ErrBadSignature, ErrAuth and
// ErrMalformed for a payload that is not genuine; ErrStaleCycle for one that
// is not valid now; a dial error matching ErrOnionNotFound or
// ErrOnionUnreachable when the Primary cannot be reached.
func (c *Client) Fetch(ctx context.Context) (*Cycle, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	cy, err := c.fetchAndCache(ctx)
	if err != nil {
		return nil, err
	}
	return cy.clone(), nil
}

// authorize gives the invite's client authorization key to tor once.
// c.fetchMu is held.
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

func (c *Client) fetch(ctx context.Context) (*Cycle, error) {
	if err := c.authorize(ctx); err != nil {
		return nil, err
	}
	req := payloadRequest{client: c.keys.Raw}
	if _, err := io.ReadFull(c.cfg.Rand, req.nonce[:]); err != nil {
		return nil, fmt.Errorf("ghostcomm: reading randomness: %w", err)
	}
	conn, err := c.dialer.DialContext(ctx, "tcp", c.invite.Primary.Addr())
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: reaching the primary: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	if err := wire.WriteFrame(conn, wire.PayloadRequest, 1, req.marshal()); err != nil {
		return nil, fmt.Errorf("ghostcomm: sending payload request: %w", ctxErr(ctx, err))
	}
	h, body, err := wire.ReadFrame(conn, c.cfg.MaxFrameSize)
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: reading payload: %w", ctxErr(ctx, err))
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

// openPayload checks a sealed payload: it must open with the client's key,
// carry the pinned Primary's valid signature, answer this request and be
// addressed to this client, and its cycle must be valid now.
func (c *Client) openPayload(box []byte, nonce [nonceSize]byte) (*Cycle, error) {
	opened, err := layer.Open(c.keys.Dec, box)
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: payload: %w", err)
	}
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
	if !p.cycle.ValidAt(c.cfg.Clock.Now()) {
		return nil, fmt.Errorf("%w: cycle %s..%s", ErrStaleCycle, p.cycle.NotBefore.UTC(), p.cycle.NotAfter.UTC())
	}
	return &p.cycle, nil
}

// currentCycle returns the cached cycle, fetching a new one when there is
// none or it ends within RefreshBefore.
func (c *Client) currentCycle(ctx context.Context) (*Cycle, error) {
	if cy := c.cached(); cy != nil {
		return cy, nil
	}
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
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

// fetchAndCache fetches a payload and caches its cycle. c.fetchMu is held.
func (c *Client) fetchAndCache(ctx context.Context) (*Cycle, error) {
	cy, err := c.fetch(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.cycle = cy
	c.mu.Unlock()
	return cy, nil
}

// Send sends data through a route of the current lock-cycle (fetching the
// payload first if needed) and returns the last hop's output.
//
// A failure attributed to a hop is a *HopError whose Err matches
// ErrHopUnreachable, ErrHopTimeout, ErrReplay, ErrStaleCycle, ErrProcessing,
// ErrBusy, ErrAuth or ErrRejected. When every hop's processor is
// deterministic the client checks the output; a mismatch returns the Result
// together with an error matching ErrVerify.
func (c *Client) Send(ctx context.Context, data []byte) (*Result, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	cy, err := c.currentCycle(ctx)
	if err != nil {
		return nil, err
	}
	res, err := c.sendVia(ctx, cy, data)
	if errors.Is(err, ErrStaleCycle) || errors.Is(err, ErrHopUnreachable) {
		// The cycle may have been replaced or ended under us (a Primary
		// that restarted, a clock that drifted): forget it, so that the
		// next Send fetches the current one.
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
		r = make([]int, len(cy.Nodes))
		for i := range r {
			r[i] = i
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

// prepared is a message built for a route and not yet sent.
type prepared struct {
	route []NodeInfo
	onion *layer.Onion
	data  []byte // the data box for hop 1
}

// prepare builds a message's layers for a route of cycle cy.
func (c *Client) prepare(cy *Cycle, data []byte) (*prepared, error) {
	route, err := c.route(cy)
	if err != nil {
		return nil, err
	}
	hops := make([]*layer.PublicKey, len(route))
	next := make([]byte, len(route)-1)
	pm := &prepared{route: make([]NodeInfo, len(route))}
	for i, idx := range route {
		hops[i] = cy.Nodes[idx].pub
		pm.route[i] = cy.Nodes[idx]
		if i > 0 {
			next[i-1] = byte(idx)
		}
	}
	pad := 0
	if extra := c.cfg.PadHops - len(route); extra > 0 {
		n, err := rand.Int(c.cfg.Rand, big.NewInt(int64(extra*LayerOverhead+1)))
		if err != nil {
			return nil, fmt.Errorf("ghostcomm: reading randomness: %w", err)
		}
		pad = int(n.Int64())
	}
	ts := cy.NotBefore.Unix()
	if pm.onion, err = layer.Build(hops, next, ts, pad, c.cfg.Rand); err != nil {
		return nil, err
	}
	k, err := layer.NewKey(c.cfg.Rand)
	if err != nil {
		return nil, err
	}
	pm.data, err = layer.Seal(make([]byte, 0, len(data)+2*LayerOverhead), hops[0].Enc, &k, ts, data, c.cfg.Rand)
	if err != nil {
		return nil, err
	}
	return pm, nil
}

// body returns the message frame's body, with a budget of nine tenths of
// the time left before ctx's deadline, so that a failure further on the
// route is reported before the client gives up.
func (pm *prepared) body(ctx context.Context, timeout time.Duration) [][]byte {
	budget := timeout
	if d, ok := ctx.Deadline(); ok {
		budget = time.Until(d)
	}
	m := &wire.Msg{BudgetMS: uint32(max(budget*9/10, 0) / time.Millisecond), Layer: pm.onion.Layer, Data: pm.data}
	return m.Parts()
}

func (c *Client) sendVia(ctx context.Context, cy *Cycle, data []byte) (*Result, error) {
	pm, err := c.prepare(cy, data)
	if err != nil {
		return nil, err
	}
	res := &Result{Cycle: cy.ID, Route: pm.route}
	first := pm.route[0].Onion
	start := time.Now()
	h, body, err := c.pool.roundTrip(ctx, first.Addr(), wire.Message, pm.body(ctx, c.cfg.Timeout))
	res.RoundTrip = time.Since(start)
	if err != nil {
		return nil, c.transportError(ctx, first, err)
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
func (c *Client) transportError(ctx context.Context, first Onion, err error) error {
	switch {
	case ctx.Err() != nil:
		return &HopError{Hop: 1, Onion: first.Addr(), Err: fmt.Errorf("%w: no answer from the route: %v", ErrHopTimeout, ctx.Err())}
	case errors.Is(err, ErrClosed):
		return err
	}
	return &HopError{Hop: 1, Onion: first.Addr(), Err: fmt.Errorf("%w: %v", ErrHopUnreachable, err)}
}

// openReply opens the answer: the last hop's result under the reply key, or
// a hop's failure report under that hop's error key.
func (c *Client) openReply(o *layer.Onion, route []NodeInfo, tok []byte) ([]byte, error) {
	n := len(o.Keys)
	rk := o.Keys[n-1].Derive(layer.PurposeReply)
	if out, _, err := layer.FernetOpen(&rk, tok); err == nil {
		return out, nil
	}
	for i := n - 1; i >= 0; i-- {
		ek := o.Keys[i].Derive(layer.PurposeError)
		msg, _, err := layer.FernetOpen(&ek, tok)
		if err != nil {
			continue
		}
		return nil, reportError(i, route, msg)
	}
	return nil, fmt.Errorf("%w: the answer opens with none of this message's keys", ErrAuth)
}

// reportError turns hop i's (0-based) failure report into a *HopError about
// the hop it concerns.
func reportError(i int, route []NodeInfo, msg []byte) error {
	hop := func(j int, err error) error {
		addr := ""
		if j < len(route) {
			addr = route[j].Onion.Addr()
		}
		return &HopError{Hop: j + 1, Onion: addr, Err: err}
	}
	if len(msg) != 2 {
		return hop(i, fmt.Errorf("%w: failure report of %d bytes", ErrMalformed, len(msg)))
	}
	switch wire.ReportCode(msg[0]) {
	case wire.ReportNextNotFound:
		return hop(i+1, fmt.Errorf("%w: %w", ErrHopUnreachable, ErrOnionNotFound))
	case wire.ReportNextUnreached:
		return hop(i+1, fmt.Errorf("%w: %w", ErrHopUnreachable, ErrOnionUnreachable))
	case wire.ReportNextTimeout:
		return hop(i+1, ErrHopTimeout)
	case wire.ReportNextRejected:
		return hop(i+1, rejectErr(wire.RejectCode(msg[1])))
	case wire.ReportNextBrokeReply:
		return hop(i+1, fmt.Errorf("%w: invalid answer", ErrMalformed))
	case wire.ReportBadData:
		return hop(i, fmt.Errorf("%w: the data from the previous hop did not open", ErrAuth))
	case wire.ReportProcessing:
		return hop(i, ErrProcessing)
	case wire.ReportBadRoute:
		return hop(i, fmt.Errorf("%w: unknown next hop", ErrMalformed))
	}
	return hop(i, fmt.Errorf("%w: report code %d", ErrRejected, msg[0]))
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

// Close ends the client's streams. It is idempotent.
func (c *Client) Close() error {
	c.pool.close()
	return nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}
