package ghostcomm

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/layer"
	"github.com/ghostcomm/ghostcomm/internal/transport"
	"github.com/ghostcomm/ghostcomm/internal/wire"

	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"
)

// Defaults of PrimaryConfig.
const (
	DefaultNodes  = 3
	DefaultPeriod = 10 * time.Minute
	DefaultGrace  = 2 * time.Minute
)

// PrimaryConfig configures a Primary. The zero value runs three nodes with
// the seed's hash processing, a new lock-cycle every ten minutes and a
// two-minute grace window.
type PrimaryConfig struct {
	// Nodes is the number of nodes per lock-cycle that the Primary runs
	// itself (local nodes), 1..255. Zero: DefaultNodes; but when Sources
	// is set, zero means none and the nodes all come from Sources.
	Nodes int
	// Sources are where the cycle's other nodes come from (RemoteSource,
	// or a program's own NodeSource), asked in order after the local
	// nodes are created. The cycle's list is the local nodes, then each
	// source's, at most 255 in all. With Sources set, NewPrimary creates
	// its own onion before the first cycle, so that remote nodes can
	// reach it; it returns once the first cycle has formed.
	Sources []NodeSource
	// MinNodes is the fewest nodes a new cycle may have. A rotation that
	// gathers fewer fails with ErrTooFewNodes (logged and counted in
	// PrimaryStats.CyclesFailed): the current cycle stays handed out and
	// the rotation is tried again. The first failed rotation of a cycle
	// extends it into its grace window: its NotAfter moves Grace/2 later
	// and its Grace shrinks by as much, so that payloads fetched from then
	// on show the later end, while every node still stops at the same
	// NotAfter plus Grace. Zero: 1.
	MinNodes int
	// Period is how long a lock-cycle is handed out. Zero: DefaultPeriod.
	// A cycle is replaced early, as if PublishAhead had been reached, once
	// one of its nodes' replay caches is more than half full (see
	// NodeConfig.ReplayCacheSize).
	Period time.Duration
	// Grace is how long a replaced cycle's nodes keep serving messages
	// after the cycle's end. Zero: DefaultGrace. Negative: none.
	Grace time.Duration
	// PublishAhead is how long before a cycle ends its successor is
	// created, so that the new onions are published before any client is
	// handed them. Zero: a quarter of Period, at most one minute.
	PublishAhead time.Duration
	// Processing returns the processing configuration of node i of a new
	// cycle. Nil: DefaultProcessing.
	Processing func(i int, rnd io.Reader) ProcessorSpec

	// Protocol is the message protocol of every cycle, announced in the
	// payload: ProtocolLayered or ProtocolSealed. Zero: ProtocolLayered.
	// Sealed mode needs every node to have a sealed-mode key: remote
	// nodes make one when the Primary's NodeCycle announces sealed mode
	// (a descriptor without one is refused, ErrBadProtocol), and a cycle
	// from another NodeSource whose nodes lack one does not form
	// (ErrBadProtocol).
	Protocol Protocol
	// Sealed configures sealed mode; it must be zero with the layered
	// protocol (ErrBadProtocol).
	Sealed SealedConfig

	// Key is the Primary's OpenPGP private key (unlocked, curve25519),
	// which signs every payload; clients pin its fingerprint. Nil
	// generates one, valid for this Primary only: give a stable key for
	// invites that outlive the process.
	Key *pgp.Key
	// OnionKey fixes the Primary's onion address. Nil: a fresh ephemeral
	// address.
	OnionKey ed25519.PrivateKey
	// OnionPort is the virtual port of the Primary's onion. Zero:
	// DefaultOnionPort.
	OnionPort int
	// ClientAuth, if not empty, restricts the Primary's onion to clients
	// holding one of these x25519 keys (v3 client authorization).
	ClientAuth [][32]byte
	// PoW is Tor's proof-of-work defence for the Primary's onion. Nil: on,
	// with tor's default queue rate and burst. &PoWConfig{} turns it off.
	// Where tor does not support it, what happens is the TorController's
	// choice (torctl creates the onion without it and logs a warning).
	PoW *PoWConfig

	// PayloadRate bounds the work spent on payload requests (about 0.3 ms
	// of CPU each): at most PayloadRate answers per second on average, in
	// bursts of at most PayloadBurst, measured in real time (not Clock's).
	// Requests beyond wait their turn, oldest first, up to PayloadQueue of
	// them; a request that finds the queue full, or that comes on a stream
	// whose previous request is still waiting or being answered, is refused
	// at once with a reject the client reports as ErrBusy. A waiting
	// request whose stream closes leaves the queue. A flood thus delays
	// payloads, by at most PayloadQueue/PayloadRate for a request that got
	// into the queue, and costs the Primary no more CPU than the rate
	// allows; it can keep a client out only by keeping the queue full,
	// which takes a stream per queue place, held open and refilled as fast
	// as the Primary answers. Waiting requests hold one of the server's
	// Node.MaxConcurrent handlers each. Zero: DefaultPayloadRate.
	// Negative: no bound and no queue.
	PayloadRate int
	// PayloadBurst is how many payload requests are answered at once after
	// a quiet spell (see PayloadRate). Zero: DefaultPayloadBurst.
	PayloadBurst int
	// PayloadQueue is how many payload requests may wait for their turn
	// (see PayloadRate). Zero: DefaultPayloadQueue. Negative: none wait; a
	// request that finds no token is refused.
	PayloadQueue int

	// Node is the template of every node's configuration: limits,
	// timeouts, Observer. Its Processor, cycle times, keys and Clock, Rand
	// and Logger are set by the Primary.
	Node NodeConfig

	// Clock is the time source. Nil: SystemClock.
	Clock Clock
	// Rand is the source of keys, IVs, salts and cycle ids. Nil: crypto/rand.
	Rand io.Reader
	// Logger receives info and debug records. Nil: silent.
	Logger *slog.Logger
}

