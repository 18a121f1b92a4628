package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/testnet"
)

// TestEndToEnd runs ghostcomm as separate OS processes on a private Tor
// network on 127.0.0.1: a Primary in one process with a tor of its own
// (-tor launch), send and fetch in others through a different tor. It
// checks a verified answer, the same invite after a restart with the same
// state directory (the old invite still works), and that SIGTERM leaves
// neither an onion nor a tor process behind. TestEndToEndClientAuth checks
// client authorization beside it.
func TestEndToEnd(t *testing.T) {
	testnet.SkipUnlessAvailable(t)
	t.Parallel() // beside TestRemoteNodesEndToEnd: both wait on tor, not on the CPU
	e := newE2E(t, 10*time.Minute)
	bin, n, ctx, service, via, gc := e.bin, e.n, e.ctx, e.service, e.via, e.gc

	// 1. A Primary with its own tor.
	state := filepath.Join(t.TempDir(), "state")
	own, err := n.PrepareTor("primary", nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p := startPrimary(t, bin, "-state", state, "-nodes", "2", "-tor", "launch", "-torrc", own.TorrcPath, "-datadir", own.DataDir,
		"-metrics", "127.0.0.1:0")
	invite := p.line(t, ctx)
	testnet.Figure(t, "cmd e2e: ghostcomm primary -tor launch up (tor bootstrap and 3 onions published) in %v", time.Since(start).Round(time.Millisecond))
	stored, err := os.ReadFile(filepath.Join(state, inviteFile))
	if err != nil || strings.TrimSpace(string(stored)) != invite {
		t.Fatalf("stored invite %q (%v), printed %q", stored, err, invite)
	}
	if _, err := ghostcomm.ParseInvite(invite); err != nil {
		t.Fatal(err)
	}

	// send, from another process through another tor: a verified answer.
	start = time.Now()
	out := gc(nil, 0, "send", "--json", "-invite", invite, "hello")
	testnet.Figure(t, "cmd e2e: first ghostcomm send (fetch and 2 hops) in %v", time.Since(start).Round(time.Millisecond))
	var res sendResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("send --json: %v\n%s", err, out)
	}
	if !res.Verified || len(res.Route) != 2 || res.Data == nil || len(*res.Data) != 64 { // hex SHA-256 or SHA3-256: the seed's processing of node 0 or 1
		t.Fatalf("send --json: %s", out)
	}
	// Binary on stdin, the answer raw on stdout; the invite from the
	// environment.
	msg := []byte{0, 1, 2, 0xff, '\n', 0xfe}
	out = runGCEnv(t, ctx, bin, []string{envInvite + "=" + invite}, msg, 0, append([]string{"send"}, via...)...)
	if len(out) != 64 {
		t.Fatalf("raw answer %q", out)
	}
	// fetch: the cycle, nothing secret.
	out = gc(nil, 0, "fetch", "--json", "-invite-file", filepath.Join(state, inviteFile))
	var cy cycleJSON
	if err := json.Unmarshal(out, &cy); err != nil || len(cy.Nodes) != 2 || !strings.HasPrefix(invite, "ghostcomm1:"+strings.TrimSuffix(cy.Primary, ".onion:80")) {
		t.Fatalf("fetch --json: %v\n%s", err, out)
	}
	for _, h := range cy.Nodes {
		if h.Processor != "hash" || strings.Contains(string(out), "salt\": \"") {
			t.Fatalf("fetch shows %+v", h)
		}
	}
	// The metrics, on the loopback address the Primary printed.
	m := p.metrics(t)
	if !strings.Contains(m, "ghostcomm_payloads_total 3") || !strings.Contains(m, "ghostcomm_messages_accepted_total 4") {
		t.Errorf("metrics after 2 sends and a fetch (3 payloads, 4 hops):\n%s", m)
	}

	// SIGTERM: exit 0, the Primary's tor stopped, so its onions are gone.
	p.stop(t, syscall.SIGTERM)
	if pids := torsWith(own.DataDir); len(pids) > 0 {
		t.Fatalf("the Primary's tor is still running after SIGTERM: %v", pids)
	}

	// 2. A restart with the same state directory, this time on a running
	// tor (-tor system): the same invite, and the old invite still works.
	p = startPrimary(t, bin, "-state", state, "-nodes", "2", "-control", service.ControlAddr, "-cookie", service.CookiePath, "-socks", service.SocksAddr)
	if again := p.line(t, ctx); again != invite {
		t.Fatalf("invite after a restart %s, want %s", again, invite)
	}
	// The client's tor may still hold the descriptor of the Primary's
	// previous instance: a failure to reach it is exit 3, retry.
	out = runGCRetrying(t, ctx, bin, nil, append(append([]string{"send"}, via...), "--json", "-timeout", "20s", "-invite", invite, "hello")...)
	if err := json.Unmarshal(out, &res); err != nil || !res.Verified {
		t.Fatalf("send with the old invite after a restart: %v\n%s", err, out)
	}
	p.stop(t, syscall.SIGTERM)
	// The running tor is left as found, without the Primary's onion:
	// nothing answers the invite any more.
	if err := syscall.Kill(service.PID, 0); err != nil {
		t.Fatalf("the system tor did not survive the Primary: %v", err)
	}
	gc(nil, exitRetry, "fetch", "-timeout", "10s", "-invite", invite)
}

