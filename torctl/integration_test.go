package torctl_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cretz/bine/control"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl"
	"github.com/ghostcomm/ghostcomm/torctl/testnet"
)

// TestMain logs, after the tests (which run in parallel), the figures they
// collected.
func TestMain(m *testing.M) { os.Exit(testnet.Wrap(figuresAfter{m}).Run()) }

type figuresAfter struct{ m *testing.M }

func (f figuresAfter) Run() int {
	code := f.m.Run()
	logFigures()
	return code
}

// integrationTimeout bounds each integration test's tor work: ADD_ONION to
// echo takes about 2 s on the private network; the margin is for loaded CI.
const integrationTimeout = 3 * time.Minute

// figures collects the measurements the integration tests log.
var figures struct {
	sync.Mutex
	published []time.Duration // ADD_ONION → HS_DESC UPLOADED
	firstEcho []time.Duration // ADD_ONION → first echo through the onion
}

func record(list *[]time.Duration, d time.Duration) {
	figures.Lock()
	*list = append(*list, d)
	figures.Unlock()
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// echoServer listens on 127.0.0.1 and echoes every connection until the test
// ends.
// testListener listens on 127.0.0.1:0 for the test; at its end the listener
// is closed and the goroutines added to wg are waited for.
func testListener(t *testing.T) (net.Listener, *sync.WaitGroup) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return l, &wg
}

func echoServer(t *testing.T) string {
	t.Helper()
	l, wg := testListener(t)
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	return l.Addr().String()
}

type env struct {
	net      *testnet.Network
	service  *testnet.Tor // hosts the onions
	client   *testnet.Tor // dials them
	ctrl     *torctl.Controller
	dialer   *torctl.Dialer // through client
	selfDial *torctl.Dialer // through service's own tor
}