// DefaultProcessing is the seed's processing: node i hashes its input with a
// fresh 16-byte salt, using SHA-256, SHA3-256 and SHA-512 in turn, and writes
// the digest in hex.
func DefaultProcessing(i int, rnd io.Reader) ProcessorSpec {
	algs := []string{"sha256", "sha3-256", "sha512"}
	salt := make([]byte, 16)
	io.ReadFull(rnd, salt) // a short read leaves zeros: still a valid spec
	return HashSpec(algs[i%len(algs)], salt, 1, true)
}

func (c *PrimaryConfig) withDefaults() (PrimaryConfig, error) {
	d := *c
	if d.Nodes == 0 && len(d.Sources) == 0 {
		d.Nodes = DefaultNodes
	}
	if (d.Nodes < 1 && len(d.Sources) == 0) || d.Nodes < 0 || d.Nodes > layer.MaxNodes {
		return d, fmt.Errorf("ghostcomm: Nodes must be 1..%d", layer.MaxNodes)
	}
	for _, s := range d.Sources {
		if s == nil {
			return d, errors.New("ghostcomm: a nil NodeSource")
		}
	}
	if d.MinNodes == 0 {
		d.MinNodes = 1
	}
	if d.MinNodes < 1 || d.MinNodes > layer.MaxNodes {
		return d, fmt.Errorf("ghostcomm: MinNodes must be 1..%d", layer.MaxNodes)
	}
	if d.Period == 0 {
		d.Period = DefaultPeriod
	}
	if d.Period < 2*time.Second {
		return d, errors.New("ghostcomm: Period must be at least 2s")
	}
	if d.Grace == 0 {
		d.Grace = DefaultGrace
	}
	if d.Grace < 0 {
		d.Grace = 0
	}
	if d.PublishAhead <= 0 {
		d.PublishAhead = min(d.Period/4, time.Minute)
	}
	if d.PublishAhead >= d.Period {
		return d, errors.New("ghostcomm: PublishAhead must be shorter than Period")
	}
	if d.Processing == nil {
		d.Processing = DefaultProcessing
	}
	var err error
	if d.Protocol, d.Sealed, err = checkProtocol(d.Protocol, d.Sealed); err != nil {
		return d, err
	}

	if d.OnionPort == 0 {
		d.OnionPort = DefaultOnionPort
	}
	if d.PayloadRate == 0 {
		d.PayloadRate = DefaultPayloadRate
	}
	if d.PayloadBurst == 0 {
		d.PayloadBurst = DefaultPayloadBurst
	}
	if d.PayloadBurst < 1 {
		return d, errors.New("ghostcomm: PayloadBurst must be positive")
	}
	if d.PayloadQueue == 0 {
		d.PayloadQueue = DefaultPayloadQueue
	}
	if d.PayloadQueue < 0 {
		d.PayloadQueue = 0
	}
	if d.PoW == nil {
		d.PoW = &PoWConfig{Enabled: true}
	}
	if d.Clock == nil {
		d.Clock = SystemClock
	}
	if d.Rand == nil {
		d.Rand = rand.Reader
	}
	d.Logger = loggerOr(d.Logger)
	return d, nil
}