// TestEndToEndClientAuth runs a Primary with client authorization
// (-client-auth 1) that speaks the sealed protocol (chain form), on a
// running tor (-tor system), and send and fetch as separate processes
// through another tor: refused without the key (exit 3), answered with it.
func TestEndToEndClientAuth(t *testing.T) {
	testnet.SkipUnlessAvailable(t)
	t.Parallel() // beside the other end-to-end tests: all wait on tor
	e := newE2E(t, 5*time.Minute)
	bin, ctx, service, gc := e.bin, e.ctx, e.service, e.gc
	state2 := filepath.Join(t.TempDir(), "state2")
	p := startPrimary(t, bin, "-state", state2, "-nodes", "1", "-client-auth", "1", "-protocol", "sealed", "-control", service.ControlAddr, "-cookie", service.CookiePath, "-socks", service.SocksAddr)
	name, authInvite, _ := strings.Cut(p.line(t, ctx), " ")
	if name != "client-1" {
		t.Fatalf("client invite line %q %q", name, authInvite)
	}
	inv, err := ghostcomm.ParseInvite(authInvite)
	if err != nil || inv.ClientAuthKey == nil {
		t.Fatalf("client invite %q: %v", authInvite, err)
	}
	noKey := inv
	noKey.ClientAuthKey = nil
	gc(nil, exitRetry, "send", "-timeout", "10s", "-invite", noKey.String(), "hello")
	out := gc(nil, 0, "send", "--json", "-invite", authInvite, "hello")
	var res sendResult
	if err := json.Unmarshal(out, &res); err != nil || !res.Verified {
		t.Fatalf("send with the client's key: %v\n%s", err, out)
	}
	out = gc(nil, 0, "fetch", "--json", "-invite", authInvite)
	if !strings.Contains(string(out), `"protocol": "sealed"`) {
		t.Errorf("fetch --json of a sealed Primary's cycle does not say so:\n%s", out)
	}
	p.stop(t, syscall.SIGINT)
}

// e2e is what the end-to-end tests share: the ghostcomm binary TestMain
// put on PATH, the private network the test binaries of this run share, a
// ctx, the tor a Primary runs on with -tor system (service) and the one
// send and fetch go through (via).
type e2e struct {
	bin     string
	n       *testnet.Network
	ctx     context.Context
	service *testnet.Tor
	via     []string
	// gc runs "ghostcomm CMD" through the sender's tor and checks its
	// exit code.
	gc func(stdin []byte, code int, cmd string, args ...string) []byte
}

func newE2E(t *testing.T, timeout time.Duration) *e2e {
	t.Helper()
	bin, err := exec.LookPath("ghostcomm")
	if err != nil {
		t.Fatal(err)
	}
	n := testnet.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	sender := n.Clients()[1]
	e := &e2e{bin: bin, n: n, ctx: ctx, service: n.Clients()[0],
		via: []string{"-socks", sender.SocksAddr, "-control", sender.ControlAddr, "-cookie", sender.CookiePath}}
	e.gc = func(stdin []byte, code int, cmd string, args ...string) []byte {
		t.Helper()
		return runGC(t, ctx, bin, stdin, code, append(append([]string{cmd}, e.via...), args...)...)
	}
	return e
}

