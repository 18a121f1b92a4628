package tortest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/onionaddr"
)

var _ ghostcomm.TorController = (*Controller)(nil)

// Controller creates and removes onion services on a Network, as a tor
// control connection does. It implements ghostcomm.TorController.
//
// Get one from Network.Controller; the zero value is not usable. A
// Controller is safe for concurrent use. Close removes the services it
// created; afterwards CreateOnion fails with ErrClosed and RemoveOnion
// returns nil.
type Controller struct {
	n      *Network
	closed bool // guarded by n.mu
}

// CreateOnion registers an onion service with a v3 service id derived from
// conf.Key, or from a fresh key when conf.Key is nil.
//
// conf must name a VirtualPort in 1..65535 and a Target "127.0.0.1:<port>" or
// "localhost:<port>" (port 1..65535), and may set PoW's QueueRate and
// QueueBurst only with PoW.Enabled; otherwise CreateOnion returns a
// *ConfigError. conf.PoW is recorded (see PoW). conf.ClientAuth keys are recorded: dials then need a matching
// key (Dialer.AddClientAuth). A conf.Key whose service exists already gives
// ErrOnionExists.
//
// With a publication delay (Network.SetPublishDelay) CreateOnion waits until
// the service is published, unless conf.NoWait is set; if ctx ends first, the
// service is removed and ctx.Err() returned (wrapped). The Target listener is
// not checked: as with tor, a dial to a service whose Target does not accept
// fails, not CreateOnion.
func (c *Controller) CreateOnion(ctx context.Context, conf ghostcomm.OnionConfig) (ghostcomm.Onion, error) {
	n := c.n
	if err := ctx.Err(); err != nil {
		return ghostcomm.Onion{}, fmt.Errorf("tortest: create onion: %w", err)
	}
	target, err := checkConfig(conf)
	if err != nil {
		return ghostcomm.Onion{}, err
	}
	n.mu.Lock()
	closed := n.closed || c.closed
	hook, delayOf := n.createHook, n.publishDelay
	n.mu.Unlock()
	if closed {
		return ghostcomm.Onion{}, fmt.Errorf("tortest: create onion: %w", ErrClosed)
	}
	if hook != nil {
		if err := hook(cloneConfig(conf)); err != nil {
			return ghostcomm.Onion{}, fmt.Errorf("tortest: create onion: %w", err)
		}
	}
	key := conf.Key
	if key == nil {
		if key, err = n.newKey(); err != nil {
			return ghostcomm.Onion{}, fmt.Errorf("tortest: create onion: generate key: %w", err)
		}
	}
	o := &onion{
		id:          onionaddr.ServiceID(key.Public().(ed25519.PublicKey)),
		port:        conf.VirtualPort,
		target:      target,
		clientAuth:  slices.Clone(conf.ClientAuth),
		pow:         conf.PoW,
		owner:       c,
		publishedCh: make(chan struct{}),
		removedCh:   make(chan struct{}),
		conns:       make(map[*conn]struct{}),
	}
	n.mu.Lock()
	switch {
	case n.closed || c.closed:
		n.mu.Unlock()
		return ghostcomm.Onion{}, fmt.Errorf("tortest: create onion: %w", ErrClosed)
	case n.onions[o.id] != nil:
		n.mu.Unlock()
		return ghostcomm.Onion{}, fmt.Errorf("tortest: create onion %s: %w", o.id, ErrOnionExists)
	}
	n.onions[o.id] = o
	n.mu.Unlock()
	n.log.Debug("tortest: onion created", "id", o.id, "port", o.port, "target", o.target)

	var delay time.Duration
	if delayOf != nil {
		delay = delayOf(o.id)
	}
	if delay <= 0 {
		n.publish(o)
	} else {
		n.mu.Lock()
		if n.onions[o.id] == o { // not removed meanwhile
			o.timer = time.AfterFunc(delay, func() { n.publish(o) })
		}
		n.mu.Unlock()
	}
	onion := ghostcomm.Onion{ServiceID: o.id, Port: o.port}
	if conf.NoWait {
		return onion, nil
	}
	select {
	case <-o.publishedCh:
		return onion, nil
	case <-o.removedCh:
	case <-ctx.Done():
	}
	// Publication and removal or cancellation may have raced: publication
	// wins only if the service is still there.
	n.mu.Lock()
	live := n.onions[o.id] == o
	published := live && o.published
	var conns []*conn
	if live && !published {
		conns = n.removeLocked(o)
	}
	closed = n.closed || c.closed
	n.mu.Unlock()
	closeConns(conns)
	switch {
	case published:
		return onion, nil
	case closed:
		return ghostcomm.Onion{}, fmt.Errorf("tortest: create onion %s: %w", o.id, ErrClosed)
	case live || ctx.Err() != nil:
		return ghostcomm.Onion{}, fmt.Errorf("tortest: create onion %s: %w", o.id, ctx.Err())
	default:
		return ghostcomm.Onion{}, fmt.Errorf("tortest: create onion %s: %w", o.id, ErrRemoved)
	}
}