// Primary is a network's discovery point. It listens on its own onion
// service, runs the nodes of the current lock-cycle (and of replaced cycles
// during their grace window), and answers each client's payload request with
// the current cycle, encrypted to that client and signed by the Primary.
//
// A Primary is safe for concurrent use. Close removes every onion it created,
// closes every node and ends every goroutine.
type Primary struct {
	cfg    PrimaryConfig
	tc     TorController
	dialer Dialer
	keys   *layer.KeyPair
	onion  Onion
	srv    *transport.Server
	gate   *payloadGate

	payloads, payloadsRefused, rotations, cyclesFailed atomic.Uint64

	rotating sync.Mutex // serializes rotations

	mu       sync.Mutex
	current  *cycleState
	retiring map[*cycleState]func() bool // cycle -> stop its retirement timer
	stopNext func() bool                 // stops the next scheduled rotation
	closed   bool
	bg       sync.WaitGroup // rotations and retirements under way
	ctx      context.Context
	cancel   context.CancelFunc

	closeOnce sync.Once
	closeErr  error
}

type cycleState struct {
	cycle    *Cycle       // replaced, never changed, by extend; read under p.mu
	extended bool         // extend lent it half its grace window
	nodes    []*Node      // the local nodes
	batches  []CycleNodes // every source's nodes, the local ones first
	encoded  []byte       // the payload's node list, encoded once
}

