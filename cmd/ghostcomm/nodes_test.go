package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
)

func newNodeKey(t testing.TB) ed25519.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// A running Primary's allow-list follows the file: enrolled, revoked,
// relabelled; a damaged or loose file changes nothing.
func TestNodeApplier(t *testing.T) {
	dir := t.TempDir()
	src, err := ghostcomm.NewRemoteSource(ghostcomm.RemoteSourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	apply := nodeApplier(dir, src, slog.New(slog.DiscardHandler))
	if err := apply(); err != nil { // no file: no node
		t.Fatal(err)
	}
	a, b := newNodeKey(t), newNodeKey(t)
	path := filepath.Join(dir, nodesFile)
	write := func(nodes ...enrolledNode) {
		t.Helper()
		if err := writeFileAtomic(path, marshalNodeList(nodes)); err != nil {
			t.Fatal(err)
		}
	}
	enrolled := func(wantA, wantB bool) {
		t.Helper()
		if src.Enrolled(a) != wantA || src.Enrolled(b) != wantB {
			t.Fatalf("enrolled a %v b %v, want %v %v", src.Enrolled(a), src.Enrolled(b), wantA, wantB)
		}
	}
	write(enrolledNode{"a", a, "op"}, enrolledNode{"b", b, "op"})
	if err := apply(); err != nil {
		t.Fatal(err)
	}
	enrolled(true, true)
	write(enrolledNode{"b", b, "other"})
	if err := apply(); err != nil {
		t.Fatal(err)
	}
	enrolled(false, true)

	// Damaged, loose, a directory: an error, and b stays enrolled.
	os.WriteFile(path, []byte("ghostcomm-nodes 1\n"), 0o600)
	if err := apply(); !errors.Is(err, errNodesCorrupt) {
		t.Fatalf("truncated list: %v", err)
	}
	enrolled(false, true)
	write(enrolledNode{"a", a, "op"})
	os.Chmod(path, 0o644)
	if err := apply(); !errors.Is(err, ghostcomm.ErrStatePermissions) {
		t.Fatalf("a 0644 list: %v", err)
	}
	enrolled(false, true)
	os.Remove(path)
	os.Mkdir(path, 0o700)
	if err := apply(); !errors.Is(err, ghostcomm.ErrStatePermissions) {
		t.Fatalf("a directory: %v", err)
	}
	enrolled(false, true)
	os.Remove(path)
	write(enrolledNode{"a", a, "op"})
	if err := apply(); err != nil {
		t.Fatal(err)
	}
	enrolled(true, false)
}

func FuzzParseNodeList(f *testing.F) {
	f.Add(marshalNodeList([]enrolledNode{{"n1", newNodeKey(f), "acme"}, {"n2", newNodeKey(f), "acme"}}))
	f.Add(marshalNodeList(nil))
	f.Add([]byte(nodesHeader + "\nnode a aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa x\nend\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		nodes, err := parseNodeList(b)
		if err != nil {
			if !errors.Is(err, errNodesCorrupt) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if out := marshalNodeList(nodes); !bytes.Equal(out, b) {
			t.Fatalf("%q parsed, but marshals to %q", b, out)
		}
	})
}

// A running Primary's poll applies a change to the file within a few
// seconds: an enrolment, then a revocation.
func TestPollNodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src, err := ghostcomm.NewRemoteSource(ghostcomm.RemoteSourceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	apply := nodeApplier(dir, src, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { pollNodes(ctx, apply, slog.New(slog.DiscardHandler)); close(done) }()
	defer func() { cancel(); <-done }()
	a := newNodeKey(t)
	waitFor := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(3 * nodesPoll)
		for src.Enrolled(a) != want {
			if time.Now().After(deadline) {
				t.Fatalf("enrolled %v after %v, want %v", !want, 3*nodesPoll, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := writeFileAtomic(filepath.Join(dir, nodesFile), marshalNodeList([]enrolledNode{{"a", a, "op"}})); err != nil {
		t.Fatal(err)
	}
	waitFor(true)
	if err := writeFileAtomic(filepath.Join(dir, nodesFile), marshalNodeList(nil)); err != nil {
		t.Fatal(err)
	}
	waitFor(false)
}
