package ghostcomm_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	. "github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// hopNet is a Primary and a Client on a fake Tor network, for tests that
// need the package's internals.
type hopNet struct {
	net     *tortest.Network
	primary *Primary
	client  *Client
	cycle   *Cycle
}

func newHopNet(t testing.TB, pc PrimaryConfig, cc ClientConfig) *hopNet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := tortest.NewNetwork(tortest.Config{})
	t.Cleanup(func() { n.Close() })
	p, err := NewPrimary(ctx, n.Controller(), n.Dialer(), pc)
	if err != nil {
		t.Fatalf("NewPrimary: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	c, err := NewClient(n.Dialer(), p.Invite(nil), cc)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	cy, err := c.Fetch(ctx)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return &hopNet{net: n, primary: p, client: c, cycle: cy}
}

// exchange sends one frame on a fresh stream to addr and reads the answer.
func (hn *hopNet) exchange(t testing.TB, addr string, typ uint8, parts [][]byte) (uint8, []byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := hn.net.Dialer().DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := WriteFrame(c, typ, 7, parts...); err != nil {
		return 0, nil, err
	}
	return ReadFrame(c, DefaultMaxFrameSize)
}

func TestReplayRefused(t *testing.T) {
	t.Parallel()
	// A copy of a message, as a sender would resend it after a broken
	// stream, gets the first copy's answer and is not processed again; the
	// same layer with another data box is a replay; so is a copy that
	// comes after the answer is no longer kept (HopTimeout).
	hn := newHopNet(t, PrimaryConfig{Nodes: 3, Node: NodeConfig{HopTimeout: 2 * time.Second}}, ClientConfig{})
	pm, err := hn.client.Prepare(hn.cycle, []byte("once only"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body := pm.Body(ctx, time.Second)
	first := pm.FirstHop()

	h, b1, err := hn.exchange(t, first, FrameMessage, body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hn.client.Answer(pm, h, b1); err != nil {
		t.Fatalf("first delivery: %v", err)
	}
	answered := time.Now()
	before := hn.primary.Stats().Nodes
	// The same bytes again, on another stream: the same answer.
	h, b2, err := hn.exchange(t, first, FrameMessage, body)
	if err != nil {
		t.Fatal(err)
	}
	if h != FrameReply || !bytes.Equal(b1, b2) {
		t.Fatalf("copy: got frame %d (%d bytes), want the first answer again", h, len(b2))
	}
	after := hn.primary.Stats().Nodes
	if after.Accepted != before.Accepted || after.Duplicates != before.Duplicates+1 {
		t.Fatalf("copy: accepted %d -> %d, duplicates %d -> %d; want it answered as a duplicate, not processed",
			before.Accepted, after.Accepted, before.Duplicates, after.Duplicates)
	}

	// The same layer with a data box of the attacker's choosing.
	other, err := hn.client.Reseal(pm, hn.cycle, []byte("twice"))
	if err != nil {
		t.Fatal(err)
	}
	h, b, err := hn.exchange(t, first, FrameMessage, other.Body(ctx, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, err = hn.client.Answer(pm, h, b)
	var he *HopError
	if !errors.As(err, &he) || he.Hop != 1 || !errors.Is(err, ErrReplay) {
		t.Fatalf("replay with another data box: got %v, want a HopError for hop 1 matching ErrReplay", err)
	}

	// Once the answer is no longer kept, the copy is a replay.
	time.Sleep(time.Until(answered.Add(2*time.Second + 100*time.Millisecond)))
	h, b, err = hn.exchange(t, first, FrameMessage, body)
	if err != nil {
		t.Fatal(err)
	}
	_, err = hn.client.Answer(pm, h, b)
	if !errors.As(err, &he) || he.Hop != 1 || !errors.Is(err, ErrReplay) {
		t.Fatalf("late replay: got %v, want a HopError for hop 1 matching ErrReplay", err)
	}
}

func TestReplayOfInnerLayerRefused(t *testing.T) {
	t.Parallel()
	// A hop that replays what it forwarded, once its successor no longer
	// keeps the answer: the second hop refuses it.
	hn := newHopNet(t, PrimaryConfig{Nodes: 2, Node: NodeConfig{HopTimeout: time.Second}}, ClientConfig{Route: payloadOrder})
	var mu sync.Mutex
	var captured [][]byte
	second := hn.cycle.Nodes[1].Onion.Addr()
	hn.net.SetWrapConn(func(addr string, c net.Conn) net.Conn {
		if addr != second {
			return c
		}
		return &captureConn{Conn: c, record: func(b []byte) {
			mu.Lock()
			captured = append(captured, append([]byte(nil), b...))
			mu.Unlock()
		}}
	})
	hn.net.Sever(hn.cycle.Nodes[1].Onion.ServiceID) // streams opened ahead were not captured
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := hn.client.Send(ctx, []byte("x")); err != nil {
		t.Fatalf("Send: %v", err)
	}
	mu.Lock()
	raw := bytes.Join(captured, nil)
	mu.Unlock()
	typ, body, err := ReadFrame(bytes.NewReader(raw), DefaultMaxFrameSize)
	if err != nil || typ != FrameMessage {
		t.Fatalf("captured stream: %v %v", typ, err)
	}
	time.Sleep(1100 * time.Millisecond)
	h, b, err := hn.exchange(t, second, FrameMessage, [][]byte{body})
	if err != nil {
		t.Fatal(err)
	}
	if h != FrameReject || len(b) != 1 || b[0] != RejectReplay {
		t.Fatalf("replayed inner layer: got %v %x, want reject %d", h, b, RejectReplay)
	}
}

// captureConn records what is written to it.
type captureConn struct {
	net.Conn
	record func([]byte)
}

func (c *captureConn) Write(b []byte) (int, error) {
	c.record(b)
	return c.Conn.Write(b)
}

func TestExpiredCycleRefusedByHop(t *testing.T) {
	clock := tortest.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	hn := newHopNet(t, PrimaryConfig{Nodes: 3, Period: time.Hour, Grace: time.Minute, Clock: clock}, ClientConfig{Clock: clock})
	pm, err := hn.client.Prepare(hn.cycle, []byte("late"))
	if err != nil {
		t.Fatal(err)
	}
	// Move the nodes' clock past the cycle's end plus grace without running
	// the Primary's timers, so the old nodes are still up: they must refuse
	// on their own.
	hn.primary.StopRotation()
	clock.Set(hn.cycle.NotAfter.Add(time.Minute + time.Second))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, b, err := hn.exchange(t, pm.FirstHop(), FrameMessage, pm.Body(ctx, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, err = hn.client.Answer(pm, h, b)
	if !errors.Is(err, ErrStaleCycle) {
		t.Fatalf("got %v, want ErrStaleCycle", err)
	}
	// The client itself no longer uses the cycle: it fetches a new one.
	if hn.cycle.ValidAt(clock.Now()) {
		t.Fatal("cycle still valid for the client")
	}
}

func TestLayerForAnotherCycleRefused(t *testing.T) {
	hn := newHopNet(t, PrimaryConfig{Nodes: 1}, ClientConfig{})
	cy := hn.cycle.Clone()
	cy.NotBefore = cy.NotBefore.Add(-time.Hour) // timestamps of another cycle
	pm, err := hn.client.Prepare(cy, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, b, err := hn.exchange(t, pm.FirstHop(), FrameMessage, pm.Body(ctx, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hn.client.Answer(pm, h, b); !errors.Is(err, ErrStaleCycle) {
		t.Fatalf("got %v, want ErrStaleCycle", err)
	}
}

func TestDataBoxForAnotherCycleRefused(t *testing.T) {
	// A genuine layer beside a data box that carries another timestamp:
	// hop 1 refuses the data with a report only the client can read. The
	// data box is made anew each time; with the cycle's own timestamp
	// (d = 0) the message goes through.
	hn := newHopNet(t, PrimaryConfig{Nodes: 2}, ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, d := range []int64{0, 1, -1, -3600} {
		pm, err := hn.client.Prepare(hn.cycle, []byte("data"))
		if err != nil {
			t.Fatal(err)
		}
		if err := pm.ResealData([]byte("data"), hn.cycle.NotBefore.Unix()+d); err != nil {
			t.Fatal(err)
		}
		h, b, err := hn.exchange(t, pm.FirstHop(), FrameMessage, pm.Body(ctx, time.Second))
		if err != nil {
			t.Fatal(err)
		}
		_, err = hn.client.Answer(pm, h, b)
		if d == 0 {
			if err != nil {
				t.Fatalf("data box with the cycle's timestamp: %v", err)
			}
			continue
		}
		var he *HopError
		if !errors.As(err, &he) || he.Hop != 1 || !errors.Is(err, ErrAuth) {
			t.Fatalf("data box at NotBefore%+d: got %v, want a HopError for hop 1 matching ErrAuth", d, err)
		}
	}
}

func TestMessageBitFlipsRejected(t *testing.T) {
	t.Parallel()
	// Every single-byte change of the message body (budget aside) is
	// rejected with a typed error, and never yields a result.
	hn := newHopNet(t, PrimaryConfig{Nodes: 2}, ClientConfig{PadHops: -1})
	pm, err := hn.client.Prepare(hn.cycle, []byte("integrity"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	body := bytes.Join(pm.Body(ctx, 5*time.Second), nil)
	first := pm.FirstHop()
	typed := []error{ErrAuth, ErrMalformed, ErrUnsupportedVersion, ErrReplay}
	for i := 4; i < len(body); i++ { // bytes 0..3 are the budget
		mut := bytes.Clone(body)
		mut[i] ^= 0x01 << (i % 8)
		h, b, err := hn.exchange(t, first, FrameMessage, [][]byte{mut})
		if err != nil {
			t.Fatalf("byte %d: %v", i, err)
		}
		_, err = hn.client.Answer(pm, h, b)
		if err == nil {
			t.Fatalf("byte %d flipped: message accepted", i)
		}
		ok := false
		for _, e := range typed {
			ok = ok || errors.Is(err, e)
		}
		if !ok {
			t.Fatalf("byte %d flipped: untyped error %v", i, err)
		}
	}
}

func TestOversizeFrameNotAllocated(t *testing.T) {
	hn := newHopNet(t, PrimaryConfig{Nodes: 1}, ClientConfig{})
	addr := hn.cycle.Nodes[0].Onion.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := hn.net.Dialer().DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	// A header announcing 4 GiB - 1, then nothing.
	hdr := FrameHeader(FrameMessage, 1, 1<<32-1)
	if _, err := c.Write(hdr); err != nil {
		t.Fatal(err)
	}
	h, b, err := ReadFrame(c, DefaultMaxFrameSize)
	if err != nil {
		t.Fatalf("reading the refusal: %v", err)
	}
	if h != FrameReject || len(b) != 1 || b[0] != RejectTooLarge {
		t.Fatalf("got %v %x, want a too-large reject", h, b)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("stream still open after an oversize frame")
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Fatalf("%d bytes allocated while refusing a 4 GiB frame", grew)
	}
}

func TestReadFrameAllocatesAsDataArrives(t *testing.T) {
	// A header announcing the limit, followed by 100 bytes and EOF: the
	// reader fails after allocating about one chunk, not the limit.
	const limit = 1 << 30
	hdr := FrameHeader(FrameMessage, 1, limit)
	in := append(hdr, make([]byte, 100)...)
	allocs := testing.AllocsPerRun(10, func() {
		if _, _, err := ReadFrame(bytes.NewReader(in), limit); !errors.Is(err, ErrMalformed) {
			t.Fatalf("got %v, want ErrMalformed", err)
		}
	})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ReadFrame(bytes.NewReader(in), limit)
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 2*FrameChunk {
		t.Fatalf("%d bytes allocated for 100 bytes of body (%v allocs)", grew, allocs)
	}
}

func TestGarbageDoesNotDisturbGoodMessages(t *testing.T) {
	hn := newHopNet(t, PrimaryConfig{Nodes: 3}, ClientConfig{})
	first := hn.cycle.Nodes[0].Onion.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	stop := make(chan struct{})
	garbage := []func() []byte{
		func() []byte { b := make([]byte, 4096); rand.Read(b); return b },
		func() []byte { return []byte{FrameVersion} },                // a truncated header, then silence
		func() []byte { return FrameHeader(FrameMessage, 1, 1<<20) }, // a body that never comes
		func() []byte { return FrameHeader(99, 1, 3) },               // unknown type, then a short body
		func() []byte { return append(FrameHeader(FrameMessage, 2, 8), 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff) },
		func() []byte { return append([]byte{9}, make([]byte, 64)...) }, // wrong version
	}
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := hn.net.Dialer().DialContext(ctx, "tcp", first)
				if err != nil {
					return
				}
				c.SetDeadline(time.Now().Add(200 * time.Millisecond))
				c.Write(garbage[(i+j)%len(garbage)]())
				io.Copy(io.Discard, c)
				c.Close()
			}
		}()
	}
	errs := make(chan error, 64)
	var good sync.WaitGroup
	for i := range 64 {
		good.Add(1)
		go func() {
			defer good.Done()
			msg := binary.BigEndian.AppendUint32(nil, uint32(i))
			res, err := hn.client.Send(ctx, msg)
			if err == nil && !res.Verified {
				err = errors.New("unverified result")
			}
			errs <- err
		}()
	}
	good.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("good message failed beside garbage: %v", err)
		}
	}
}

func TestInflightBytesBounded(t *testing.T) {
	// A node whose processor holds large inputs until released, with room
	// for 1 MiB of frame bodies: while one 600 KiB message is held, a
	// second one finds no room and is refused as busy, and a small one
	// still passes.
	release := make(chan struct{})
	registerOnce(t, ProcessorKind{Name: "test-hold-large", Deterministic: true, New: func(map[string]string) (Processor, error) {
		return ProcessorFunc(func(b []byte) ([]byte, error) {
			if len(b) > 100<<10 {
				<-release
			}
			return []byte{byte(len(b))}, nil
		}), nil
	}})
	hn := newHopNet(t, PrimaryConfig{
		Nodes:      1,
		Processing: func(int, io.Reader) ProcessorSpec { return ProcessorSpec{Name: "test-hold-large"} },
		Node:       NodeConfig{MaxFrameSize: 1 << 20, MaxInflightBytes: 1 << 20, IOTimeout: 300 * time.Millisecond},
	}, ClientConfig{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	prep := func(n int) *Prepared {
		pm, err := hn.client.Prepare(hn.cycle, make([]byte, n))
		if err != nil {
			t.Fatal(err)
		}
		return pm
	}
	big1, big2, small := prep(600<<10), prep(600<<10), prep(1<<10)
	first := big1.FirstHop()

	held := make(chan error, 1)
	go func() {
		h, b, err := hn.exchange(t, first, FrameMessage, big1.Body(ctx, 10*time.Second))
		if err == nil {
			_, err = hn.client.Answer(big1, h, b)
		}
		held <- err
	}()
	waitFor(t, func() bool { return hn.primary.InflightBytes() > 600<<10 })

	h, b, err := hn.exchange(t, first, FrameMessage, big2.Body(ctx, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hn.client.Answer(big2, h, b); !errors.Is(err, ErrBusy) {
		t.Fatalf("second large message: %v, want ErrBusy", err)
	}
	h, b, err = hn.exchange(t, first, FrameMessage, small.Body(ctx, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hn.client.Answer(small, h, b); err != nil {
		t.Fatalf("small message beside a held one: %v", err)
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatalf("held message: %v", err)
	}
}

// checkPeers checks that a node keeps of each peer its onion and public key,
// and nothing else: no processor spec, no key ring.
func checkPeers(t *testing.T, what string, got []NodeInfo, want []NodeInfo) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d peers, want %d", what, len(got), len(want))
	}
	for i := range got {
		p := &got[i]
		if p.Processor.Name != "" || p.Processor.Params != nil {
			t.Errorf("%s: peer %d carries its processor %v", what, i, p.Processor)
		}
		if p.HasKeyRing() {
			t.Errorf("%s: peer %d carries a key ring", what, i)
		}
		if p.Onion != want[i].Onion || !bytes.Equal(p.PublicKey, want[i].PublicKey) || p.Fingerprint() != want[i].Fingerprint() {
			t.Errorf("%s: peer %d is not the cycle's node %d", what, i, i)
		}
	}
}

func TestNodesKeepOnlyWhatForwardingNeeds(t *testing.T) {
	// The Primary's nodes (salted hash processors by default) know of
	// their peers the onion and the public key, not the processor, and
	// messages still go through.
	hn := newHopNet(t, PrimaryConfig{Nodes: 3}, ClientConfig{})
	for _, nd := range hn.primary.Nodes() {
		checkPeers(t, "node of the Primary", nd.Peers(), hn.cycle.Nodes)
	}
	for _, n := range hn.cycle.Nodes {
		if n.Processor.Params["salt"] == "" {
			t.Fatalf("the payload gives node processors without salt (%v): the test shows nothing", n.Processor)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := hn.client.Send(ctx, []byte("x")); err != nil || !res.Verified {
		t.Fatalf("Send: %v", err)
	}

	// A program that calls SetPeers itself with the payload's list (which
	// has the processors) gets the same stripping.
	nd, err := NewNode(ctx, hn.net.Controller(), hn.net.Dialer(), NodeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer nd.Close()
	if err := nd.SetPeers(hn.cycle.Nodes); err != nil {
		t.Fatal(err)
	}
	checkPeers(t, "SetPeers with the payload's list", nd.Peers(), hn.cycle.Nodes)
}