// NewPrimary creates the first lock-cycle's nodes, then the Primary's own
// onion service, and waits until all are published. It then rotates the
// cycle every cfg.Period until Close.
func NewPrimary(ctx context.Context, tc TorController, dialer Dialer, cfg PrimaryConfig) (*Primary, error) {
	if tc == nil || dialer == nil {
		return nil, errors.New("ghostcomm: NewPrimary needs a TorController and a Dialer")
	}
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	keys, err := keyPairOr(c.Key, "ghostcomm primary")
	if err != nil {
		return nil, err
	}
	p := &Primary{cfg: c, tc: tc, dialer: dialer, keys: keys, retiring: map[*cycleState]func() bool{}}
	p.gate = newPayloadGate(c.PayloadRate, c.PayloadBurst, c.PayloadQueue)
	p.ctx, p.cancel = context.WithCancel(context.Background())

	// With remote sources, the Primary's onion comes first: the first
	// cycle's remote nodes reach it to submit their descriptors.
	var first *cycleState
	if len(c.Sources) == 0 {
		if first, err = p.newCycle(ctx); err != nil {
			return nil, err
		}
		p.current = first
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		first.close()
		return nil, fmt.Errorf("ghostcomm: primary listener: %w", err)
	}
	nc := c.Node.withDefaults()
	p.srv = transport.NewServer(ln, p.handle, nc.serverConfig(func(t wire.Type, _ error) {
		if t != wire.Ping { // an echo request refused is no payload refused
			p.payloadsRefused.Add(1)
		}
	}))
	oc := OnionConfig{VirtualPort: c.OnionPort, Target: ln.Addr().String(), Key: c.OnionKey, ClientAuth: c.ClientAuth, PoW: *c.PoW}
	var onion Onion
	err = retry(ctx, c.Logger, "primary onion", func() (err error) {
		pctx, cancel := context.WithTimeout(ctx, nc.PublishTimeout)
		defer cancel()
		onion, err = tc.CreateOnion(pctx, oc)
		return err
	})
	if err != nil {
		p.srv.Close()
		first.close()
		return nil, fmt.Errorf("ghostcomm: creating primary onion: %w", err)
	}
	p.onion = onion
	if first == nil {
		if first, err = p.newCycle(ctx); err != nil {
			p.srv.Close()
			rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return nil, errors.Join(err, p.tc.RemoveOnion(rctx, onion.ServiceID))
		}
		p.mu.Lock()
		p.current = first
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.scheduleRotation()
	p.mu.Unlock()
	c.Logger.Info("primary up", "onion", onion.Addr(), "fingerprint", Fingerprint(keys.Fpr).String(), "nodes", c.Nodes)
	return p, nil
}

// Onion returns the Primary's onion service.
func (p *Primary) Onion() Onion { return p.onion }

// Fingerprint returns the fingerprint of the key that signs the payloads.
func (p *Primary) Fingerprint() Fingerprint { return p.keys.Fpr }

// Invite returns what a client needs to use this network. clientAuthKey is
// the private half of one of cfg.ClientAuth, or nil.
func (p *Primary) Invite(clientAuthKey *[32]byte) Invite {
	return Invite{Primary: p.onion, Fingerprint: p.keys.Fpr, ClientAuthKey: clientAuthKey}
}

// Cycle returns the lock-cycle currently handed to clients.
func (p *Primary) Cycle() *Cycle {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current == nil {
		return nil
	}
	return p.current.cycle.clone()
}

// Onions returns the onion services of every local node still running: the
// current cycle's and those of replaced cycles in their grace window. Nodes
// from Sources are not listed.
func (p *Primary) Onions() []Onion {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Onion
	for _, cs := range p.liveCyclesLocked() {
		for _, n := range cs.nodes {
			out = append(out, n.Onion())
		}
	}
	return out
}

// liveCyclesLocked returns the current cycle (if any) and those retiring.
// p.mu is held.
func (p *Primary) liveCyclesLocked() []*cycleState {
	var cycles []*cycleState
	if p.current != nil {
		cycles = append(cycles, p.current)
	}
	for cs := range p.retiring {
		cycles = append(cycles, cs)
	}
	return cycles
}

// Rotate replaces the lock-cycle now: it creates and publishes the new
// nodes, then hands the new cycle to clients. The replaced cycle's nodes keep
// serving until its NotAfter plus Grace, then are closed. Rotations also
// happen by themselves every Period, and early when a node's replay cache
// passes half full.
func (p *Primary) Rotate(ctx context.Context) error { return p.rotate(ctx, nil) }

// rotate replaces the current cycle; if from is not nil, only if from is
// still the current cycle (a timer of a cycle already replaced does nothing).
func (p *Primary) rotate(ctx context.Context, from *cycleState) error {
	p.rotating.Lock()
	defer p.rotating.Unlock()
	p.mu.Lock()
	closed, replaced := p.closed, from != nil && p.current != from
	p.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if replaced {
		return nil
	}
	next, err := p.newCycle(ctx)
	if err != nil {
		p.cyclesFailed.Add(1)
		p.extend(err)
		return err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errors.Join(ErrClosed, next.close())
	}
	old := p.current
	p.current = next
	now := p.cfg.Clock.Now()
	retireAt := old.cycle.NotAfter
	if now.After(retireAt) {
		retireAt = now
	}
	retireAt = retireAt.Add(old.cycle.Grace) // what is left of it, if extended
	p.retiring[old] = p.cfg.Clock.AfterFunc(retireAt.Sub(now), func() { p.retire(old) })
	p.scheduleRotation()
	p.mu.Unlock()
	p.rotations.Add(1)
	p.cfg.Logger.Info("lock-cycle rotated", "cycle", fmt.Sprintf("%x", next.cycle.ID), "retire_old_at", retireAt)
	return nil
}

// extend hands out the current cycle for longer, after a rotation failed
// with err: its NotAfter moves half its grace window later, and its Grace
// shrinks by as much, so that NotAfter plus Grace, when every node (local
// or remote) stops accepting the cycle's messages, stays where it was and
// no node needs to be told. Clients see the later end in every payload
// fetched from now on. A cycle is extended once; a cycle without grace
// cannot be.
func (p *Primary) extend(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := p.current
	if p.closed || cs == nil || cs.extended {
		return
	}
	add := (cs.cycle.Grace / 2).Truncate(time.Second)
	if add <= 0 {
		p.cfg.Logger.Warn("the next lock-cycle did not form, and the current one has no grace window to be extended into", "cycle", fmt.Sprintf("%x", cs.cycle.ID), "err", err)
		return
	}
	c := cs.cycle.clone()
	c.NotAfter = c.NotAfter.Add(add)
	c.Grace -= add
	cs.cycle, cs.extended = c, true
	p.cfg.Logger.Warn("the next lock-cycle did not form: the current one is extended", "cycle", fmt.Sprintf("%x", c.ID), "not_after", c.NotAfter, "grace", c.Grace, "err", err)
}

// scheduleRotation arms the timer for the current cycle's successor. p.mu is
// held.
func (p *Primary) scheduleRotation() {
	if p.stopNext != nil {
		p.stopNext()
	}
	cs := p.current
	at := cs.cycle.NotAfter.Add(-p.cfg.PublishAhead)
	p.stopNext = p.cfg.Clock.AfterFunc(at.Sub(p.cfg.Clock.Now()), func() { p.autoRotate(cs) })
}

// replayHalf starts the successor of cs now, as if PublishAhead had been
// reached: a node of cs has recorded more than half the tags its replay
// cache holds, and a full cache would refuse every message until the cycle
// ends. Called from the node's handling goroutine; it does not block.
func (p *Primary) replayHalf(id [16]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.current == nil || p.current.cycle.ID != id {
		return
	}
	cs := p.current
	p.cfg.Logger.Info("a node's replay cache is half full: starting the next lock-cycle early", "cycle", fmt.Sprintf("%x", cs.cycle.ID))
	if p.stopNext != nil {
		p.stopNext()
	}
	p.stopNext = p.cfg.Clock.AfterFunc(0, func() { p.autoRotate(cs) })
}

// autoRotate replaces cycle from, unless it has been replaced already.
func (p *Primary) autoRotate(from *cycleState) {
	if !p.startBackground() {
		return
	}
	defer p.bg.Done()
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.PublishAhead)
	defer cancel()
	if err := p.rotate(ctx, from); err != nil && !errors.Is(err, ErrClosed) {
		p.cfg.Logger.Warn("lock-cycle rotation failed; retrying", "err", err)
		p.mu.Lock()
		if !p.closed {
			if p.stopNext != nil {
				p.stopNext()
			}
			p.stopNext = p.cfg.Clock.AfterFunc(max(p.cfg.PublishAhead/4, time.Second), func() { p.autoRotate(from) })
		}
		p.mu.Unlock()
	}
}

