package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/testnet"
)

func TestFullNetworkOnFakeTor(t *testing.T) {
	for _, hops := range []int{1, 3, 8, 255} {
		t.Run(fmt.Sprint(hops), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run([]string{"-hops", fmt.Sprint(hops), "-msg", "test message"}, &out, &errOut)
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, &out, &errOut)
			}
			s := out.String()
			if !strings.Contains(s, "Verified  yes") {
				t.Fatalf("no verified result:\n%s", s)
			}
			for i := 1; i <= hops; i++ {
				if !strings.Contains(s, fmt.Sprintf("hop %d  ", i)) {
					t.Fatalf("hop %d not printed:\n%s", i, s)
				}
			}
			if strings.Count(s, ".onion:80") < hops+1 {
				t.Fatalf("onion addresses missing:\n%s", s)
			}
			if want := fmt.Sprintf("Nodes     %d accepted, 0 failed", hops); !strings.Contains(s, want) {
				t.Fatalf("counters missing (want %q):\n%s", want, s)
			}
		})
	}
}

func TestFullNetworkSealedOnFakeTor(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		hops  int // hops on the route (a sealed route has at most 8)
		local int // of which the Primary's own nodes (its counters)
		want  string
	}{
		{[]string{"-protocol", "sealed"}, 3, 3, "Verified  yes: the data passed every hop"},
		{[]string{"-protocol", "sealed", "-form", "chain", "-hops", "10"}, 8, 8, "Verified  yes: the data passed every hop"},
		{[]string{"-protocol", "sealed", "-form", "relay", "-hops", "5"}, 5, 5, "Verified  yes: the exit processed the data"},
		{[]string{"-protocol", "sealed", "-hops", "4", "-remote", "2"}, 4, 2, "Verified  yes: the data passed every hop"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(append(tc.args, "-msg", "sealed test"), &out, &errOut); code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, &out, &errOut)
			}
			s := out.String()
			if !strings.Contains(s, tc.want) || !strings.Contains(s, "Protocol  sealed") {
				t.Fatalf("want %q and the protocol line:\n%s", tc.want, s)
			}
			if !strings.Contains(s, fmt.Sprintf("hop %d  ", tc.hops)) || strings.Contains(s, fmt.Sprintf("hop %d  ", tc.hops+1)) {
				t.Fatalf("want %d hops printed:\n%s", tc.hops, s)
			}
			if want := fmt.Sprintf("Nodes     %d accepted, 0 failed", tc.local); !strings.Contains(s, want) {
				t.Fatalf("counters missing (want %q):\n%s", want, s)
			}
		})
	}
}

// -remote N: N of the hops are remote nodes that joined through the
// Primary's onion with their own keys; the message crosses all of them.
func TestFullNetworkRemoteOnFakeTor(t *testing.T) {
	for _, c := range []struct{ hops, remote int }{{3, 2}, {4, 4}, {1, 1}} {
		t.Run(fmt.Sprintf("%d-%d", c.hops, c.remote), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run([]string{"-hops", fmt.Sprint(c.hops), "-remote", fmt.Sprint(c.remote)}, &out, &errOut)
			s := out.String()
			if code != 0 || !strings.Contains(s, "Verified  yes") {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, s, &errOut)
			}
			if got := strings.Count(s, "(remote)\n"); got != c.remote {
				t.Fatalf("%d remote hops, want %d:\n%s", got, c.remote, s)
			}
			if got := strings.Count(s, "(local)\n"); got != c.hops-c.remote {
				t.Fatalf("%d local hops, want %d:\n%s", got, c.hops-c.remote, s)
			}
			if want := fmt.Sprintf("%d of them remote", c.remote); !strings.Contains(s, want) {
				t.Fatalf("no %q:\n%s", want, s)
			}
		})
	}
}

func TestFullNetworkHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-h"}, &out, &errOut); code != 0 {
		t.Fatalf("-h: exit %d, want 0", code)
	}
	if !strings.Contains(errOut.String(), "-hops") {
		t.Fatalf("-h printed no usage:\n%s", &errOut)
	}
}

func TestFullNetworkBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-hops", "0"}, {"-hops", "256"}, {"-tor", "nonsense"}, {"-nosuchflag"}, {"hello"}, {"-hops", "3", "extra"},
		{"-protocol", "sphinx"}, {"-form", "relay"}, {"-protocol", "sealed", "-form", "mesh"}, {"-protocol", "layered", "-form", "chain"},
		{"-hops", "3", "-remote", "4"}, {"-remote", "-1"}} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestFullNetworkOnTestnet runs the demo on real onion services in a private
// Tor network on 127.0.0.1, with two local nodes and one remote one (-remote
// 1), and checks that no tor it started is left.
func TestFullNetworkOnTestnet(t *testing.T) {
	testnet.SkipUnlessAvailable(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	tor, err := startTor(ctx, "testnet", torOptions{out: &out})
	if err != nil {
		t.Fatal(err)
	}
	pids := tor.pids
	if len(pids) != 8 { // 3 authorities, 3 relays, 2 clients
		t.Errorf("%d tor processes, want 8", len(pids))
	}
	// The layered protocol, then sealed mode in both forms, on the same
	// private network.
	nets := []netConfig{{hops: 3, remote: 1},
		{hops: 3, protocol: ghostcomm.ProtocolSealed, sealed: ghostcomm.SealedConfig{Form: ghostcomm.FormChain}},
		{hops: 3, protocol: ghostcomm.ProtocolSealed, sealed: ghostcomm.SealedConfig{Form: ghostcomm.FormRelay}}}
	// The three networks side by side: each waits on tor to publish its
	// onions, not on the CPU.
	outs := make([]string, len(nets))
	errs := make([]error, len(nets))
	var wg sync.WaitGroup
	for i, nc := range nets {
		wg.Go(func() {
			var o bytes.Buffer
			if err := demo(ctx, tor, nc, []byte("over real onions"), nil, &o); err != nil {
				errs[i] = fmt.Errorf("%+v: %w", nc, err)
			}
			outs[i] = o.String()
		})
	}
	wg.Wait()
	err = errors.Join(errs...)
	if cerr := tor.close(); cerr != nil {
		t.Errorf("stopping tor: %v", cerr)
	}
	t.Log(out.String() + strings.Join(outs, "\n"))
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range outs {
		if !strings.Contains(o, "Verified  yes") {
			t.Fatalf("%+v: no verified result", nets[i])
		}
	}
	if strings.Count(outs[0], "(local)\n") != 2 || strings.Count(outs[0], "(remote)\n") != 1 {
		t.Fatal("want 2 local hops and 1 remote one")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("tor %d still exists after the demo (kill 0: %v)", pid, err)
		}
	}
}
