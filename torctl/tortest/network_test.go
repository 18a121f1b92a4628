package tortest_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/onionaddr"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

func TestCreateOnionGivesWellFormedIDs(t *testing.T) {
	n := newNetwork(t)
	ctrl := n.Controller()
	target := echoServer(t)
	seen := map[string]bool{}
	for range 20 {
		o := createOnion(t, ctrl, target)
		if len(o.ServiceID) != onionaddr.IDLen || o.Port != 80 {
			t.Fatalf("onion %+v", o)
		}
		if _, err := onionaddr.Parse(o.ServiceID); err != nil {
			t.Fatalf("service id %s does not parse: %v", o.ServiceID, err)
		}
		if seen[o.ServiceID] {
			t.Fatalf("service id %s handed out twice", o.ServiceID)
		}
		seen[o.ServiceID] = true
	}
	got := n.Onions()
	if len(got) != len(seen) || !slices.IsSorted(got) {
		t.Fatalf("Onions() = %v, want the %d created, sorted", got, len(seen))
	}
	for _, id := range got {
		if !seen[id] {
			t.Fatalf("Onions() lists unknown %s", id)
		}
	}
	if !slices.Equal(ctrl.Onions(), got) {
		t.Fatalf("Controller.Onions() = %v, want %v", ctrl.Onions(), got)
	}
}

func TestCreateOnionWithKey(t *testing.T) {
	n := newNetwork(t)
	ctrl := n.Controller()
	target := echoServer(t)
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	conf := ghostcomm.OnionConfig{VirtualPort: 443, Target: target, Key: priv}
	o, err := ctrl.CreateOnion(testCtx(t), conf)
	if err != nil {
		t.Fatal(err)
	}
	if o.ServiceID != onionaddr.ServiceID(pub) || o.Port != 443 {
		t.Fatalf("onion %+v, want id of the given key", o)
	}
	back, err := onionaddr.Parse(o.ServiceID)
	if err != nil || !bytes.Equal(back, pub) {
		t.Fatalf("Parse(%s) = %x, %v", o.ServiceID, back, err)
	}
	// The same key again: tor reports a collision. Even another
	// controller gets it.
	if _, err := n.Controller().CreateOnion(testCtx(t), conf); !errors.Is(err, tortest.ErrOnionExists) {
		t.Fatalf("second CreateOnion with the same key: %v, want ErrOnionExists", err)
	}
	if len(n.Onions()) != 1 {
		t.Fatalf("Onions() = %v", n.Onions())
	}
}

// zeroReader is a deterministic randomness source.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestConfigRandMakesIDsReproducible(t *testing.T) {
	ids := make([]string, 2)
	for i := range ids {
		n := tortest.NewNetwork(tortest.Config{Rand: zeroReader{}})
		o, err := n.Controller().CreateOnion(testCtx(t), ghostcomm.OnionConfig{VirtualPort: 80, Target: "127.0.0.1:9"})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = o.ServiceID
		n.Close()
	}
	want := onionaddr.ServiceID(ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey))
	if ids[0] != want || ids[1] != want {
		t.Fatalf("ids %v, want both %s (the key of the all-zero seed)", ids, want)
	}
}

