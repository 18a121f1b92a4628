package ghostcomm

import (
	"bytes"
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
	"github.com/ghostcomm/ghostcomm/internal/replay"
	"github.com/ghostcomm/ghostcomm/internal/sealed"
	"github.com/ghostcomm/ghostcomm/internal/transport"
	"github.com/ghostcomm/ghostcomm/internal/wire"

	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"
)

// DefaultHopTimeout bounds how long a Node waits for the rest of the route to
// answer when the message's own budget is larger (or absent).
const DefaultHopTimeout = 60 * time.Second

// DefaultReplayCacheSize bounds the replay cache of one Node for one
// lock-cycle: 1<<22 tags. The cache grows as it fills and holds about 10
// bytes a tag, 40 MiB when full (measured by internal/replay's
// TestMemoryPerTag). When it is full the node refuses new messages with
// ErrBusy rather than forget what it has seen; a Primary starts its next
// cycle early once a node's cache is half full.
const DefaultReplayCacheSize = 1 << 22

// DefaultPublishTimeout bounds the wait for one onion service's descriptor to
// be published. A Primary replaces a node whose onion misses it.
const DefaultPublishTimeout = 2 * time.Minute

// NodeConfig configures a Node. The zero value is a node that passes data
// through unchanged, valid from now for ten years.
type NodeConfig struct {
	// Processor is what the node does to the data. Zero: IdentitySpec.
	Processor ProcessorSpec

	// Protocol is the message protocol the node speaks: ProtocolLayered
	// (Message frames) or ProtocolSealed (SealedPacket frames, with a
	// sealed-mode key made for this node alone: Info().SealedKey). A node
	// refuses the other protocol's frames. Zero: ProtocolLayered. A
	// Primary sets it from PrimaryConfig.Protocol.
	Protocol Protocol
	// Sealed configures sealed mode; zero with the layered protocol.
	Sealed SealedConfig

	// NotBefore and NotAfter bound the lock-cycle the node serves. Zero
	// NotBefore means now; zero NotAfter means NotBefore plus ten years.
	// The node refuses messages made for another cycle, and every message
	// after NotAfter+Grace.
	NotBefore, NotAfter time.Time
	// Grace is how long after NotAfter the node still accepts messages.
	Grace time.Duration

	// Key is the node's OpenPGP private key (unlocked, curve25519). Nil
	// generates a fresh one, which is what a lock-cycle wants.
	Key *pgp.Key

	// OnionPort is the onion service's virtual port. Zero:
	// DefaultOnionPort.
	OnionPort int
	// OnionKey, if set, fixes the onion service's ed25519 key (and so its
	// address). Nil: a fresh ephemeral address.
	OnionKey ed25519.PrivateKey
	// PoW is Tor's proof-of-work defence for the node's onion. Zero: off.
	// A node's address is known only to those who fetched the payload, and
	// under attack tor would make every client solve a puzzle for every hop
	// of every route (a circuit per hop), multiplying an honest message's
	// delay by the route's length; the Primary's onion, which every client
	// reaches once per cycle and anyone holding the invite can flood, has it
	// on by default instead (PrimaryConfig.PoW).
	PoW PoWConfig

	// MaxFrameSize bounds a frame's body. Zero: DefaultMaxFrameSize.
	MaxFrameSize int
	// MaxConcurrent bounds the messages computed at once (a message
	// waiting for the rest of its route does not count). Zero:
	// DefaultMaxConcurrent.
	MaxConcurrent int
	// MaxConns bounds the streams kept open; see DefaultMaxConns for what
	// happens beyond. Zero: DefaultMaxConns.
	MaxConns int
	// MaxInflightBytes bounds the bytes held for messages at once, over all
	// streams (at least MaxFrameSize plus 8 KiB); see
	// DefaultMaxInflightBytes. Zero: DefaultMaxInflightBytes.
	MaxInflightBytes int64
	// MaxStreamBytes bounds what the messages of one stream hold at once.
	// Zero: a quarter of MaxInflightBytes (at least MaxFrameSize plus 8
	// KiB).
	MaxStreamBytes int64
	// ReplayCacheSize bounds the replay cache. Zero:
	// DefaultReplayCacheSize.
	ReplayCacheSize int
	// HopTimeout bounds the wait for the next hop. Zero: DefaultHopTimeout.
	HopTimeout time.Duration
	// IdleTimeout closes streams that carry nothing for this long. Zero:
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// IOTimeout bounds writing one frame and reading one (see
	// DefaultIOTimeout). Zero: DefaultIOTimeout.
	IOTimeout time.Duration
	// MinReadRate is the slowest, in bytes per second, a frame body may
	// arrive after IOTimeout. Zero: DefaultMinReadRate.
	MinReadRate int
	// DialTimeout bounds one dial of a next hop. Zero: DefaultDialTimeout.
	DialTimeout time.Duration
	// PublishTimeout bounds the wait for the onion service's publication
	// (within NewNode's ctx). Zero: DefaultPublishTimeout.
	PublishTimeout time.Duration

	// Clock is the time source. Nil: SystemClock.
	Clock Clock
	// Rand is the source of keys, IVs and padding. Nil: crypto/rand.
	Rand io.Reader
	// Logger receives debug and warning records. Nil: silent.
	Logger *slog.Logger
	// Observer, if set, is called once for every message frame the node
	// receives: after it handled the message (successfully or not), or
	// when it refused it (HopEvent.Refused), from the goroutine that
	// handled or read it. It must not block.
	Observer func(HopEvent)

	// replayHalf, if set, is called once, from a handling goroutine, when
	// the replay cache passes half full. It must not block. A Primary sets
	// it to start the next cycle early.
	replayHalf func()
}

