package ghostcomm_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	. "github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/sealed"
	"github.com/ghostcomm/ghostcomm/internal/wire"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

func sealedPrimary(n int, f SealedForm, hopTimeout time.Duration) PrimaryConfig {
	return PrimaryConfig{Nodes: n, Protocol: ProtocolSealed, Sealed: SealedConfig{Form: f}, Node: NodeConfig{HopTimeout: hopTimeout}}
}

func TestSealedReplayRefused(t *testing.T) {
	t.Parallel()
	// As in the layered protocol: a copy of a packet (a resend after a
	// broken stream) gets the first copy's answer and is not processed
	// again; the same header with another payload is a replay; so is a
	// copy that comes once the answer is no longer kept (HopTimeout).
	hn := newHopNet(t, sealedPrimary(3, FormChain, time.Second), ClientConfig{})
	sp, err := hn.client.PrepareSealed(hn.cycle, []byte("once only"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pkt := sp.Packet()
	first := sp.FirstHop()
	h, b1, err := hn.exchange(t, first, FrameSealedPacket, [][]byte{pkt})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Answer(h, bytes.Clone(b1)); err != nil {
		t.Fatalf("first delivery: %v", err)
	}
	answered := time.Now()
	before := hn.primary.Stats().Nodes
	h, b2, err := hn.exchange(t, first, FrameSealedPacket, [][]byte{pkt})
	if err != nil {
		t.Fatal(err)
	}
	if h != FrameSealedReply || !bytes.Equal(b1, b2) {
		t.Fatalf("copy: got frame %d (%d bytes), want the first answer again", h, len(b2))
	}
	after := hn.primary.Stats().Nodes
	if after.Accepted != before.Accepted || after.Duplicates != before.Duplicates+1 {
		t.Fatalf("copy: accepted %d -> %d, duplicates %d -> %d; want it answered as a duplicate",
			before.Accepted, after.Accepted, before.Duplicates, after.Duplicates)
	}

	// The header MAC does not cover the payload: the same header with a
	// payload of the attacker's choosing passes the MAC, and is a replay.
	other := bytes.Clone(pkt)
	other[len(other)-1] ^= 1
	h, b, err := hn.exchange(t, first, FrameSealedPacket, [][]byte{other})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sp.Answer(h, b)
	var he *HopError
	if !errors.As(err, &he) || he.Hop != 1 || !errors.Is(err, ErrReplay) {
		t.Fatalf("replay with another payload: got %v, want a HopError for hop 1 matching ErrReplay", err)
	}

	time.Sleep(time.Until(answered.Add(time.Second + 100*time.Millisecond)))
	h, b, err = hn.exchange(t, first, FrameSealedPacket, [][]byte{pkt})
	if err != nil {
		t.Fatal(err)
	}
	if _, err = sp.Answer(h, b); !errors.As(err, &he) || he.Hop != 1 || !errors.Is(err, ErrReplay) {
		t.Fatalf("late replay: got %v, want a HopError for hop 1 matching ErrReplay", err)
	}
	if got := hn.primary.Stats().Nodes.Refused.Replay; got != 2 {
		t.Fatalf("%d replays counted, want 2", got)
	}
}

// wrapWrites makes every frame body of exactly size bytes written on streams
// to addr go through f (on a copy), while on is set: a write of the body
// alone, or of the whole frame at once (the pool writes a frame in one
// write on a stream that is no *net.TCPConn, such as these).
func wrapWrites(hn *hopNet, addr string, size int, on *sync.Mutex, f func([]byte)) {
	hn.net.SetWrapConn(func(a string, c net.Conn) net.Conn {
		if a != addr {
			return c
		}
		return &writeHook{Conn: c, f: func(b []byte) []byte {
			skip := 0
			if len(b) == wire.HeaderSize+size {
				skip = wire.HeaderSize
			}
			if len(b)-skip != size || !on.TryLock() {
				return b
			}
			defer on.Unlock()
			b = bytes.Clone(b)
			f(b[skip:])
			return b
		}}
	})
}

type writeHook struct {
	net.Conn
	f func([]byte) []byte
}

func (w *writeHook) Write(b []byte) (int, error) {
	if _, err := w.Conn.Write(w.f(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}

func TestSealedReplayAtSecondHop(t *testing.T) {
	t.Parallel()
	// A hop that replays what it forwarded, once its successor no longer
	// keeps the answer: the second hop refuses it.
	hn := newHopNet(t, sealedPrimary(2, FormRelay, time.Second), ClientConfig{Route: payloadOrder})
	second := hn.cycle.Nodes[1].Onion.Addr()
	var captured [][]byte
	var mu sync.Mutex
	wrapWrites(hn, second, sealed.Small.Size(), &mu, func(b []byte) { captured = append(captured, bytes.Clone(b)) })
	hn.net.Sever(hn.cycle.Nodes[1].Onion.ServiceID) // streams opened ahead are not wrapped
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := hn.client.Send(ctx, []byte("x")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	mu.Lock()
	if len(captured) != 1 {
		t.Fatalf("%d packets captured, want 1", len(captured))
	}
	pkt := captured[0]
	mu.Unlock()
	time.Sleep(1100 * time.Millisecond)
	h, b, err := hn.exchange(t, second, FrameSealedPacket, [][]byte{pkt})
	if err != nil {
		t.Fatal(err)
	}
	if h != FrameReject || len(b) != 1 || b[0] != RejectReplay {
		t.Fatalf("replayed packet: got %v %x, want reject %d", h, b, RejectReplay)
	}
}

// A packet altered between hop 1 and hop 2 is refused, and the client's
// error names the hop that refused it: hop 2 for its header (its MAC does
// not check), the hop that opens the data for its payload (hop 2 in chain
// form, the exit in relay form: the wide-block cipher turns any flipped bit
// into garbage the zero tag exposes).
func TestSealedTamperAttributed(t *testing.T) {
	t.Parallel()
	cases := []struct {
		form    SealedForm
		offset  int // byte flipped in the packet hop 1 sends
		wantHop int
	}{
		{FormChain, 40, 2},   // in the routing block
		{FormChain, 1, 2},    // α
		{FormChain, 752, 2},  // γ
		{FormChain, 2000, 2}, // payload
		{FormRelay, 100, 2},  // header
		{FormRelay, 1500, 3}, // payload: the exit refuses it
		{FormRelay, sealed.Small.Size() - 1, 3},
	}
	for _, tc := range cases {
		hn := newHopNet(t, sealedPrimary(3, tc.form, 0), ClientConfig{Route: payloadOrder})
		second := hn.cycle.Nodes[1].Onion.Addr()
		var mu sync.Mutex
		wrapWrites(hn, second, sealed.Small.Size(), &mu, func(b []byte) { b[tc.offset] ^= 0x10 })
		hn.net.Sever(hn.cycle.Nodes[1].Onion.ServiceID)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := hn.client.Send(ctx, []byte("altered on the way"))
		cancel()
		var he *HopError
		if !errors.As(err, &he) || he.Hop != tc.wantHop || !errors.Is(err, ErrAuth) {
			t.Fatalf("%s, byte %d flipped: got %v, want a HopError for hop %d matching ErrAuth", tc.form, tc.offset, err, tc.wantHop)
		}
		if he.Onion != hn.cycle.Nodes[tc.wantHop-1].Onion.Addr() {
			t.Fatalf("error names %s, want hop %d's %s", he.Onion, tc.wantHop, hn.cycle.Nodes[tc.wantHop-1].Onion.Addr())
		}
	}
}

// A reply altered on its way back opens at no depth: the client refuses it
// (ErrAuth) instead of returning garbage.
func TestSealedTamperedReplyRefused(t *testing.T) {
	t.Parallel()
	hn := newHopNet(t, sealedPrimary(3, FormRelay, 0), ClientConfig{Route: payloadOrder})
	// The fake Tor wraps the dialing side of a stream: the client's
	// stream to hop 1, where the reply arrives with every hop's layer.
	first := hn.cycle.Nodes[0].Onion.Addr()
	hn.net.SetWrapConn(func(a string, c net.Conn) net.Conn {
		if a != first {
			return c
		}
		return &readHook{Conn: c, size: sealed.Small.Size()}
	})
	hn.net.Sever(hn.cycle.Nodes[0].Onion.ServiceID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := hn.client.Send(ctx, []byte("x"))
	var he *HopError
	if !errors.Is(err, ErrAuth) || errors.As(err, &he) {
		t.Fatalf("altered reply: got %v, want ErrAuth naming no hop", err)
	}
}

// readHook flips one bit in the body of the first frame of at least size
// bytes read from the stream (the reply), past its 10-byte header.
type readHook struct {
	net.Conn
	size int
	seen int
	done bool
}

func (r *readHook) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	if !r.done {
		for i := 0; i < n; i++ {
			r.seen++
			if r.seen == 10+r.size/2 { // the first frame is the reply
				b[i] ^= 1
				r.done = true
				break
			}
		}
	}
	return n, err
}

func TestSealedNodeRefusesOtherFrames(t *testing.T) {
	t.Parallel()
	hn := newHopNet(t, sealedPrimary(2, FormChain, 0), ClientConfig{})
	addr := hn.cycle.Nodes[0].Onion.Addr()
	// A layered message in a sealed cycle; a packet of no class; packets
	// of another version, or with a low-order ephemeral key; a Large
	// packet when the cycle allows only Small.
	for _, f := range []struct {
		typ  uint8
		body []byte
		code uint8
	}{
		{FrameMessage, make([]byte, 100), 9},
		{FrameSealedPacket, make([]byte, 3000), 1},
		{FrameSealedPacket, make([]byte, sealed.Small.Size()), 7},                                      // version 0
		{FrameSealedPacket, append([]byte{sealed.Version}, make([]byte, sealed.Small.Size()-1)...), 1}, // α = 0, of low order
	} {
		h, b, err := hn.exchange(t, addr, f.typ, [][]byte{f.body})
		if err != nil {
			t.Fatal(err)
		}
		if h != FrameReject || len(b) != 1 || b[0] != f.code {
			t.Fatalf("frame %d of %d bytes: got %d %x, want reject %d", f.typ, len(f.body), h, b, f.code)
		}
	}
	small := newHopNet(t, PrimaryConfig{Nodes: 1, Protocol: ProtocolSealed, Sealed: SealedConfig{MaxPacket: SealedSmall}}, ClientConfig{})
	h, b, err := small.exchange(t, small.cycle.Nodes[0].Onion.Addr(), FrameSealedPacket, [][]byte{make([]byte, sealed.Large.Size())})
	if err != nil {
		t.Fatal(err)
	}
	if h != FrameReject || len(b) != 1 || b[0] != RejectTooLarge {
		t.Fatalf("large packet in a small-only cycle: got %d %x, want reject %d", h, b, RejectTooLarge)
	}
	if got := hn.primary.Stats().Nodes.Accepted; got != 0 {
		t.Fatalf("%d packets accepted, want 0", got)
	}
}

// A signed payload whose sealed-mode key for a node is not a usable X25519
// point (of low order, or not canonical) is refused.
func TestPayloadBadSealedKeyRefused(t *testing.T) {
	hn := newHopNet(t, sealedPrimary(2, FormChain, 0), ClientConfig{})
	if err := forgeAndOpen(t, hn, Forgery{}); err != nil {
		t.Fatalf("genuine payload: %v", err)
	}
	one := make([]byte, 32)
	one[0] = 1 // u = 1: a point of order 4
	nonCanonical := bytes.Repeat([]byte{0xff}, 32)
	nonCanonical[31] = 0x7f // 2^255 - 1 > p
	for name, key := range map[string][]byte{"zero": make([]byte, 32), "order 4": one, "non-canonical": nonCanonical} {
		for node := range 2 {
			err := forgeAndOpen(t, hn, Forgery{Cycle: func(cy *Cycle) { cy.Nodes[node].SealedKey = key }})
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s sealed key for node %d: got %v, want ErrMalformed", name, node, err)
			}
		}
	}
}

// The client's packet gives every hop the same budget, names each hop's
// successor by its index in the payload, and ends at the exit: processed
// hop by hop with the nodes' own keys.
func TestSealedBudgetsEqual(t *testing.T) {
	hn := newHopNet(t, sealedPrimary(5, FormRelay, 0), ClientConfig{Route: func(*Cycle) []int { return []int{3, 0, 4, 1} }})
	sp, err := hn.client.PrepareSealed(hn.cycle, []byte("budgets"), 7*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	keys := hn.primary.SealedKeys()
	pkt := sp.Packet()
	route := []int{3, 0, 4, 1}
	for i, node := range route {
		var r sealed.Result
		if err := sealed.Process(keys[node], pkt, sealed.ReplayFunc(func([]byte) error { return nil }), &r); err != nil {
			t.Fatalf("hop %d: %v", i+1, err)
		}
		if r.BudgetMS != 7000 {
			t.Fatalf("hop %d: budget %d ms, want 7000 like every hop", i+1, r.BudgetMS)
		}
		if last := i == len(route)-1; last != (r.Command == sealed.CmdExit) || !last && int(r.Next) != route[i+1] {
			t.Fatalf("hop %d: command %d, next %d", i+1, r.Command, r.Next)
		}
	}
}

// buildFor builds a packet with the cycle's keys along route (indexes into
// cy.Nodes; an index past them names a node the hops do not know, with
// node 0's key).
func buildFor(t *testing.T, cy *Cycle, m sealed.Mode, route []int, budgetMS uint32) ([]byte, *sealed.Sent, []NodeInfo) {
	t.Helper()
	hops := make([]sealed.Hop, len(route))
	infos := make([]NodeInfo, len(route))
	for i, j := range route {
		infos[i] = cy.Nodes[j%len(cy.Nodes)]
		hops[i] = sealed.Hop{Index: byte(j), Key: sealed.PublicKey(infos[i].SealedKey), BudgetMS: budgetMS}
	}
	pkt, sent, err := sealed.Build(nil, sealed.Small, m, hops, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	return pkt, sent, infos
}

// Failures found once the header has checked are failure reports, which
// the client attributes: a budget below MinBudget, a packet of the other
// form, a next-hop index the hop does not know or that names itself.
func TestSealedReportsAfterHeader(t *testing.T) {
	hn := newHopNet(t, sealedPrimary(2, FormChain, 0), ClientConfig{})
	first := hn.cycle.Nodes[0].Onion.Addr()
	for _, tc := range []struct {
		name  string
		mode  sealed.Mode
		route []int
		ms    uint32
		want  error
	}{
		{"budget below MinBudget", sealed.Chain, []int{0, 1}, 99, ErrBudget},
		{"relay packet in a chain cycle", sealed.Relay, []int{0, 1}, 5000, ErrAuth},
		{"unknown next hop", sealed.Chain, []int{0, 7}, 5000, ErrMalformed},
		{"itself as next hop", sealed.Chain, []int{0, 0}, 5000, ErrMalformed},
	} {
		pkt, sent, infos := buildFor(t, hn.cycle, tc.mode, tc.route, tc.ms)
		h, b, err := hn.exchange(t, first, FrameSealedPacket, [][]byte{pkt})
		if err != nil {
			t.Fatal(err)
		}
		if h != FrameSealedReply {
			t.Fatalf("%s: frame %d %x, want a sealed reply (a failure report)", tc.name, h, b)
		}
		_, err = SealedAnswer(sent, infos, h, b)
		var he *HopError
		if !errors.As(err, &he) || he.Hop != 1 || !errors.Is(err, tc.want) {
			t.Fatalf("%s: got %v, want a HopError for hop 1 matching %v", tc.name, err, tc.want)
		}
	}
	if got := hn.primary.Stats().Nodes.Failed; got != 4 {
		t.Fatalf("%d failures counted, want 4", got)
	}
}

func TestSealedExpiredCycleRefusedByHop(t *testing.T) {
	clock := tortest.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	pc := sealedPrimary(2, FormChain, 0)
	pc.Period, pc.Grace, pc.Clock = time.Hour, time.Minute, clock
	hn := newHopNet(t, pc, ClientConfig{Clock: clock})
	sp, err := hn.client.PrepareSealed(hn.cycle, []byte("late"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hn.primary.StopRotation()
	clock.Set(hn.cycle.NotAfter.Add(time.Minute + time.Second))
	h, b, err := hn.exchange(t, sp.FirstHop(), FrameSealedPacket, [][]byte{sp.Packet()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Answer(h, b); !errors.Is(err, ErrStaleCycle) {
		t.Fatalf("got %v, want ErrStaleCycle", err)
	}
}

func TestLayeredNodeRefusesSealedPackets(t *testing.T) {
	hn := newHopNet(t, PrimaryConfig{Nodes: 1}, ClientConfig{})
	h, b, err := hn.exchange(t, hn.cycle.Nodes[0].Onion.Addr(), FrameSealedPacket, [][]byte{make([]byte, sealed.Small.Size())})
	if err != nil {
		t.Fatal(err)
	}
	if h != FrameReject || len(b) != 1 || b[0] != 9 {
		t.Fatalf("sealed packet to a layered node: got %d %x, want reject 9", h, b)
	}
}

// With equal budgets each hop's wait starts when the packet reaches it, so
// the hops nearest the client give up first: a stall at hop 4 is reported,
// before the client's own deadline, as a timeout of a hop at or before it
// (usually hop 2, named by hop 1; under load a later hop's report may win
// the race), never of hop 1.
func TestSealedStallReportedAtOrBefore(t *testing.T) {
	hn := newHopNet(t, sealedPrimary(4, FormRelay, 0), ClientConfig{Route: payloadOrder})
	fourth := hn.cycle.Nodes[3].Onion.Addr()
	hn.net.SetDialLatency(func(addr string) time.Duration {
		if addr == fourth {
			return time.Hour
		}
		return 0
	})
	hn.net.Sever(hn.cycle.Nodes[3].Onion.ServiceID) // the stream opened ahead
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := hn.client.Send(ctx, []byte("x"))
	var he *HopError
	if !errors.As(err, &he) || he.Hop < 2 || he.Hop > 4 || !errors.Is(err, ErrHopTimeout) {
		t.Fatalf("got %v, want a HopError for hop 2, 3 or 4 matching ErrHopTimeout", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the error came only after the client's deadline")
	}
	t.Logf("stall at hop 4 reported as a timeout of hop %d", he.Hop)
}

// A next hop that answers with a frame that is not a sealed reply is
// reported by the hop before it (report 8).
func TestSealedBrokenReplyNamed(t *testing.T) {
	hn := newHopNet(t, sealedPrimary(2, FormChain, 0), ClientConfig{Route: payloadOrder})
	second := hn.cycle.Nodes[1].Onion.Addr()
	hn.net.SetWrapConn(func(a string, c net.Conn) net.Conn {
		if a != second {
			return c
		}
		return &typeHook{Conn: c}
	})
	hn.net.Sever(hn.cycle.Nodes[1].Onion.ServiceID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := hn.client.Send(ctx, []byte("x"))
	var he *HopError
	if !errors.As(err, &he) || he.Hop != 2 || !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v, want a HopError for hop 2 matching ErrMalformed", err)
	}
}

// typeHook turns the type of the first sealed reply read from the stream
// into a layered reply (type 4).
type typeHook struct {
	net.Conn
	seen int
}

func (r *typeHook) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	for i := 0; i < n; i++ {
		if r.seen+i == 1 && b[i] == FrameSealedReply {
			b[i] = FrameReply
		}
	}
	r.seen += n
	return n, err
}

// A reply whose size is not its packet's can only come from the first hop:
// it is named.
func TestSealedWrongSizeReplyNamesFirstHop(t *testing.T) {
	hn := newHopNet(t, sealedPrimary(2, FormRelay, 0), ClientConfig{Route: payloadOrder})
	sp, err := hn.client.PrepareSealed(hn.cycle, []byte("x"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sp.Answer(FrameSealedReply, make([]byte, sealed.Small.Size()-1))
	var he *HopError
	if !errors.As(err, &he) || he.Hop != 1 || !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v, want a HopError for hop 1 matching ErrMalformed", err)
	}
	// The right size, but opening at no depth: ErrAuth, no hop named.
	if _, err = sp.Answer(FrameSealedReply, make([]byte, sealed.Small.Size())); !errors.Is(err, ErrAuth) || errors.As(err, &he) {
		t.Fatalf("got %v, want ErrAuth naming no hop", err)
	}
}

// Closing a node zeroes its sealed-mode key.
func TestSealedKeyWipedOnClose(t *testing.T) {
	hn := newHopNet(t, sealedPrimary(2, FormChain, 0), ClientConfig{})
	keys := hn.primary.SealedKeys()
	for i, k := range keys {
		if bytes.Equal(k.Bytes(), make([]byte, 32)) {
			t.Fatalf("node %d: sealed-mode key is zero before Close", i)
		}
	}
	if err := hn.primary.Close(); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if !bytes.Equal(k.Bytes(), make([]byte, 32)) {
			t.Fatalf("node %d: sealed-mode key not zeroed by Close", i)
		}
	}
}