// primaryProc is a running "ghostcomm primary".
type primaryProc struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *syncBuffer
	done   chan error
}

func startPrimary(t *testing.T, bin string, args ...string) *primaryProc {
	t.Helper()
	return startCmd(t, bin, "primary", args...)
}

// startCmd starts "ghostcomm CMD ARGS..." that runs until stopped.
func startCmd(t *testing.T, bin, command string, args ...string) *primaryProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{command}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &primaryProc{cmd: cmd, lines: make(chan string, 16), stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() { // on failure: stop it by PID
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("ghostcomm %s %v stderr:\n%s", command, args, p.stderr)
		}
	})
	return p
}

// line returns the next line the Primary printed on stdout.
func (p *primaryProc) line(t *testing.T, ctx context.Context) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("ghostcomm primary ended: %v\n%s", <-p.done, p.stderr)
		}
		return l
	case <-ctx.Done():
		t.Fatalf("ghostcomm primary printed no invite\n%s", p.stderr)
	}
	return ""
}

// metrics scrapes the metrics address that the Primary printed on stderr.
func (p *primaryProc) metrics(t *testing.T) string {
	t.Helper()
	_, rest, ok := strings.Cut(p.stderr.String(), "metrics on ")
	url, _, _ := strings.Cut(rest, "\n")
	if !ok || !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("no metrics address in\n%s", p.stderr)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// stop sends sig and checks a clean exit: code 0, no stack trace.
func (p *primaryProc) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("ghostcomm primary after %v: %v\n%s", sig, err, p.stderr)
		}
	case <-time.After(time.Minute):
		t.Fatalf("ghostcomm primary still running a minute after %v\n%s", sig, p.stderr)
	}
	if s := p.stderr.String(); strings.Contains(s, "goroutine ") || strings.Contains(s, "panic") {
		t.Fatalf("stack trace on stderr:\n%s", s)
	}
}

// runGC runs ghostcomm to its end and checks its exit code; it returns stdout.
func runGC(t *testing.T, ctx context.Context, bin string, stdin []byte, code int, args ...string) []byte {
	t.Helper()
	return runGCEnv(t, ctx, bin, nil, stdin, code, args...)
}

// runGCEnv is runGC with env added to the process's environment.
func runGCEnv(t *testing.T, ctx context.Context, bin string, env []string, stdin []byte, code int, args ...string) []byte {
	t.Helper()
	stdout, stderr, got := execGCEnv(t, ctx, bin, env, stdin, args...)
	if got != code {
		t.Fatalf("ghostcomm %v: exit %d, want %d\nstdout: %s\nstderr: %s", args, got, code, stdout, stderr)
	}
	if code != 0 && strings.Count(string(stderr), "\n") != 1 {
		t.Fatalf("ghostcomm %v: the error is not one line:\n%s", args, stderr)
	}
	return stdout
}

// runGCRetrying runs ghostcomm as a script following the documented exit
// codes would: again, after a pause, while it exits 3 (retry), at most
// three times; it must then exit 0.
func runGCRetrying(t *testing.T, ctx context.Context, bin string, stdin []byte, args ...string) []byte {
	t.Helper()
	for try := 1; ; try++ {
		stdout, stderr, got := execGC(t, ctx, bin, stdin, args...)
		if got == 0 {
			return stdout
		}
		if got != exitRetry || try == 3 {
			t.Fatalf("ghostcomm %v: exit %d after %d tries, want 0\nstdout: %s\nstderr: %s", args, got, try, stdout, stderr)
		}
		t.Logf("ghostcomm %v: exit %d (retry), try %d: %s", args, got, try, stderr)
		time.Sleep(2 * time.Second)
	}
}

func execGC(t *testing.T, ctx context.Context, bin string, stdin []byte, args ...string) (stdout, stderr []byte, code int) {
	t.Helper()
	return execGCEnv(t, ctx, bin, nil, stdin, args...)
}

func execGCEnv(t *testing.T, ctx context.Context, bin string, env []string, stdin []byte, args ...string) (stdout, stderr []byte, code int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out, errOut bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), errOut.Bytes(), code
}

// torsWith returns the PIDs of processes whose command line contains s.
func torsWith(s string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
