package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/wire"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// socketFloor is the floor of the in-process network's latency: the same
// cryptography as the crypto-only bound (route.clientBuild, route.hop,
// openReply), relayed by the simplest correct 3-hop relay over the same
// fake Tor. Each relay is an onion service of the fake Tor; every stream it
// accepts is served by one goroutine that reads a message frame, does the
// hop, and either answers (the last hop) or writes the next hop's message to
// a stream of its own to the next relay, reads that relay's answer and
// writes it back: strictly one request, then its answer, per stream. A
// sender holds one stream to the first relay, so each message crosses the
// same six loopback sockets as ghostcomm's (three requests, three answers),
// and nothing is multiplexed, pooled or handed between goroutines.
type socketFloor struct {
	route   *route
	replays []*replaySet
	dialer  *tortest.Dialer
	ctrl    *tortest.Controller
	addrs   []string // each relay's onion address, hop order
	lns     []net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup

	free chan net.Conn // senders' streams to the first relay, not in use
}

// socketFloorMaxFrame bounds the frames the floor reads.
const socketFloorMaxFrame = 1 << 20

// socketFloorTimeout bounds every step of a floor message.
const socketFloorTimeout = 60 * time.Second

// newSocketFloor starts len(r.keys) relays on tor, relay i doing hop i of r.
func newSocketFloor(ctx context.Context, tor *tortest.Network, r *route) (*socketFloor, error) {
	f := &socketFloor{route: r, dialer: tor.Dialer(), ctrl: tor.Controller(), conns: map[net.Conn]struct{}{},
		free: make(chan net.Conn, 1024)}
	for range r.keys {
		f.replays = append(f.replays, newReplaySet())
	}
	for range r.keys {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			f.close()
			return nil, err
		}
		f.lns = append(f.lns, ln)
		o, err := f.ctrl.CreateOnion(ctx, ghostcomm.OnionConfig{VirtualPort: 80, Target: ln.Addr().String()})
		if err != nil {
			f.close()
			return nil, err
		}
		f.addrs = append(f.addrs, o.Addr())
	}
	for i, ln := range f.lns {
		f.wg.Add(1)
		go f.accept(i, ln)
	}
	return f, nil
}

// track records c so that close can cut it; false once the floor is closed.
func (f *socketFloor) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *socketFloor) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

func (f *socketFloor) accept(hop int, ln net.Listener) {
	defer f.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if !f.track(c) {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.untrack(c)
			f.serve(hop, c)
		}()
	}
}

// serve is relay hop's loop on one accepted stream.
func (f *socketFloor) serve(hop int, c net.Conn) {
	var down net.Conn // this stream's own stream to the next relay
	defer func() {
		if down != nil {
			f.untrack(down)
		}
	}()
	for {
		c.SetDeadline(time.Now().Add(socketFloorTimeout))
		h, body, err := wire.ReadFrame(c, socketFloorMaxFrame)
		if err != nil {
			return
		}
		m, _, err := parseMessage(body)
		if err != nil {
			return
		}
		res, err := f.route.hop(hop, f.replays[hop], m, rand.Reader)
		if err != nil {
			return
		}
		if res.reply != nil {
			if wire.WriteFrame(c, wire.Reply, h.ID, res.reply) != nil {
				return
			}
			continue
		}
		if res.next != hop+1 || res.next >= len(f.addrs) {
			return
		}
		if down == nil {
			ctx, cancel := context.WithTimeout(context.Background(), socketFloorTimeout)
			down, err = f.dial(ctx, res.next)
			cancel()
			if err != nil || !f.track(down) {
				down = nil
				return
			}
		}
		down.SetDeadline(time.Now().Add(socketFloorTimeout))
		if writeMessageFrame(down, h.ID, 60_000, res.out) != nil {
			return
		}
		ah, answer, err := wire.ReadFrame(down, socketFloorMaxFrame)
		if err != nil || ah.ID != h.ID || ah.Type != wire.Reply {
			return
		}
		if wire.WriteFrame(c, wire.Reply, h.ID, answer) != nil {
			return
		}
	}
}

var errSocketFloorAnswer = errors.New("socket floor: unexpected answer")

// roundTrip sends data through the three relays on a stream of its own
// (one of the free ones, or a fresh one) and returns what the last hop
// answered, opened.
func (f *socketFloor) roundTrip(data []byte) ([]byte, error) {
	var c net.Conn
	select {
	case c = <-f.free:
	default:
		ctx, cancel := context.WithTimeout(context.Background(), socketFloorTimeout)
		var err error
		c, err = f.dial(ctx, 0)
		cancel()
		if err != nil {
			return nil, err
		}
		if !f.track(c) {
			return nil, net.ErrClosed
		}
	}
	out, err := f.send(c, data)
	if err != nil {
		f.untrack(c)
		return nil, err
	}
	select {
	case f.free <- c:
	default:
		f.untrack(c)
	}
	return out, nil
}

