package ghostcomm

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/transport"
	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// RemoteNodeConfig configures a RemoteNode.
type RemoteNodeConfig struct {
	// Identity is the node's long-term ed25519 identity key, which the
	// Primary's operator enrolls (RemoteSource.Enroll of its public half).
	// Required.
	Identity ed25519.PrivateKey
	// Invite is the node invite: the Primary's onion and the fingerprint
	// of its key (the same form as a client's invite). Descriptors are
	// bound to this fingerprint and sent only to this onion. If it carries
	// a client authorization key (a Primary with ClientAuth), the Dialer
	// must be a ClientAuthorizer: NewRemoteNode gives it the key, and fails
	// with ErrBadInvite if it cannot.
	Invite Invite
	// Node is the template of each cycle's node: Processor (what this
	// operator's node does to the data), limits, timeouts, Clock, Rand,
	// Logger. Its cycle times and keys are set per cycle, and so are its
	// Protocol and Sealed: the ones the Primary announces for the cycle (in
	// sealed mode the node makes its sealed-mode key and puts its public
	// half in the descriptor).
	Node NodeConfig
	// Retry is the pause after a failed step (Primary unreachable, not
	// enrolled, cycle not formed) before the node asks again. Zero: 1 s.
	Retry time.Duration
	// Logger receives info and debug records. Nil: silent.
	Logger *slog.Logger
}

// RemoteNode is a node run by an operator on a machine of their own, with
// their own tor, for a Primary that runs a RemoteSource. For every cycle
// the Primary opens, it creates a Node of its own (a fresh OpenPGP key
// pair and a fresh onion, which never leave this process), submits a
// descriptor of it signed by its identity key, receives the cycle's peer
// list, serves the cycle and retires the Node at the cycle's end plus
// grace, as a Primary does its local nodes.
//
// A RemoteNode is safe for concurrent use. Close stops it and closes every
// Node it runs.
type RemoteNode struct {
	cfg    RemoteNodeConfig
	tc     TorController
	dialer Dialer
	pool   *transport.Pool
	clock  Clock

	joined, failed atomic.Uint64

	mu      sync.Mutex
	nodes   map[*Node]func() bool // live nodes -> stop their retirement
	lastErr error

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

// NewRemoteNode starts a remote node: it asks the Primary for the next
// cycle at once, and again after every cycle it joins.
func NewRemoteNode(tc TorController, dialer Dialer, cfg RemoteNodeConfig) (*RemoteNode, error) {
	if tc == nil || dialer == nil {
		return nil, errors.New("ghostcomm: NewRemoteNode needs a TorController and a Dialer")
	}
	if len(cfg.Identity) != ed25519.PrivateKeySize {
		return nil, errors.New("ghostcomm: RemoteNodeConfig.Identity must be an ed25519 private key")
	}
	if cfg.Invite.Primary.ServiceID == "" {
		return nil, fmt.Errorf("%w: no Primary onion", ErrBadInvite)
	}
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	cfg.Logger = loggerOr(cfg.Logger)
	nc := cfg.Node.withDefaults()
	rn := &RemoteNode{cfg: cfg, tc: tc, dialer: dialer, clock: nc.Clock, nodes: map[*Node]func() bool{}}
	rn.pool = newPool(dialer, nc.MaxFrameSize, nc.IOTimeout, nc.IdleTimeout, nc.DialTimeout, cfg.Logger)
	rn.ctx, rn.cancel = context.WithCancel(context.Background())
	if k := cfg.Invite.ClientAuthKey; k != nil {
		a, ok := dialer.(ClientAuthorizer)
		if !ok {
			rn.pool.Close()
			return nil, fmt.Errorf("%w: it has a client authorization key and the Dialer is no ClientAuthorizer", ErrBadInvite)
		}
		if err := a.AddClientAuth(rn.ctx, cfg.Invite.Primary.ServiceID, *k); err != nil {
			rn.pool.Close()
			return nil, err
		}
	}
	rn.wg.Add(1)
	go rn.loop()
	return rn, nil
}

// Identity returns the public half of the node's identity key.
func (rn *RemoteNode) Identity() ed25519.PublicKey {
	return rn.cfg.Identity.Public().(ed25519.PublicKey)
}

// Joined counts the cycles the node has joined; Failed the attempts that
// failed (the last error is LastError).
func (rn *RemoteNode) Joined() uint64 { return rn.joined.Load() }

// Failed counts failed attempts to join a cycle.
func (rn *RemoteNode) Failed() uint64 { return rn.failed.Load() }

// LastError returns the error of the last failed attempt, or nil.
func (rn *RemoteNode) LastError() error {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	return rn.lastErr
}

// Onions returns the onions of the node's live Nodes (the current cycle's
// and those in their grace window).
func (rn *RemoteNode) Onions() []Onion {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	var out []Onion
	for n := range rn.nodes {
		out = append(out, n.Onion())
	}
	return out
}

func (rn *RemoteNode) loop() {
	defer rn.wg.Done()
	var after [16]byte
	for rn.ctx.Err() == nil {
		id, err := rn.join(after)
		if err == nil {
			after = id
			rn.joined.Add(1)
			continue
		}
		if rn.ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrStaleCycle) { // no cycle opened yet: ask again
			continue
		}
		rn.failed.Add(1)
		rn.mu.Lock()
		rn.lastErr = err
		rn.mu.Unlock()
		rn.cfg.Logger.Warn("joining a cycle failed", "err", err)
		select {
		case <-time.After(rn.cfg.Retry):
		case <-rn.ctx.Done():
		}
	}
}

