package torctl

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
)

// fakeTimeout bounds each test against the fake control port; nothing it
// does takes more than milliseconds.
const fakeTimeout = 10 * time.Second

func connectFake(t *testing.T, f *fakeTor) *Controller {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fakeTimeout)
	defer cancel()
	c, err := Connect(ctx, ConnectConfig{Addr: f.addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func fakeCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), fakeTimeout)
	t.Cleanup(cancel)
	return ctx
}

var echoConf = ghostcomm.OnionConfig{VirtualPort: 80, Target: "127.0.0.1:8080"}

func TestCreateOnionWaitsForUpload(t *testing.T) {
	f := newFakeTor(t)
	f.set(func(f *fakeTor) { f.uploadDelay = func() time.Duration { return 50 * time.Millisecond } })
	c := connectFake(t, f)
	ctx := fakeCtx(t)
	o, err := c.CreateOnion(ctx, echoConf)
	if err != nil {
		t.Fatal(err)
	}
	if !validServiceID(o.ServiceID) || o.Port != 80 {
		t.Fatalf("onion %+v", o)
	}
	ids, err := c.Onions(ctx)
	if err != nil || !slices.Equal(ids, []string{o.ServiceID}) {
		t.Fatalf("Onions() = %v, %v", ids, err)
	}
	add := f.commandsWithPrefix("ADD_ONION")
	if want := "ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port=80,127.0.0.1:8080"; len(add) != 1 || add[0] != want {
		t.Errorf("sent %q, want %q", add, want)
	}
	// HS_DESC was subscribed before ADD_ONION was sent.
	f.mu.Lock()
	cmds := slices.Clone(f.commands)
	f.mu.Unlock()
	sub := slices.IndexFunc(cmds, func(s string) bool { return strings.HasPrefix(s, "SETEVENTS HS_DESC") })
	addAt := slices.IndexFunc(cmds, func(s string) bool { return strings.HasPrefix(s, "ADD_ONION") })
	if sub < 0 || sub > addAt {
		t.Errorf("SETEVENTS HS_DESC at %d, ADD_ONION at %d: %q", sub, addAt, cmds)
	}
}

