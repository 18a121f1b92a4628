package ghostcomm

import (
	"context"
	"errors"
	"testing"
	"time"
)

type goneKey struct{}

// stream returns a context carrying a stream's gone channel, and the
// function that ends the stream.
func stream() (context.Context, func()) {
	gone := make(chan struct{})
	return context.WithValue(context.Background(), goneKey{}, (<-chan struct{})(gone)), func() { close(gone) }
}

// admitOn admits a request on the stream ctx carries (see stream).
func admitOn(g *payloadGate, ctx context.Context) (func(), error) {
	gone, _ := ctx.Value(goneKey{}).(<-chan struct{})
	return g.admit(ctx, gone, func() error { return nil })
}

// waitQueue waits until n requests wait in g.
func waitQueue(t *testing.T, g *payloadGate, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for g.waiting() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests wait, want %d", g.waiting(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPayloadGateBurstQueueRefusal: the burst goes at once; later requests
// wait in order of arrival; past the queue they are refused with ErrBusy.
func TestPayloadGateBurstQueueRefusal(t *testing.T) {
	g := newPayloadGate(20, 2, 3)
	for i := range 2 {
		ctx, _ := stream()
		if _, err := admitOn(g, ctx); err != nil {
			t.Fatalf("request %d of the burst: %v", i, err)
		}
	}
	order := make(chan int, 3)
	for i := range 3 {
		ctx, _ := stream()
		go func() {
			if _, err := admitOn(g, ctx); err != nil {
				t.Errorf("queued request %d: %v", i, err)
			}
			order <- i
		}()
		waitQueue(t, g, i+1) // arrival order is i
	}
	ctx, _ := stream()
	if _, err := admitOn(g, ctx); !errors.Is(err, ErrBusy) {
		t.Fatalf("request past a full queue: %v, want ErrBusy", err)
	}
	for want := range 3 {
		if got := <-order; got != want {
			t.Fatalf("request %d went before request %d", got, want)
		}
	}
}

// TestPayloadGateOnePerStream: a stream gets a second request in only once
// its first is answered.
func TestPayloadGateOnePerStream(t *testing.T) {
	g := newPayloadGate(1000, 10, 10)
	ctx, _ := stream()
	done, err := admitOn(g, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admitOn(g, ctx); !errors.Is(err, ErrBusy) {
		t.Fatalf("second request on the stream: %v, want ErrBusy", err)
	}
	done()
	done2, err := admitOn(g, ctx)
	if err != nil {
		t.Fatalf("request after the first was answered: %v", err)
	}
	done2()
}

// TestPayloadGateStreamGoneLeavesQueue: a waiting request whose stream ends
// leaves the queue at once, and the request behind it goes next.
func TestPayloadGateStreamGoneLeavesQueue(t *testing.T) {
	g := newPayloadGate(2, 1, 2)
	ctx, _ := stream()
	done, err := admitOn(g, ctx) // the burst
	if err != nil {
		t.Fatal(err)
	}
	done()
	ctxA, endA := stream()
	errA := make(chan error, 1)
	go func() { _, err := admitOn(g, ctxA); errA <- err }()
	waitQueue(t, g, 1)
	ctxB, _ := stream()
	okB := make(chan error, 1)
	go func() { _, err := admitOn(g, ctxB); okB <- err }()
	waitQueue(t, g, 2)
	endA()
	if err := <-errA; !errors.Is(err, ErrClosed) {
		t.Fatalf("request of a closed stream: %v, want ErrClosed", err)
	}
	waitQueue(t, g, 1)
	if err := <-okB; err != nil {
		t.Fatalf("request behind a closed stream's: %v", err)
	}
	// A's stream is forgotten; B's is held until B is answered.
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.streams) != 1 {
		t.Errorf("%d streams admitted, want 1", len(g.streams))
	}
}

// TestPayloadGateUnbounded: a negative rate lifts the bound.
func TestPayloadGateUnbounded(t *testing.T) {
	g := newPayloadGate(-1, 1, 0)
	for range 1000 {
		done, err := admitOn(g, context.Background())
		if err != nil {
			t.Fatal(err)
		}
		done()
	}
}
