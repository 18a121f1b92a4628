package ghostcomm_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ghostcomm/ghostcomm"
)

// A remote node's identity key: created once (0700 directory, 0600 file),
// the same key on every later load, and hostile state refused with typed
// errors, never replaced.
func TestNodeIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node")
	key, created, err := ghostcomm.LoadOrCreateNodeIdentity(dir, nil)
	if err != nil || !created || len(key) != ed25519.PrivateKeySize {
		t.Fatalf("first run: created %v, %v", created, err)
	}
	file := filepath.Join(dir, ghostcomm.NodeIdentityFile)
	for path, want := range map[string]os.FileMode{dir: 0o700, file: 0o600} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: mode %v (%v), want %v", path, fi.Mode().Perm(), err, want)
		}
	}
	again, created, err := ghostcomm.LoadOrCreateNodeIdentity(dir, nil)
	if err != nil || created || !again.Equal(key) {
		t.Fatalf("second run: created %v, same key %v, %v", created, again.Equal(key), err)
	}
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}

	check := func(what string, want error) {
		t.Helper()
		_, _, err := ghostcomm.LoadOrCreateNodeIdentity(dir, nil)
		var se *ghostcomm.StateError
		if !errors.Is(err, want) || !errors.As(err, &se) {
			t.Errorf("%s: %v, want a *StateError matching %v", what, err, want)
		}
	}
	for _, mode := range []os.FileMode{0o750, 0o705} {
		os.Chmod(dir, mode)
		check("directory "+mode.String(), ghostcomm.ErrStatePermissions)
	}
	os.Chmod(dir, 0o700)
	for _, mode := range []os.FileMode{0o640, 0o604} {
		os.Chmod(file, mode)
		check("file "+mode.String(), ghostcomm.ErrStatePermissions)
	}
	os.Chmod(file, 0o600)
	if b, _ := os.ReadFile(file); !bytes.Equal(b, good) {
		t.Fatal("a refused load changed the file")
	}

	write := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i := range len(good) { // every truncation, even to nothing: never a new key
		write(good[:i])
		check("truncated", ghostcomm.ErrStateCorrupt)
	}
	flipped := bytes.Clone(good)
	flipped[len("ghostcomm-node-identity 1\nidentity-key ")] = '!'
	for name, b := range map[string][]byte{
		"garbage":    []byte("not a node identity\n"),
		"flipped":    flipped,
		"extra line": append(bytes.Clone(good), "more\n"...),
		"too large":  make([]byte, ghostcomm.MaxIdentitySize+1),
		"short seed": []byte("ghostcomm-node-identity 1\nidentity-key AAAA\nend\n"),
	} {
		write(b)
		check(name, ghostcomm.ErrStateCorrupt)
	}
	write(good)

	// A symbolic link in place of the file, and a directory.
	os.Remove(file)
	other := filepath.Join(t.TempDir(), "other")
	if _, _, err := ghostcomm.LoadOrCreateNodeIdentity(other, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(other, ghostcomm.NodeIdentityFile), file); err != nil {
		t.Fatal(err)
	}
	check("symbolic link", ghostcomm.ErrStatePermissions)
	os.Remove(file)
	os.Mkdir(file, 0o700)
	if _, _, err := ghostcomm.LoadOrCreateNodeIdentity(dir, nil); err == nil || errors.Is(err, ghostcomm.ErrNoIdentity) {
		t.Errorf("a directory as the identity file: %v", err)
	}

	// A loose directory gets no key written into it.
	loose := t.TempDir()
	os.Chmod(loose, 0o755)
	if _, _, err := ghostcomm.LoadOrCreateNodeIdentity(loose, nil); !errors.Is(err, ghostcomm.ErrStatePermissions) {
		t.Errorf("a 0755 directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(loose, ghostcomm.NodeIdentityFile)); !errors.Is(err, os.ErrNotExist) {
		t.Error("a key was written into a loose directory")
	}
}