func (f *socketFloor) send(c net.Conn, data []byte) ([]byte, error) {
	pad, err := clientPad(len(f.route.keys), rand.Reader)
	if err != nil {
		return nil, err
	}
	o, m, err := f.route.clientBuild(data, pad, rand.Reader)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(socketFloorTimeout))
	if err := writeMessageFrame(c, 1, 60_000, m); err != nil {
		return nil, err
	}
	h, body, err := wire.ReadFrame(c, socketFloorMaxFrame)
	if err != nil {
		return nil, err
	}
	if h.ID != 1 || h.Type != wire.Reply {
		return nil, fmt.Errorf("%w: %v, id %d", errSocketFloorAnswer, h.Type, h.ID)
	}
	return openReply(o, body)
}

// close stops the relays, cuts every stream and waits for the goroutines.
func (f *socketFloor) close() {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	for _, ln := range f.lns {
		ln.Close()
	}
	f.wg.Wait()
	f.ctrl.Close()
}

// checkSocketFloor sends one message through f and checks it comes back.
func checkSocketFloor(f *socketFloor, data []byte) error {
	out, err := f.roundTrip(data)
	if err != nil {
		return err
	}
	if !bytes.Equal(out, data) {
		return fmt.Errorf("socket floor changed the data")
	}
	return nil
}

// warm sends n messages at once, so that at least n streams to the first
// relay are open, each with its chain to the last.
func (f *socketFloor) warm(n int, data []byte) error {
	errs := make(chan error, n)
	for range n {
		go func() { errs <- checkSocketFloor(f, data) }()
	}
	var err error
	for range n {
		err = errors.Join(err, <-errs)
	}
	return err
}

// TestSocketFloor: the socket floor relays every message through its three
// hops (each hop's replay set gets one tag a message), gives the data back
// intact, reuses a sender's stream, and drops a stream that brings a frame
// it cannot open instead of answering it or hanging, while other streams
// carry on.
func TestSocketFloor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tor := tortest.NewNetwork(tortest.Config{})
	defer tor.Close()
	r, err := newRoute(3)
	if err != nil {
		t.Fatal(err)
	}
	f, err := newSocketFloor(ctx, tor, r)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	data := crypto(t).data["1KiB"]

	const senders, each = 4, 5
	if err := f.warm(senders, data); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, senders)
	for range senders {
		go func() {
			var err error
			for range each {
				err = errors.Join(err, checkSocketFloor(f, data))
			}
			errc <- err
		}()
	}
	for range senders {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	for i, rs := range f.replays {
		rs.mu.Lock()
		n := len(rs.seen)
		rs.mu.Unlock()
		if n != senders*(each+1) {
			t.Fatalf("hop %d peeled %d layers, want %d", i, n, senders*(each+1))
		}
	}
	if n := len(f.free); n == 0 || n > senders {
		t.Fatalf("%d free streams after %d senders", n, senders)
	}

	// A frame whose layer does not open: the relay closes the stream.
	c, err := f.dialer.DialContext(ctx, "tcp", f.addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	bad := message{layer: bytes.Repeat([]byte{0xa5}, 900), data: bytes.Repeat([]byte{0x5a}, 1200)}
	if err := writeMessageFrame(c, 1, 60_000, bad); err != nil {
		t.Fatal(err)
	}
	h, _, err := wire.ReadFrame(c, socketFloorMaxFrame)
	if err == nil {
		t.Fatalf("a frame that does not open was answered: %v", h.Type)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("a frame that does not open left the stream hanging: %v", err)
	}
	if err := checkSocketFloor(f, data); err != nil {
		t.Fatalf("after a bad stream: %v", err)
	}
}

// memPipes, set by GHOSTCOMM_FLOOR_PIPES=1, has the socket floor relay on
// in-memory pipes (net.Pipe) instead of the fake Tor's loopback sockets: the
// same relay with no network poller between its goroutines, to tell the
// poller's share of the tail from the scheduler's (docs/PERFORMANCE.md,
// "What is measured").
var memPipes = os.Getenv("GHOSTCOMM_FLOOR_PIPES") == "1"

// dial opens a stream to relay hop: through the fake Tor, or with memPipes
// an in-memory pipe whose other end that relay serves at once.
func (f *socketFloor) dial(ctx context.Context, hop int) (net.Conn, error) {
	if !memPipes {
		return f.dialer.DialContext(ctx, "tcp", f.addrs[hop])
	}
	a, b := net.Pipe()
	if !f.track(b) {
		return nil, net.ErrClosed
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer f.untrack(b)
		f.serve(hop, b)
	}()
	return a, nil
}
