package ghostcomm_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// testNet is a Primary and a Client on a fake Tor network.
type testNet struct {
	net     *tortest.Network
	ctrl    *tortest.Controller
	primary *ghostcomm.Primary
	client  *ghostcomm.Client
}

func newTestNet(t testing.TB, pc ghostcomm.PrimaryConfig, cc ghostcomm.ClientConfig) *testNet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := tortest.NewNetwork(tortest.Config{})
	t.Cleanup(func() { n.Close() })
	ctrl := n.Controller()
	p, err := ghostcomm.NewPrimary(ctx, ctrl, n.Dialer(), pc)
	if err != nil {
		t.Fatalf("NewPrimary: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Primary.Close: %v", err)
		}
	})
	c, err := ghostcomm.NewClient(n.Dialer(), p.Invite(nil), cc)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &testNet{net: n, ctrl: ctrl, primary: p, client: c}
}

func TestRoundTrip(t *testing.T) {
	for _, hops := range []int{1, 3, 8} {
		t.Run(fmt.Sprintf("%d hops", hops), func(t *testing.T) {
			tn := newTestNet(t, ghostcomm.PrimaryConfig{Nodes: hops}, ghostcomm.ClientConfig{})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			msg := []byte("hello, ghost")
			res, err := tn.client.Send(ctx, msg)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if len(res.Route) != hops {
				t.Fatalf("route of %d hops, want %d", len(res.Route), hops)
			}
			want, ok := ghostcomm.Expected(res.Route, msg)
			if !ok {
				t.Fatal("default processing is not deterministic")
			}
			if !bytes.Equal(res.Data, want) {
				t.Fatalf("result %q, want %q", res.Data, want)
			}
			if !res.Verified {
				t.Fatal("result not verified")
			}
			// Each hop hashes in hex: the result is the hex digest of the
			// last hop's algorithm, never the input.
			if bytes.Contains(res.Data, msg) {
				t.Fatal("result contains the plaintext message")
			}
		})
	}
}