func (p *Primary) retire(cs *cycleState) {
	if !p.startBackground() {
		return
	}
	defer p.bg.Done()
	p.mu.Lock()
	delete(p.retiring, cs)
	p.mu.Unlock()
	if err := cs.close(); err != nil {
		p.cfg.Logger.Warn("closing a retired cycle", "err", err)
	}
	p.cfg.Logger.Info("lock-cycle retired", "cycle", fmt.Sprintf("%x", cs.cycle.ID))
}

// startBackground registers a background task unless the Primary is closed.
func (p *Primary) startBackground() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.bg.Add(1)
	return true
}

// onionAttempts is how many times a Primary tries to create its own onion
// and each node's.
const onionAttempts = 3

// retry calls f until it succeeds, onionAttempts times at most, while ctx
// allows; it returns f's last error.
func retry(ctx context.Context, log *slog.Logger, what string, f func() error) error {
	for attempt := 1; ; attempt++ {
		err := f()
		if err == nil || attempt == onionAttempts || ctx.Err() != nil {
			return err
		}
		log.Warn(what+" not created; retrying", "attempt", attempt, "err", err)
	}
}

// newCycle gathers the nodes of a new lock-cycle: the local ones, created
// and published all at once, then each source's. It fails with
// ErrTooFewNodes if they are fewer than MinNodes.
func (p *Primary) newCycle(ctx context.Context) (*cycleState, error) {
	now := p.cfg.Clock.Now().Truncate(time.Second)
	c := &Cycle{NotBefore: now, NotAfter: now.Add(p.cfg.Period), Grace: p.cfg.Grace,
		Protocol: p.cfg.Protocol, Sealed: p.cfg.Sealed}
	if _, err := io.ReadFull(p.cfg.Rand, c.ID[:]); err != nil {
		return nil, fmt.Errorf("ghostcomm: reading randomness: %w", err)
	}
	cs := &cycleState{cycle: c}
	var sources []NodeSource
	if p.cfg.Nodes > 0 {
		sources = append(sources, localSource{p: p, n: p.cfg.Nodes})
	}
	sources = append(sources, p.cfg.Sources...)
	for _, src := range sources {
		b, err := src.CycleNodes(ctx, c)
		if err != nil {
			return nil, errors.Join(err, cs.close())
		}
		cs.batches = append(cs.batches, b)
		if ln, ok := b.(*localNodes); ok {
			cs.nodes = ln.nodes
		}
		c.Nodes = append(c.Nodes, b.Infos()...)
	}
	if len(c.Nodes) < p.cfg.MinNodes {
		err := fmt.Errorf("%w: %d, at least %d wanted", ErrTooFewNodes, len(c.Nodes), p.cfg.MinNodes)
		return nil, errors.Join(err, cs.close())
	}
	var err error
	if cs.encoded, err = marshalNodes(c.Nodes); err != nil {
		return nil, errors.Join(err, cs.close())
	}
	if _, err := appendProtocol(nil, c); err != nil {
		return nil, errors.Join(err, cs.close())
	}
	for _, b := range cs.batches {
		if err := b.Start(ctx, c.Nodes); err != nil {
			return nil, errors.Join(err, cs.close())
		}
	}
	return cs, nil
}

