package ghostcomm_test

// Hostile tests of the transport between hops: one message, stream or
// attacker must never cost another's message. Each test names the finding
// of the review it answers (issue 8).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/ghostcomm/ghostcomm"
)

// slowSpec is an identity processor that sleeps d on input starting with
// "slow", at the nodes for which slow is set.
func slowKind(t *testing.T) {
	registerOnce(t, ProcessorKind{Name: "test-slow-marked", Deterministic: true, New: func(p map[string]string) (Processor, error) {
		d, err := time.ParseDuration(p["sleep"])
		if err != nil {
			return nil, err
		}
		return ProcessorFunc(func(b []byte) ([]byte, error) {
			if len(b) >= 4 && string(b[:4]) == "slow" {
				time.Sleep(d)
			}
			return b, nil
		}), nil
	}})
}

func slowAt(node int, d time.Duration) func(int, io.Reader) ProcessorSpec {
	return func(i int, _ io.Reader) ProcessorSpec {
		sleep := "0s"
		if i == node {
			sleep = d.String()
		}
		return ProcessorSpec{Name: "test-slow-marked", Params: map[string]string{"sleep": sleep}}
	}
}

func inOrder(cy *Cycle) []int {
	r := make([]int, len(cy.Nodes))
	for i := range r {
		r[i] = i
	}
	return r
}

// sendMany sends n distinct messages concurrently and returns the errors.
func sendMany(ctx context.Context, c *Client, n int) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := binary.BigEndian.AppendUint32([]byte("honest "), uint32(i))
			res, err := c.Send(ctx, msg)
			if err == nil && !res.Verified {
				err = errors.New("unverified result")
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	return errs
}

func checkNoErrors(t *testing.T, what string, errs []error) {
	t.Helper()
	failed := 0
	for _, err := range errs {
		if err != nil {
			if failed < 3 {
				t.Errorf("%s: %v", what, err)
			}
			failed++
		}
	}
	if failed > 0 {
		t.Fatalf("%s: %d of %d failed", what, failed, len(errs))
	}
}

// Finding 1: a message's own timeout or budget fails only that message.
func TestShortBudgetsFailOnlyThemselves(t *testing.T) {
	slowKind(t)
	hn := newHopNet(t, PrimaryConfig{Nodes: 3, Processing: slowAt(1, 400*time.Millisecond)},
		ClientConfig{Route: inOrder})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Attack messages: a 1 ms budget (refused at once by the floor), and
	// 150 ms budgets that time out at hop 1 while waiting on hop 2 (which
	// sleeps 400 ms on them), on the stream hop 1 shares with everyone.
	var wg sync.WaitGroup
	var floorRefused, timedOut atomic.Int32
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			budget := 150 * time.Millisecond
			if i%2 == 0 {
				budget = time.Millisecond
			}
			pm, err := hn.client.PrepareRoute(hn.cycle, inOrder(hn.cycle), []byte(fmt.Sprintf("slow %d", i)))
			if err != nil {
				t.Error(err)
				return
			}
			h, b, err := hn.exchange(t, pm.FirstHop(), FrameMessage, pm.BodyBudget(budget))
			if err != nil {
				t.Error(err)
				return
			}
			_, err = hn.client.Answer(pm, h, b)
			switch {
			case errors.Is(err, ErrBudget):
				floorRefused.Add(1)
			case errors.Is(err, ErrHopTimeout):
				timedOut.Add(1)
			default:
				t.Errorf("attack message with budget %v: %v", budget, err)
			}
		}()
	}
	errs := sendMany(ctx, hn.client, 64)
	wg.Wait()
	checkNoErrors(t, "honest message beside short budgets", errs)
	t.Logf("64 honest answered; attack: %d refused by the floor, %d timed out", floorRefused.Load(), timedOut.Load())
	if floorRefused.Load() != 32 || timedOut.Load() != 32 {
		t.Fatalf("attack: %d refused by the floor, %d timed out; want 32 and 32", floorRefused.Load(), timedOut.Load())
	}
	if r := hn.primary.Stats().Nodes.Refused.Budget; r != 32 {
		t.Fatalf("nodes counted %d budget refusals, want 32", r)
	}
}