// roundTrip sends one request to the Primary and turns a Reject into its
// error.
func (rn *RemoteNode) roundTrip(ctx context.Context, typ, want wire.Type, body []byte) ([]byte, error) {
	h, b, err := rn.pool.RoundTrip(ctx, rn.cfg.Invite.Primary.Addr(), typ, [][]byte{body})
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: primary %s: %w", rn.cfg.Invite.Primary.Addr(), err)
	}
	switch h.Type {
	case want:
		return b, nil
	case wire.Reject:
		return nil, rejectErr(rejectCodeOf(b))
	}
	return nil, fmt.Errorf("%w: primary answered a %s frame", ErrMalformed, h.Type)
}

// join waits for a cycle other than after, joins it, and returns its id.
func (rn *RemoteNode) join(after [16]byte) ([16]byte, error) {
	hello := nodeHello{identity: rn.Identity(), after: after}
	ctx, cancel := context.WithTimeout(rn.ctx, maxHelloWait+30*time.Second)
	b, err := rn.roundTrip(ctx, wire.NodeHello, wire.NodeCycle, hello.marshal())
	cancel()
	if err != nil {
		return after, err
	}
	nc, err := parseNodeCycle(b)
	if err != nil {
		return after, err
	}
	c := &nc.cycle

	cfg := rn.cfg.Node
	cfg.NotBefore, cfg.NotAfter, cfg.Grace = c.NotBefore, c.NotAfter, c.Grace
	cfg.Protocol, cfg.Sealed = c.Protocol, c.Sealed // the Primary's choice
	cfg.Key, cfg.OnionKey = nil, nil
	if cfg.Logger == nil {
		cfg.Logger = rn.cfg.Logger
	}
	ctx, cancel = context.WithTimeout(rn.ctx, nc.wait)
	n, err := NewNode(ctx, rn.tc, rn.dialer, cfg)
	cancel()
	if err != nil {
		return after, err
	}
	d := descriptor{identity: rn.Identity(), primary: rn.cfg.Invite.Fingerprint, cycle: c.ID, notBefore: c.NotBefore.Unix(), node: n.Info()}
	signed, err := d.sign(rn.cfg.Identity)
	if err != nil {
		return after, errors.Join(err, n.Close())
	}
	ctx, cancel = context.WithTimeout(rn.ctx, nc.wait+maxFormWait)
	b, err = rn.roundTrip(ctx, wire.NodeDescriptor, wire.NodePeers, signed)
	cancel()
	if err != nil {
		return after, errors.Join(err, n.Close())
	}
	id, peers, err := parsePeers(b)
	if err == nil && id != c.ID {
		err = fmt.Errorf("%w: peer list for another cycle", ErrWrongCycle)
	}
	if err == nil {
		err = n.SetPeers(peers)
	}
	if err != nil {
		return after, errors.Join(err, n.Close())
	}
	rn.mu.Lock()
	if rn.ctx.Err() != nil {
		rn.mu.Unlock()
		return after, errors.Join(ErrClosed, n.Close())
	}
	retireAt := c.NotAfter.Add(c.Grace)
	rn.nodes[n] = rn.clock.AfterFunc(retireAt.Sub(rn.clock.Now()), func() { rn.retire(n) })
	rn.mu.Unlock()
	ready := nodeHello{identity: rn.Identity(), after: c.ID}
	ctx, cancel = context.WithTimeout(rn.ctx, maxReadyWait)
	if _, err := rn.roundTrip(ctx, wire.NodeReady, wire.NodeReady, ready.marshal()); err != nil {
		rn.cfg.Logger.Warn("telling the Primary the node is ready failed", "err", err)
	}
	cancel()
	if len(peers) <= WarmNodes { // as a Primary does its local nodes
		rn.wg.Go(func() { n.warm(rn.ctx) })
	}
	rn.cfg.Logger.Info("joined a lock-cycle", "cycle", fmt.Sprintf("%x", c.ID), "onion", n.Onion().Addr(), "peers", len(peers))
	return c.ID, nil
}

func (rn *RemoteNode) retire(n *Node) {
	rn.mu.Lock()
	_, ok := rn.nodes[n]
	delete(rn.nodes, n)
	rn.mu.Unlock()
	if ok {
		n.Close()
	}
}

// Close stops the node: it asks for no more cycles and closes every Node
// it runs (their onions are removed and their keys wiped). Idempotent.
func (rn *RemoteNode) Close() error {
	rn.once.Do(func() {
		rn.cancel()
		rn.wg.Wait()
		rn.pool.Close()
		rn.mu.Lock()
		nodes := rn.nodes
		rn.nodes = map[*Node]func() bool{}
		rn.mu.Unlock()
		var errs []error
		for n, stop := range nodes {
			stop()
			errs = append(errs, n.Close())
		}
		rn.err = errors.Join(errs...)
	})
	return rn.err
}
