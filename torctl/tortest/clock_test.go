package tortest_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// recorder collects callback events.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, s)
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func TestClockRunsCallbacksInDueOrder(t *testing.T) {
	c := tortest.NewClock(epoch)
	var r recorder
	at := func(name string, d time.Duration) {
		c.AfterFunc(d, func() {
			// While a callback runs, Now is its due time.
			if got := c.Now(); !got.Equal(epoch.Add(d)) {
				r.add(name + " saw " + got.String())
				return
			}
			r.add(name)
		})
	}
	at("c", 3*time.Minute)
	at("a", time.Minute)
	at("tie1", 2*time.Minute)
	at("tie2", 2*time.Minute) // same instant: scheduling order
	at("late", time.Hour)
	if c.Pending() != 5 {
		t.Fatalf("Pending = %d", c.Pending())
	}

	c.Advance(3 * time.Minute)
	if got, want := r.get(), []string{"a", "tie1", "tie2", "c"}; !slices.Equal(got, want) {
		t.Fatalf("ran %v, want %v", got, want)
	}
	if !c.Now().Equal(epoch.Add(3*time.Minute)) || c.Pending() != 1 {
		t.Fatalf("after Advance: now %v, pending %d", c.Now(), c.Pending())
	}
	c.Advance(time.Hour)
	if got := r.get(); len(got) != 5 || got[4] != "late" {
		t.Fatalf("ran %v", got)
	}
	if c.Pending() != 0 {
		t.Fatalf("Pending = %d", c.Pending())
	}
}

func TestClockStop(t *testing.T) {
	c := tortest.NewClock(epoch)
	var ran atomic.Int32
	stop := c.AfterFunc(time.Second, func() { ran.Add(1) })
	keep := c.AfterFunc(time.Second, func() { ran.Add(10) })
	if !stop() {
		t.Fatal("stop before due returned false")
	}
	if stop() {
		t.Fatal("second stop returned true")
	}
	if c.Pending() != 1 {
		t.Fatalf("Pending = %d after stop", c.Pending())
	}
	c.Advance(time.Second)
	if ran.Load() != 10 {
		t.Fatalf("ran = %d: the stopped callback ran or the other did not", ran.Load())
	}
	if keep() {
		t.Fatal("stop after the call returned true")
	}
}

func TestClockStopFromCallback(t *testing.T) {
	c := tortest.NewClock(epoch)
	var ran atomic.Bool
	var stopLater func() bool
	c.AfterFunc(time.Second, func() {
		if !stopLater() {
			ran.Store(true) // reports failure below
		}
	})
	stopLater = c.AfterFunc(2*time.Second, func() { ran.Store(true) })
	c.Advance(3 * time.Second)
	if ran.Load() {
		t.Fatal("a callback stopped by an earlier callback ran, or stop failed")
	}
}

func TestClockRearmingCallbacksRunInOneAdvance(t *testing.T) {
	c := tortest.NewClock(epoch)
	var ticks []time.Time // only touched by callbacks, which run one at a time
	var tick func()
	tick = func() {
		ticks = append(ticks, c.Now())
		c.AfterFunc(time.Hour, tick)
	}
	c.AfterFunc(time.Hour, tick)
	c.Advance(24 * time.Hour)
	if len(ticks) != 24 {
		t.Fatalf("%d ticks in a day, want 24", len(ticks))
	}
	for i, at := range ticks {
		if !at.Equal(epoch.Add(time.Duration(i+1) * time.Hour)) {
			t.Fatalf("tick %d at %v", i, at)
		}
	}
	if c.Pending() != 1 {
		t.Fatalf("Pending = %d, want the next tick", c.Pending())
	}
}

func TestClockSet(t *testing.T) {
	c := tortest.NewClock(epoch)
	var ran atomic.Int32
	c.AfterFunc(time.Hour, func() { ran.Add(1) })
	c.Set(epoch.Add(-time.Hour)) // backward: nothing runs
	if !c.Now().Equal(epoch.Add(-time.Hour)) || ran.Load() != 0 {
		t.Fatalf("after Set backward: now %v, ran %d", c.Now(), ran.Load())
	}
	c.Set(epoch.Add(30 * time.Minute)) // the callback keeps its due time
	if ran.Load() != 0 {
		t.Fatal("ran before its due time")
	}
	c.Set(epoch.Add(time.Hour))
	if ran.Load() != 1 || !c.Now().Equal(epoch.Add(time.Hour)) {
		t.Fatalf("after Set forward: now %v, ran %d", c.Now(), ran.Load())
	}
	c.Advance(-time.Hour) // negative: no move
	if !c.Now().Equal(epoch.Add(time.Hour)) {
		t.Fatalf("Advance(-1h) moved the clock to %v", c.Now())
	}
}

func TestClockNonPositiveDelayRunsAtOnce(t *testing.T) {
	c := tortest.NewClock(epoch)
	done := make(chan struct{})
	stop := c.AfterFunc(0, func() { close(done) })
	<-done // no Advance needed
	if stop() {
		t.Fatal("stop after the call returned true")
	}
}

func TestClockBlockUntil(t *testing.T) {
	c := tortest.NewClock(epoch)
	go func() {
		c.AfterFunc(time.Minute, func() {})
		c.AfterFunc(time.Minute, func() {})
	}()
	if err := c.BlockUntil(testCtx(t), 2); err != nil {
		t.Fatal(err)
	}
	if c.Pending() < 2 {
		t.Fatalf("BlockUntil returned with %d pending", c.Pending())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.BlockUntil(ctx, 3); err != context.Canceled {
		t.Fatalf("BlockUntil with a canceled ctx: %v", err)
	}
}

// Schedules, stops and advances from many goroutines; every callback either
// runs once or was stopped. Run with -race.
func TestClockConcurrent(t *testing.T) {
	c := tortest.NewClock(epoch)
	const n = 400
	var ran, stopped atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stop := c.AfterFunc(time.Duration(i%7+1)*time.Second, func() { ran.Add(1) })
			if i%3 == 0 && stop() {
				stopped.Add(1)
			}
			_ = c.Now()
		}()
	}
	var adv sync.WaitGroup
	adv.Add(1)
	go func() {
		defer adv.Done()
		for range 10 {
			c.Advance(time.Second)
		}
	}()
	wg.Wait()
	adv.Wait()
	c.Advance(time.Minute) // everything still pending falls due
	if got := ran.Load() + stopped.Load(); got != n {
		t.Fatalf("ran %d + stopped %d = %d, want %d", ran.Load(), stopped.Load(), got, n)
	}
	if c.Pending() != 0 {
		t.Fatalf("Pending = %d", c.Pending())
	}
}
