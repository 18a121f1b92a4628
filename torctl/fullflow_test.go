package torctl_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl"
	"github.com/ghostcomm/ghostcomm/torctl/testnet"
)

// timedController records when each onion's CreateOnion returned, that is,
// when tor confirmed its descriptor upload.
type timedController struct {
	ghostcomm.TorController
	mu        sync.Mutex
	published map[string]time.Time
}

func (c *timedController) CreateOnion(ctx context.Context, conf ghostcomm.OnionConfig) (ghostcomm.Onion, error) {
	o, err := c.TorController.CreateOnion(ctx, conf)
	if err == nil {
		c.mu.Lock()
		c.published[o.ServiceID] = time.Now()
		c.mu.Unlock()
	}
	return o, err
}

// TestIntegrationFullNetwork runs the whole ghostcomm flow over real onion
// services: a Primary and three nodes, each on its own onion, spread over two
// tor processes; a client on the second tor fetches the payload through
// SOCKS, sends through the chain and verifies the result; a rotation
// publishes the new onions before any client is handed them; Close removes
// every onion (GETINFO onions/current). It logs the figures of issue 3.
func TestIntegrationFullNetwork(t *testing.T) {
	e, ctx := setup(t)
	testnet.Figure(t, "bootstrap of the private network (3 authorities, 3 relays, 2 clients): %v", e.net.BootstrapTime().Round(time.Millisecond))

	// The client tor is also the second service tor.
	cctrl, err := torctl.Connect(ctx, torctl.ConnectConfig{Addr: e.client.ControlAddr, CookiePath: e.client.CookiePath})
	if err != nil {
		t.Fatal(err)
	}
	defer cctrl.Close()
	tc := &timedController{TorController: torctl.Spread(e.ctrl, cctrl), published: map[string]time.Time{}}

	start := time.Now()
	p, err := ghostcomm.NewPrimary(ctx, tc, e.selfDial, ghostcomm.PrimaryConfig{Nodes: 3, Period: time.Hour})
	if err != nil {
		t.Fatalf("NewPrimary: %v", err)
	}
	primaryUp := time.Since(start)
	closed := false
	defer func() {
		if !closed {
			p.Close()
		}
	}()
	testnet.Figure(t, "NewPrimary, 4 onions created and published at once: %v", primaryUp.Round(time.Millisecond))

	onions := func(c *torctl.Controller) []string {
		ids, err := c.Onions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	cycle := p.Cycle()
	all := append(onions(e.ctrl), onions(cctrl)...)
	for _, o := range append([]ghostcomm.Onion{p.Onion()}, nodeOnions(cycle)...) {
		if !slices.Contains(all, o.ServiceID) {
			t.Fatalf("onion %s not listed by tor (%v)", o.ServiceID, all)
		}
	}
	if len(onions(e.ctrl)) == 0 || len(onions(cctrl)) == 0 {
		t.Fatalf("onions not spread over both tors: %v / %v", onions(e.ctrl), onions(cctrl))
	}

	client, err := ghostcomm.NewClient(e.dialer, p.Invite(nil), ghostcomm.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	start = time.Now()
	if _, err := client.Fetch(ctx); err != nil {
		t.Fatalf("Fetch over tor: %v", err)
	}
	testnet.Figure(t, "payload fetched through SOCKS: %v", time.Since(start).Round(time.Millisecond))

	msg := []byte("through real onion services")
	start = time.Now()
	res, err := client.Send(ctx, msg)
	if err != nil {
		t.Fatalf("Send over tor: %v", err)
	}
	testnet.Figure(t, "first message (the client dials hop 1; streams between hops were opened with the cycle): %v", time.Since(start).Round(time.Millisecond))
	want, _ := ghostcomm.Expected(res.Route, msg)
	if !res.Verified || !bytes.Equal(res.Data, want) || len(res.Route) != 3 {
		t.Fatalf("result not verified: %x, want %x", res.Data, want)
	}
	for i, n := range res.Route {
		t.Logf("hop %d: %s (%s)", i+1, n.Onion.Addr(), n.Processor)
	}

	// Warm chain: streams between hops stay open and are reused.
	var warm []time.Duration
	for range 10 {
		res, err := client.Send(ctx, msg)
		if err != nil || !res.Verified {
			t.Fatalf("warm Send: %v", err)
		}
		warm = append(warm, res.RoundTrip)
	}
	// Baseline in the same run: one onion echo on an open stream.
	_, c := createAndEcho(t, ctx, e.ctrl, e.dialer, ghostcomm.OnionConfig{})
	var echoes []time.Duration
	for range 10 {
		s := time.Now()
		if err := echo(c, bytes.Repeat([]byte("x"), 32)); err != nil {
			t.Fatal(err)
		}
		echoes = append(echoes, time.Since(s))
	}
	testnet.Figure(t, "3-hop round trip on a warm chain: median %v (min %v, max %v); single onion echo on an open stream: median %v; ratio %.1f",
		median(warm).Round(time.Microsecond), slices.Min(warm).Round(time.Microsecond), slices.Max(warm).Round(time.Microsecond),
		median(echoes).Round(time.Microsecond), float64(median(warm))/float64(median(echoes)))

	// Rotation: every new onion is published before the new cycle is handed
	// to clients.
	before := cycle.ID
	var swapped time.Time
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if p.Cycle().ID != before {
				swapped = time.Now()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	start = time.Now()
	if err := p.Rotate(ctx); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	<-watched
	close(stop)
	testnet.Figure(t, "rotation (3 new onions published): %v", time.Since(start).Round(time.Millisecond))
	next := p.Cycle()
	tc.mu.Lock()
	for _, o := range nodeOnions(next) {
		pub, ok := tc.published[o.ServiceID]
		if !ok || !pub.Before(swapped) {
			t.Errorf("node %s handed out at %v, published at %v", o.ServiceID, swapped, pub)
		}
	}
	tc.mu.Unlock()
	fresh, err := ghostcomm.NewClient(e.dialer, p.Invite(nil), ghostcomm.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	start = time.Now()
	res, err = fresh.Send(ctx, msg)
	if err != nil || !res.Verified || res.Cycle != next.ID {
		t.Fatalf("Send through the new cycle: %v", err)
	}
	testnet.Figure(t, "first message through the new cycle (fetch included): %v", time.Since(start).Round(time.Millisecond))
	// The old cycle is in its grace window: the first client still uses it.
	if res, err := client.Send(ctx, msg); err != nil || res.Cycle != before {
		t.Fatalf("Send through the old cycle in its grace window: %v", err)
	}

	// Close removes every onion the Primary created, on both tors.
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed = true
	left := append(onions(e.ctrl), onions(cctrl)...)
	created := []ghostcomm.Onion{p.Onion()}
	created = append(created, nodeOnions(cycle)...)
	created = append(created, nodeOnions(next)...)
	for _, o := range created {
		if slices.Contains(left, o.ServiceID) {
			t.Errorf("onion %s still exists after Close", o.ServiceID)
		}
	}
}

func nodeOnions(c *ghostcomm.Cycle) []ghostcomm.Onion {
	var out []ghostcomm.Onion
	for _, n := range c.Nodes {
		out = append(out, n.Onion)
	}
	return out
}

// TestIntegrationPrimaryClientAuth: a Primary whose onion requires v3 client
// authorization serves the client whose invite carries the key (handed to the
// client's tor with ONION_CLIENT_AUTH_ADD through ClientConfig.Authorizer),
// and tor keeps a client without it from reaching the Primary at all.
func TestIntegrationPrimaryClientAuth(t *testing.T) {
	e, ctx := setup(t)
	key, err := torctl.NewClientAuthKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ghostcomm.NewPrimary(ctx, e.ctrl, e.selfDial, ghostcomm.PrimaryConfig{Nodes: 2, ClientAuth: [][32]byte{key.Public}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	// Without the key first: tor refuses before a byte reaches the Primary.
	noKey, err := ghostcomm.NewClient(e.dialer, p.Invite(nil), ghostcomm.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer noKey.Close()
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	_, err = noKey.Fetch(fctx)
	cancel()
	if !errors.Is(err, ghostcomm.ErrOnionUnreachable) {
		t.Fatalf("Fetch without the client authorization key: %v, want ErrOnionUnreachable", err)
	}

	cctrl, err := torctl.Connect(ctx, torctl.ConnectConfig{Addr: e.client.ControlAddr, CookiePath: e.client.CookiePath})
	if err != nil {
		t.Fatal(err)
	}
	defer cctrl.Close()
	defer cctrl.RemoveClientAuth(context.Background(), p.Onion().ServiceID)
	inv, err := ghostcomm.ParseInvite(p.Invite(&key.Private).String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ghostcomm.NewClient(e.dialer, inv, ghostcomm.ClientConfig{Authorizer: cctrl})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Send(ctx, []byte("invited"))
	if err != nil || !res.Verified {
		t.Fatalf("Send with the invite's client authorization: %v", err)
	}
}