func TestCreateOnionRejectsBadConfig(t *testing.T) {
	n := newNetwork(t)
	ctrl := n.Controller()
	_, priv, _ := ed25519.GenerateKey(nil)
	mismatched := slices.Clone(priv)
	mismatched[40] ^= 1
	ok := ghostcomm.OnionConfig{VirtualPort: 80, Target: "127.0.0.1:8080"}
	cases := []struct {
		name  string
		edit  func(*ghostcomm.OnionConfig)
		field string
	}{
		{"virtual port 0", func(c *ghostcomm.OnionConfig) { c.VirtualPort = 0 }, "VirtualPort"},
		{"virtual port -1", func(c *ghostcomm.OnionConfig) { c.VirtualPort = -1 }, "VirtualPort"},
		{"virtual port 65536", func(c *ghostcomm.OnionConfig) { c.VirtualPort = 65536 }, "VirtualPort"},
		{"empty target", func(c *ghostcomm.OnionConfig) { c.Target = "" }, "Target"},
		{"target without port", func(c *ghostcomm.OnionConfig) { c.Target = "127.0.0.1" }, "Target"},
		{"remote target", func(c *ghostcomm.OnionConfig) { c.Target = "10.0.0.1:80" }, "Target"},
		{"named target", func(c *ghostcomm.OnionConfig) { c.Target = "example.com:80" }, "Target"},
		{"all interfaces", func(c *ghostcomm.OnionConfig) { c.Target = "0.0.0.0:80" }, "Target"},
		{"target port 0", func(c *ghostcomm.OnionConfig) { c.Target = "127.0.0.1:0" }, "Target"},
		{"target port 65536", func(c *ghostcomm.OnionConfig) { c.Target = "127.0.0.1:65536" }, "Target"},
		{"target port name", func(c *ghostcomm.OnionConfig) { c.Target = "127.0.0.1:http" }, "Target"},
		{"short key", func(c *ghostcomm.OnionConfig) { c.Key = priv[:32] }, "Key"},
		{"mismatched key", func(c *ghostcomm.OnionConfig) { c.Key = mismatched }, "Key"},
		{"pow rate, disabled", func(c *ghostcomm.OnionConfig) { c.PoW.QueueRate = 1 }, "PoW"},
		{"pow burst, disabled", func(c *ghostcomm.OnionConfig) { c.PoW.QueueBurst = 1 }, "PoW"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conf := ok
			c.edit(&conf)
			_, err := ctrl.CreateOnion(testCtx(t), conf)
			var ce *tortest.ConfigError
			if !errors.Is(err, tortest.ErrInvalidConfig) || !errors.As(err, &ce) || ce.Field != c.field {
				t.Fatalf("CreateOnion(%+v) = %v; want ConfigError on %s", conf, err, c.field)
			}
		})
	}
	if got := n.Onions(); len(got) != 0 {
		t.Fatalf("refused configs left services: %v", got)
	}
	// The accepted forms.
	for _, target := range []string{"127.0.0.1:8080", "localhost:1", "LOCALHOST:65535"} {
		if _, err := ctrl.CreateOnion(testCtx(t), ghostcomm.OnionConfig{VirtualPort: 65535, Target: target}); err != nil {
			t.Fatalf("target %s: %v", target, err)
		}
	}
}

