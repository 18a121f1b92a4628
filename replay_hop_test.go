package ghostcomm_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// TestGarbageDataRecordsNoTag: anyone holding the payload can build genuine
// layers. With a data box that does not open, or opens but was made for
// another cycle, such a message is reported (report 5, ErrAuth) and leaves
// no tag in the replay cache: filling a node's cache costs a whole message
// each. Honest messages go through afterwards.
func TestGarbageDataRecordsNoTag(t *testing.T) {
	const size = 8
	hn := newHopNet(t, PrimaryConfig{Nodes: 2, Node: NodeConfig{ReplayCacheSize: size}}, ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stale := hn.cycle.Clone()
	stale.NotBefore = stale.NotBefore.Add(-time.Hour)
	for i := range 4 * size {
		pm, err := hn.client.Prepare(hn.cycle, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		body := pm.Body(ctx, 5*time.Second)
		switch i % 3 {
		case 0: // random bytes
			body[2] = make([]byte, len(body[2]))
			rand.Read(body[2])
		case 1: // a box for this hop, made for another cycle
			other, err := hn.client.Prepare(stale, []byte("x"))
			if err != nil {
				t.Fatal(err)
			}
			body[2] = other.Body(ctx, time.Second)[2]
		case 2: // cut short
			body[2] = body[2][:len(body[2])/2]
		}
		h, b, err := hn.exchange(t, pm.FirstHop(), FrameMessage, body)
		if err != nil {
			t.Fatal(err)
		}
		_, err = hn.client.Answer(pm, h, b)
		var he *HopError
		if !errors.As(err, &he) || he.Hop != 1 || !errors.Is(err, ErrAuth) {
			t.Fatalf("message %d with a bad data box: got %v, want hop 1 ErrAuth", i, err)
		}
	}
	for i, nd := range hn.cycle.Nodes {
		if n := hn.primary.ReplayLen(nd.Onion.Addr()); n != 0 {
			t.Fatalf("node %d recorded %d tags of messages whose data did not open", i, n)
		}
	}
	for i := range 3 {
		if _, err := hn.client.Send(ctx, []byte(fmt.Sprint("honest ", i))); err != nil {
			t.Fatalf("honest message %d after the flood: %v", i, err)
		}
	}
	if n := hn.primary.ReplayLen(hn.cycle.Nodes[0].Onion.Addr()); n != 3 {
		t.Fatalf("node 0 recorded %d tags for 3 honest messages", n)
	}
}

var processed atomic.Int64

// TestConcurrentCopiesProcessedOnce: copies of one message that arrive at
// once all open, but only one is processed and answered; the others are
// refused as replays before the processor runs.
func TestConcurrentCopiesProcessedOnce(t *testing.T) {
	registerOnce(t, ProcessorKind{Name: "test-count", Deterministic: true, New: func(map[string]string) (Processor, error) {
		return ProcessorFunc(func(b []byte) ([]byte, error) {
			processed.Add(1)
			return b, nil
		}), nil
	}})
	hn := newHopNet(t, PrimaryConfig{Nodes: 1, Processing: func(int, io.Reader) ProcessorSpec {
		return ProcessorSpec{Name: "test-count"}
	}}, ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for round := range 5 {
		pm, err := hn.client.Prepare(hn.cycle, []byte("once"))
		if err != nil {
			t.Fatal(err)
		}
		// Identical copies (as resends are) all get the one answer; copies
		// with data boxes of their own are replays. Either way the message
		// is processed once.
		for _, identical := range []bool{true, false} {
			if !identical {
				if pm, err = hn.client.Prepare(hn.cycle, []byte("once more")); err != nil {
					t.Fatal(err)
				}
			}
			const copies = 8
			bodies := make([][][]byte, copies)
			for i := range bodies {
				bodies[i] = pm.Body(ctx, 5*time.Second)
				if !identical {
					other, err := hn.client.Reseal(pm, hn.cycle, []byte(fmt.Sprint("copy ", i)))
					if err != nil {
						t.Fatal(err)
					}
					bodies[i] = other.Body(ctx, 5*time.Second)
				}
			}
			before := processed.Load()
			var wg sync.WaitGroup
			var mu sync.Mutex
			answered, replays := 0, 0
			answers := map[string]bool{}
			start := make(chan struct{})
			for i := range copies {
				wg.Go(func() {
					<-start
					h, b, err := hn.exchange(t, pm.FirstHop(), FrameMessage, bodies[i])
					if err != nil {
						t.Error(err)
						return
					}
					_, err = hn.client.Answer(pm, h, b)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						answered++
						answers[string(b)] = true
					case errors.Is(err, ErrReplay):
						replays++
					default:
						t.Errorf("copy: %v", err)
					}
				})
			}
			close(start)
			wg.Wait()
			switch {
			case identical && (answered != copies || len(answers) != 1):
				t.Fatalf("round %d: %d identical copies answered with %d distinct answers, want %d with 1", round, answered, len(answers), copies)
			case !identical && (answered != 1 || replays != copies-1):
				t.Fatalf("round %d: %d answered, %d refused as replays, want 1 and %d", round, answered, replays, copies-1)
			}
			if n := processed.Load() - before; n != 1 {
				t.Fatalf("round %d (identical %v): processed %d times", round, identical, n)
			}
		}
	}
}

// TestHalfFullReplayCacheRotatesEarly: honest messages fill the nodes'
// replay caches (one tag per hop each); once a cache passes half, the
// Primary starts the next cycle at once, long before the clock reaches the
// cycle's end, and clients keep sending: on the new cycle, and on the old
// one until it retires.
func TestHalfFullReplayCacheRotatesEarly(t *testing.T) {
	const size = 8
	clock := tortest.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	tn := newTestNet(t, PrimaryConfig{
		Nodes: 2, Period: time.Hour, Grace: time.Minute, Clock: clock,
		Node: NodeConfig{ReplayCacheSize: size},
	}, ClientConfig{Clock: clock})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old, err := tn.client.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range size / 2 {
		if _, err := tn.client.Send(ctx, []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	for i, nd := range old.Nodes {
		if n := tn.primary.ReplayLen(nd.Onion.Addr()); n != size/2 {
			t.Fatalf("node %d holds %d tags, want %d", i, n, size/2)
		}
	}
	if id := tn.primary.Cycle().ID; id != old.ID {
		t.Fatal("rotated at half full, before passing it")
	}
	// Ten minutes later, one more message passes half.
	clock.Advance(10 * time.Minute)
	res, err := tn.client.Send(ctx, []byte("past half"))
	if err != nil || res.Cycle != old.ID {
		t.Fatalf("message past half: %v", err)
	}
	waitFor(t, func() bool { return tn.primary.Cycle().ID != old.ID })
	if !clock.Now().Before(old.NotAfter.Add(-time.Minute)) {
		t.Fatal("the clock reached the scheduled rotation")
	}
	cur := tn.primary.Cycle()
	if !cur.NotBefore.Equal(clock.Now().Truncate(time.Second)) || !cur.NotAfter.After(old.NotAfter) {
		t.Fatalf("new cycle %v..%v at %v", cur.NotBefore, cur.NotAfter, clock.Now())
	}
	if got := len(tn.primary.Onions()); got != 4 {
		t.Fatalf("%d nodes after the early rotation, want 4 (the old ones until they retire)", got)
	}
	// The new cycle's caches are empty, and a fresh client uses it.
	for i, nd := range cur.Nodes {
		if n := tn.primary.ReplayLen(nd.Onion.Addr()); n != 0 {
			t.Fatalf("new node %d holds %d tags", i, n)
		}
	}
	fresh, err := NewClient(tn.net.Dialer(), tn.primary.Invite(nil), ClientConfig{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if res, err := fresh.Send(ctx, []byte("new cycle")); err != nil || res.Cycle != cur.ID {
		t.Fatalf("fresh client after the early rotation: %v", err)
	}
	// The old client still holds the old payload, which is still served.
	if res, err := tn.client.Send(ctx, []byte("old cycle")); err != nil || res.Cycle != old.ID {
		t.Fatalf("old payload after the early rotation: %v", err)
	}
	// The old cycle's further messages start no second rotation.
	if _, err := tn.client.Send(ctx, []byte("old cycle again")); err != nil {
		t.Fatal(err)
	}
	if id := tn.primary.Cycle().ID; id != cur.ID {
		t.Fatal("a retiring cycle's cache rotated the cycle again")
	}
	// The old nodes retire at their cycle's end, as usual; the new cycle
	// stays.
	clock.Set(old.NotAfter.Add(time.Minute + time.Second))
	waitFor(t, func() bool { return len(tn.primary.Onions()) == 2 })
	if id := tn.primary.Cycle().ID; id != cur.ID {
		t.Fatal("the new cycle was replaced at the old one's end")
	}
}

// TestFullReplayCache: a node whose cache is full refuses a new message with
// reject 5 (ErrBusy) and a replay with reject 3 (ErrReplay), both before
// processing, and records nothing more.
func TestFullReplayCache(t *testing.T) {
	const size = 2
	hn := newHopNet(t, PrimaryConfig{Nodes: 1, Node: NodeConfig{ReplayCacheSize: size}}, ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var first *Prepared
	for i := range size {
		pm, err := hn.client.Prepare(hn.cycle, []byte(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		body := pm.Body(ctx, 5*time.Second)
		h, b, err := hn.exchange(t, pm.FirstHop(), FrameMessage, body)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := hn.client.Answer(pm, h, b); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if i == 0 {
			first = pm
		}
	}
	// A fresh message: busy.
	pm, err := hn.client.Prepare(hn.cycle, []byte("one too many"))
	if err != nil {
		t.Fatal(err)
	}
	h, b, err := hn.exchange(t, pm.FirstHop(), FrameMessage, pm.Body(ctx, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if h != FrameReject || len(b) != 1 || b[0] != RejectBusy {
		t.Fatalf("full cache: got frame %d %x, want reject %d", h, b, RejectBusy)
	}
	_, err = hn.client.Answer(pm, h, b)
	var he *HopError
	if !errors.As(err, &he) || he.Hop != 1 || !errors.Is(err, ErrBusy) {
		t.Fatalf("full cache: got %v, want hop 1 ErrBusy", err)
	}
	// A replay (the first layer with a data box of its own): still
	// recognized as one.
	again, err := hn.client.Reseal(first, hn.cycle, []byte("again"))
	if err != nil {
		t.Fatal(err)
	}
	h, b, err = hn.exchange(t, first.FirstHop(), FrameMessage, again.Body(ctx, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if h != FrameReject || len(b) != 1 || b[0] != RejectReplay {
		t.Fatalf("replay into a full cache: got frame %d %x, want reject %d", h, b, RejectReplay)
	}
	if n := hn.primary.ReplayLen(hn.cycle.Nodes[0].Onion.Addr()); n != size {
		t.Fatalf("%d tags, want %d", n, size)
	}
}
