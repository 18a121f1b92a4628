package tortest

import (
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ghostcomm/ghostcomm"
)

// Config configures a Network. The zero value is ready to use.
type Config struct {
	// Rand is the source of the service keys that CreateOnion generates
	// (32 bytes each, used as ed25519 seeds). Nil means crypto/rand. A
	// deterministic reader gives reproducible service ids.
	Rand io.Reader

	// Logger receives debug records of onion and dial events. Nil
	// discards them.
	Logger *slog.Logger
}

// OnionStats counts the dials that named one service id. Counters survive
// the removal of the service: the Network keeps them for every well-formed id
// ever dialed, for its whole life, which suits a test fake.
type OnionStats struct {
	// Dials counts dial attempts to a well-formed address of the service,
	// successful or not.
	Dials int
	// Conns counts the dials that produced a connection.
	Conns int
	// Open counts the connections to the service that are open now.
	Open int
}

// Network is an in-process fake Tor network: the onion services that its
// Controllers create are reachable through its Dialers, by real loopback TCP
// connections to each service's Target. No tor runs.
//
// A Network is safe for concurrent use, and so are its hooks: they may be
// set, changed or cleared (nil) while traffic flows. Hooks are called without
// any lock held, so they may call the Network's methods.
//
// Close removes every service and closes every connection made through the
// network, as a tor that exits would; afterwards dials fail with an error
// matching ghostcomm.ErrOnionNotFound and CreateOnion fails with ErrClosed.
type Network struct {
	log *slog.Logger

	randMu sync.Mutex
	rand   io.Reader

	done chan struct{} // closed by Close

	mu          sync.Mutex
	closed      bool
	onions      map[string]*onion
	partitioned map[string]bool
	stats       map[string]*OnionStats

	dialLatency  func(addr string) time.Duration
	dialHook     func(addr string) error
	createHook   func(conf ghostcomm.OnionConfig) error
	publishDelay func(serviceID string) time.Duration
	wrapConn     func(addr string, c net.Conn) net.Conn
}

// onion is one registered service. Its fields other than the channels and
// the immutable configuration are guarded by Network.mu.
type onion struct {
	id         string
	port       int
	target     string
	clientAuth [][32]byte
	pow        ghostcomm.PoWConfig
	owner      *Controller

	published   bool
	publishedCh chan struct{} // closed when published
	removedCh   chan struct{} // closed when removed
	timer       *time.Timer   // publication timer, if delayed
	conns       map[*conn]struct{}
}