// Finding 2: streams that announce bodies and send nothing cost nothing.
func TestHeaderOnlyStreamsCostNothing(t *testing.T) {
	t.Parallel()
	hn := newHopNet(t, PrimaryConfig{Nodes: 3}, ClientConfig{})
	first := hn.cycle.Nodes[0].Onion.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const streams = 1000
	conns := make([]net.Conn, 0, streams)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range streams {
		c, err := hn.net.Dialer().DialContext(ctx, "tcp", first)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write(FrameHeader(FrameMessage, 1, DefaultMaxFrameSize)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return hn.primary.Stats().Nodes.Streams >= streams })
	held := hn.primary.Stats().Nodes.BytesHeld
	checkNoErrors(t, "honest message beside header-only streams", sendMany(ctx, hn.client, 64))
	t.Logf("%d header-only streams hold %d bytes", streams, held)
	if held != 0 {
		t.Fatalf("%d header-only streams hold %d bytes, want 0", streams, held)
	}
	// One byte of body costs at most the first chunk.
	for _, c := range conns[:100] {
		c.Write([]byte{0})
	}
	waitFor(t, func() bool { return hn.primary.Stats().Nodes.BytesHeld > 0 })
	time.Sleep(50 * time.Millisecond)
	if held := hn.primary.Stats().Nodes.BytesHeld; held > 100*4096 {
		t.Fatalf("100 streams that sent one body byte hold %d bytes, want at most %d", held, 100*4096)
	}
}

// Finding 2, the rate: a body that trickles is cut off.
func TestTricklingBodyCutOff(t *testing.T) {
	t.Parallel()
	hn := newHopNet(t, PrimaryConfig{Nodes: 1, Node: NodeConfig{IOTimeout: 200 * time.Millisecond, MinReadRate: 1 << 20}}, ClientConfig{})
	first := hn.cycle.Nodes[0].Onion.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := hn.net.Dialer().DialContext(ctx, "tcp", first)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// 1 MiB announced: it must arrive within 200 ms + 1 s at 1 MiB/s.
	c.Write(FrameHeader(FrameMessage, 1, 1<<20))
	start := time.Now()
	var err2 error
	for time.Since(start) < 5*time.Second {
		if _, err2 = c.Write(make([]byte, 100)); err2 != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err2 == nil {
		t.Fatal("a body trickling at 2 KB/s was still read after 5 s")
	}
	t.Logf("trickling stream cut after %v", time.Since(start).Round(10*time.Millisecond))
}

// Finding 3: idle or trickling streams cannot keep new streams out.
func TestStreamSlotsEvictIdle(t *testing.T) {
	hn := newHopNet(t, PrimaryConfig{Nodes: 1, Node: NodeConfig{MaxConns: 8}}, ClientConfig{})
	addr := hn.cycle.Nodes[0].Onion.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Eight streams kept alive with a tiny frame every 20 ms.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		c, err := hn.net.Dialer().DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			go io.Copy(io.Discard, c)
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if WriteFrame(c, 99, 1, []byte("x")) != nil {
					return
				}
			}
		}()
	}
	waitFor(t, func() bool { return hn.primary.Stats().Nodes.Streams >= 8 })
	checkNoErrors(t, "honest message beside 8 kept-alive streams", sendMany(ctx, hn.client, 16))
	close(stop)
	wg.Wait()
	if ev := hn.primary.Stats().Nodes.StreamsEvicted; ev == 0 {
		t.Fatal("no stream was evicted")
	}
}