// HopEvent describes one message handled by one Node, for operators and for
// demonstrations. It carries no message content.
type HopEvent struct {
	// Onion is the node's onion service.
	Onion Onion
	// Processor is the node's processing configuration.
	Processor ProcessorSpec
	// Start is when the message arrived.
	Start time.Time
	// Process is the time spent peeling, checking, processing and
	// sealing for the next hop, before forwarding.
	Process time.Duration
	// Total is the time until the answer went back, including the rest of
	// the route.
	Total time.Duration
	// InSize and OutSize are the data sizes before and after processing;
	// both 0 at a relaying hop of sealed mode's relay form, which does not
	// see the data.
	InSize, OutSize int
	// Last reports that this node was the route's last hop.
	Last bool
	// Err is why the message failed at or after this node, or nil.
	Err error
	// Refused reports that the node refused the message before handling
	// it, with a plain reject; Err says why: ErrBusy, ErrReplay,
	// ErrStaleCycle, ErrAuth, ErrMalformed, ErrBudget, ErrFrameTooLarge,
	// ErrUnsupportedVersion or ErrClosed.
	Refused bool
	// Duplicate reports that the message was a copy of one the node was
	// handling or had just answered, sent again after a stream broke: it
	// got the first copy's answer, and was not processed again.
	Duplicate bool
}

func (c *NodeConfig) withDefaults() NodeConfig {
	d := *c
	if d.Processor.Name == "" {
		d.Processor = IdentitySpec
	}
	if d.Clock == nil {
		d.Clock = SystemClock
	}
	if d.Rand == nil {
		d.Rand = rand.Reader
	}
	d.Logger = loggerOr(d.Logger)
	if d.NotBefore.IsZero() {
		d.NotBefore = d.Clock.Now()
	}
	d.NotBefore = d.NotBefore.Truncate(time.Second)
	if d.NotAfter.IsZero() {
		d.NotAfter = d.NotBefore.AddDate(10, 0, 0)
	}
	if d.OnionPort == 0 {
		d.OnionPort = DefaultOnionPort
	}
	if d.MaxFrameSize <= 0 {
		d.MaxFrameSize = DefaultMaxFrameSize
	}
	if d.MaxConcurrent <= 0 {
		d.MaxConcurrent = DefaultMaxConcurrent
	}
	if d.MaxConns <= 0 {
		d.MaxConns = DefaultMaxConns
	}
	if d.MaxInflightBytes <= 0 {
		d.MaxInflightBytes = DefaultMaxInflightBytes
	}
	if d.ReplayCacheSize <= 0 {
		d.ReplayCacheSize = DefaultReplayCacheSize
	}
	if d.HopTimeout <= 0 {
		d.HopTimeout = DefaultHopTimeout
	}
	if d.IdleTimeout <= 0 {
		d.IdleTimeout = DefaultIdleTimeout
	}
	if d.IOTimeout <= 0 {
		d.IOTimeout = DefaultIOTimeout
	}
	if d.MinReadRate <= 0 {
		d.MinReadRate = DefaultMinReadRate
	}
	if d.DialTimeout <= 0 {
		d.DialTimeout = DefaultDialTimeout
	}
	if d.PublishTimeout <= 0 {
		d.PublishTimeout = DefaultPublishTimeout
	}
	return d
}

