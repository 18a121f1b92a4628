package ghostcomm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// testNet is a Primary and a Client on a fake Tor network.
type testNet struct {
	net     *tortest.Network
	primary *ghostcomm.Primary
	client  *ghostcomm.Client
}

func newTestNet(t testing.TB, pc ghostcomm.PrimaryConfig, cc ghostcomm.ClientConfig) *testNet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := tortest.NewNetwork(tortest.Config{})
	t.Cleanup(func() { n.Close() })
	p, err := ghostcomm.NewPrimary(ctx, n.Controller(), n.Dialer(), pc)
	if err != nil {
		t.Fatalf("NewPrimary: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Primary.Close: %v", err)
		}
	})
	c, err := ghostcomm.NewClient(n.Dialer(), p.Invite(nil), cc)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &testNet{net: n, primary: p, client: c}
}

func TestRoundTrip(t *testing.T) {
	for _, hops := range []int{1, 3, 8} {
		t.Run(fmt.Sprintf("%d hops", hops), func(t *testing.T) {
			tn := newTestNet(t, ghostcomm.PrimaryConfig{Nodes: hops}, ghostcomm.ClientConfig{})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			msg := []byte("hello, ghost")
			res, err := tn.client.Send(ctx, msg)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if len(res.Route) != hops {
				t.Fatalf("route of %d hops, want %d", len(res.Route), hops)
			}
			want, ok := ghostcomm.Expected(res.Route, msg)
			if !ok {
				t.Fatal("default processing is not deterministic")
			}
			if !bytes.Equal(res.Data, want) {
				t.Fatalf("result %q, want %q", res.Data, want)
			}
			if !res.Verified {
				t.Fatal("result not verified")
			}
			// Each hop hashes in hex: the result is the hex digest of the
			// last hop's algorithm, never the input.
			if bytes.Contains(res.Data, msg) {
				t.Fatal("result contains the plaintext message")
			}
		})
	}
}

func TestRoundTripIdentityLargeMessage(t *testing.T) {
	tn := newTestNet(t, ghostcomm.PrimaryConfig{
		Nodes:      3,
		Processing: func(int, io.Reader) ghostcomm.ProcessorSpec { return ghostcomm.IdentitySpec },
	}, ghostcomm.ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msg := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	res, err := tn.client.Send(ctx, msg)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if !bytes.Equal(res.Data, msg) || !res.Verified {
		t.Fatalf("identity route changed a 1 MiB message (verified=%v)", res.Verified)
	}
}

// waitGoroutines waits until the number of goroutines drops to at most n.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := runtime.NumGoroutine()
		if got <= n {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines remain, want at most %d:\n%s", got, n, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var _ = errors.Is
var _ = strings.Contains
var _ sync.Mutex
