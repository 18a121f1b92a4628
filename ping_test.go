package ghostcomm_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/wire"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// silencer wraps the fake Tor's connections so that the test can make them
// drop everything written on them from one moment on, as a circuit that
// died without closing would.
type silencer struct{ on atomic.Bool }

type silentConn struct {
	net.Conn
	s *silencer
}

func (c silentConn) Write(b []byte) (int, error) {
	if c.s.on.Load() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func (s *silencer) wrap(_ string, c net.Conn) net.Conn { return silentConn{c, s} }

// byteCounter wraps the fake Tor's connections and counts the bytes the
// dialing side writes and reads on them.
type byteCounter struct{ wrote, read atomic.Int64 }

type countedConn struct {
	net.Conn
	b *byteCounter
}

func (c countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.b.wrote.Add(int64(n))
	return n, err
}

func (c countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.b.read.Add(int64(n))
	return n, err
}

func (b *byteCounter) wrap(_ string, c net.Conn) net.Conn { return countedConn{c, b} }

// Client.Ping and Node.Ping measure the streams a message took, hop by
// hop: the client's stream to the first hop and each hop's stream to the
// next. No ping dials (the fake Tor counts every dial to every onion), and
// messages after the pings still take the same streams. Catches a ping
// that opens a stream of its own, which over Tor would measure another
// circuit than the messages'.
func TestPingMeasuresTheMessagesStreams(t *testing.T) {
	n := tortest.NewNetwork(tortest.Config{})
	var count byteCounter
	n.SetWrapConn(count.wrap)
	src := &tortest.HeldSource{TC: n.Controller(), Dialer: n.Dialer(), Count: 3}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := ghostcomm.NewPrimary(ctx, n.Controller(), n.Dialer(), ghostcomm.PrimaryConfig{Sources: []ghostcomm.NodeSource{src}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := ghostcomm.NewClient(n.Dialer(), p.Invite(nil), ghostcomm.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Send(ctx, []byte("first"))
	if err != nil || !res.Verified || len(res.Route) != 3 {
		t.Fatalf("Send: %v", err)
	}
	route := res.Route
	dials := func() (d [3]tortest.OnionStats, nd [3]uint64) {
		for i, hop := range route {
			d[i] = n.Stats(hop.Onion.ServiceID)
			nd[i] = src.Node(hop.Onion).Stats().Dials
		}
		return
	}
	before, nodeBefore := dials()
	for range 3 {
		if rtt, err := c.Ping(ctx, route[0].Onion); err != nil || rtt <= 0 {
			t.Fatalf("Client.Ping of hop 1: %v, %v", rtt, err)
		}
		for i := range 2 {
			rtt, err := src.Node(route[i].Onion).Ping(ctx, route[i+1].Onion)
			if err != nil || rtt <= 0 {
				t.Fatalf("hop %d: Node.Ping of hop %d: %v, %v", i+1, i+2, rtt, err)
			}
		}
	}
	// Echo sends its bytes on the same streams (no dial, checked below),
	// and gets back as many as it asks for: three echoes, each a ping frame
	// of 14+out bytes and a pong frame of 10+back.
	const out, back = 3000, 700
	wrote, read := count.wrote.Load(), count.read.Load()
	if rtt, err := c.Echo(ctx, route[0].Onion, out, back); err != nil || rtt <= 0 {
		t.Fatalf("Client.Echo of hop 1: %v, %v", rtt, err)
	}
	for i := range 2 {
		if rtt, err := src.Node(route[i].Onion).Echo(ctx, route[i+1].Onion, out, back); err != nil || rtt <= 0 {
			t.Fatalf("hop %d: Node.Echo of hop %d: %v, %v", i+1, i+2, rtt, err)
		}
	}
	for _, bad := range [][2]int{{-1, 0}, {10, -1}, {10, 11}, {ghostcomm.MaxEcho + 1, 0}} {
		if _, err := c.Echo(ctx, route[0].Onion, bad[0], bad[1]); !errors.Is(err, ghostcomm.ErrFrameTooLarge) {
			t.Fatalf("Client.Echo of %d bytes, %d back: %v; want ErrFrameTooLarge", bad[0], bad[1], err)
		}
		if _, err := src.Node(route[0].Onion).Echo(ctx, route[1].Onion, bad[0], bad[1]); !errors.Is(err, ghostcomm.ErrFrameTooLarge) {
			t.Fatalf("Node.Echo of %d bytes, %d back: %v; want ErrFrameTooLarge", bad[0], bad[1], err)
		}
	}
	if w, r := count.wrote.Load()-wrote, count.read.Load()-read; w != 3*(14+out) || r != 3*(10+back) {
		t.Fatalf("the echoes wrote %d bytes and read %d; want %d and %d", w, r, 3*(14+out), 3*(10+back))
	}
	after, nodeAfter := dials()
	if after != before || nodeAfter != nodeBefore {
		t.Fatalf("pings dialed: dials to each hop %+v, then %+v; each hop's own dials %v, then %v", before, after, nodeBefore, nodeAfter)
	}
	for i := range 3 {
		if after[i].Open != 1 {
			t.Errorf("hop %d: %d streams open to it; want 1", i+1, after[i].Open)
		}
	}
}

// A ping on a stream that has gone silent ends within its deadline: the
// caller's own (context.DeadlineExceeded), or, with none, the I/O timeout
// (ErrHopUnreachable: the stream is judged dead). A cancelled ping matches
// context.Canceled; after Close, ErrClosed. Catches a ping that waits for
// ever on a dead circuit, and errors a caller cannot match.
func TestPingDeadStream(t *testing.T) {
	const io = 300 * time.Millisecond
	n := tortest.NewNetwork(tortest.Config{})
	src := &tortest.HeldSource{TC: n.Controller(), Dialer: n.Dialer(), Count: 2, Config: ghostcomm.NodeConfig{IOTimeout: io}}
	defer n.Close()
	var quiet silencer
	n.SetWrapConn(quiet.wrap)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := ghostcomm.NewPrimary(ctx, n.Controller(), n.Dialer(), ghostcomm.PrimaryConfig{Sources: []ghostcomm.NodeSource{src}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := ghostcomm.NewClient(n.Dialer(), p.Invite(nil), ghostcomm.ClientConfig{IOTimeout: io})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Send(ctx, []byte("first"))
	if err != nil || len(res.Route) != 2 {
		t.Fatalf("Send: %v", err)
	}
	first, second := res.Route[0].Onion, res.Route[1].Onion
	node := src.Node(first)

	quiet.on.Store(true)
	short, cancelShort := context.WithTimeout(ctx, io/3)
	_, err = c.Ping(short, first)
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Client.Ping with a deadline, silent stream: %v; want context.DeadlineExceeded", err)
	}
	start := time.Now()
	_, err = node.Ping(ctx, second)
	if took := time.Since(start); !errors.Is(err, ghostcomm.ErrHopUnreachable) || took > 10*io {
		t.Fatalf("Node.Ping, silent stream: %v after %v; want ErrHopUnreachable after about the I/O timeout (%v)", err, took, io)
	}

	cctx, cancelNow := context.WithCancel(ctx)
	cancelNow()
	if _, err := c.Ping(cctx, first); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Client.Ping: %v; want context.Canceled", err)
	}
	quiet.on.Store(false)
	if _, err := c.Ping(ctx, first); err != nil {
		t.Fatalf("Client.Ping once the stream answers again: %v", err)
	}
	c.Close()
	if _, err := c.Ping(ctx, first); !errors.Is(err, ghostcomm.ErrClosed) {
		t.Fatalf("Client.Ping after Close: %v; want ErrClosed", err)
	}
	node.Close()
	if _, err := node.Ping(ctx, second); !errors.Is(err, ghostcomm.ErrClosed) {
		t.Fatalf("Node.Ping after Close: %v; want ErrClosed", err)
	}
}

// An echo request the Primary has no room for is refused busy on its own
// stream id, and is no refused payload request: PrimaryStats.PayloadsRefused
// counts what clients asked for, not what a stranger's pings cost. Catches a
// Primary that counts every refused frame as a refused payload.
func TestPrimaryEchoRefusalIsNoPayloadRefusal(t *testing.T) {
	n := tortest.NewNetwork(tortest.Config{})
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const maxFrame = 64 << 10
	p, err := ghostcomm.NewPrimary(ctx, n.Controller(), n.Dialer(), ghostcomm.PrimaryConfig{Nodes: 1,
		Node: ghostcomm.NodeConfig{MaxFrameSize: maxFrame, MaxInflightBytes: 1}}) // raised to maxFrame + 8 KiB
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dial := func() net.Conn {
		c, err := n.Dialer().DialContext(ctx, "tcp", p.Onion().Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second))
		return c
	}
	// Fill the Primary's budget with bodies begun and never finished: each
	// holds the transport's first chunk (4 KiB).
	for range (maxFrame + 8<<10) / (4 << 10) {
		c := dial()
		if _, err := c.Write(append(wire.Header{Type: wire.PayloadRequest, ID: 1, Len: maxFrame}.Append(nil), 0)); err != nil {
			t.Fatal(err)
		}
	}
	c := dial()
	var h wire.Header
	var body []byte
	for h.Type != wire.Reject { // the fillers' first bytes may still be on their way
		if err := wire.WriteFrame(c, wire.Ping, 9, wire.PingBody(make([]byte, 100), 100)); err != nil {
			t.Fatal(err)
		}
		if h, body, err = wire.ReadFrame(c, maxFrame); err != nil {
			t.Fatalf("answer to an echo: %v", err)
		}
	}
	if h.ID != 9 || len(body) != 1 || wire.RejectCode(body[0]) != wire.RejectBusy {
		t.Fatalf("echo refused with %+v %x; want reject busy on id 9", h, body)
	}
	if st := p.Stats(); st.PayloadsRefused != 0 {
		t.Fatalf("PayloadsRefused %d after a refused echo; want 0", st.PayloadsRefused)
	}
}