// Node is one hop of a route: its own onion service and its own OpenPGP key
// pair for one lock-cycle. Per message it peels its layer, checks the cycle,
// opens the data, records the layer in its replay cache (refusing a replay),
// applies its processor, seals the result for the next hop with that hop's
// public key, forwards it, and relays the answer back; the last hop seals the
// result for the client.
//
// A Node is safe for concurrent use. Close removes its onion service, ends
// every goroutine and wipes its private key.
type Node struct {
	cfg   NodeConfig
	tc    TorController
	keys  *layer.KeyPair
	proc  Processor
	onion Onion
	ts    int64 // the cycle's NotBefore: every layer's Fernet timestamp

	// sealedKey is the node's sealed-mode key for this cycle (nil in the
	// layered protocol), the X25519 key of a cv25519 OpenPGP subkey made
	// for sealed mode alone.
	sealedKey *sealed.PrivateKey

	srv     *transport.Server
	pool    *transport.Pool
	replay  *replay.Cache
	answers *answerTable
	stats   nodeCounters

	peers atomic.Pointer[[]NodeInfo]

	halfSaid atomic.Bool // cfg.replayHalf has been called

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool
}

// NewNode creates a node: generates its key pair (unless cfg.Key is set),
// listens on a fresh 127.0.0.1 port, creates its onion service through tc and
// waits until it is published. It serves messages from then on; it forwards
// only once SetPeers has told it the cycle's nodes.
func NewNode(ctx context.Context, tc TorController, dialer Dialer, cfg NodeConfig) (*Node, error) {
	if tc == nil || dialer == nil {
		return nil, errors.New("ghostcomm: NewNode needs a TorController and a Dialer")
	}
	c := cfg.withDefaults()
	var err error
	if c.Protocol, c.Sealed, err = checkProtocol(c.Protocol, c.Sealed); err != nil {
		return nil, err
	}
	proc, err := NewProcessor(c.Processor)
	if err != nil {
		return nil, err
	}
	keys, err := keyPairOr(c.Key, "ghostcomm node")
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: c, tc: tc, keys: keys, proc: proc, ts: c.NotBefore.Unix()}
	if c.Protocol == ProtocolSealed {
		if n.sealedKey, err = newSealedKey(c.Rand, c.NotBefore); err != nil {
			keys.Wipe()
			return nil, err
		}
	}
	n.replay = replay.New(c.ReplayCacheSize)
	n.answers = newAnswerTable(c.MaxInflightBytes/8, c.HopTimeout)
	empty := []NodeInfo{}
	n.peers.Store(&empty)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: node listener: %w", err)
	}
	n.pool = newPool(dialer, c.MaxFrameSize, c.IOTimeout, c.IdleTimeout, c.DialTimeout, c.Logger)
	n.srv = transport.NewServer(ln, n.handle, c.serverConfig(n.transportRefused))
	oc := OnionConfig{VirtualPort: c.OnionPort, Target: ln.Addr().String(), PoW: c.PoW}
	if c.OnionKey != nil {
		oc.Key = append([]byte(nil), c.OnionKey...)
	}
	pctx, cancel := context.WithTimeout(ctx, c.PublishTimeout)
	defer cancel()
	onion, err := tc.CreateOnion(pctx, oc)
	if err != nil {
		n.srv.Close()
		n.pool.Close()
		return nil, fmt.Errorf("ghostcomm: creating node onion: %w", err)
	}
	n.onion = onion
	c.Logger.Debug("node up", "onion", onion.Addr(), "processor", c.Processor.String())
	return n, nil
}

// Onion returns the node's onion service.
func (n *Node) Onion() Onion { return n.onion }

// Fingerprint returns the SHA-256 fingerprint of the node's public key.
func (n *Node) Fingerprint() Fingerprint { return n.keys.Fpr }

