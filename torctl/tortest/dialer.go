package tortest

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/onionaddr"
)

var (
	_ ghostcomm.Dialer           = (*Dialer)(nil)
	_ ghostcomm.ClientAuthorizer = (*Dialer)(nil)
)

// Dialer connects to the onion services of a Network, as a tor SOCKS port
// does. It implements ghostcomm.Dialer.
//
// Get one from Network.Dialer; the zero value is not usable. A Dialer is
// safe for concurrent use. Every error from DialContext is a
// *DialError (see there for the errors it matches).
type Dialer struct {
	n *Network

	mu   sync.Mutex
	auth map[string][32]byte // service id -> x25519 public key of our key
}

// AddClientAuth gives the Dialer the x25519 private key priv for the v3
// client authorization of a service (tor's ONION_CLIENT_AUTH_ADD). The
// service authorizes the Dialer if the public key of priv is among its
// OnionConfig.ClientAuth keys. serviceID may carry ".onion"; an invalid id
// returns an error matching ErrBadAddress. A later call for the same service
// replaces the key. Nothing blocks, so ctx is not consulted; the signature is
// ghostcomm.ClientAuthorizer's, so a Client gives the Dialer the key of its
// invite by itself.
func (d *Dialer) AddClientAuth(ctx context.Context, serviceID string, priv [32]byte) error {
	id := normID(serviceID)
	if _, err := onionaddr.Parse(id); err != nil {
		return fmt.Errorf("tortest: add client auth: %w: %w", ErrBadAddress, err)
	}
	pub := ClientAuthPublicKey(priv)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.auth[id] = pub
	return nil
}

// RemoveClientAuth forgets the Dialer's client-authorization key for a
// service. Removing a key that is not there is a no-op.
func (d *Dialer) RemoveClientAuth(serviceID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.auth, normID(serviceID))
}

// ClientAuthPublicKey returns the x25519 public key of a client-authorization
// private key: the value to put in OnionConfig.ClientAuth.
func ClientAuthPublicKey(priv [32]byte) [32]byte {
	// X25519 accepts every 32-byte string as a private key.
	k, err := ecdh.X25519().NewPrivateKey(priv[:])
	if err != nil {
		panic("tortest: X25519 rejected a 32-byte key: " + err.Error())
	}
	return [32]byte(k.PublicKey().Bytes())
}