func setup(t *testing.T) (*env, context.Context) {
	t.Helper()
	n := testnet.Shared(t)
	// The integration tests share the network's tors, each with onions and
	// controllers of its own: they run in parallel.
	t.Parallel()
	cs := n.Clients()
	if len(cs) < 2 {
		t.Fatalf("shared network has %d clients, want 2", len(cs))
	}
	ctx, cancel := context.WithTimeout(context.Background(), integrationTimeout)
	t.Cleanup(cancel)
	e := &env{net: n, service: cs[0], client: cs[1]}
	var err error
	e.ctrl, err = torctl.Connect(ctx, torctl.ConnectConfig{Addr: e.service.ControlAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.ctrl.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if e.dialer, err = torctl.NewDialer(e.client.SocksAddr, torctl.DialerConfig{Logger: testLogger(t)}); err != nil {
		t.Fatal(err)
	}
	if e.selfDial, err = torctl.NewDialer(e.service.SocksAddr, torctl.DialerConfig{Logger: testLogger(t)}); err != nil {
		t.Fatal(err)
	}
	return e, ctx
}

// testLogger logs debug messages with t.Logf (shown with -v or on failure).
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// echo writes msg on c and reads it back.
func echo(c net.Conn, msg []byte) error {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo: got %q, want %q", got, msg)
	}
	return nil
}

// createAndEcho creates an onion to an echo server, dials it through d and
// echoes once; it records the figures.
func createAndEcho(t *testing.T, ctx context.Context, ctrl *torctl.Controller, d ghostcomm.Dialer, conf ghostcomm.OnionConfig) (ghostcomm.Onion, net.Conn) {
	t.Helper()
	if conf.Target == "" {
		conf.Target = echoServer(t)
	}
	if conf.VirtualPort == 0 {
		conf.VirtualPort = ghostcomm.DefaultOnionPort
	}
	start := time.Now()
	onion, err := ctrl.CreateOnion(ctx, conf)
	if err != nil {
		t.Fatalf("CreateOnion: %v", err)
	}
	record(&figures.published, time.Since(start))
	c, err := d.DialContext(ctx, "tcp", onion.Addr())
	if err != nil {
		t.Fatalf("dial %s: %v", onion.Addr(), err)
	}
	t.Cleanup(func() { c.Close() })
	if err := echo(c, []byte("hello through tor")); err != nil {
		t.Fatal(err)
	}
	record(&figures.firstEcho, time.Since(start))
	return onion, c
}

// TestIntegrationEcho creates an onion on one tor and talks to it from
// another tor and from the same tor; it logs the figures.
func TestIntegrationEcho(t *testing.T) {
	e, ctx := setup(t)
	testnet.Figure(t, "bootstrap time of the shared network: %v", e.net.BootstrapTime().Round(time.Millisecond))

	onion, c := createAndEcho(t, ctx, e.ctrl, e.dialer, ghostcomm.OnionConfig{})
	if len(onion.ServiceID) != 56 || onion.Port != ghostcomm.DefaultOnionPort {
		t.Errorf("onion %+v", onion)
	}
	ids, err := e.ctrl.Onions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ids, onion.ServiceID) {
		t.Errorf("Onions() = %v, lacks %s", ids, onion.ServiceID)
	}

	// Echo round trips of 32 bytes on the open stream.
	msg := bytes.Repeat([]byte("x"), 32)
	var rtts []time.Duration
	for range 20 {
		s := time.Now()
		if err := echo(c, msg); err != nil {
			t.Fatal(err)
		}
		rtts = append(rtts, time.Since(s))
	}
	testnet.Figure(t, "echo round trip (32 B, open stream): median %v, min %v, max %v over %d",
		median(rtts).Round(time.Microsecond), slices.Min(rtts).Round(time.Microsecond), slices.Max(rtts).Round(time.Microsecond), len(rtts))

	// The service's own tor can dial it too.
	selfStart := time.Now()
	sc, err := e.selfDial.DialContext(ctx, "tcp", onion.Addr())
	t.Logf("self dial took %v", time.Since(selfStart))
	if err != nil {
		t.Fatalf("dial through the service's own tor: %v", err)
	}
	defer sc.Close()
	if err := echo(sc, []byte("self")); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationGivenKey creates an onion with a key of ours: tor must
// answer with the service ID that ServiceID computes, which checks both the
// address derivation and the expanded-key blob.
func TestIntegrationGivenKey(t *testing.T) {
	e, ctx := setup(t)
	priv := ed25519.NewKeyFromSeed(torctl.VectorSeed)
	pub := priv.Public().(ed25519.PublicKey)
	onion, _ := createAndEcho(t, ctx, e.ctrl, e.dialer, ghostcomm.OnionConfig{Key: priv})
	if onion.ServiceID != torctl.ServiceID(pub) || onion.ServiceID != torctl.VectorServiceID {
		t.Fatalf("tor answered service ID %s; ServiceID computes %s; the vector is %s", onion.ServiceID, torctl.ServiceID(pub), torctl.VectorServiceID)
	}
	// The same key again is refused by tor while the first service exists,
	// and nothing is left behind.
	before, _ := e.ctrl.Onions(ctx)
	if _, err := e.ctrl.CreateOnion(ctx, ghostcomm.OnionConfig{Key: priv, VirtualPort: 80, Target: "127.0.0.1:1"}); err == nil {
		t.Error("a second onion with the same key was created")
	}
	after, _ := e.ctrl.Onions(ctx)
	if !slices.Equal(sorted(before), sorted(after)) {
		t.Errorf("onions before %v, after a failed CreateOnion %v", before, after)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// TestIntegrationRemove removes an onion: Onions no longer lists it, a
// second RemoveOnion is a no-op, and dials fail. Tor cannot tell a removed
// service from an unreachable one while its descriptor is still on the
// HSDirs: a tor that already talked to it gets 0x05 or 0x01, a tor that
// never did gets 0xF2 (introduction failed). Only a service that was never
// published gives 0xF0 (ErrOnionNotFound).
func TestIntegrationRemove(t *testing.T) {
	e, ctx := setup(t)
	onion, c := createAndEcho(t, ctx, e.ctrl, e.dialer, ghostcomm.OnionConfig{})
	c.Close()
	if err := e.ctrl.RemoveOnion(ctx, onion.ServiceID); err != nil {
		t.Fatal(err)
	}
	ids, err := e.ctrl.Onions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(ids, onion.ServiceID) {
		t.Errorf("Onions() = %v still lists the removed %s", ids, onion.ServiceID)
	}
	if hostsDescriptor(t, e.service, onion.ServiceID) {
		t.Errorf("tor still hosts the removed %s", onion.ServiceID)
	}
	if err := e.ctrl.RemoveOnion(ctx, onion.ServiceID); err != nil {
		t.Errorf("second RemoveOnion: %v", err)
	}
	if err := e.ctrl.RemoveOnion(ctx, "not-an-id"); !errors.Is(err, ghostcomm.ErrMalformed) {
		t.Errorf("RemoveOnion(malformed) = %v, want ErrMalformed", err)
	}

	fresh, err := e.net.AddTor(ctx, "fresh", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.net.StopTor(fresh)
	dialers := map[string]string{"the tor that used it": e.client.SocksAddr, "a fresh tor": fresh.SocksAddr}
	for name, socks := range dialers {
		d, err := torctl.NewDialer(socks, torctl.DialerConfig{RetryFor: -1})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = d.DialContext(ctx, "tcp", onion.Addr())
		t.Logf("dial of the removed onion from %s: %v (after %v)", name, err, time.Since(start).Round(time.Millisecond))
		var se *torctl.SOCKSError
		if !errors.As(err, &se) || !errors.Is(err, ghostcomm.ErrOnionNotFound) && !errors.Is(err, ghostcomm.ErrOnionUnreachable) {
			t.Errorf("dial of the removed onion from %s: %v, want a *SOCKSError", name, err)
		}
	}

	// An onion that was never published: descriptor not found.
	noRetry, err := torctl.NewDialer(e.client.SocksAddr, torctl.DialerConfig{RetryFor: -1})
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	never := ghostcomm.Onion{ServiceID: torctl.ServiceID(pub), Port: 80}
	_, err = noRetry.DialContext(ctx, "tcp", never.Addr())
	var se *torctl.SOCKSError
	if !errors.Is(err, ghostcomm.ErrOnionNotFound) || !errors.As(err, &se) || se.Code != torctl.SOCKSOnionNotFound {
		t.Errorf("dial of an unknown onion: %v, want 0xF0 ErrOnionNotFound", err)
	}
}

// TestIntegrationClientAuth: a service with v3 client authorization refuses
// a client without the key and accepts it once AddClientAuth gave it.
func TestIntegrationClientAuth(t *testing.T) {
	e, ctx := setup(t)
	key, err := torctl.NewClientAuthKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := torctl.NewClientAuthKey(nil)
	start := time.Now()
	onion, err := e.ctrl.CreateOnion(ctx, ghostcomm.OnionConfig{VirtualPort: 80, Target: echoServer(t), ClientAuth: [][32]byte{key.Public, other.Public}})
	if err != nil {
		t.Fatal(err)
	}
	record(&figures.published, time.Since(start))

	cctrl, err := torctl.Connect(ctx, torctl.ConnectConfig{Addr: e.client.ControlAddr, CookiePath: e.client.CookiePath})
	if err != nil {
		t.Fatal(err)
	}
	defer cctrl.Close()
	defer cctrl.RemoveClientAuth(context.Background(), onion.ServiceID)

	_, err = e.dialer.DialContext(ctx, "tcp", onion.Addr())
	var se *torctl.SOCKSError
	if !errors.As(err, &se) || !errors.Is(err, ghostcomm.ErrOnionUnreachable) {
		t.Fatalf("dial without the client key: %v, want a SOCKSError matching ErrOnionUnreachable", err)
	}
	t.Logf("dial without the client key: %v", err)

	if err := cctrl.AddClientAuth(ctx, onion.ServiceID, key.Private); err != nil {
		t.Fatal(err)
	}
	c, err := e.dialer.DialContext(ctx, "tcp", onion.Addr())
	if err != nil {
		t.Fatalf("dial with the client key: %v", err)
	}
	defer c.Close()
	if err := echo(c, []byte("authorized")); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationConcurrentCreate publishes three onions at once from one
// Controller; each must be distinct and reachable.
func TestIntegrationConcurrentCreate(t *testing.T) {
	e, ctx := setup(t)
	const n = 3
	onions := make([]ghostcomm.Onion, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		target := echoServer(t)
		wg.Go(func() {
			start := time.Now()
			onions[i], errs[i] = e.ctrl.CreateOnion(ctx, ghostcomm.OnionConfig{VirtualPort: 80 + i, Target: target})
			if errs[i] == nil {
				record(&figures.published, time.Since(start))
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("CreateOnion %d: %v", i, errs[i])
		}
		if seen[onions[i].ServiceID] {
			t.Fatalf("service ID %s twice", onions[i].ServiceID)
		}
		seen[onions[i].ServiceID] = true
	}
	for i := range n {
		wg.Go(func() {
			c, err := e.dialer.DialContext(ctx, "tcp", onions[i].Addr())
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close()
			errs[i] = echo(c, []byte(onions[i].ServiceID))
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("onion %d: %v", i, errs[i])
		}
	}
}

// TestIntegrationCreateCanceled cancels CreateOnion after tor has added the
// service but before it is published: the service must be removed.
func TestIntegrationCreateCanceled(t *testing.T) {
	e, ctx := setup(t)
	before, err := e.ctrl.Onions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	added := make(chan string, 1)
	go func() {
		// Cancel as soon as a new onion shows up.
		for cctx.Err() == nil {
			ids, err := e.ctrl.Onions(ctx)
			if err == nil {
				for _, id := range ids {
					if !slices.Contains(before, id) {
						added <- id
						cancel()
						return
					}
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	_, err = e.ctrl.CreateOnion(cctx, ghostcomm.OnionConfig{VirtualPort: 80, Target: "127.0.0.1:1"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateOnion = %v, want context.Canceled", err)
	}
	var id string
	select {
	case id = <-added:
	default:
		t.Fatal("CreateOnion returned before its onion showed up")
	}
	after, err := e.ctrl.Onions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(after, id) {
		t.Errorf("canceled onion %s still exists: %v", id, after)
	}
}

// hostsDescriptor asks tor, on a control connection of the test's own,
// whether it hosts the onion service id (GETINFO hs/service/desc/id/<id>).
func hostsDescriptor(t *testing.T, tor *testnet.Tor, id string) bool {
	t.Helper()
	raw, err := net.DialTimeout("tcp", tor.ControlAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	conn := control.NewConn(textproto.NewConn(raw))
	if err := conn.Authenticate(""); err != nil {
		t.Fatal(err)
	}
	_, err = conn.GetInfo("hs/service/desc/id/" + id)
	var te *textproto.Error
	if errors.As(err, &te) && (te.Code == 551 || te.Code == 552) { // "Not found in cache", unknown
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// TestIntegrationAuthentication: cookie authentication with the path tor
// announces and with an explicit CookiePath works; a wrong cookie fails.
func TestIntegrationAuthentication(t *testing.T) {
	e, ctx := setup(t)
	c, err := torctl.Connect(ctx, torctl.ConnectConfig{Addr: e.client.ControlAddr, CookiePath: e.client.CookiePath})
	if err != nil {
		t.Fatalf("CookiePath: %v", err)
	}
	if p, err := c.BootstrapProgress(ctx); err != nil || p != 100 {
		t.Errorf("BootstrapProgress = %d, %v", p, err)
	}
	c.Close()
	wrong := filepath.Join(t.TempDir(), "cookie")
	if err := os.WriteFile(wrong, bytes.Repeat([]byte{7}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := torctl.Connect(ctx, torctl.ConnectConfig{Addr: e.client.ControlAddr, CookiePath: wrong}); err == nil {
		c.Close()
		t.Fatal("Connect with a wrong cookie succeeded")
	} else {
		t.Logf("wrong cookie: %v", err)
	}
}

// TestIntegrationCloseRemovesOnions: after Close, tor no longer hosts any
// onion the Controller created, and later calls fail with ErrClosed.
func TestIntegrationCloseRemovesOnions(t *testing.T) {
	e, ctx := setup(t)
	ctrl, err := torctl.Connect(ctx, torctl.ConnectConfig{Addr: e.service.ControlAddr})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 2 {
		o, err := ctrl.CreateOnion(ctx, ghostcomm.OnionConfig{VirtualPort: 80, Target: "127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, o.ServiceID)
	}
	listed, err := ctrl.Onions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sorted(listed), sorted(ids)) {
		t.Fatalf("Onions() = %v, want %v", listed, ids)
	}
	for _, id := range ids {
		if !hostsDescriptor(t, e.service, id) {
			t.Fatalf("tor does not host %s before Close", id)
		}
	}
	if err := ctrl.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ctrl.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, id := range ids {
		if hostsDescriptor(t, e.service, id) {
			t.Errorf("tor still hosts %s after Close", id)
		}
	}
	// Onions lists only the Controller's own onions (tor answers 551 when
	// there are none).
	other, err := torctl.Connect(ctx, torctl.ConnectConfig{Addr: e.service.ControlAddr})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if got, err := other.Onions(ctx); err != nil || len(got) != 0 {
		t.Errorf("a new Controller's Onions() = %v, %v; want none", got, err)
	}
	if _, err := ctrl.Onions(ctx); !errors.Is(err, ghostcomm.ErrClosed) {
		t.Errorf("Onions after Close: %v, want ErrClosed", err)
	}
	if _, err := ctrl.CreateOnion(ctx, ghostcomm.OnionConfig{VirtualPort: 80, Target: "127.0.0.1:1"}); !errors.Is(err, ghostcomm.ErrClosed) {
		t.Errorf("CreateOnion after Close: %v, want ErrClosed", err)
	}
}

// TestIntegrationLaunch starts a tor of the private network with Launch,
// publishes an onion on it, reaches it from another tor, and checks that
// Close stops that tor.
func TestIntegrationLaunch(t *testing.T) {
	e, ctx := setup(t)
	tor, err := e.net.PrepareTor("launched", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.net.CheckTorrc(tor.TorrcPath); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctrl, err := torctl.Launch(ctx, torctl.LaunchConfig{TorrcFile: tor.TorrcPath, DataDir: tor.DataDir})
	if err != nil {
		t.Fatal(err)
	}
	pid := ctrl.PID()
	defer func() {
		ctrl.Close()
		if processAlive(pid) { // stop it by PID whatever happened
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}()
	if err := ctrl.WaitBootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("launched tor bootstrapped in %v", time.Since(start).Round(time.Millisecond))
	socks, err := ctrl.SOCKSAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if socks != tor.SocksAddr {
		t.Errorf("SOCKSAddr = %s, want %s", socks, tor.SocksAddr)
	}
	createAndEcho(t, ctx, ctrl, e.dialer, ghostcomm.OnionConfig{})
	if err := ctrl.Close(); err != nil {
		t.Fatal(err)
	}
	if processAlive(pid) {
		t.Errorf("launched tor (pid %d) still runs after Close", pid)
	}
}

func processAlive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// logFigures logs the figures the integration tests collected.
func logFigures() {
	figures.Lock()
	defer figures.Unlock()
	if len(figures.published) == 0 {
		return
	}
	const name = "torctl integration tests"
	testnet.FigureAfterTests(name, "ADD_ONION → descriptor uploaded: median %v, max %v over %d onions",
		median(figures.published).Round(time.Millisecond), slices.Max(figures.published).Round(time.Millisecond), len(figures.published))
	if len(figures.firstEcho) > 0 {
		testnet.FigureAfterTests(name, "ADD_ONION → first echo: median %v, max %v over %d onions",
			median(figures.firstEcho).Round(time.Millisecond), slices.Max(figures.firstEcho).Round(time.Millisecond), len(figures.firstEcho))
	}
}