// Finding 3, the rest of the policy: an idle stream is evicted for a new
// one, the oldest first; when every stream has a message in flight, the new
// one gets reject 5 on stream id 0.
func TestMaxConns(t *testing.T) {
	release := make(chan struct{})
	registerOnce(t, ProcessorKind{Name: "test-hold", Deterministic: true, New: func(map[string]string) (Processor, error) {
		return ProcessorFunc(func(b []byte) ([]byte, error) {
			if string(b) == "hold" {
				<-release
			}
			return b, nil
		}), nil
	}})
	defer close(release)
	hn := newHopNet(t, PrimaryConfig{Nodes: 1, Node: NodeConfig{MaxConns: 2},
		Processing: func(int, io.Reader) ProcessorSpec { return ProcessorSpec{Name: "test-hold"} }}, ClientConfig{})
	addr := hn.cycle.Nodes[0].Onion.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dial := func() net.Conn {
		c, err := hn.net.Dialer().DialContext(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	served := func(c net.Conn) bool {
		if WriteFrame(c, 99, 1, []byte("x")) != nil {
			return false
		}
		typ, _, err := ReadFrame(c, 1<<20)
		return err == nil && typ == FrameReject
	}
	a := dial()
	if !served(a) {
		t.Fatal("first stream not served")
	}
	time.Sleep(10 * time.Millisecond)
	b := dial()
	if !served(b) {
		t.Fatal("second stream not served")
	}
	c := dial()
	if !served(c) {
		t.Fatal("a third stream was not served although two were idle")
	}
	if _, err := a.Read(make([]byte, 1)); err == nil {
		t.Fatal("the longest-idle stream was kept")
	}
	if !served(b) {
		t.Fatal("the newer idle stream was evicted instead of the oldest")
	}

	// b and c each carry a message held by the processor: a new stream is
	// refused on stream id 0.
	for _, s := range []net.Conn{b, c} {
		pm, err := hn.client.Prepare(hn.cycle, []byte("hold"))
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteFrame(s, FrameMessage, 5, pm.Body(ctx, 10*time.Second)...); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return hn.primary.Stats().Nodes.InFlight == 2 })
	d := dial()
	typ, body, id, err := ReadFrameID(d, 1<<20)
	if err != nil || typ != FrameReject || id != 0 || len(body) != 1 || body[0] != RejectBusy {
		t.Fatalf("stream beyond MaxConns with every stream busy: %d %x id %d %v, want reject 5 on id 0", typ, body, id, err)
	}
	if _, err := d.Read(make([]byte, 1)); err == nil {
		t.Fatal("the refused stream was kept open")
	}
	if n := hn.primary.Stats().Nodes.StreamsRefused; n != 1 {
		t.Fatalf("StreamsRefused = %d, want 1", n)
	}
}

// Finding 4: a pooled stream that died while idle loses no message.
func TestDeadIdleStreamLosesNothing(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, PrimaryConfig{Nodes: 3}, ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cy, err := tn.client.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if _, err := tn.client.Send(ctx, []byte{byte(i)}); err != nil {
			t.Fatalf("message %d, right after every stream was severed: %v", i, err)
		}
		for _, n := range cy.Nodes {
			tn.net.Sever(n.Onion.ServiceID)
		}
	}
	s := tn.primary.Stats().Nodes
	t.Logf("200 messages, every stream severed after each: resends by nodes %d", s.Resends)
}

// Finding 5: a later caller with a fresh deadline is not held hostage by an
// older stalled dial.
func TestStalledDialDoesNotHoldLaterCallers(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, PrimaryConfig{Nodes: 2}, ClientConfig{Route: inOrder})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cy, err := tn.client.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := cy.Nodes[0].Onion.Addr()
	var stalled atomic.Bool
	tn.net.SetDialLatency(func(addr string) time.Duration {
		if addr == first && stalled.CompareAndSwap(false, true) {
			return time.Hour
		}
		return 0
	})
	// The first Send's dial stalls; it gives up after 200 ms, before any
	// dial of its own would be started.
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = tn.client.Send(short, []byte("first"))
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send over a stalled dial: %v, want DeadlineExceeded", err)
	}
	// A later Send with a fresh 5 s deadline dials again.
	later, cancelLater := context.WithTimeout(ctx, 5*time.Second)
	defer cancelLater()
	if _, err := tn.client.Send(later, []byte("later")); err != nil {
		t.Fatalf("later send with a fresh deadline: %v", err)
	}
}