// Info returns what a lock-cycle payload says about this node.
func (n *Node) Info() NodeInfo {
	return NodeInfo{
		Onion:     n.onion,
		PublicKey: append([]byte(nil), n.keys.Raw...),
		Processor: n.cfg.Processor,
		SealedKey: n.sealedPublic(),
		pub:       &n.keys.PublicKey,
	}
}

// SetPeers tells the node the nodes of its lock-cycle, in payload order: a
// layer's next-hop index refers to this list. The list must be the one the
// Primary signs into the payload. The node keeps of each peer only what
// forwarding needs, its onion and its public key: never its processor (whose
// parameters, such as salts, are the peer's alone).
func (n *Node) SetPeers(peers []NodeInfo) error {
	if len(peers) > layer.MaxNodes {
		return fmt.Errorf("ghostcomm: %d peers, at most %d", len(peers), layer.MaxNodes)
	}
	cp := make([]NodeInfo, len(peers))
	for i, p := range peers {
		pk := p.pub
		if pk == nil {
			var err error
			if pk, err = layer.ParsePublicKey(p.PublicKey); err != nil {
				return fmt.Errorf("ghostcomm: peer %d: %w", i, err)
			}
		}
		raw := bytes.Clone(p.PublicKey)
		// No key ring: a Node's own Info points at its key pair's.
		cp[i] = NodeInfo{Onion: p.Onion, PublicKey: raw, pub: &layer.PublicKey{Raw: raw, Enc: pk.Enc, Fpr: pk.Fpr}}
	}
	n.peers.Store(&cp)
	return nil
}

// warm opens a stream to every peer but itself, bounded by ctx and
// PublishTimeout; a peer it cannot reach now is dialled when a message
// needs it.
func (n *Node) warm(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.PublishTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range *n.peers.Load() {
		if p.Onion.ServiceID == n.onion.ServiceID {
			continue
		}
		wg.Go(func() {
			if err := n.pool.Warm(ctx, p.Onion.Addr()); err != nil {
				n.cfg.Logger.Debug("opening a stream ahead failed", "onion", p.Onion.Addr(), "err", err)
			}
		})
	}
	wg.Wait()
}

// Close removes the node's onion service, closes its streams, waits for its
// goroutines and wipes its private key. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		errRemove := n.tc.RemoveOnion(ctx, n.onion.ServiceID)
		if errRemove != nil {
			errRemove = fmt.Errorf("ghostcomm: removing node onion: %w", errRemove)
		}
		errSrv := n.srv.Close()
		n.pool.Close()
		n.keys.Wipe()
		if n.sealedKey != nil {
			n.sealedKey.Wipe()
		}
		n.replay.Close()
		n.closeErr = errors.Join(errRemove, errSrv)
	})
	return n.closeErr
}

// keyPairOr wraps k, or generates a fresh key pair named name if k is nil.
func keyPairOr(k *pgp.Key, name string) (*layer.KeyPair, error) {
	if k != nil {
		return layer.NewKeyPair(k)
	}
	return layer.GenerateKeyPair(name)
}

// refuse answers a message with a plain reject, counts it and tells the
// Observer.
func (n *Node) refuse(start time.Time, code wire.RejectCode, why error) (wire.Type, [][]byte) {
	n.stats.refused(code)
	n.cfg.Logger.Debug("message refused", "code", code, "err", why)
	if n.cfg.Observer != nil {
		n.cfg.Observer(HopEvent{Onion: n.onion, Processor: n.cfg.Processor, Start: start,
			Total: time.Since(start), Refused: true, Err: why})
	}
	return wire.Reject, [][]byte{{byte(code)}}
}

// transportRefused counts and reports a message the transport refused
// before the node saw it (no room, no work slot, too large).
func (n *Node) transportRefused(typ wire.Type, why error) {
	if typ != wire.Message && typ != wire.SealedPacket {
		return
	}
	n.refuse(time.Now(), rejectFor(why), why)
}