// NewNetwork returns an empty fake Tor network.
func NewNetwork(cfg Config) *Network {
	n := &Network{
		log:         cfg.Logger,
		rand:        cfg.Rand,
		done:        make(chan struct{}),
		onions:      make(map[string]*onion),
		partitioned: make(map[string]bool),
		stats:       make(map[string]*OnionStats),
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.rand == nil {
		n.rand = rand.Reader
	}
	return n
}

// Controller returns a new Controller on the network. Each call returns a
// distinct Controller, as if it were a separate control connection to the
// same tor: it lists and removes only the services it created.
func (n *Network) Controller() *Controller {
	return &Controller{n: n}
}

// Dialer returns a new Dialer on the network. Each call returns a distinct
// Dialer with its own client-authorization keys, as if it were a separate tor
// client.
func (n *Network) Dialer() *Dialer {
	return &Dialer{n: n, auth: make(map[string][32]byte)}
}

// Onions returns the service ids of every service that exists now, published
// or not, sorted.
func (n *Network) Onions() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	ids := make([]string, 0, len(n.onions))
	for id := range n.onions {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Stats returns the dial counters of a service id (with or without
// ".onion"). They keep counting across removal of the service; an id never
// dialed has zero counters.
func (n *Network) Stats(serviceID string) OnionStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s := n.stats[normID(serviceID)]; s != nil {
		return *s
	}
	return OnionStats{}
}

// Partition makes a service unreachable: until Heal, new dials to it fail
// with CodeIntroFailed (matching ghostcomm.ErrOnionUnreachable), as when
// tor cannot reach its introduction points. Connections already open stay
// open (see Sever). The id need not exist yet.
func (n *Network) Partition(serviceID string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.partitioned[normID(serviceID)] = true
}

// Heal undoes Partition.
func (n *Network) Heal(serviceID string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.partitioned, normID(serviceID))
}

// Sever closes every open connection to a service, as a broken circuit
// would, and returns how many it closed. The service stays up.
func (n *Network) Sever(serviceID string) int {
	n.mu.Lock()
	var conns []*conn
	if o := n.onions[normID(serviceID)]; o != nil {
		conns = o.takeConns()
	}
	n.mu.Unlock()
	closeConns(conns)
	return len(conns)
}

// SetDialLatency makes every dial wait f(addr) before it connects, while
// honouring the dial's ctx; addr is the normalized "<id>.onion:<port>". Nil
// removes the latency.
func (n *Network) SetDialLatency(f func(addr string) time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dialLatency = f
}

// SetDialHook injects dial failures: a dial for which f returns an error
// fails with it (after the dial is counted, before latency). Return an error
// matching ghostcomm.ErrOnionNotFound or ghostcomm.ErrOnionUnreachable to
// mimic tor precisely; any other error is reported with CodeGeneralFailure
// and wrapped so that it also matches ErrOnionUnreachable. Nil removes the
// hook.
func (n *Network) SetDialHook(f func(addr string) error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dialHook = f
}

// SetCreateHook injects CreateOnion failures: a CreateOnion (with a valid
// config) for which f returns an error fails with an error wrapping it and
// creates nothing. Nil removes the hook.
func (n *Network) SetCreateHook(f func(conf ghostcomm.OnionConfig) error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.createHook = f
}

// SetPublishDelay mimics tor's descriptor upload: a new service becomes
// dialable only f(serviceID) after CreateOnion registered it. Until then
// dials fail with CodeOnionNotFound. CreateOnion waits for the publication
// (honouring its ctx) unless OnionConfig.NoWait is set. Nil (the default)
// publishes at once.
func (n *Network) SetPublishDelay(f func(serviceID string) time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.publishDelay = f
}

// SetWrapConn lets tests interpose on connections: every connection a dial
// returns is f(addr, c), where c is the raw loopback connection to the
// service's Target (for example a wrapper that delays, throttles or corrupts
// bytes). f must return a connection whose Close closes c. Nil removes the
// hook.
func (n *Network) SetWrapConn(f func(addr string, c net.Conn) net.Conn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.wrapConn = f
}

// Close shuts the network down: it removes every service, closes every open
// connection, and makes pending CreateOnion calls return ErrClosed. Later
// dials fail with CodeOnionNotFound, later CreateOnion calls with ErrClosed.
// Close is idempotent and always returns nil.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	close(n.done)
	var conns []*conn
	for _, o := range n.onions {
		conns = append(conns, n.removeLocked(o)...)
	}
	n.mu.Unlock()
	closeConns(conns)
	n.log.Debug("tortest: network closed", "conns", len(conns))
	return nil
}

// newKey returns a fresh service key from the configured randomness.
func (n *Network) newKey() (ed25519.PrivateKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	n.randMu.Lock()
	_, err := io.ReadFull(n.rand, seed)
	n.randMu.Unlock()
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// statsLocked returns the counters of id, creating them. n.mu must be held.
func (n *Network) statsLocked(id string) *OnionStats {
	s := n.stats[id]
	if s == nil {
		s = &OnionStats{}
		n.stats[id] = s
	}
	return s
}

// removeLocked unregisters o and returns its connections, which the caller
// closes after unlocking n.mu. n.mu must be held.
func (n *Network) removeLocked(o *onion) []*conn {
	if n.onions[o.id] != o {
		return nil
	}
	delete(n.onions, o.id)
	close(o.removedCh)
	if o.timer != nil {
		o.timer.Stop()
	}
	n.log.Debug("tortest: onion removed", "id", o.id)
	return o.takeConns()
}

// publish marks o as published, if it is still registered.
func (n *Network) publish(o *onion) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.onions[o.id] != o || o.published {
		return
	}
	o.published = true
	close(o.publishedCh)
	n.log.Debug("tortest: onion published", "id", o.id)
}

// takeConns empties o's connection set and returns its members. n.mu must be
// held.
func (o *onion) takeConns() []*conn {
	conns := make([]*conn, 0, len(o.conns))
	for c := range o.conns {
		conns = append(conns, c)
	}
	clear(o.conns)
	return conns
}

func closeConns(conns []*conn) {
	for _, c := range conns {
		c.Close()
	}
}

// normID lowercases a service id and strips an optional ".onion".
func normID(id string) string {
	id = strings.ToLower(id)
	return strings.TrimSuffix(id, ".onion")
}