// Finding 6: loops cost nothing extra; a node refuses itself as next hop.
func TestLoopRouteLeavesHonestTrafficAnswered(t *testing.T) {
	// Four loops make 510 waits at each node, twice DefaultMaxConcurrent.
	hn := newHopNet(t, PrimaryConfig{Nodes: 2,
		Processing: func(int, io.Reader) ProcessorSpec { return IdentitySpec }}, ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	loop := make([]int, 255)
	for i := range loop {
		loop[i] = i % 2
	}
	var wg sync.WaitGroup
	loopErrs := make([]error, 4)
	for i := range loopErrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pm, err := hn.client.PrepareRoute(hn.cycle, loop, []byte("around and around"))
			if err != nil {
				loopErrs[i] = err
				return
			}
			h, b, err := hn.exchange(t, pm.FirstHop(), FrameMessage, pm.Body(ctx, 30*time.Second))
			if err == nil {
				_, err = hn.client.Answer(pm, h, b)
			}
			loopErrs[i] = err
		}()
	}
	errs := sendMany(ctx, hn.client, 64)
	wg.Wait()
	checkNoErrors(t, "honest message beside 255-hop loops", errs)
	for _, err := range loopErrs {
		if err != nil {
			t.Logf("a 255-hop loop message: %v", err)
		}
	}

	pm, err := hn.client.PrepareRoute(hn.cycle, []int{0, 0}, []byte("self"))
	if err != nil {
		t.Fatal(err)
	}
	h, b, err := hn.exchange(t, pm.FirstHop(), FrameMessage, pm.Body(ctx, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, err = hn.client.Answer(pm, h, b)
	var he *HopError
	if !errors.As(err, &he) || he.Hop != 1 || !errors.Is(err, ErrMalformed) {
		t.Fatalf("a node as its own next hop: %v, want a HopError for hop 1 matching ErrMalformed", err)
	}
}

// Finding 7: every documented route length works with the zero
// ClientConfig.
func TestLongRoutes(t *testing.T) {
	for _, hops := range []int{100, 255} {
		t.Run(fmt.Sprint(hops), func(t *testing.T) {
			tn := newTestNet(t, PrimaryConfig{Nodes: hops,
				Processing: func(int, io.Reader) ProcessorSpec { return IdentitySpec }}, ClientConfig{})
			res, err := tn.client.Send(context.Background(), []byte("far"))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Route) != hops || !res.Verified {
				t.Fatalf("route of %d hops, verified %v", len(res.Route), res.Verified)
			}
			t.Logf("%d hops: %v", hops, res.RoundTrip)
		})
	}
}