// handle answers one frame on the node's onion.
func (n *Node) handle(ctx context.Context, r *transport.Request) (wire.Type, [][]byte) {
	start := time.Now()
	now := n.cfg.Clock.Now()
	if n.sealedKey != nil {
		return n.handleSealed(ctx, r, start, now)
	}
	if r.Type != wire.Message {
		return n.refuse(start, wire.RejectType, fmt.Errorf("%w: frame type %v", ErrMalformed, r.Type))
	}
	if n.closed.Load() {
		return n.refuse(start, wire.RejectClosed, ErrClosed)
	}
	m, err := wire.ParseMsg(r.Body)
	if err != nil {
		return n.refuse(start, wire.RejectMalformed, err)
	}
	if budget := time.Duration(m.BudgetMS) * time.Millisecond; budget < MinBudget {
		return n.refuse(start, wire.RejectBudget, fmt.Errorf("%w: %v", ErrBudget, budget))
	}
	p, err := n.peel(m, now)
	if err != nil {
		return n.refuse(start, rejectFor(err), err)
	}
	n.stats.inflight.Add(1)
	defer n.stats.inflight.Add(-1)
	ev := HopEvent{Onion: n.onion, Processor: n.cfg.Processor, Start: start, Last: p.Next < 0}
	typ, parts, err := n.relay(ctx, r, m, p, &ev)
	p.Key.Wipe()
	if ev.Refused {
		return n.refuse(start, rejectFor(err), err)
	}
	if err != nil {
		n.stats.failed.Add(1)
	}
	if n.cfg.Observer != nil {
		ev.Total = time.Since(start)
		ev.Err = err
		n.cfg.Observer(ev)
	}
	return typ, parts
}

// relay does the work after the layer opened: data, replay check,
// processing, forwarding. Every failure from the replay check on is reported
// to the client under the layer's error key; a replay or a full replay
// cache is refused (ev.Refused) with a plain reject.
func (n *Node) relay(ctx context.Context, r *transport.Request, m *wire.Msg, p *layer.Peeled, ev *HopEvent) (wire.Type, [][]byte, error) {
	budget := min(time.Duration(m.BudgetMS)*time.Millisecond, n.cfg.HopTimeout)
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()

	in, err := layer.Open(n.keys.Dec, m.Data)
	if err == nil {
		in.Key.Wipe()
		if in.TS != n.ts {
			err = fmt.Errorf("%w: data made for another cycle", ErrStaleCycle)
		}
	}
	if err != nil {
		return n.report(p, wire.ReportBadData, 0, err)
	}

	// The replay check comes once the whole message has opened, so that
	// only a genuine message costs a tag. A copy of a message this node is
	// handling, or has just answered, sent again because a stream broke,
	// gets the first copy's answer and is not processed again.
	call, dup, err := n.answers.begin(p.Tag, m.Data, func() error { return n.record(p) })
	if err != nil {
		ev.Refused = true
		return wire.Reject, nil, err
	}
	r.Accept()
	if dup {
		ev.Duplicate = true
		n.stats.duplicates.Add(1)
		if err := r.Park(0); err != nil {
			return n.report(p, wire.ReportNextTimeout, 0, err)
		}
		select {
		case <-call.done:
			return call.typ, call.parts, call.err
		case <-ctx.Done():
			return n.report(p, wire.ReportNextTimeout, 0, fmt.Errorf("%w: waiting for the first copy: %w", ErrHopTimeout, ctx.Err()))
		}
	}
	n.stats.accepted.Add(1)
	typ, parts, err := n.process(ctx, r, p, in, ev)
	n.answers.finish(call, typ, parts, err)
	return typ, parts, err
}

