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
	for i := range hn.cycle.Nodes {
		if n := hn.primary.ReplayLen(i); n != 0 {
			t.Fatalf("node %d recorded %d tags of messages whose data did not open", i, n)
		}
	}
	for i := range 3 {
		if _, err := hn.client.Send(ctx, []byte(fmt.Sprint("honest ", i))); err != nil {
			t.Fatalf("honest message %d after the flood: %v", i, err)
		}
	}
	if n := hn.primary.ReplayLen(0); n != 3 {
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
		body := pm.Body(ctx, 5*time.Second)
		before := processed.Load()
		const copies = 8
		var wg sync.WaitGroup
		var mu sync.Mutex
		answered, replays := 0, 0
		start := make(chan struct{})
		for range copies {
			wg.Go(func() {
				<-start
				h, b, err := hn.exchange(t, pm.FirstHop(), FrameMessage, body)
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
				case errors.Is(err, ErrReplay):
					replays++
				default:
					t.Errorf("copy: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		if answered != 1 || replays != copies-1 {
			t.Fatalf("round %d: %d answered, %d refused as replays, want 1 and %d", round, answered, replays, copies-1)
		}
		if n := processed.Load() - before; n != 1 {
			t.Fatalf("round %d: processed %d times", round, n)
		}
	}
}
