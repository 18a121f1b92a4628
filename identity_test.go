package ghostcomm_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

func TestIdentityRestartSameInvite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	id, created, err := ghostcomm.LoadOrCreateIdentity(dir, nil)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreateIdentity: created=%v err=%v", created, err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, ghostcomm.IdentityFile): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := tortest.NewNetwork(tortest.Config{})
	defer n.Close()
	start := func(id *ghostcomm.Identity) *ghostcomm.Primary {
		t.Helper()
		cfg := ghostcomm.PrimaryConfig{Nodes: 2}
		id.Apply(&cfg)
		p, err := ghostcomm.NewPrimary(ctx, n.Controller(), n.Dialer(), cfg)
		if err != nil {
			t.Fatalf("NewPrimary: %v", err)
		}
		return p
	}
	first := start(id)
	invite := first.Invite(nil).String()
	if pre, _ := id.Invite("", 0); pre.String() != invite {
		t.Fatalf("Identity.Invite %s, the Primary's %s", pre, invite)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart: a new process would load the same directory.
	id2, created, err := ghostcomm.LoadOrCreateIdentity(dir, nil)
	if err != nil || created {
		t.Fatalf("second LoadOrCreateIdentity: created=%v err=%v", created, err)
	}
	second := start(id2)
	defer second.Close()
	if got := second.Invite(nil).String(); got != invite {
		t.Fatalf("invite after restart %s, want %s", got, invite)
	}
	inv, err := ghostcomm.ParseInvite(invite) // the invite handed out before the restart
	if err != nil {
		t.Fatal(err)
	}
	c, err := ghostcomm.NewClient(n.Dialer(), inv, ghostcomm.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if res, err := c.Send(ctx, []byte("after a restart")); err != nil || !res.Verified {
		t.Fatalf("Send with the old invite: %v", err)
	}
}

func TestIdentityClients(t *testing.T) {
	t.Parallel()
	dir := privateDir(t)
	id, err := ghostcomm.CreateIdentity(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := id.AddClient("alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := id.AddClient("bob", nil); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "alice", "a b", "a/b", string(make([]byte, 65))} {
		if _, err := id.AddClient(bad, nil); !errors.Is(err, ghostcomm.ErrClientName) {
			t.Errorf("AddClient(%q): %v, want ErrClientName", bad, err)
		}
	}
	if err := id.RemoveClient("bob"); err != nil {
		t.Fatal(err)
	}
	if err := id.RemoveClient("bob"); !errors.Is(err, ghostcomm.ErrClientName) {
		t.Errorf("second RemoveClient: %v, want ErrClientName", err)
	}

	loaded, err := ghostcomm.LoadIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded.Clients) != 1 || loaded.Clients[0] != alice {
		t.Fatalf("clients after reload %v, want alice only", loaded.Clients)
	}

	// The Primary admits alice's invite and refuses one without a key.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := tortest.NewNetwork(tortest.Config{})
	defer n.Close()
	cfg := ghostcomm.PrimaryConfig{Nodes: 1}
	loaded.Apply(&cfg)
	p, err := ghostcomm.NewPrimary(ctx, n.Controller(), n.Dialer(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	inv, ok := loaded.Invite("alice", 0)
	if !ok || inv.String() != p.Invite(&alice.Private).String() {
		t.Fatalf("Identity.Invite(alice) = %v, %v", inv, ok)
	}
	if _, ok := loaded.Invite("bob", 0); ok {
		t.Fatal("a removed client still has an invite")
	}
	for name, inv := range map[string]ghostcomm.Invite{"alice": inv, "no key": p.Invite(nil)} {
		c, err := ghostcomm.NewClient(n.Dialer(), inv, ghostcomm.ClientConfig{})
		if err != nil {
			t.Fatal(err)
		}
		// Refused, the client tries the Primary again for about 8 s before
		// it gives up; 2 s see the refusal more than once.
		fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
		if name == "alice" {
			fctx, fcancel = ctx, func() {}
		}
		_, err = c.Fetch(fctx)
		fcancel()
		c.Close()
		if name == "alice" && err != nil {
			t.Errorf("alice: %v", err)
		}
		if name != "alice" && !errors.Is(err, ghostcomm.ErrOnionUnreachable) {
			t.Errorf("%s: %v, want ErrOnionUnreachable", name, err)
		}
	}
}

func TestIdentityRefusesLooseModes(t *testing.T) {
	dir := privateDir(t)
	if _, err := ghostcomm.CreateIdentity(dir, nil); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, ghostcomm.IdentityFile)
	check := func(what string) {
		t.Helper()
		_, err := ghostcomm.LoadIdentity(dir)
		var se *ghostcomm.StateError
		if !errors.Is(err, ghostcomm.ErrStatePermissions) || !errors.As(err, &se) {
			t.Errorf("%s: %v, want a *StateError matching ErrStatePermissions", what, err)
		}
		if _, _, err := ghostcomm.LoadOrCreateIdentity(dir, nil); !errors.Is(err, ghostcomm.ErrStatePermissions) {
			t.Errorf("%s: LoadOrCreateIdentity: %v", what, err)
		}
	}
	for _, mode := range []os.FileMode{0o750, 0o705, 0o777} {
		os.Chmod(dir, mode)
		check("directory " + mode.String())
	}
	os.Chmod(dir, 0o700)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o666} {
		os.Chmod(file, mode)
		check("file " + mode.String())
	}
	os.Chmod(file, 0o600)
	if _, err := ghostcomm.LoadIdentity(dir); err != nil {
		t.Fatalf("after restoring the modes: %v", err)
	}

	// A symbolic link in place of the file is refused, even to a private
	// file: the link could point anywhere.
	other := privateDir(t)
	if _, err := ghostcomm.CreateIdentity(other, nil); err != nil {
		t.Fatal(err)
	}
	os.Remove(file)
	if err := os.Symlink(filepath.Join(other, ghostcomm.IdentityFile), file); err != nil {
		t.Fatal(err)
	}
	check("symbolic link")

	// CreateIdentity refuses a loose directory before writing anything.
	loose := t.TempDir()
	os.Chmod(loose, 0o755)
	if _, err := ghostcomm.CreateIdentity(loose, nil); !errors.Is(err, ghostcomm.ErrStatePermissions) {
		t.Errorf("CreateIdentity in a 0755 directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(loose, ghostcomm.IdentityFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("CreateIdentity wrote into a loose directory")
	}
}

func TestIdentityCorrupt(t *testing.T) {
	dir := privateDir(t)
	id, err := ghostcomm.CreateIdentity(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := id.AddClient("alice", nil); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, ghostcomm.IdentityFile)
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	write := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Every truncation is a clear error, never a panic or a half identity.
	for i := range len(good) {
		write(good[:i])
		if _, err := ghostcomm.LoadIdentity(dir); !errors.Is(err, ghostcomm.ErrStateCorrupt) {
			t.Fatalf("truncated to %d bytes: %v, want ErrStateCorrupt", i, err)
		}
	}
	for name, b := range map[string][]byte{
		"garbage":       []byte("not an identity\n"),
		"version 2":     []byte("ghostcomm-identity 2\n"),
		"flipped byte":  append(append([]byte{}, good[:40]...), append([]byte{good[40] ^ 1}, good[41:]...)...),
		"extra line":    append(append([]byte{}, good...), "anything else\n"...),
		"too large":     make([]byte, ghostcomm.MaxIdentitySize+1),
		"duplicate":     []byte(string(good[:len(good)-4]) + string(good[len(good)-4-len("client alice ")-53:])),
		"uppercase key": []byte(string(good[:len(good)-4-53]) + "A" + string(good[len(good)-4-52:])),
		"no end":        good[:len(good)-4],
	} {
		write(b)
		if _, err := ghostcomm.LoadIdentity(dir); !errors.Is(err, ghostcomm.ErrStateCorrupt) {
			t.Errorf("%s: %v, want ErrStateCorrupt", name, err)
		}
	}
	// CreateIdentity never replaces an identity, even a corrupt one.
	if _, err := ghostcomm.CreateIdentity(dir, nil); !errors.Is(err, ghostcomm.ErrIdentityExists) {
		t.Errorf("CreateIdentity over a file: %v, want ErrIdentityExists", err)
	}
	if _, _, err := ghostcomm.LoadOrCreateIdentity(dir, nil); !errors.Is(err, ghostcomm.ErrStateCorrupt) {
		t.Errorf("LoadOrCreateIdentity over a corrupt file: %v, want ErrStateCorrupt", err)
	}
	write(good)
	if _, err := ghostcomm.LoadIdentity(dir); err != nil {
		t.Fatalf("the good file again: %v", err)
	}

	// A directory in place of the file cannot be read: a *StateError, not
	// ErrNoIdentity (which would make LoadOrCreateIdentity replace it).
	os.Remove(file)
	os.Mkdir(file, 0o700)
	if _, _, err := ghostcomm.LoadOrCreateIdentity(dir, nil); err == nil || errors.Is(err, ghostcomm.ErrNoIdentity) {
		t.Errorf("a directory as identity file: %v", err)
	}
}

func TestIdentityMissing(t *testing.T) {
	dir := privateDir(t)
	if _, err := ghostcomm.LoadIdentity(dir); !errors.Is(err, ghostcomm.ErrNoIdentity) {
		t.Errorf("empty directory: %v, want ErrNoIdentity", err)
	}
	if _, err := ghostcomm.LoadIdentity(filepath.Join(dir, "nope")); !errors.Is(err, ghostcomm.ErrNoIdentity) {
		t.Errorf("missing directory: %v, want ErrNoIdentity", err)
	}
	f := filepath.Join(dir, "file")
	os.WriteFile(f, nil, 0o600)
	if _, _, err := ghostcomm.LoadOrCreateIdentity(f, nil); err == nil {
		t.Error("a file as state directory was accepted")
	}
}

// privateDir is a fresh temporary directory of mode 0700, as a state
// directory must be.
func privateDir(t testing.TB) string {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}