// process applies the processor and answers (last hop) or forwards.
func (n *Node) process(ctx context.Context, r *transport.Request, p *layer.Peeled, in *layer.Opened, ev *HopEvent) (wire.Type, [][]byte, error) {
	data := in.Msg
	ev.InSize = len(data)
	out, err := n.proc.Process(data)
	if err == nil && (len(out) > n.cfg.MaxFrameSize || p.Next < 0 && layer.AnswerSize(len(out)) > n.cfg.MaxFrameSize) {
		err = fmt.Errorf("output of %d bytes exceeds the frame limit", len(out))
	}
	if err != nil {
		return n.report(p, wire.ReportProcessing, 0, fmt.Errorf("%w: %v", ErrProcessing, err))
	}
	ev.OutSize = len(out)

	if p.Next < 0 {
		key := p.Key.Derive(layer.PurposeReply)
		tok, err := layer.SealAnswer(nil, &key, n.ts, out)
		key.Wipe()
		if err != nil {
			return n.report(p, wire.ReportProcessing, 0, err)
		}
		ev.Process = time.Since(ev.Start)
		return wire.Reply, [][]byte{tok}, nil
	}

	peers := *n.peers.Load()
	if p.Next >= len(peers) {
		return n.report(p, wire.ReportBadRoute, 0, fmt.Errorf("%w: next hop index %d unknown", ErrMalformed, p.Next))
	}
	next := &peers[p.Next]
	if next.Onion.ServiceID == n.onion.ServiceID {
		// A route through the same node twice in a row costs it twice and
		// hides nothing: refused.
		return n.report(p, wire.ReportBadRoute, 0, fmt.Errorf("%w: this node as its own next hop", ErrMalformed))
	}
	k, err := layer.NewKey(n.cfg.Rand)
	if err != nil {
		return n.report(p, wire.ReportProcessing, 0, err)
	}
	// An output that is the input, or a prefix of it, is sealed where it
	// lies, without a copy (the processor must not retain its input).
	box, err := layer.Seal(in.SealBuffer(out), next.pub.Enc, &k, n.ts, out, n.cfg.Rand)
	k.Wipe()
	if err != nil {
		return n.report(p, wire.ReportProcessing, 0, err)
	}
	ev.Process = time.Since(ev.Start)

	remaining := time.Until(deadlineOf(ctx))
	fwd := forwardBudget(remaining)
	if fwd < MinBudget {
		return n.report(p, wire.ReportNextTimeout, 0, fmt.Errorf("%w: %v left for the rest of the route", ErrHopTimeout, remaining))
	}
	fctx, fcancel := context.WithTimeout(ctx, fwd)
	defer fcancel()
	msg := &wire.Msg{BudgetMS: budgetMS(fwd), Layer: p.Inner, Data: box}
	parts := msg.Parts()
	// From here the node only waits: give back the work slot, and hold
	// only the forwarded message (kept to send again if a stream breaks).
	if err := r.Park(len(p.Inner) + len(box)); err != nil {
		return n.report(p, wire.ReportNextRejected, byte(wire.RejectBusy), err)
	}
	h, body, err := n.pool.RoundTrip(fctx, next.Onion.Addr(), wire.Message, parts)
	switch {
	case err == nil:
	case errors.Is(err, ErrClosed):
		return wire.Reject, [][]byte{{byte(wire.RejectClosed)}}, err
	case errors.Is(err, ErrOnionNotFound):
		return n.report(p, wire.ReportNextNotFound, 0, fmt.Errorf("%w: %w", ErrHopUnreachable, err))
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return n.report(p, wire.ReportNextTimeout, 0, fmt.Errorf("%w: %w", ErrHopTimeout, err))
	case errors.Is(err, ErrBusy):
		return n.report(p, wire.ReportNextRejected, byte(wire.RejectBusy), fmt.Errorf("next hop: %w", err))
	case errors.Is(err, ErrFrameTooLarge):
		return n.report(p, wire.ReportNextRejected, byte(wire.RejectTooLarge), fmt.Errorf("next hop: %w", err))
	default:
		return n.report(p, wire.ReportNextUnreached, 0, fmt.Errorf("%w: %w", ErrHopUnreachable, err))
	}
	switch h.Type {
	case wire.Reply:
		return wire.Reply, [][]byte{body}, nil
	case wire.Reject:
		code := rejectCodeOf(body)
		return n.report(p, wire.ReportNextRejected, byte(code), fmt.Errorf("next hop: %w", rejectErr(code)))
	}
	return n.report(p, wire.ReportNextBrokeReply, 0, fmt.Errorf("%w: next hop answered with %v", ErrMalformed, h.Type))
}

// deadlineOf returns ctx's deadline; every context here has one.
func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// report answers with a failure report only the client can open.
func (n *Node) report(p *layer.Peeled, code wire.ReportCode, detail byte, cause error) (wire.Type, [][]byte, error) {
	n.cfg.Logger.Debug("hop failure", "code", code, "err", cause)
	key := p.Key.Derive(layer.PurposeError)
	tok, err := layer.SealAnswer(nil, &key, n.ts, []byte{byte(code), detail})
	key.Wipe()
	if err != nil {
		return wire.Reject, [][]byte{{byte(wire.RejectMalformed)}}, errors.Join(cause, err)
	}
	return wire.Reply, [][]byte{tok}, cause
}
