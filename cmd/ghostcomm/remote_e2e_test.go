package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm/torctl/testnet"
)

var (
	rotatedRE = regexp.MustCompile(`msg="lock-cycle rotated" cycle=([0-9a-f]{32})`)
	joinedRE  = regexp.MustCompile(`msg="joined a lock-cycle" cycle=([0-9a-f]{32}) onion=([a-z2-7]{56})\.onion`)
)

// TestRemoteNodesEndToEnd runs a network of five OS processes on the
// private Tor network: a Primary with remote nodes only ("primary -remote
// -nodes 0 -min-nodes 2"), three node daemons ("ghostcomm node"), each of
// the four with a tor of its own (-tor launch), and clients ("ghostcomm
// send", "fetch") through another tor. Lock-cycles last 30 s. node-1 and
// node-2 are enrolled under one operator label and node-3 under another,
// so that each message crosses node-3 and one of the other two.
//
// For three cycles every message is verified. Then node-1 is killed with
// SIGKILL early in a cycle that includes it (the third, as soon as a
// message has crossed into it, or the next that includes it): the messages
// of that cycle routed through it fail with an error naming its onion
// (exit 3 or 4), the others succeed, and the next cycle forms without it.
// Every process stops on SIGTERM with exit 0, and no tor is left.
func TestRemoteNodesEndToEnd(t *testing.T) {
	testnet.SkipUnlessAvailable(t)
	t.Parallel() // beside TestEndToEnd: both wait on tor, not on the CPU
	bin := ghostcommBin(t)
	n := testnet.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	began := time.Now()
	say := func(format string, args ...any) {
		t.Helper()
		t.Logf("[%3.0fs] %s", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	sender := n.Clients()[1]
	via := []string{"-socks", sender.SocksAddr, "-control", sender.ControlAddr, "-cookie", sender.CookiePath}
	dir := t.TempDir()
	pstate := filepath.Join(dir, "primary")

	// Each node's identity, enrolled on the Primary's state directory.
	names := []string{"node-1", "node-2", "node-3"}
	operators := []string{"acme", "acme", "zeta"}
	var invite string
	for i, name := range names {
		key := strings.TrimSpace(string(runGC(t, ctx, bin, nil, 0, "node", "-state", filepath.Join(dir, name), "-id")))
		invite = strings.TrimSpace(string(runGC(t, ctx, bin, nil, 0, "nodes", "-state", pstate, "-operator", operators[i], "add", name, key)))
	}

	// A tor of its own for each of the four.
	var datadirs []string
	prepare := func(name string) []string {
		tor, err := n.PrepareTor(name, nil)
		if err != nil {
			t.Fatal(err)
		}
		datadirs = append(datadirs, tor.DataDir)
		return []string{"-tor", "launch", "-torrc", tor.TorrcPath, "-datadir", tor.DataDir}
	}
	t.Cleanup(func() { // also on failure: no tor of this test is left
		for _, d := range datadirs {
			deadline := time.Now().Add(30 * time.Second)
			for len(torsWith(d)) > 0 && time.Now().Before(deadline) {
				time.Sleep(200 * time.Millisecond)
			}
			for _, pid := range torsWith(d) {
				t.Errorf("a tor (pid %d, %s) outlived its ghostcomm process: stopping it", pid, d)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	nodes := make([]*primaryProc, len(names))
	for i, name := range names {
		args := append([]string{"-state", filepath.Join(dir, name), "-invite", invite, "-retry", "2s"}, prepare("remote-"+name)...)
		nodes[i] = startCmd(t, bin, "node", args...)
	}
	say("started 3 node daemons, each launching its own tor")
	primary := startPrimary(t, bin, append([]string{"-state", pstate, "-remote", "-nodes", "0", "-min-nodes", "2",
		"-period", "30s", "-publish-ahead", "12s", "-grace", "30s", "-remote-wait", "90s"}, prepare("remote-primary")...)...)
	say("started the Primary (remote nodes only, 30 s lock-cycles); waiting for its first cycle")
	start := time.Now()
	lines := make(chan string, 1)
	go func() {
		select {
		case l, ok := <-primary.lines:
			if ok {
				lines <- l
			}
		case <-ctx.Done():
		}
		close(lines)
	}()
	for got := false; !got; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the Primary printed no invite\n%s", primary.stderr)
			}
			if l != invite {
				t.Fatalf("the Primary printed invite %q, nodes invite gave %q", l, invite)
			}
			got = true
		case <-time.After(10 * time.Second):
			say("still waiting for the first cycle; the Primary says: %s", lastLine(primary.stderr.String()))
		}
	}
	testnet.Figure(t, "cmd remote e2e: Primary and 3 node daemons, 4 tors launched, first cycle formed in %v", time.Since(start).Round(time.Millisecond))
	say("first cycle formed: %s", lastLine(primary.stderr.String()))

	// send runs one "ghostcomm send --json" and returns its result, exit
	// code and stderr.
	var seq int
	var seqMu sync.Mutex
	send := func(timeout string) (sendResult, int, string) {
		seqMu.Lock()
		seq++
		msg := fmt.Sprintf("message %d", seq)
		seqMu.Unlock()
		out, stderr, code := execGC(t, ctx, bin, nil, append(append([]string{"send"}, via...), "--json", "-timeout", timeout, "-invite", invite, msg)...)
		var res sendResult
		if code == 0 {
			if err := json.Unmarshal(out, &res); err != nil {
				t.Errorf("send --json: %v\n%s", err, out)
			}
		}
		return res, code, string(stderr)
	}
	sendOK := func() sendResult {
		t.Helper()
		res, code, stderr := send("60s")
		if code != 0 || !res.Verified || len(res.Route) != 2 {
			t.Fatalf("send: exit %d, verified %v, %d hops (want 2: one per operator)\n%s", code, res.Verified, len(res.Route), stderr)
		}
		return res
	}
	rotations := func() []string {
		var ids []string
		for _, m := range rotatedRE.FindAllStringSubmatch(primary.stderr.String(), -1) {
			ids = append(ids, m[1])
		}
		return ids
	}
	// onionIn returns the onion node i joined cycle id with, if it did.
	onionIn := func(i int, id string) string {
		for _, m := range joinedRE.FindAllStringSubmatch(nodes[i].stderr.String(), -1) {
			if m[1] == id {
				return m[2]
			}
		}
		return ""
	}
	waitRotation := func(after int) string {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for next := time.Now().Add(10 * time.Second); len(rotations()) <= after; time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no lock-cycle rotation in 2 minutes\n%s", primary.stderr)
			}
			if time.Now().After(next) {
				say("waiting for the next rotation; the Primary says: %s", lastLine(primary.stderr.String()))
				next = time.Now().Add(10 * time.Second)
			}
		}
		return rotations()[after]
	}

	// 1. Three cycles, every message verified.
	cycles := map[string]bool{}
	var third string // the third cycle, first seen early in it
	for len(cycles) < 3 {
		res := sendOK()
		cycles[res.Cycle] = true
		third = res.Cycle
		say("message verified: cycle %s…, route %s, %.0f ms", res.Cycle[:8], routeNames(res.Route), res.RoundTripMS)
		time.Sleep(2 * time.Second)
	}
	if len(cycles) < 3 {
		t.Fatalf("messages crossed %d cycles, want 3", len(cycles))
	}
	say("%d messages verified over %d cycles", seq, len(cycles))

	// 2. Kill node-1 early in a cycle that includes it: the third one, just
	// seen (a message every 2 s or so), or, if node-1 is not in it, the
	// next that includes it, just after it is handed out.
	var killed, dead string
	if dead = onionIn(0, third); dead != "" {
		killed = third
	} else {
		say("node-1 is not in cycle %s…; waiting for the next", third[:8])
	}
	for try := 0; killed == "" && try < 4; try++ {
		id := waitRotation(len(rotations()))
		if dead = onionIn(0, id); dead != "" {
			killed = id
		} else {
			say("node-1 is not in cycle %s…; waiting for the next", id[:8])
		}
	}
	if killed == "" {
		t.Fatalf("node-1 joined none of 4 cycles\n%s", nodes[0].stderr)
	}
	nodes[0].cmd.Process.Signal(syscall.SIGKILL)
	<-nodes[0].done
	say("killed node-1 (SIGKILL) in cycle %s…, where its onion is %s.onion", killed[:8], dead[:16])
	const parallel = 10
	type outcome struct {
		res    sendResult
		code   int
		stderr string
	}
	outcomes := make([]outcome, parallel)
	var wg sync.WaitGroup
	for i := range outcomes {
		wg.Go(func() {
			res, code, stderr := send("10s")
			outcomes[i] = outcome{res, code, stderr}
		})
	}
	wg.Wait()
	failed, succeeded := 0, 0
	for _, o := range outcomes {
		if o.code == 0 {
			if !o.res.Verified {
				t.Errorf("a message after the kill was answered but not verified: %+v", o.res)
			}
			for _, h := range o.res.Route {
				if strings.HasPrefix(h.Onion, dead) {
					t.Errorf("a message crossed the killed node: %+v", o.res)
				}
			}
			succeeded++
			continue
		}
		// Through the killed node: a hop error naming it, exit 3 or 4.
		if (o.code != exitRetry && o.code != exitRefetch) || !strings.Contains(o.stderr, dead) || !strings.Contains(o.stderr, "hop ") || strings.Count(o.stderr, "\n") != 1 {
			t.Errorf("a failed message: exit %d, want 3 or 4 and one line naming hop %s.onion:\n%s", o.code, dead, o.stderr)
		}
		failed++
		say("failed as it should: exit %d: %s", o.code, strings.TrimSpace(o.stderr))
	}
	say("after the kill: %d of %d messages failed through node-1, %d succeeded through node-2", failed, parallel, succeeded)
	if failed == 0 || succeeded == 0 {
		t.Fatalf("after the kill %d messages failed and %d succeeded: want some of each (each message takes node-1 or node-2 at random)", failed, succeeded)
	}

	// 3. The next cycle forms without it.
	next := waitRotation(len(rotations()))
	out := runGC(t, ctx, bin, nil, 0, append(append([]string{"fetch"}, via...), "--json", "-invite", invite)...)
	var cy cycleJSON
	if err := json.Unmarshal(out, &cy); err != nil {
		t.Fatalf("fetch --json: %v\n%s", err, out)
	}
	if cy.Cycle != next || len(cy.Nodes) != 2 {
		t.Fatalf("the cycle after the kill: %s with %d nodes, want %s with 2\n%s", cy.Cycle, len(cy.Nodes), next, out)
	}
	for i, want := range []string{onionIn(1, next), onionIn(2, next)} {
		if want == "" || (!strings.HasPrefix(cy.Nodes[0].Onion, want) && !strings.HasPrefix(cy.Nodes[1].Onion, want)) {
			t.Fatalf("node-%d is not in the cycle after the kill:\n%s", i+2, out)
		}
	}
	for range 2 {
		res := sendOK()
		say("message verified in the cycle without node-1: route %s", routeNames(res.Route))
	}

	// 4. SIGTERM: exit 0, and no tor left.
	primary.stop(t, syscall.SIGTERM)
	nodes[1].stop(t, syscall.SIGTERM)
	nodes[2].stop(t, syscall.SIGTERM)
	for _, d := range datadirs {
		deadline := time.Now().Add(30 * time.Second)
		for len(torsWith(d)) > 0 && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		if pids := torsWith(d); len(pids) > 0 {
			t.Errorf("tor %v of %s still runs after its ghostcomm process ended", pids, d)
		}
	}
	testnet.Figure(t, "cmd remote e2e: 3 node daemons, %d cycles, %d messages, one node killed, in %v", len(rotations())+1, seq, time.Since(began).Round(time.Second))
}

// routeNames shortens a route's onions for the log.
func routeNames(route []hopJSON) string {
	var s []string
	for _, h := range route {
		s = append(s, h.Onion[:8]+"…")
	}
	return strings.Join(s, " → ")
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// ghostcommBin is the copy of the command that TestMain put on PATH.
func ghostcommBin(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("ghostcomm")
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