func TestCreateOnionHonoursCanceledContext(t *testing.T) {
	n := newNetwork(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := n.Controller().CreateOnion(ctx, ghostcomm.OnionConfig{VirtualPort: 80, Target: "127.0.0.1:9"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateOnion with a canceled ctx: %v", err)
	}
	if len(n.Onions()) != 0 {
		t.Fatalf("left %v", n.Onions())
	}
}

func TestPublishDelayCancelLeavesNothing(t *testing.T) {
	n := newNetwork(t)
	registered := make(chan string, 1)
	n.SetPublishDelay(func(id string) time.Duration {
		registered <- id
		return time.Hour
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := n.Controller().CreateOnion(ctx, ghostcomm.OnionConfig{VirtualPort: 80, Target: "127.0.0.1:9"})
		errc <- err
	}()
	id := <-registered
	if !slices.Contains(n.Onions(), id) {
		t.Fatalf("service %s not registered while waiting for publication", id)
	}
	// Registered but not published: not found, as tor's 0xF0 right after
	// ADD_ONION.
	de := dialErr(t, n.Dialer(), id+".onion:80", tortest.CodeOnionNotFound)
	if !errors.Is(de, ghostcomm.ErrOnionNotFound) {
		t.Fatalf("unpublished: %v", de)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateOnion after cancel: %v", err)
	}
	if got := n.Onions(); len(got) != 0 {
		t.Fatalf("a canceled CreateOnion left %v", got)
	}
}

func TestPublishDelayWaitsThenPublishes(t *testing.T) {
	n := newNetwork(t)
	n.SetPublishDelay(func(string) time.Duration { return 20 * time.Millisecond })
	target := echoServer(t)
	o := createOnion(t, n.Controller(), target) // waits for publication
	c, err := n.Dialer().DialContext(testCtx(t), "tcp", o.Addr())
	if err != nil {
		t.Fatalf("dial after CreateOnion returned: %v", err)
	}
	defer c.Close()
	echoOnce(t, c, "published")
}

func TestPublishDelayNoWait(t *testing.T) {
	n := newNetwork(t)
	n.SetPublishDelay(func(string) time.Duration { return 50 * time.Millisecond })
	target := echoServer(t)
	ctx := testCtx(t)
	o, err := n.Controller().CreateOnion(ctx, ghostcomm.OnionConfig{VirtualPort: 80, Target: target, NoWait: true})
	if err != nil {
		t.Fatal(err)
	}
	// As with tor, the client retries until the descriptor is up. Every
	// failure on the way must be "not found".
	d := n.Dialer()
	for {
		c, err := d.DialContext(ctx, "tcp", o.Addr())
		if err == nil {
			echoOnce(t, c, "eventually")
			c.Close()
			break
		}
		if !errors.Is(err, ghostcomm.ErrOnionNotFound) {
			t.Fatalf("dial before publication: %v", err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("never published")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestCloseReleasesWaitingCreate(t *testing.T) {
	n := tortest.NewNetwork(tortest.Config{})
	registered := make(chan struct{})
	n.SetPublishDelay(func(string) time.Duration {
		close(registered)
		return time.Hour
	})
	errc := make(chan error, 1)
	go func() {
		_, err := n.Controller().CreateOnion(testCtx(t), ghostcomm.OnionConfig{VirtualPort: 80, Target: "127.0.0.1:9"})
		errc <- err
	}()
	<-registered
	n.Close()
	if err := <-errc; !errors.Is(err, tortest.ErrClosed) {
		t.Fatalf("CreateOnion pending at Close: %v", err)
	}
}

func TestRemoveOnion(t *testing.T) {
	n := newNetwork(t)
	ctrl, other := n.Controller(), n.Controller()
	o := createOnion(t, ctrl, echoServer(t))
	ctx := testCtx(t)
	if err := other.RemoveOnion(ctx, o.ServiceID); !errors.Is(err, tortest.ErrNotOwner) {
		t.Fatalf("RemoveOnion by another controller: %v", err)
	}
	if !slices.Contains(n.Onions(), o.ServiceID) {
		t.Fatal("refused removal removed the service")
	}
	if err := ctrl.RemoveOnion(ctx, o.ServiceID+".onion"); err != nil {
		t.Fatal(err)
	}
	if len(n.Onions()) != 0 || len(ctrl.Onions()) != 0 {
		t.Fatalf("after removal: %v", n.Onions())
	}
	// Idempotent, for any controller, also with a dead context.
	dead, cancel := context.WithCancel(ctx)
	cancel()
	for _, c := range []*tortest.Controller{ctrl, other} {
		if err := c.RemoveOnion(dead, o.ServiceID); err != nil {
			t.Fatalf("second removal: %v", err)
		}
	}
	if err := ctrl.RemoveOnion(ctx, randomID(t)); err != nil {
		t.Fatalf("removing an unknown service: %v", err)
	}
	dialErr(t, n.Dialer(), o.Addr(), tortest.CodeOnionNotFound)
}

func TestRemoveOnionCutsConnections(t *testing.T) {
	n := newNetwork(t)
	ctrl := n.Controller()
	o := createOnion(t, ctrl, echoServer(t))
	c, err := n.Dialer().DialContext(testCtx(t), "tcp", o.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOnce(t, c, "before")
	if s := n.Stats(o.ServiceID); s.Open != 1 {
		t.Fatalf("stats %+v, want 1 open", s)
	}
	if err := ctrl.RemoveOnion(testCtx(t), o.ServiceID); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
	if s := n.Stats(o.ServiceID); s.Open != 0 || s.Conns != 1 || s.Dials != 1 {
		t.Fatalf("stats after removal %+v", s)
	}
}

func TestControllerClose(t *testing.T) {
	n := newNetwork(t)
	target := echoServer(t)
	a, b := n.Controller(), n.Controller()
	oa := createOnion(t, a, target)
	ob := createOnion(t, b, target)
	c, err := n.Dialer().DialContext(testCtx(t), "tcp", oa.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	expectClosed(t, c)
	if got := n.Onions(); !slices.Equal(got, []string{ob.ServiceID}) {
		t.Fatalf("after closing a: %v, want only b's %s", got, ob.ServiceID)
	}
	if _, err := a.CreateOnion(testCtx(t), ghostcomm.OnionConfig{VirtualPort: 80, Target: target}); !errors.Is(err, tortest.ErrClosed) {
		t.Fatalf("CreateOnion on a closed controller: %v", err)
	}
	if err := a.RemoveOnion(testCtx(t), oa.ServiceID); err != nil {
		t.Fatalf("RemoveOnion on a closed controller: %v", err)
	}
	createOnion(t, b, target) // b unaffected
}

func TestNetworkClose(t *testing.T) {
	n := tortest.NewNetwork(tortest.Config{})
	target := echoServer(t)
	ctrl, d := n.Controller(), n.Dialer()
	var onions []ghostcomm.Onion
	for range 3 {
		onions = append(onions, createOnion(t, ctrl, target))
	}
	c, err := d.DialContext(testCtx(t), "tcp", onions[0].Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := n.Onions(); len(got) != 0 {
		t.Fatalf("Onions() after Close = %v", got)
	}
	if got := ctrl.Onions(); len(got) != 0 {
		t.Fatalf("Controller.Onions() after Close = %v", got)
	}
	expectClosed(t, c)
	for _, o := range onions {
		de := dialErr(t, d, o.Addr(), tortest.CodeOnionNotFound)
		if !errors.Is(de, ghostcomm.ErrOnionNotFound) {
			t.Fatalf("dial after Close: %v", de)
		}
	}
	if _, err := ctrl.CreateOnion(testCtx(t), ghostcomm.OnionConfig{VirtualPort: 80, Target: target}); !errors.Is(err, tortest.ErrClosed) {
		t.Fatalf("CreateOnion after Close: %v", err)
	}
	if err := ctrl.RemoveOnion(testCtx(t), onions[1].ServiceID); err != nil {
		t.Fatalf("RemoveOnion after Close: %v", err)
	}
}

func TestCreateHook(t *testing.T) {
	n := newNetwork(t)
	ctrl := n.Controller()
	target := echoServer(t)
	injected := errors.New("injected: tor said 551")
	var seen ghostcomm.OnionConfig
	n.SetCreateHook(func(conf ghostcomm.OnionConfig) error {
		seen = conf
		conf.ClientAuth[0][0] ^= 0xff // must not reach the caller's slice
		return injected
	})
	auth := [][32]byte{{1}}
	_, err := ctrl.CreateOnion(testCtx(t), ghostcomm.OnionConfig{VirtualPort: 81, Target: target, ClientAuth: auth})
	if !errors.Is(err, injected) {
		t.Fatalf("CreateOnion with failing hook: %v", err)
	}
	if seen.VirtualPort != 81 || auth[0][0] != 1 {
		t.Fatalf("hook saw %+v; caller's ClientAuth now %v", seen, auth[0][0])
	}
	if len(n.Onions()) != 0 {
		t.Fatalf("failed create left %v", n.Onions())
	}
	n.SetCreateHook(nil)
	createOnion(t, ctrl, target)
}

// TestCreateOnionRecordsPoW: the proof-of-work setting a service was created
// with can be read back, by its owner only, until it is removed.
func TestCreateOnionRecordsPoW(t *testing.T) {
	n := newNetwork(t)
	ctrl, other := n.Controller(), n.Controller()
	for _, pow := range []ghostcomm.PoWConfig{{}, {Enabled: true}, {Enabled: true, QueueRate: 7, QueueBurst: 9}} {
		o, err := ctrl.CreateOnion(testCtx(t), ghostcomm.OnionConfig{VirtualPort: 80, Target: "127.0.0.1:8080", PoW: pow})
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := ctrl.PoW(o.ServiceID + ".onion"); !ok || got != pow {
			t.Errorf("PoW(%s) = %+v, %v; want %+v, true", o.ServiceID, got, ok, pow)
		}
		if _, ok := other.PoW(o.ServiceID); ok {
			t.Errorf("another controller reads %s's setting", o.ServiceID)
		}
		if err := ctrl.RemoveOnion(testCtx(t), o.ServiceID); err != nil {
			t.Fatal(err)
		}
		if _, ok := ctrl.PoW(o.ServiceID); ok {
			t.Errorf("PoW(%s) still answers after RemoveOnion", o.ServiceID)
		}
	}
}
