package ghostcomm_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
)

// TestPrimaryOnionPoW: the Primary's onion asks tor for the proof-of-work
// defence unless told otherwise; nodes' onions do not, unless their template
// does.
func TestPrimaryOnionPoW(t *testing.T) {
	tuned := ghostcomm.PoWConfig{Enabled: true, QueueRate: 20, QueueBurst: 40}
	for _, tc := range []struct {
		name           string
		cfg            ghostcomm.PrimaryConfig
		primary, nodes ghostcomm.PoWConfig
	}{
		{"default", ghostcomm.PrimaryConfig{}, ghostcomm.PoWConfig{Enabled: true}, ghostcomm.PoWConfig{}},
		{"off", ghostcomm.PrimaryConfig{PoW: &ghostcomm.PoWConfig{}}, ghostcomm.PoWConfig{}, ghostcomm.PoWConfig{}},
		{"tuned", ghostcomm.PrimaryConfig{PoW: &tuned, Node: ghostcomm.NodeConfig{PoW: tuned}}, tuned, tuned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Nodes = 2
			tn := newTestNet(t, tc.cfg, ghostcomm.ClientConfig{})
			if got, ok := tn.ctrl.PoW(tn.primary.Onion().ServiceID); !ok || got != tc.primary {
				t.Errorf("primary onion: PoW %+v, %v; want %+v", got, ok, tc.primary)
			}
			for _, o := range tn.primary.Onions() {
				if got, ok := tn.ctrl.PoW(o.ServiceID); !ok || got != tc.nodes {
					t.Errorf("node onion %s: PoW %+v, %v; want %+v", o.ServiceID, got, ok, tc.nodes)
				}
			}
		})
	}
}

// flood counts what a payload-request flood got back.
type flood struct {
	answers, busy, other atomic.Int64
	maxWaiting           atomic.Int64
}

// startFlood starts streams goroutines, each with its own client key and its
// own stream to the Primary, sending two payload requests at a time (the
// second is refused: one per stream) as fast as the Primary answers, until
// stop is called.
func startFlood(t *testing.T, tn *testNet, streams int) (f *flood, stop func()) {
	t.Helper()
	f = &flood{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range streams {
		c, err := ghostcomm.NewClient(tn.net.Dialer(), tn.primary.Invite(nil), ghostcomm.ClientConfig{})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := c.PayloadRequest()
		c.Close()
		wg.Go(func() {
			for ctx.Err() == nil {
				conn, err := tn.net.Dialer().DialContext(ctx, "tcp", tn.primary.Onion().Addr())
				if err != nil {
					continue
				}
				f.run(ctx, conn, body)
			}
		})
	}
	wg.Go(func() { // the queue never holds more than its bound
		for ctx.Err() == nil {
			if n := int64(tn.primary.PayloadWaiting()); n > f.maxWaiting.Load() {
				f.maxWaiting.Store(n)
			}
			time.Sleep(time.Millisecond)
		}
	})
	return f, func() { cancel(); wg.Wait() }
}

func (f *flood) run(ctx context.Context, conn net.Conn, body []byte) {
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	defer conn.Close()
	for ctx.Err() == nil {
		for id := uint32(1); id <= 2; id++ {
			if err := ghostcomm.WriteFrame(conn, ghostcomm.FramePayloadRequest, id, body); err != nil {
				return
			}
		}
		for range 2 {
			typ, b, err := ghostcomm.ReadFrame(conn, 1<<20)
			switch {
			case err != nil:
				return
			case typ == ghostcomm.FramePayloadResponse:
				f.answers.Add(1)
			case typ == ghostcomm.FrameReject && len(b) == 1 && b[0] == ghostcomm.RejectBusy:
				f.busy.Add(1)
			default:
				f.other.Add(1)
			}
		}
	}
}

// TestPayloadFloodDelaysButDoesNotStarve: under a flood of valid-looking
// payload requests from fresh client keys, the Primary answers no more than
// its rate allows (so the flood's CPU cost to it is bounded), refuses the
// pipelined requests, still answers the flood (delayed, not dropped), and a
// legitimate client's Fetch succeeds within its timeout, again and again.
func TestPayloadFloodDelaysButDoesNotStarve(t *testing.T) {
	const rate, burst, queue, streams = 40, 4, 64, 32
	tn := newTestNet(t, ghostcomm.PrimaryConfig{Nodes: 1, PayloadRate: rate, PayloadBurst: burst, PayloadQueue: queue}, ghostcomm.ClientConfig{})
	start := time.Now()
	f, stop := startFlood(t, tn, streams)
	const fetches = 3
	for i := range fetches {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s := time.Now()
		_, err := tn.client.Fetch(ctx)
		cancel()
		if err != nil {
			stop()
			t.Fatalf("fetch %d under the flood: %v", i, err)
		}
		t.Logf("fetch %d under the flood took %v", i, time.Since(s).Round(time.Millisecond))
	}
	stop()
	elapsed := time.Since(start)
	answered := f.answers.Load() + fetches
	bound := burst + int64(rate*elapsed.Seconds()) + 1
	t.Logf("%v: %d answers (bound %d), %d refused busy, %d other, at most %d waiting",
		elapsed.Round(time.Millisecond), answered, bound, f.busy.Load(), f.other.Load(), f.maxWaiting.Load())
	if answered > bound {
		t.Errorf("the Primary answered %d requests in %v; its rate allows %d", answered, elapsed, bound)
	}
	if f.answers.Load() == 0 || f.busy.Load() == 0 || f.other.Load() != 0 {
		t.Errorf("flood: %d answered, %d busy, %d other; want some answered (delayed, not dropped) and the pipelined ones busy",
			f.answers.Load(), f.busy.Load(), f.other.Load())
	}
	if f.maxWaiting.Load() > queue {
		t.Errorf("%d requests waited; the queue holds %d", f.maxWaiting.Load(), queue)
	}
}

// TestPayloadQueueFullRefused: with more flooding streams than queue places,
// the queue stays within its bound and the rest are refused as busy; a client
// refused so gets an error matching ErrBusy.
func TestPayloadQueueFullRefused(t *testing.T) {
	const queue = 4
	tn := newTestNet(t, ghostcomm.PrimaryConfig{Nodes: 1, PayloadRate: 20, PayloadBurst: 1, PayloadQueue: queue}, ghostcomm.ClientConfig{})
	f, stop := startFlood(t, tn, 16)
	defer stop()
	var err error
	for range 50 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = tn.client.Fetch(ctx)
		cancel()
		if err != nil {
			break
		}
	}
	if !errors.Is(err, ghostcomm.ErrBusy) {
		t.Errorf("fetch against a full queue: %v, want ErrBusy", err)
	}
	stop()
	if f.maxWaiting.Load() > queue {
		t.Errorf("%d requests waited; the queue holds %d", f.maxWaiting.Load(), queue)
	}
	if f.busy.Load() == 0 {
		t.Error("no flood request was refused")
	}
}