// DialContext connects to the onion address addr ("<id>.onion:<port>") over
// network "tcp" (or "tcp4", "tcp6"). The connection is a real loopback TCP
// connection to the service's Target; its RemoteAddr is the onion address.
//
// The dial fails, with a *DialError, as tor would:
//   - CodeOnionNotFound (ghostcomm.ErrOnionNotFound): no such service, not yet
//     published, removed, no such virtual port, or the network is closed;
//   - CodeIntroFailed: the service is partitioned (Network.Partition);
//   - CodeMissingClientAuth / CodeWrongClientAuth: client authorization;
//   - CodeConnectionRefused: nothing accepts at the service's Target;
//   - CodeBadAddress (also ErrBadAddress): a malformed ".onion" address;
//   - CodeNotAllowed: a host that is not ".onion" (the network has no exits);
//   - CodeCommandNotSupported: a network other than tcp;
//
// all of which match ghostcomm.ErrOnionUnreachable except the first; and
// Code 0 with ctx.Err() when ctx ends first, including during an injected
// latency.
//
// Unlike the TCP connection a SOCKS dialer returns, the connection does not
// offer CloseWrite: streams through tor do not support half-closing.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	n := d.n
	fail := func(code byte, err error) (net.Conn, error) {
		n.log.Debug("tortest: dial failed", "addr", addr, "code", code, "err", err)
		return nil, &DialError{Addr: addr, Code: code, Err: err}
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return fail(CodeCommandNotSupported, fmt.Errorf("%w: network %q not supported", ghostcomm.ErrOnionUnreachable, network))
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fail(CodeBadAddress, fmt.Errorf("%w: %w: %w", ghostcomm.ErrOnionUnreachable, ErrBadAddress, err))
	}
	if !strings.HasSuffix(strings.ToLower(host), onionaddr.Suffix) {
		return fail(CodeNotAllowed, fmt.Errorf("%w: %q is not an onion address and the fake network has no exits", ghostcomm.ErrOnionUnreachable, host))
	}
	id, port, err := onionaddr.SplitAddr(addr)
	if err != nil {
		return fail(CodeBadAddress, fmt.Errorf("%w: %w: %w", ghostcomm.ErrOnionUnreachable, ErrBadAddress, err))
	}
	norm := net.JoinHostPort(id+onionaddr.Suffix, strconv.Itoa(port))

	n.mu.Lock()
	n.statsLocked(id).Dials++
	closed := n.closed
	hook, latencyOf := n.dialHook, n.dialLatency
	n.mu.Unlock()
	notFound := func(why string) (net.Conn, error) {
		return fail(CodeOnionNotFound, fmt.Errorf("%w: %s", ghostcomm.ErrOnionNotFound, why))
	}
	if closed {
		return notFound("network closed")
	}
	if err := ctx.Err(); err != nil {
		return fail(0, err)
	}
	if hook != nil {
		if err := hook(norm); err != nil {
			switch {
			case errors.Is(err, ghostcomm.ErrOnionNotFound):
				return fail(CodeOnionNotFound, err)
			case errors.Is(err, ghostcomm.ErrOnionUnreachable):
				return fail(CodeIntroFailed, err)
			default:
				return fail(CodeGeneralFailure, fmt.Errorf("%w: %w", ghostcomm.ErrOnionUnreachable, err))
			}
		}
	}
	if latencyOf != nil {
		if delay := latencyOf(norm); delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return fail(0, ctx.Err())
			case <-n.done:
				t.Stop()
				return notFound("network closed")
			}
		}
	}

	d.mu.Lock()
	myKey, haveKey := d.auth[id]
	d.mu.Unlock()
	n.mu.Lock()
	o := n.onions[id]
	var code byte
	var why string
	switch {
	case n.closed:
		code, why = CodeOnionNotFound, "network closed"
	case o == nil:
		code, why = CodeOnionNotFound, "no such service"
	case !o.published:
		code, why = CodeOnionNotFound, "descriptor not published yet"
	case o.port != port:
		code, why = CodeOnionNotFound, fmt.Sprintf("service has no virtual port %d", port)
	case n.partitioned[id]:
		code, why = CodeIntroFailed, "service partitioned"
	case len(o.clientAuth) > 0 && !haveKey:
		code, why = CodeMissingClientAuth, "service requires client authorization"
	case len(o.clientAuth) > 0 && !slices.Contains(o.clientAuth, myKey):
		code, why = CodeWrongClientAuth, "client key not authorized by the service"
	}
	var target string
	if o != nil {
		target = o.target
	}
	n.mu.Unlock()
	switch code {
	case 0:
	case CodeOnionNotFound:
		return notFound(why)
	default:
		return fail(code, fmt.Errorf("%w: %s", ghostcomm.ErrOnionUnreachable, why))
	}

	var nd net.Dialer
	raw, err := nd.DialContext(ctx, "tcp", target)
	if err != nil {
		if ctx.Err() != nil {
			return fail(0, ctx.Err())
		}
		return fail(CodeConnectionRefused, fmt.Errorf("%w: target: %w", ghostcomm.ErrOnionUnreachable, err))
	}
	n.mu.Lock()
	wrap := n.wrapConn
	n.mu.Unlock()
	var inner net.Conn = raw
	if wrap != nil {
		inner = wrap(norm, raw)
	}
	c := &conn{Conn: inner, n: n, o: o, remote: onionAddr(norm)}

	n.mu.Lock()
	if n.closed || n.onions[id] != o {
		n.mu.Unlock()
		inner.Close()
		return notFound("service removed during the dial")
	}
	o.conns[c] = struct{}{}
	s := n.statsLocked(id)
	s.Conns++
	s.Open++
	n.mu.Unlock()
	n.log.Debug("tortest: dial", "addr", norm, "target", target)
	return c, nil
}

// conn is a connection made through the network. It is tracked so that
// RemoveOnion, Sever and Close can cut it.
type conn struct {
	net.Conn
	n      *Network
	o      *onion
	remote onionAddr
	once   sync.Once
}

// Close closes the connection and stops tracking it.
func (c *conn) Close() error {
	c.once.Do(func() {
		c.n.mu.Lock()
		delete(c.o.conns, c)
		c.n.statsLocked(c.o.id).Open--
		c.n.mu.Unlock()
	})
	return c.Conn.Close()
}

// RemoteAddr returns the onion address dialed.
func (c *conn) RemoteAddr() net.Addr { return c.remote }

// onionAddr is the net.Addr of a connection's remote end.
type onionAddr string

func (a onionAddr) Network() string { return "onion" }
func (a onionAddr) String() string  { return string(a) }
