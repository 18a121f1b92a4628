package soak

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm/torctl/testnet"
)

func TestMain(m *testing.M) { testnet.Main(m) }

// TestShortSoakTestnet runs a short soak on the private Tor network with
// every fault kind of TestnetEnvOn once (SIGSTOP of a node's tor, closed
// circuits, a restart of the clients' tor; a relay killed and restarted when
// this process started the network): none lost, none unverified, every
// error explained by a fault (counts, never timings); and every tor it added
// is stopped afterwards.
func TestShortSoakTestnet(t *testing.T) {
	n := testnet.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	before := map[int]bool{}
	for _, pid := range n.PIDs() {
		before[pid] = true
	}
	env, closeEnv, err := TestnetEnvOn(ctx, n, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	var added []int
	for _, pid := range n.PIDs() {
		if !before[pid] {
			added = append(added, pid)
		}
	}
	if len(added) != 3 {
		t.Errorf("%d tors added, want 3 (2 for the nodes, 1 for the clients)", len(added))
	}
	closed := false
	defer func() {
		if !closed {
			closeEnv()
		}
	}()
	const msgs = 120
	res, err := Run(ctx, Config{
		Messages: msgs, Senders: 4, Clients: 2, Period: time.Minute, Rotate: 10 * time.Second,
		Faults: true, FaultGap: 3 * time.Second, FaultHold: 3 * time.Second,
		Deadline: time.Minute, DialTimeout: 20 * time.Second, Settle: 30 * time.Second, Env: env,
		MinFaults: len(env.Faults),
	})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Summarize()
	t.Logf("%d messages: %d verified, %d errors (%d unexplained), %d lost, %d unverified; faults %v; %d rotations; %v",
		s.Total, s.Verified, s.Errors, s.Unexplained, s.Lost, s.Unverified, s.FaultCount, len(res.Rotations), res.Elapsed)
	if s.Total < msgs || s.Verified+s.Unverified+s.Errors+s.Lost != s.Total {
		t.Errorf("%d records for at least %d messages", s.Total, msgs)
	}
	for _, inj := range env.Faults {
		if s.FaultCount[inj.Kind] == 0 {
			t.Errorf("no %s fault was injected", inj.Kind)
		}
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
	closed = true
	if err := closeEnv(); err != nil {
		t.Errorf("stopping the node tors: %v", err)
	}
	for _, pid := range n.PIDs() {
		if !before[pid] {
			added = append(added, pid) // a tor restarted by a fault
		}
	}
	for _, pid := range added {
		// A tor this test added: it must be gone.
		if err := syscall.Kill(pid, 0); err == nil && !zombie(pid) {
			t.Errorf("tor %d still runs", pid)
		}
	}
}

// zombie reports whether pid has exited but not been reaped.
func zombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}