// RemoveOnion removes a service that this Controller created and closes the
// connections open to it, as tor's DEL_ONION closes the service's circuits.
// serviceID may carry ".onion". Removing a service that does not exist (any
// more) returns nil; removing another Controller's service returns
// ErrNotOwner. RemoveOnion does not block; ctx is not consulted, so a clean-up
// with an expired context still removes the service.
func (c *Controller) RemoveOnion(ctx context.Context, serviceID string) error {
	n := c.n
	id := normID(serviceID)
	n.mu.Lock()
	o := n.onions[id]
	if o == nil {
		n.mu.Unlock()
		return nil
	}
	if o.owner != c {
		n.mu.Unlock()
		return fmt.Errorf("tortest: remove onion %s: %w", id, ErrNotOwner)
	}
	conns := n.removeLocked(o)
	n.mu.Unlock()
	closeConns(conns)
	return nil
}

// Onions returns the service ids of the services this Controller created that
// exist now, published or not, sorted.
func (c *Controller) Onions() []string {
	n := c.n
	n.mu.Lock()
	defer n.mu.Unlock()
	var ids []string
	for id, o := range n.onions {
		if o.owner == c {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// PoW returns the proof-of-work setting that the service serviceID (which
// may carry ".onion") was created with, as tor would apply it, and whether
// this Controller holds such a service. The fake records the setting; it
// does not simulate the puzzle.
func (c *Controller) PoW(serviceID string) (ghostcomm.PoWConfig, bool) {
	n := c.n
	n.mu.Lock()
	defer n.mu.Unlock()
	o := n.onions[normID(serviceID)]
	if o == nil || o.owner != c {
		return ghostcomm.PoWConfig{}, false
	}
	return o.pow, true
}

// Close removes every service this Controller created, as tor does when the
// control connection that created non-detached services closes. Close is
// idempotent and always returns nil.
func (c *Controller) Close() error {
	n := c.n
	n.mu.Lock()
	c.closed = true
	var conns []*conn
	for _, o := range n.onions {
		if o.owner == c {
			conns = append(conns, n.removeLocked(o)...)
		}
	}
	n.mu.Unlock()
	closeConns(conns)
	return nil
}

// checkConfig validates conf as tor's ADD_ONION would and returns the
// normalized Target ("127.0.0.1:<port>").
func checkConfig(conf ghostcomm.OnionConfig) (string, error) {
	if conf.VirtualPort < 1 || conf.VirtualPort > 65535 {
		return "", &ConfigError{Field: "VirtualPort", Reason: fmt.Sprintf("%d is not in 1..65535", conf.VirtualPort)}
	}
	host, portStr, err := net.SplitHostPort(conf.Target)
	if err != nil {
		return "", &ConfigError{Field: "Target", Reason: fmt.Sprintf("%q is not host:port", conf.Target)}
	}
	if host != "127.0.0.1" && !strings.EqualFold(host, "localhost") {
		return "", &ConfigError{Field: "Target", Reason: fmt.Sprintf("host %q is not 127.0.0.1 or localhost", host)}
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return "", &ConfigError{Field: "Target", Reason: fmt.Sprintf("port %q is not in 1..65535", portStr)}
	}
	if conf.Key != nil {
		if len(conf.Key) != ed25519.PrivateKeySize {
			return "", &ConfigError{Field: "Key", Reason: fmt.Sprintf("%d bytes, want %d", len(conf.Key), ed25519.PrivateKeySize)}
		}
		derived := ed25519.NewKeyFromSeed(conf.Key.Seed())
		if !bytes.Equal(derived[32:], conf.Key[32:]) {
			return "", &ConfigError{Field: "Key", Reason: "public half does not match the seed"}
		}
	}
	if !conf.PoW.Enabled && (conf.PoW.QueueRate != 0 || conf.PoW.QueueBurst != 0) {
		return "", &ConfigError{Field: "PoW", Reason: "QueueRate or QueueBurst set without Enabled"}
	}
	return net.JoinHostPort("127.0.0.1", strconv.FormatUint(port, 10)), nil
}

// cloneConfig copies conf so that a hook cannot alter the caller's slices.
func cloneConfig(conf ghostcomm.OnionConfig) ghostcomm.OnionConfig {
	conf.Key = slices.Clone(conf.Key)
	conf.ClientAuth = slices.Clone(conf.ClientAuth)
	return conf
}