// close closes the cycle's nodes (those that exist).
func (cs *cycleState) close() error {
	if cs == nil {
		return nil
	}
	var errs []error
	for _, b := range cs.batches {
		errs = append(errs, b.Close())
	}
	return errors.Join(errs...)
}

func (c *Cycle) clone() *Cycle {
	cp := *c
	cp.Nodes = append([]NodeInfo(nil), c.Nodes...)
	return &cp
}

// handle answers a client's payload request, in its turn (PayloadRate).
func (p *Primary) handle(ctx context.Context, r *transport.Request) (wire.Type, [][]byte) {
	if r.Type == wire.NodeHello || r.Type == wire.NodeDescriptor || r.Type == wire.NodeReady {
		for _, s := range p.cfg.Sources {
			if rs, ok := s.(*RemoteSource); ok {
				return rs.handle(ctx, r, p.keys.Fpr)
			}
		}
	}
	if r.Type != wire.PayloadRequest {
		p.payloadsRefused.Add(1)
		return wire.Reject, [][]byte{{byte(wire.RejectType)}}
	}
	box, err := p.answerInTurn(ctx, r)
	if err != nil {
		p.payloadsRefused.Add(1)
		p.cfg.Logger.Debug("payload request refused", "err", err)
		return wire.Reject, [][]byte{{byte(rejectFor(err))}}
	}
	p.payloads.Add(1)
	return wire.PayloadResponse, [][]byte{box}
}