func TestRoundTripIdentityLargeMessage(t *testing.T) {
	tn := newTestNet(t, ghostcomm.PrimaryConfig{
		Nodes:      3,
		Processing: func(int, io.Reader) ghostcomm.ProcessorSpec { return ghostcomm.IdentitySpec },
	}, ghostcomm.ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msg := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	res, err := tn.client.Send(ctx, msg)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if !bytes.Equal(res.Data, msg) || !res.Verified {
		t.Fatalf("identity route changed a 1 MiB message (verified=%v)", res.Verified)
	}
}

// waitGoroutines waits until the number of goroutines drops to at most n.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := runtime.NumGoroutine()
		if got <= n {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines remain, want at most %d:\n%s", got, n, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUnreachableHopNamed(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, ghostcomm.PrimaryConfig{Nodes: 3}, ghostcomm.ClientConfig{Route: payloadOrder})
	cy := tn.primary.Cycle()
	for hop := 1; hop <= 3; hop++ {
		t.Run(fmt.Sprintf("hop %d", hop), func(t *testing.T) {
			id := cy.Nodes[hop-1].Onion.ServiceID
			tn.net.Partition(id)
			tn.net.Sever(id) // as a partition breaks the circuits already open
			defer tn.net.Heal(id)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := tn.client.Send(ctx, []byte("x"))
			var he *ghostcomm.HopError
			if !errors.As(err, &he) || he.Hop != hop || !errors.Is(err, ghostcomm.ErrHopUnreachable) {
				t.Fatalf("got %v, want a HopError for hop %d matching ErrHopUnreachable", err, hop)
			}
			if he.Onion != cy.Nodes[hop-1].Onion.Addr() {
				t.Fatalf("error names %s, want %s", he.Onion, cy.Nodes[hop-1].Onion.Addr())
			}
			if ctx.Err() != nil {
				t.Fatal("the error came only after the client's deadline")
			}
		})
	}
}

func TestRemovedHopNamed(t *testing.T) {
	// A hop whose onion is gone (as after a retirement) is reported as not
	// found, by the hop before it.
	tn := newTestNet(t, ghostcomm.PrimaryConfig{Nodes: 3}, ghostcomm.ClientConfig{Route: payloadOrder})
	cy := tn.primary.Cycle()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := tn.client.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tn.ctrl.RemoveOnion(ctx, cy.Nodes[2].Onion.ServiceID); err != nil {
		t.Fatal(err)
	}
	_, err := tn.client.Send(ctx, []byte("x"))
	var he *ghostcomm.HopError
	if !errors.As(err, &he) || he.Hop != 3 || !errors.Is(err, ghostcomm.ErrOnionNotFound) {
		t.Fatalf("got %v, want a HopError for hop 3 matching ErrOnionNotFound", err)
	}
}

func TestStalledHopNamedBeforeDeadline(t *testing.T) {
	t.Parallel()
	// Dials to hop 3 hang: hop 2 gives up on it first and says so, before
	// the client's own deadline.
	tn := newTestNet(t, ghostcomm.PrimaryConfig{Nodes: 3}, ghostcomm.ClientConfig{Route: payloadOrder})
	cy := tn.primary.Cycle()
	third := cy.Nodes[2].Onion.Addr()
	tn.net.SetDialLatency(func(addr string) time.Duration {
		if addr == third {
			return time.Hour
		}
		return 0
	})
	tn.net.Sever(cy.Nodes[2].Onion.ServiceID) // the stream opened ahead
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := tn.client.Send(ctx, []byte("x"))
	var he *ghostcomm.HopError
	if !errors.As(err, &he) || he.Hop != 3 || !errors.Is(err, ghostcomm.ErrHopTimeout) {
		t.Fatalf("got %v, want a HopError for hop 3 matching ErrHopTimeout", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the error came only after the client's deadline")
	}
}

func TestCloseEndsGoroutinesAndRemovesOnions(t *testing.T) {
	before := runtime.NumGoroutine()
	n := tortest.NewNetwork(tortest.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := ghostcomm.NewPrimary(ctx, n.Controller(), n.Dialer(), ghostcomm.PrimaryConfig{Nodes: 4})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ghostcomm.NewClient(n.Dialer(), p.Invite(nil), ghostcomm.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Send(ctx, []byte("busy")); err != nil {
				t.Errorf("Send: %v", err)
			}
		}()
	}
	wg.Wait()
	if err := p.Rotate(ctx); err != nil { // a retiring cycle too
		t.Fatal(err)
	}
	if got := len(n.Onions()); got != 1+2*4 {
		t.Fatalf("%d onions before Close, want %d", got, 1+2*4)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := n.Onions(); len(got) != 0 {
		t.Fatalf("onions left after Close: %v", got)
	}
	n.Close()
	waitGoroutines(t, before)
	if _, err := c.Send(ctx, []byte("after")); err == nil {
		t.Fatal("Send after Close succeeded")
	}
	if err := p.Rotate(ctx); !errors.Is(err, ghostcomm.ErrClosed) {
		t.Fatalf("Rotate after Close: %v", err)
	}
}

func TestRotationLosesNoMessageInFlight(t *testing.T) {
	clock := tortest.NewClock(time.Now())
	// Every node takes a while per message, so that many are in flight
	// when the cycle rotates.
	slow := ghostcomm.ProcessorKind{Name: "test-slow", Deterministic: true, New: func(map[string]string) (ghostcomm.Processor, error) {
		return ghostcomm.ProcessorFunc(func(b []byte) ([]byte, error) {
			time.Sleep(20 * time.Millisecond)
			return append([]byte("s"), b...), nil
		}), nil
	}}
	registerOnce(t, slow)
	tn := newTestNet(t, ghostcomm.PrimaryConfig{
		Nodes:      3,
		Period:     time.Hour,
		Grace:      time.Minute,
		Clock:      clock,
		Processing: func(int, io.Reader) ghostcomm.ProcessorSpec { return ghostcomm.ProcessorSpec{Name: "test-slow"} },
	}, ghostcomm.ClientConfig{Clock: clock})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old, err := tn.client.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}

	const n = 48
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := tn.client.Send(ctx, []byte(fmt.Sprint(i)))
			if err == nil && (!res.Verified || res.Cycle != old.ID) {
				err = fmt.Errorf("unexpected result: verified=%v cycle=%x", res.Verified, res.Cycle)
			}
			errs <- err
		}()
	}
	// Rotate while they are in flight: the Primary's timer fires when the
	// clock reaches NotAfter - PublishAhead.
	time.Sleep(10 * time.Millisecond)
	clock.Set(old.NotAfter.Add(-time.Minute))
	waitFor(t, func() bool { return tn.primary.Cycle().ID != old.ID })
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("message lost in the rotation: %v", err)
		}
	}
	// Until the old cycle's end plus grace both cycles' nodes run; a client
	// still holding the old payload is served.
	if got := len(tn.primary.Onions()); got != 6 {
		t.Fatalf("%d nodes during the grace window, want 6", got)
	}
	if res, err := tn.client.Send(ctx, []byte("late")); err != nil || res.Cycle != old.ID {
		t.Fatalf("Send with the old payload in the grace window: %v", err)
	}
	// New clients get the new cycle.
	fresh, err := ghostcomm.NewClient(tn.net.Dialer(), tn.primary.Invite(nil), ghostcomm.ClientConfig{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	res, err := fresh.Send(ctx, []byte("new"))
	if err != nil || res.Cycle == old.ID {
		t.Fatalf("fresh client: %v (cycle %x, old %x)", err, res.Cycle, old.ID)
	}
	// After the grace window the old nodes and their onions are gone.
	clock.Set(old.NotAfter.Add(time.Minute + time.Second))
	waitFor(t, func() bool { return len(tn.primary.Onions()) == 3 })
	for _, nd := range old.Nodes {
		for _, id := range tn.net.Onions() {
			if id == nd.Onion.ServiceID {
				t.Fatalf("retired node's onion %s still exists", id)
			}
		}
	}
	// The old client's payload has expired by its own clock: it fetches
	// the new cycle by itself.
	res, err = tn.client.Send(ctx, []byte("after"))
	if err != nil || res.Cycle == old.ID {
		t.Fatalf("Send after the old cycle ended: %v", err)
	}
}

func TestManyRotations(t *testing.T) {
	t.Parallel()
	// A day of 10-minute cycles in a moment: each rotation publishes new
	// nodes before handing them out, and retires the old ones.
	clock := tortest.NewClock(time.Now())
	tn := newTestNet(t, ghostcomm.PrimaryConfig{Nodes: 2, Period: 10 * time.Minute, Grace: time.Minute, Clock: clock},
		ghostcomm.ClientConfig{Clock: clock})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	seen := map[[16]byte]bool{}
	for i := 0; i < 24*6; i++ {
		cur := tn.primary.Cycle()
		seen[cur.ID] = true
		res, err := tn.client.Send(ctx, []byte("tick"))
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if res.Cycle != cur.ID {
			t.Fatalf("cycle %d: message went through %x, current is %x", i, res.Cycle, cur.ID)
		}
		clock.Set(cur.NotAfter.Add(-30 * time.Second))
		waitFor(t, func() bool { return tn.primary.Cycle().ID != cur.ID })
		clock.Set(cur.NotAfter.Add(time.Minute + time.Second))
		waitFor(t, func() bool { return len(tn.primary.Onions()) == 2 })
	}
	if len(seen) != 24*6 {
		t.Fatalf("%d distinct cycles, want %d", len(seen), 24*6)
	}
	if got := len(tn.net.Onions()); got != 3 {
		t.Fatalf("%d onions after a day of rotations, want 3", got)
	}
}

var registered sync.Map

func registerOnce(t *testing.T, k ghostcomm.ProcessorKind) {
	registeredMu.Lock()
	defer registeredMu.Unlock()
	if _, loaded := registered.LoadOrStore(k.Name, true); loaded {
		return
	}
	if err := ghostcomm.RegisterProcessor(k); err != nil {
		t.Fatal(err)
	}
}

// registeredMu makes a parallel test that registers a kind wait until the
// first registration of that kind has finished.
var registeredMu sync.Mutex

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var _ = strings.Contains

func TestClientAuthorization(t *testing.T) {
	t.Parallel()
	var alice, mallory [32]byte
	rand.Read(alice[:])
	rand.Read(mallory[:])
	n := tortest.NewNetwork(tortest.Config{})
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := ghostcomm.NewPrimary(ctx, n.Controller(), n.Dialer(), ghostcomm.PrimaryConfig{
		Nodes: 2, ClientAuth: [][32]byte{tortest.ClientAuthPublicKey(alice)},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	// The invite carries Alice's key: her client hands it to its dialer.
	inv, err := ghostcomm.ParseInvite(p.Invite(&alice).String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ghostcomm.NewClient(n.Dialer(), inv, ghostcomm.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if res, err := c.Send(ctx, []byte("authorized")); err != nil || !res.Verified {
		t.Fatalf("authorized client: %v", err)
	}

	// Without a key, or with another one, tor refuses before the Primary
	// sees a byte. The client tries the Primary again for about 8 s before
	// it gives up; 2 s see the refusal more than once.
	for name, key := range map[string]*[32]byte{"no key": nil, "wrong key": &mallory} {
		c, err := ghostcomm.NewClient(n.Dialer(), p.Invite(key), ghostcomm.ClientConfig{})
		if err != nil {
			t.Fatal(err)
		}
		fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = c.Fetch(fctx)
		fcancel()
		c.Close()
		if !errors.Is(err, ghostcomm.ErrOnionUnreachable) {
			t.Errorf("%s: got %v, want ErrOnionUnreachable", name, err)
		}
	}
}

func TestNodeCreationRetried(t *testing.T) {
	// The first onion the Primary asks for is never published: the node is
	// replaced by a fresh one and the Primary comes up.
	n := tortest.NewNetwork(tortest.Config{})
	defer n.Close()
	var mu sync.Mutex
	first := ""
	n.SetPublishDelay(func(id string) time.Duration {
		mu.Lock()
		defer mu.Unlock()
		if first == "" || first == id {
			first = id
			return time.Hour
		}
		return 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := ghostcomm.NewPrimary(ctx, n.Controller(), n.Dialer(), ghostcomm.PrimaryConfig{
		Nodes: 3, Node: ghostcomm.NodeConfig{PublishTimeout: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatalf("NewPrimary: %v", err)
	}
	defer p.Close()
	for _, o := range p.Onions() {
		if o.ServiceID == first {
			t.Fatal("the unpublished onion was handed out")
		}
	}
	for _, id := range n.Onions() {
		if id == first {
			t.Fatal("the unpublished onion was not removed")
		}
	}
}

func TestClientRefetchesAfterUnreachableHop(t *testing.T) {
	tn := newTestNet(t, ghostcomm.PrimaryConfig{Nodes: 3}, ghostcomm.ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := tn.client.Send(ctx, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	old := res.Cycle
	if err := tn.primary.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	// The old cycle's second node vanishes early (say, its host went
	// down): the client's cached payload still names it.
	tn.net.Partition(res.Route[1].Onion.ServiceID)
	tn.net.Sever(res.Route[1].Onion.ServiceID)
	tn.net.Sever(res.Route[1].Onion.ServiceID) // and the stream hop 1 keeps open to it
	if _, err := tn.client.Send(ctx, []byte("b")); !errors.Is(err, ghostcomm.ErrHopUnreachable) {
		t.Fatalf("got %v, want ErrHopUnreachable", err)
	}
	res, err = tn.client.Send(ctx, []byte("c"))
	if err != nil || res.Cycle == old {
		t.Fatalf("the client did not move to the new cycle: %v", err)
	}
}

func TestNextCycleReadyBeforeItsFirstMessage(t *testing.T) {
	// A new cycle's nodes open streams to each other before it is handed
	// out; a client fetches the next cycle ahead and opens streams to its
	// nodes; its first message needs no fetch and no dial.
	clock := tortest.NewClock(time.Now())
	tn := newTestNet(t, ghostcomm.PrimaryConfig{Nodes: 3, Period: 10 * time.Minute, Clock: clock},
		ghostcomm.ClientConfig{Clock: clock})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conns := func(cy *ghostcomm.Cycle) (n int) {
		for _, nd := range cy.Nodes {
			n += tn.net.Stats(nd.Onion.ServiceID).Conns
		}
		return n
	}
	old := tn.primary.Cycle()
	if got := conns(old); got != 6 {
		t.Fatalf("the first cycle's 3 nodes were dialled %d times before any message, want 6 (each to each)", got)
	}
	if _, err := tn.client.Send(ctx, []byte("first")); err != nil {
		t.Fatal(err)
	}
	clock.Set(old.NotAfter.Add(-45 * time.Second))
	waitFor(t, func() bool { return tn.primary.Cycle().ID != old.ID })
	next := tn.primary.Cycle()
	fetched := tn.primary.Stats().Payloads
	clock.Set(old.NotAfter.Add(-29 * time.Second))
	waitFor(t, func() bool { return tn.primary.Stats().Payloads == fetched+1 && conns(next) == 6+3 })

	res, err := tn.client.Send(ctx, []byte("first of the next cycle"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Cycle != next.ID {
		t.Fatalf("message went through cycle %x, want the next one %x", res.Cycle, next.ID)
	}
	if p := tn.primary.Stats().Payloads; p != fetched+1 {
		t.Fatalf("%d payloads fetched for the next cycle, want 1 (ahead of the message)", p-fetched)
	}
	if got := conns(next); got != 9 {
		t.Fatalf("the next cycle's nodes were dialled %d times, want 9: none for its first message", got)
	}
}

// A Primary whose next cycle is late (the first try at its onions never
// publishes, so the successor comes a retry after the current cycle ended)
// hands out the ended cycle for a moment. A Send in that gap waits for the
// successor and is answered, rather than failing with ErrStaleCycle.
func TestSendWaitsForLateCycle(t *testing.T) {
	t.Parallel()
	n := tortest.NewNetwork(tortest.Config{})
	defer n.Close()
	var mu sync.Mutex
	seen := map[string]int{} // service id → order of creation
	n.SetPublishDelay(func(id string) time.Duration {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := seen[id]; !ok {
			seen[id] = len(seen)
		}
		// The first cycle's 2 nodes and the Primary publish at once; the
		// first try at the second cycle's nodes never does.
		if k := seen[id]; k >= 3 && k < 5 {
			return time.Hour
		}
		return 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const period, ahead = 3 * time.Second, time.Second
	p, err := ghostcomm.NewPrimary(ctx, n.Controller(), n.Dialer(), ghostcomm.PrimaryConfig{
		// A grace of 1 s: the Primary's extension of a cycle whose
		// successor did not form (half the grace, in whole seconds) is
		// nothing, and it hands out the ended cycle.
		Nodes: 2, Period: period, PublishAhead: ahead, Grace: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := ghostcomm.NewClient(n.Dialer(), p.Invite(nil), ghostcomm.ClientConfig{PrefetchBefore: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first, err := c.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Just after the first cycle ended: its successor's first try has
	// failed (at the end of the cycle, PublishAhead after it started) and
	// the retry comes a second later.
	time.Sleep(time.Until(first.NotAfter) + 100*time.Millisecond)
	if p.Cycle().ID != first.ID {
		t.Fatalf("the next cycle came on time; the test needs it late")
	}
	res, err := c.Send(ctx, []byte("in the gap"))
	if err != nil {
		t.Fatalf("Send while the Primary was late: %v", err)
	}
	if !res.Verified || res.Cycle == first.ID {
		t.Fatalf("Send: verified %v, cycle %x (the ended one is %x)", res.Verified, res.Cycle, first.ID)
	}
}

// While a fetch of the cycle is stuck (the dial to the Primary hangs), a
// second Send gives up at its own deadline instead of waiting for the
// first, and both errors name the cause: the Primary was not reached
// (ErrOnionUnreachable, with the deadline).
func TestSendDeadlineWhileAnotherFetchHangs(t *testing.T) {
	t.Parallel()
	n := tortest.NewNetwork(tortest.Config{})
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := ghostcomm.NewPrimary(ctx, n.Controller(), n.Dialer(), ghostcomm.PrimaryConfig{Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	primary := p.Onion().ServiceID
	n.SetDialLatency(func(addr string) time.Duration {
		if strings.HasPrefix(addr, primary) {
			return time.Hour
		}
		return 0
	})
	c, err := ghostcomm.NewClient(n.Dialer(), p.Invite(nil), ghostcomm.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	type result struct {
		which string
		err   error
	}
	done := make(chan result, 2)
	go func() {
		fctx, fcancel := context.WithTimeout(ctx, 3*time.Second)
		defer fcancel()
		_, err := c.Send(fctx, []byte("first"))
		done <- result{"first", err}
	}()
	time.Sleep(200 * time.Millisecond) // the first Send holds the fetch
	sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer scancel()
	_, err = c.Send(sctx, []byte("second"))
	done <- result{"second", err}
	for _, want := range []string{"second", "first"} {
		r := <-done
		if r.which != want {
			t.Fatalf("%s Send returned before the %s one: the second waited for the first's fetch", r.which, want)
		}
		if !errors.Is(r.err, ghostcomm.ErrOnionUnreachable) || !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("%s Send: %v, want ErrOnionUnreachable and context.DeadlineExceeded", r.which, r.err)
		}
	}
}

// lateCtx has a deadline that has passed but says it is not done yet, as a
// context does for a moment after its deadline, before its timer fires.
type lateCtx struct{ context.Context }

func (lateCtx) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// A fetch whose I/O fails by the caller's deadline a moment before the
// caller's context says it is done reports the caller's deadline.
func TestFetchDeadlineBeforeCtxDone(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, ghostcomm.PrimaryConfig{Nodes: 2}, ghostcomm.ClientConfig{})
	id := tn.primary.Invite(nil).Primary.ServiceID
	before := tn.net.Stats(id).Dials
	_, err := tn.client.Fetch(lateCtx{context.Background()})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch: %v, want context.DeadlineExceeded", err)
	}
	if n := tn.net.Stats(id).Dials - before; n != 1 {
		t.Errorf("%d dials of the Primary, want 1: no retry once the caller's deadline has passed", n)
	}
	if a := ghostcomm.ActionFor(err); a != ghostcomm.ActionRetry {
		t.Errorf("ActionFor: %v, want ActionRetry", a)
	}
}

// cutAfterWrite is a stream that the far end drops once the request is
// written: every Read ends with io.EOF.
type cutAfterWrite struct{ net.Conn }

func (c cutAfterWrite) Read([]byte) (int, error) { return 0, io.EOF }

// A stream to the Primary that breaks before the answer (tor closed the
// circuit) is tried once more on a fresh one; if that breaks too, the error
// says to retry (ErrOnionUnreachable), not to give up. Found by the
// real-Tor soak: a fetch failed with "reading payload: EOF", an error
// ActionFor classed as give up.
func TestFetchStreamBrokenBeforeAnswer(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, ghostcomm.PrimaryConfig{Nodes: 2}, ghostcomm.ClientConfig{})
	addr := tn.primary.Invite(nil).Primary.Addr()
	var cuts atomic.Int32
	cuts.Store(1)
	tn.net.SetWrapConn(func(a string, c net.Conn) net.Conn {
		if a == addr && cuts.Add(-1) >= 0 {
			return cutAfterWrite{c}
		}
		return c
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id := tn.primary.Invite(nil).Primary.ServiceID
	before := tn.net.Stats(id).Dials
	if _, err := tn.client.Fetch(ctx); err != nil {
		t.Fatalf("Fetch with the first stream cut: %v", err)
	}
	if n := tn.net.Stats(id).Dials - before; n != 2 {
		t.Errorf("%d dials of the Primary, want 2 (the cut one and a fresh one)", n)
	}

	cuts.Store(2)
	_, err := tn.client.Fetch(ctx)
	if !errors.Is(err, ghostcomm.ErrOnionUnreachable) || ghostcomm.ActionFor(err) != ghostcomm.ActionRetry {
		t.Fatalf("Fetch with every stream cut: %v (%v), want ErrOnionUnreachable and ActionRetry", err, ghostcomm.ActionFor(err))
	}
}