// Finding 8: errors say what happened to the caller.
func TestErrorsSayWhatHappened(t *testing.T) {
	t.Parallel()
	t.Run("cancel", func(t *testing.T) {
		slowKind(t)
		tn := newTestNet(t, PrimaryConfig{Nodes: 2, Processing: slowAt(1, time.Second)}, ClientConfig{})
		if _, err := tn.client.Fetch(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := tn.client.Send(ctx, []byte("slow"))
		if !errors.Is(err, context.Canceled) || ActionFor(err) != ActionGiveUp {
			t.Fatalf("cancelled send: %v (%v), want context.Canceled, give up", err, ActionFor(err))
		}
	})
	t.Run("deadline", func(t *testing.T) {
		// Hop 1 is still computing when the caller's deadline passes.
		slowKind(t)
		tn := newTestNet(t, PrimaryConfig{Nodes: 2, Processing: slowAt(0, time.Second)}, ClientConfig{Route: inOrder})
		if _, err := tn.client.Fetch(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := tn.client.Send(ctx, []byte("slow"))
		var he *HopError
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrHopTimeout) || !errors.As(err, &he) || ActionFor(err) != ActionRetry {
			t.Fatalf("send past its deadline: %v (%v), want DeadlineExceeded, ErrHopTimeout, a HopError, retry", err, ActionFor(err))
		}
	})
	t.Run("close", func(t *testing.T) {
		slowKind(t)
		tn := newTestNet(t, PrimaryConfig{Nodes: 2, Processing: slowAt(1, time.Second)}, ClientConfig{})
		if _, err := tn.client.Fetch(context.Background()); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 4)
		for range 4 {
			go func() {
				_, err := tn.client.Send(context.Background(), []byte("slow"))
				errc <- err
			}()
		}
		time.Sleep(100 * time.Millisecond)
		tn.client.Close()
		for range 4 {
			if err := <-errc; !errors.Is(err, ErrClosed) {
				t.Fatalf("send under way at Close: %v, want ErrClosed", err)
			}
		}
		if _, err := tn.client.Fetch(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("Fetch after Close: %v, want ErrClosed", err)
		}
		if _, err := tn.client.Send(context.Background(), []byte("x")); !errors.Is(err, ErrClosed) {
			t.Fatalf("Send after Close: %v, want ErrClosed", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		tn := newTestNet(t, PrimaryConfig{Nodes: 2}, ClientConfig{})
		cy, err := tn.client.Fetch(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		dials := tn.net.Stats(cy.Nodes[0].Onion.ServiceID).Dials + tn.net.Stats(cy.Nodes[1].Onion.ServiceID).Dials
		_, err = tn.client.Send(context.Background(), make([]byte, 5<<20))
		if !errors.Is(err, ErrFrameTooLarge) || ActionFor(err) != ActionGiveUp {
			t.Fatalf("5 MiB message: %v (%v), want ErrFrameTooLarge, give up", err, ActionFor(err))
		}
		if d := tn.net.Stats(cy.Nodes[0].Onion.ServiceID).Dials + tn.net.Stats(cy.Nodes[1].Onion.ServiceID).Dials; d != dials {
			t.Fatal("a message that cannot fit was sent")
		}
	})
	for _, c := range []struct {
		name string
		hook error
		want error
	}{
		{"hop 1 not found", ErrOnionNotFound, ErrOnionNotFound},
		{"hop 1 unreachable", ErrOnionUnreachable, ErrOnionUnreachable},
	} {
		t.Run(c.name, func(t *testing.T) {
			tn := newTestNet(t, PrimaryConfig{Nodes: 2}, ClientConfig{Route: inOrder})
			cy, err := tn.client.Fetch(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			first := cy.Nodes[0].Onion.Addr()
			tn.net.SetDialHook(func(addr string) error {
				if addr == first {
					return c.hook
				}
				return nil
			})
			_, err = tn.client.Send(context.Background(), []byte("x"))
			var he *HopError
			if !errors.As(err, &he) || he.Hop != 1 || !errors.Is(err, ErrHopUnreachable) || !errors.Is(err, c.want) {
				t.Fatalf("got %v, want a HopError for hop 1 matching ErrHopUnreachable and %v", err, c.want)
			}
		})
	}
}

func TestActionFor(t *testing.T) {
	t.Parallel()
	hop := func(err error) error { return &HopError{Hop: 2, Err: err} }
	for _, c := range []struct {
		err  error
		want Action
	}{
		{nil, ActionNone},
		{context.Canceled, ActionGiveUp},
		{fmt.Errorf("send: %w", ErrClosed), ActionGiveUp},
		{ErrFrameTooLarge, ActionGiveUp},
		{hop(ErrProcessing), ActionGiveUp},
		{ErrVerify, ActionGiveUp},
		{ErrWrongPrimary, ActionGiveUp},
		{ErrBadSignature, ActionGiveUp},
		{hop(fmt.Errorf("%w: %w", ErrMalformed, errors.New("x"))), ActionGiveUp},
		{errors.New("something else"), ActionGiveUp},
		{hop(ErrStaleCycle), ActionRefetch},
		{hop(fmt.Errorf("%w: %w", ErrHopUnreachable, ErrOnionNotFound)), ActionRefetch},
		{hop(fmt.Errorf("%w: %w", ErrHopUnreachable, ErrOnionUnreachable)), ActionRefetch},
		{hop(ErrAuth), ActionRefetch},
		{hop(ErrReplay), ActionRefetch},
		{hop(fmt.Errorf("%w: %w", ErrHopTimeout, context.DeadlineExceeded)), ActionRetry},
		{hop(ErrHopTimeout), ActionRetry},
		{hop(ErrBusy), ActionRetry},
		{hop(ErrBudget), ActionRetry},
		{hop(ErrRejected), ActionRetry},
		{fmt.Errorf("reaching the primary: %w", ErrOnionUnreachable), ActionRetry},
	} {
		if got := ActionFor(c.err); got != c.want {
			t.Errorf("ActionFor(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// Finding 9: the Observer sees every message, refused ones with their
// reason, and the counters agree.
func TestObserverSeesRefusals(t *testing.T) {
	var mu sync.Mutex
	var events []HopEvent
	hn := newHopNet(t, PrimaryConfig{Nodes: 1, Node: NodeConfig{Observer: func(e HopEvent) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}}}, ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pm, err := hn.client.Prepare(hn.cycle, []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	first := pm.FirstHop()
	body := pm.Body(ctx, 5*time.Second)
	if _, _, err := hn.exchange(t, first, FrameMessage, body); err != nil {
		t.Fatal(err)
	}
	// A replay with another data box, a tampered layer, a short budget, an
	// unknown frame type.
	other, err := hn.client.Reseal(pm, hn.cycle, []byte("again"))
	if err != nil {
		t.Fatal(err)
	}
	hn.exchange(t, first, FrameMessage, other.Body(ctx, 5*time.Second))
	tampered := other.Body(ctx, 5*time.Second)
	tampered[1] = append([]byte(nil), tampered[1]...)
	tampered[1][len(tampered[1])/2] ^= 1
	hn.exchange(t, first, FrameMessage, tampered)
	hn.exchange(t, first, FrameMessage, other.BodyBudget(time.Millisecond))
	hn.exchange(t, first, 99, [][]byte{{1}})

	mu.Lock()
	defer mu.Unlock()
	want := []error{nil, ErrReplay, ErrAuth, ErrBudget, ErrMalformed}
	if len(events) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(events), len(want), events)
	}
	for i, e := range events {
		if want[i] == nil {
			if e.Err != nil || e.Refused {
				t.Errorf("event %d: %+v, want a handled message", i, e)
			}
			continue
		}
		if !e.Refused || !errors.Is(e.Err, want[i]) {
			t.Errorf("event %d: refused %v, err %v; want refused with %v", i, e.Refused, e.Err, want[i])
		}
	}
	s := hn.primary.Stats().Nodes
	r := s.Refused
	if s.Accepted != 1 || r.Replay != 1 || r.Auth != 1 || r.Budget != 1 || r.Malformed != 1 || r.Total() != 4 {
		t.Fatalf("stats: accepted %d, refused %+v", s.Accepted, r)
	}
}

// The acceptance test of issue 8: a random stream severed every 50
// messages and a stalled dial every 500; none lost. Issue 8 asked for 10,000
// messages; 5,000 at the same fault rates (100 severs, 10 stalled dials)
// keep the suite fast, and the soak module (soak/) sends 200,000 through the
// same faults. (At a sever every 20 messages a request can see its stream
// die on each of its transport.DefaultAttempts sends, and fails, typed and
// naming its hop: more than the transport promises to absorb.)
func TestNoMessageLostToSeversAndStalledDials(t *testing.T) {
	t.Parallel()
	total, severEvery, stallEvery := 5000, 50, 500
	if testing.Short() {
		total = 1000
	}
	tn := newTestNet(t, PrimaryConfig{Nodes: 3}, ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cy, err := tn.client.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var stallNext atomic.Bool
	var stalls atomic.Int32
	tn.net.SetDialLatency(func(string) time.Duration {
		if stallNext.CompareAndSwap(true, false) {
			stalls.Add(1)
			return time.Hour
		}
		return 0
	})
	var next, answered, severs atomic.Int64
	var mu sync.Mutex
	failures := map[string]int{}
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(total) {
					return
				}
				if i%int64(stallEvery) == 0 {
					stallNext.Store(true)
				}
				if i%int64(severEvery) == 0 {
					severs.Add(1)
					tn.net.Sever(cy.Nodes[int(i)/severEvery%len(cy.Nodes)].Onion.ServiceID)
				}
				res, err := tn.client.Send(ctx, binary.BigEndian.AppendUint64(nil, uint64(i)))
				if err == nil && !res.Verified {
					err = errors.New("unverified")
				}
				if err != nil {
					mu.Lock()
					failures[err.Error()]++
					mu.Unlock()
					continue
				}
				answered.Add(1)
			}
		}()
	}
	wg.Wait()
	s := tn.primary.Stats().Nodes
	t.Logf("%d messages: %d answered, %d failed; %d severs, %d stalled dials; nodes: %d resends, %d duplicates answered, %d dials",
		total, answered.Load(), int64(total)-answered.Load(), severs.Load(), stalls.Load(), s.Resends, s.Duplicates, s.Dials)
	for msg, n := range failures {
		t.Errorf("%d× %s", n, msg)
	}
}

// A Primary whose onion fails to be reached for a moment (over Tor: a
// broken circuit, or a descriptor naming its previous instance after a
// restart) is dialled again; one whose descriptor is missing is not.
func TestFetchRetriesUnreachablePrimary(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		hook      error
		fails     int32
		wantErr   error
		wantDials int
	}{
		{ErrOnionUnreachable, 2, nil, 3},
		{ErrOnionNotFound, 1, ErrOnionNotFound, 1},
	} {
		tn := newTestNet(t, PrimaryConfig{Nodes: 1}, ClientConfig{})
		id := tn.primary.Onion().ServiceID
		var n atomic.Int32
		tn.net.SetDialHook(func(addr string) error {
			if addr == tn.primary.Onion().Addr() && n.Add(1) <= c.fails {
				return c.hook
			}
			return nil
		})
		before := tn.net.Stats(id).Dials
		_, err := tn.client.Fetch(context.Background())
		if !errors.Is(err, c.wantErr) || (c.wantErr == nil) != (err == nil) {
			t.Fatalf("Fetch with %d dials failing with %v: %v, want %v", c.fails, c.hook, err, c.wantErr)
		}
		if d := tn.net.Stats(id).Dials - before; d != c.wantDials {
			t.Fatalf("Fetch with dials failing with %v: %d dials, want %d", c.hook, d, c.wantDials)
		}
	}
}

// PROTOCOL.md, Message: a hop whose successor would get less than
// MinBudget does not forward; it reports that the next hop timed out.
func TestHopDoesNotForwardBelowFloor(t *testing.T) {
	t.Parallel()
	hn := newHopNet(t, PrimaryConfig{Nodes: 2}, ClientConfig{Route: inOrder})
	pm, err := hn.client.PrepareRoute(hn.cycle, inOrder(hn.cycle), []byte("short"))
	if err != nil {
		t.Fatal(err)
	}
	before := hn.primary.Stats().Nodes.Accepted
	h, b, err := hn.exchange(t, pm.FirstHop(), FrameMessage, pm.BodyBudget(MinBudget+5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_, err = hn.client.Answer(pm, h, b)
	var he *HopError
	if !errors.As(err, &he) || he.Hop != 2 || !errors.Is(err, ErrHopTimeout) {
		t.Fatalf("got %v, want a HopError for hop 2 matching ErrHopTimeout", err)
	}
	s := hn.primary.Stats().Nodes
	if s.Accepted != before+1 || s.Refused.Budget != 0 {
		t.Fatalf("accepted %d (want %d: hop 1 only), budget refusals %d (want 0: nothing forwarded)", s.Accepted, before+1, s.Refused.Budget)
	}
}