// Stats returns the Primary's counters and its live nodes'.
func (p *Primary) Stats() PrimaryStats {
	s := PrimaryStats{Payloads: p.payloads.Load(), PayloadsRefused: p.payloadsRefused.Load(),
		Streams: int64(p.srv.Stats().Streams), Rotations: p.rotations.Load(), CyclesFailed: p.cyclesFailed.Load()}
	p.mu.Lock()
	cycles := p.liveCyclesLocked()
	p.mu.Unlock()
	for _, cs := range cycles {
		for _, n := range cs.nodes {
			s.Nodes.Add(n.Stats())
		}
	}
	return s
}

// answerInTurn refuses a malformed request at once, then waits for the
// request's turn, without a work slot, before the costly part of the answer.
func (p *Primary) answerInTurn(ctx context.Context, r *transport.Request) ([]byte, error) {
	body := r.Body
	if _, err := parsePayloadRequest(body); err != nil {
		return nil, err
	}
	done, err := p.gate.admit(ctx, r.Gone(), func() error { return r.Park(len(body)) })
	if err != nil {
		return nil, err
	}
	defer done()
	return p.answer(body)
}

func (p *Primary) answer(body []byte) ([]byte, error) {
	req, err := parsePayloadRequest(body)
	if err != nil {
		return nil, err
	}
	client, err := layer.ParsePublicKey(req.client)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	cs := p.current
	var cycle Cycle
	if cs != nil {
		cycle = *cs.cycle
	}
	p.mu.Unlock()
	if cs == nil {
		return nil, fmt.Errorf("%w: no lock-cycle yet", ErrBusy)
	}
	pl := payload{cycle: cycle, nonce: req.nonce, client: client.Fpr, primary: p.keys.Raw, nodes: cs.encoded}
	content, err := pl.marshal()
	if err != nil {
		return nil, err
	}
	signed, err := signPayload(p.keys, content)
	if err != nil {
		return nil, err
	}
	k, err := layer.NewKey(p.cfg.Rand)
	if err != nil {
		return nil, err
	}
	defer k.Wipe()
	return layer.Seal(make([]byte, 0, len(signed)+LayerOverhead+16), client.Enc, &k, cycle.NotBefore.Unix(), signed, p.cfg.Rand)
}

// Close stops rotations, closes the Primary's server and removes its onion,
// closes every node of every cycle and waits for every goroutine. It is
// idempotent.
func (p *Primary) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		if p.stopNext != nil {
			p.stopNext()
		}
		for _, stop := range p.retiring {
			stop()
		}
		p.mu.Unlock()
		p.cancel()
		p.bg.Wait()
		p.rotating.Lock() // a manual Rotate may still be creating nodes
		defer p.rotating.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		errs := []error{p.srv.Close()}
		if err := p.tc.RemoveOnion(ctx, p.onion.ServiceID); err != nil {
			errs = append(errs, fmt.Errorf("ghostcomm: removing primary onion: %w", err))
		}
		p.mu.Lock()
		cycles := p.liveCyclesLocked()
		p.retiring = map[*cycleState]func() bool{}
		p.mu.Unlock()
		for _, cs := range cycles {
			errs = append(errs, cs.close())
		}
		p.keys.Wipe()
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}