// TestCreateOnionUploadBeforeReply: the upload event may arrive on the event
// connection before the ADD_ONION reply names the service; it must not be
// lost (bine's Listen loses it: issue #39).
func TestCreateOnionUploadBeforeReply(t *testing.T) {
	f := newFakeTor(t)
	f.set(func(f *fakeTor) { f.uploadBeforeReply = true })
	c := connectFake(t, f)
	ctx := fakeCtx(t)
	for range 20 {
		if _, err := c.CreateOnion(ctx, echoConf); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCreateOnionConcurrentRouting(t *testing.T) {
	f := newFakeTor(t)
	f.set(func(f *fakeTor) {
		f.uploadDelay = func() time.Duration { return time.Duration(rand.IntN(30)) * time.Millisecond }
	})
	c := connectFake(t, f)
	ctx := fakeCtx(t)
	const n = 30
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			o, err := c.CreateOnion(ctx, echoConf)
			ids[i], errs[i] = o.ServiceID, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if len(slices.Compact(ids)) != n {
		t.Fatalf("duplicate service IDs: %v", ids)
	}
	if got := f.onionCount(); got != n {
		t.Errorf("fake holds %d onions, want %d", got, n)
	}
}

func TestCreateOnionNoWait(t *testing.T) {
	f := newFakeTor(t)
	f.set(func(f *fakeTor) { f.noUpload = true })
	c := connectFake(t, f)
	conf := echoConf
	conf.NoWait = true
	if _, err := c.CreateOnion(fakeCtx(t), conf); err != nil {
		t.Fatal(err)
	}
}

// TestCreateOnionNotPublishedIsRemoved: when ctx ends before the upload,
// CreateOnion removes the service it added.
func TestCreateOnionNotPublishedIsRemoved(t *testing.T) {
	f := newFakeTor(t)
	f.set(func(f *fakeTor) { f.noUpload = true })
	c := connectFake(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.CreateOnion(ctx, echoConf)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CreateOnion = %v, want DeadlineExceeded", err)
	}
	if n := f.onionCount(); n != 0 {
		t.Errorf("%d onions left behind", n)
	}
	if len(f.commandsWithPrefix("DEL_ONION")) != 1 {
		t.Errorf("commands: %q", f.commandsWithPrefix(""))
	}
	ids, err := c.Onions(fakeCtx(t))
	if err != nil || len(ids) != 0 {
		t.Errorf("Onions() = %v, %v", ids, err)
	}
}

// TestCreateOnionAbandonedReply: ctx ends while tor has not answered
// ADD_ONION yet; CreateOnion returns at once, and the service tor then adds
// is removed in the background (Close waits for that).
func TestCreateOnionAbandonedReply(t *testing.T) {
	f := newFakeTor(t)
	f.set(func(f *fakeTor) { f.addReplyDelay = 300 * time.Millisecond })
	c := connectFake(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.CreateOnion(ctx, echoConf); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CreateOnion = %v, want DeadlineExceeded", err)
	}
	// The connection still works: the late reply was read to its end.
	f.set(func(f *fakeTor) { f.addReplyDelay = 0 })
	o, err := c.CreateOnion(fakeCtx(t), echoConf)
	if err != nil {
		t.Fatal(err)
	}
	if ids, err := c.Onions(fakeCtx(t)); err != nil || !slices.Equal(ids, []string{o.ServiceID}) {
		t.Errorf("Onions() = %v, %v; want only %s", ids, err, o.ServiceID)
	}
	if got := f.commandsWithPrefix("DEL_ONION"); len(got) != 1 {
		t.Errorf("DEL_ONION sent %d times before Close, want 1 (the abandoned onion): %q", len(got), got)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCreateOnionEventConnectionLost: if tor goes away while CreateOnion
// waits, it returns an error instead of waiting for ctx.
func TestCreateOnionEventConnectionLost(t *testing.T) {
	f := newFakeTor(t)
	f.set(func(f *fakeTor) { f.noUpload = true })
	c := connectFake(t, f)
	done := make(chan error, 1)
	go func() {
		_, err := c.CreateOnion(context.Background(), echoConf)
		done <- err
	}()
	for len(f.commandsWithPrefix("ADD_ONION")) == 0 {
		time.Sleep(time.Millisecond)
	}
	f.dropConnections()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("CreateOnion succeeded without an upload")
		}
	case <-time.After(fakeTimeout):
		t.Fatal("CreateOnion still waits after the connections closed")
	}
	if _, err := c.Onions(fakeCtx(t)); err == nil {
		t.Error("Onions works on a dead connection")
	}
}

// TestCreateOnionWrongServiceID: with a given key, tor must answer with that
// key's service ID; anything else is removed and reported.
func TestCreateOnionWrongServiceID(t *testing.T) {
	f := newFakeTor(t)
	bogus := randomServiceID()
	f.set(func(f *fakeTor) { f.answerID = bogus })
	c := connectFake(t, f)
	_, priv, _ := ed25519.GenerateKey(nil)
	conf := echoConf
	conf.Key = priv
	if _, err := c.CreateOnion(fakeCtx(t), conf); err == nil {
		t.Fatal("CreateOnion accepted a service ID that does not match the key")
	}
	if n := f.onionCount(); n != 0 {
		t.Errorf("%d onions left behind", n)
	}
	// The controller still works.
	f.set(func(f *fakeTor) { f.answerID = "" })
	if _, err := c.CreateOnion(fakeCtx(t), echoConf); err != nil {
		t.Errorf("CreateOnion after a refused answer: %v", err)
	}
}

func TestCloseRemovesOnions(t *testing.T) {
	f := newFakeTor(t)
	// Like tor, the fake drops a connection's onions when it closes, so
	// Close is judged by the DEL_ONION commands it sent.
	c := connectFake(t, f)
	ctx := fakeCtx(t)
	var ids []string
	for range 3 {
		o, err := c.CreateOnion(ctx, echoConf)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, o.ServiceID)
	}
	if err := c.RemoveOnion(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, cmd := range f.commandsWithPrefix("DEL_ONION ") {
		deleted = append(deleted, strings.TrimPrefix(cmd, "DEL_ONION "))
	}
	slices.Sort(deleted)
	slices.Sort(ids)
	if !slices.Equal(deleted, ids) {
		t.Errorf("DEL_ONION for %v, want each of %v once", deleted, ids)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for name, err := range map[string]error{
		"CreateOnion": func() error { _, err := c.CreateOnion(ctx, echoConf); return err }(),
		"RemoveOnion": c.RemoveOnion(ctx, ids[1]),
		"Onions":      func() error { _, err := c.Onions(ctx); return err }(),
	} {
		if !errors.Is(err, ghostcomm.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func TestRemoveOnion(t *testing.T) {
	f := newFakeTor(t)
	c := connectFake(t, f)
	ctx := fakeCtx(t)
	if err := c.RemoveOnion(ctx, randomServiceID()); err != nil {
		t.Errorf("RemoveOnion(unknown) = %v, want nil", err)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("a", 56), randomServiceID() + " Flags=x", strings.ToUpper(randomServiceID())} {
		if err := c.RemoveOnion(ctx, bad); !errors.Is(err, ghostcomm.ErrMalformed) {
			t.Errorf("RemoveOnion(%q) = %v, want ErrMalformed", bad, err)
		}
	}
	if cmds := f.commandsWithPrefix("DEL_ONION"); len(cmds) != 1 {
		t.Errorf("malformed IDs reached tor: %q", cmds)
	}
}

func TestAddClientAuth(t *testing.T) {
	f := newFakeTor(t)
	c := connectFake(t, f)
	k, err := NewClientAuthKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	id := randomServiceID()
	if err := c.AddClientAuth(fakeCtx(t), id, k.Private); err != nil {
		t.Fatalf("AddClientAuth (tor answers 252): %v", err)
	}
	cmds := f.commandsWithPrefix("ONION_CLIENT_AUTH_ADD")
	if len(cmds) != 1 || !strings.HasPrefix(cmds[0], "ONION_CLIENT_AUTH_ADD "+id+" x25519:") {
		t.Errorf("sent %q", cmds)
	}
}

func TestCreateOnionRefusesBadConfig(t *testing.T) {
	f := newFakeTor(t)
	c := connectFake(t, f)
	_, priv, _ := ed25519.GenerateKey(nil)
	mismatched := slices.Clone(priv)
	mismatched[40] ^= 1
	for name, conf := range map[string]ghostcomm.OnionConfig{
		"port 0":              {VirtualPort: 0, Target: "127.0.0.1:80"},
		"port 65536":          {VirtualPort: 65536, Target: "127.0.0.1:80"},
		"no target":           {VirtualPort: 80},
		"public target":       {VirtualPort: 80, Target: "192.0.2.1:80"},
		"host name target":    {VirtualPort: 80, Target: "localhost:80"},
		"target port 0":       {VirtualPort: 80, Target: "127.0.0.1:0"},
		"target injection":    {VirtualPort: 80, Target: "127.0.0.1:80 Flags=Detach"},
		"target crlf":         {VirtualPort: 80, Target: "127.0.0.1:80\r\nDEL_ONION x"},
		"short key":           {VirtualPort: 80, Target: "127.0.0.1:80", Key: priv[:32]},
		"inconsistent key":    {VirtualPort: 80, Target: "127.0.0.1:80", Key: mismatched},
		"unspecified target":  {VirtualPort: 80, Target: "0.0.0.0:80"},
		"pow rate, disabled":  {VirtualPort: 80, Target: "127.0.0.1:80", PoW: ghostcomm.PoWConfig{QueueRate: 5}},
		"pow burst, disabled": {VirtualPort: 80, Target: "127.0.0.1:80", PoW: ghostcomm.PoWConfig{QueueBurst: 5}},
	} {
		_, err := c.CreateOnion(fakeCtx(t), conf)
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%s: %v, want *ConfigError", name, err)
		}
	}
	if cmds := f.commandsWithPrefix("ADD_ONION"); len(cmds) != 0 {
		t.Errorf("bad configurations reached tor: %q", cmds)
	}
}

func TestAddOnionCommand(t *testing.T) {
	k1, _ := NewClientAuthKey(nil)
	k2, _ := NewClientAuthKey(nil)
	seed := make([]byte, 32)
	priv := ed25519.NewKeyFromSeed(seed)
	for _, tc := range []struct {
		conf   ghostcomm.OnionConfig
		want   string
		wantID string
	}{
		{ghostcomm.OnionConfig{VirtualPort: 80, Target: "127.0.0.1:8080"},
			"ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port=80,127.0.0.1:8080", ""},
		{ghostcomm.OnionConfig{VirtualPort: 443, Target: "[::1]:9"},
			"ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port=443,[::1]:9", ""},
		{ghostcomm.OnionConfig{VirtualPort: 80, Target: "127.0.0.2:1", ClientAuth: [][32]byte{k1.Public, k2.Public}},
			"ADD_ONION NEW:ED25519-V3 Flags=DiscardPK,V3Auth Port=80,127.0.0.2:1 ClientAuthV3=" + k1.PublicBase32() + " ClientAuthV3=" + k2.PublicBase32(), ""},
		{ghostcomm.OnionConfig{VirtualPort: 80, Target: "127.0.0.1:1", Key: priv},
			"ADD_ONION ED25519-V3:" + torKeyBlob(priv) + " Port=80,127.0.0.1:1", ServiceID(priv.Public().(ed25519.PublicKey))},
		{ghostcomm.OnionConfig{VirtualPort: 80, Target: "127.0.0.1:1", PoW: ghostcomm.PoWConfig{Enabled: true}},
			"ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port=80,127.0.0.1:1 PoWDefensesEnabled=1", ""},
		{ghostcomm.OnionConfig{VirtualPort: 80, Target: "127.0.0.1:1", PoW: ghostcomm.PoWConfig{Enabled: true, QueueRate: 50, QueueBurst: 4294967295}},
			"ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port=80,127.0.0.1:1 PoWDefensesEnabled=1 PoWQueueRate=50 PoWQueueBurst=4294967295", ""},
	} {
		got, id, err := addOnionCommand(tc.conf)
		if err != nil || got != tc.want || id != tc.wantID {
			t.Errorf("addOnionCommand(%+v) =\n%q, %q, %v\nwant\n%q, %q", tc.conf, got, id, err, tc.want, tc.wantID)
		}
	}
}

// TestCreateOnionPoWFallback: a tor that does not know the proof-of-work
// keywords (it answers 512, as tor 0.4.8 does) gets the command again
// without them; the onion is created and a warning says the defence is off.
// A tor that knows them gets them once.
func TestCreateOnionPoWFallback(t *testing.T) {
	conf := echoConf
	conf.PoW = ghostcomm.PoWConfig{Enabled: true, QueueRate: 10}
	for _, refuse := range []bool{false, true} {
		f := newFakeTor(t)
		f.set(func(f *fakeTor) { f.refusePoW = refuse })
		var logs strings.Builder
		var mu sync.Mutex
		ctx := fakeCtx(t)
		c, err := Connect(ctx, ConnectConfig{Addr: f.addr(), Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		onion, err := c.CreateOnion(ctx, conf)
		if err != nil {
			t.Fatalf("refuse=%v: CreateOnion: %v", refuse, err)
		}
		cmds := f.commandsWithPrefix("ADD_ONION")
		mu.Lock()
		warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), onion.ServiceID)
		mu.Unlock()
		want := 1
		if refuse {
			want = 2
		}
		if len(cmds) != want || !strings.Contains(cmds[0], " PoWDefensesEnabled=1 PoWQueueRate=10") {
			t.Fatalf("refuse=%v: sent %q", refuse, cmds)
		}
		if refuse && strings.Contains(cmds[1], "PoW") {
			t.Errorf("the second ADD_ONION still asks for PoW: %q", cmds[1])
		}
		if warned != refuse {
			t.Errorf("refuse=%v: warning logged: %v; logs:\n%s", refuse, warned, logs.String())
		}
		if ids, _ := c.Onions(ctx); !slices.Equal(ids, []string{onion.ServiceID}) {
			t.Errorf("refuse=%v: tor holds %v, want [%s]", refuse, ids, onion.ServiceID)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestCreateOnionPoWFallbackKeepsRealError: when the command fails without
// proof-of-work too, the error returned is tor's answer to that command.
func TestCreateOnionPoWFallbackKeepsRealError(t *testing.T) {
	f := newFakeTor(t)
	f.set(func(f *fakeTor) { f.refusePoW = true })
	c := connectFake(t, f)
	_, priv, _ := ed25519.GenerateKey(nil)
	conf := echoConf
	conf.Key = priv
	conf.PoW.Enabled = true
	// The fake answers another service ID than the key's: the plain
	// command's failure must be the one reported.
	f.set(func(f *fakeTor) { f.answerID = randomServiceID() })
	_, err := c.CreateOnion(fakeCtx(t), conf)
	if err == nil || !strings.Contains(err.Error(), "answered service ID") {
		t.Fatalf("CreateOnion = %v, want the plain command's failure", err)
	}
	if n := len(f.commandsWithPrefix("ADD_ONION")); n != 2 {
		t.Errorf("%d ADD_ONION sent, want 2", n)
	}
}

func TestConnectFailures(t *testing.T) {
	ctx := fakeCtx(t)
	// Nothing listens on a port we just closed.
	f := newFakeTor(t)
	addr := f.addr()
	f.close()
	if _, err := Connect(ctx, ConnectConfig{Addr: addr}); err == nil {
		t.Error("Connect to a closed port succeeded")
	}
	if _, err := Connect(ctx, ConnectConfig{Addr: "127.0.0.1:1", CommandTimeout: -1}); err == nil {
		t.Error("negative CommandTimeout accepted")
	}
	if _, err := Connect(ctx, ConnectConfig{Addr: "unix:" + filepath.Join(t.TempDir(), "none")}); err == nil {
		t.Error("Connect to a missing unix socket succeeded")
	}
}

// TestLaunchRefusesWithoutTorrc: Launch never starts tor without a torrc
// and a data directory. The "tor" here is a script that would leave a
// marker file if it ran.
func TestLaunchRefusesWithoutTorrc(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	fakeTorBin := filepath.Join(dir, "tor")
	if err := os.WriteFile(fakeTorBin, []byte("#!/bin/sh\ntouch '"+marker+"'\nsleep 30\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	torrc := filepath.Join(dir, "torrc")
	if err := os.WriteFile(torrc, []byte("TestingTorNetwork 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := fakeCtx(t)
	for name, tc := range map[string]struct {
		cfg   LaunchConfig
		field string
	}{
		"no torrc":         {LaunchConfig{TorPath: fakeTorBin, DataDir: filepath.Join(dir, "data")}, "LaunchConfig.TorrcFile"},
		"blank torrc":      {LaunchConfig{TorPath: fakeTorBin, TorrcFile: "  ", DataDir: filepath.Join(dir, "data")}, "LaunchConfig.TorrcFile"},
		"missing torrc":    {LaunchConfig{TorPath: fakeTorBin, TorrcFile: filepath.Join(dir, "nope"), DataDir: filepath.Join(dir, "data")}, "LaunchConfig.TorrcFile"},
		"directory torrc":  {LaunchConfig{TorPath: fakeTorBin, TorrcFile: dir, DataDir: filepath.Join(dir, "data")}, "LaunchConfig.TorrcFile"},
		"no data dir":      {LaunchConfig{TorPath: fakeTorBin, TorrcFile: torrc}, "LaunchConfig.DataDir"},
		"negative timeout": {LaunchConfig{TorPath: fakeTorBin, TorrcFile: torrc, DataDir: filepath.Join(dir, "data"), CommandTimeout: -1}, "LaunchConfig.CommandTimeout"},
		"zero config":      {LaunchConfig{}, "LaunchConfig.TorrcFile"},
	} {
		c, err := Launch(ctx, tc.cfg)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%s: Launch = %v, %v; want *ConfigError for %s", name, c, err, tc.field)
		}
		if c != nil {
			c.Close()
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("Launch ran tor with an invalid configuration")
	}
}

// TestLaunchReportsEarlyExit: a tor that exits at once makes Launch fail
// with its output, and leaves no process behind.
func TestLaunchReportsEarlyExit(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tor")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'fake tor: bad torrc' >&2\nexit 1\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	torrc := filepath.Join(dir, "torrc")
	os.WriteFile(torrc, nil, 0o600)
	_, err := Launch(fakeCtx(t), LaunchConfig{TorPath: bin, TorrcFile: torrc, DataDir: filepath.Join(dir, "data")})
	if err == nil || !strings.Contains(err.Error(), "fake tor: bad torrc") {
		t.Fatalf("Launch = %v, want an error quoting tor's output", err)
	}
}

func TestUploadRouterBound(t *testing.T) {
	r := newUploadRouter()
	r.begin()
	for range maxEarlyUploads + 10 {
		r.uploaded(randomServiceID())
	}
	if len(r.early) > maxEarlyUploads || len(r.earlyOrder) > maxEarlyUploads {
		t.Errorf("early holds %d ids (%d in order), bound %d", len(r.early), len(r.earlyOrder), maxEarlyUploads)
	}
	r.end()
	if len(r.early) != 0 {
		t.Errorf("early holds %d ids with no CreateOnion pending", len(r.early))
	}
	// Without a pending CreateOnion, uploads nobody waits for are dropped.
	id := randomServiceID()
	r.uploaded(id)
	ch, stop := r.wait(id)
	defer stop()
	select {
	case <-ch:
		t.Error("an upload seen with nothing pending was kept")
	default:
	}
	r.uploaded(id)
	select {
	case <-ch:
	default:
		t.Error("waiter not woken by its upload")
	}
}
