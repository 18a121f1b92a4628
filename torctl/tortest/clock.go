package tortest

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/ghostcomm/ghostcomm"
)

var _ ghostcomm.Clock = (*Clock)(nil)

// Clock is a fake ghostcomm.Clock whose time moves only when told to
// (Advance, Set), so that tests run hours of timers in milliseconds and
// without sleeps.
//
// A Clock is safe for concurrent use. Advance and Set run the due callbacks
// one at a time, each in its own goroutine, in due-time order (callbacks due
// at the same instant in the order they were scheduled), and wait for each to
// return before running the next; while a callback runs, Now returns its due
// time. A callback may call Now and AfterFunc (timers it schedules within the
// advanced span run in the same Advance), but it must not call Advance or Set,
// nor wait for something the goroutine calling Advance does afterwards; run
// Advance in its own goroutine if it must.
type Clock struct {
	advMu sync.Mutex // serializes Advance and Set

	mu      sync.Mutex
	now     time.Time
	seq     uint64
	timers  timerHeap
	changed chan struct{} // closed and replaced when the pending set changes
}

// NewClock returns a Clock set to start.
func NewClock(start time.Time) *Clock {
	return &Clock{now: start, changed: make(chan struct{})}
}

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f to run in its own goroutine once the clock has moved
// d past the current time. stop cancels the call and reports whether it
// prevented it: false once the call has started, or after an earlier stop.
// If d <= 0, f starts at once, as with time.AfterFunc, and stop returns false.
func (c *Clock) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	if d <= 0 {
		go f()
		return func() bool { return false }
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{when: c.now.Add(d), seq: c.seq, f: f}
	c.seq++
	heap.Push(&c.timers, t)
	c.notifyLocked()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if t.index < 0 {
			return false
		}
		heap.Remove(&c.timers, t.index)
		c.notifyLocked()
		return true
	}
}

// Advance moves the clock forward by d (d <= 0 moves it nowhere), running
// every callback that falls due on the way, as the type comment describes,
// and returns when the last has returned.
func (c *Clock) Advance(d time.Duration) {
	c.advMu.Lock()
	defer c.advMu.Unlock()
	c.mu.Lock()
	end := c.now
	if d > 0 {
		end = end.Add(d)
	}
	c.mu.Unlock()
	c.runUntil(end)
}

// Set moves the clock to t. Forward, it runs the callbacks that fall due as
// Advance does. Backward, it runs nothing, and pending callbacks keep their
// due times on the clock, so they run later than their delays said.
func (c *Clock) Set(t time.Time) {
	c.advMu.Lock()
	defer c.advMu.Unlock()
	c.mu.Lock()
	if !t.After(c.now) {
		c.now = t
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.runUntil(t)
}

// Pending returns the number of callbacks scheduled and not yet started or
// stopped.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// BlockUntil waits until at least n callbacks are pending, so that a test
// can advance the clock only once the code under test has scheduled its
// timers. It returns ctx.Err() if ctx ends first.
func (c *Clock) BlockUntil(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		pending, changed := len(c.timers), c.changed
		c.mu.Unlock()
		if pending >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// runUntil runs the callbacks due up to end, in order, then sets the clock to
// end. c.advMu must be held.
func (c *Clock) runUntil(end time.Time) {
	for {
		c.mu.Lock()
		if len(c.timers) == 0 || c.timers[0].when.After(end) {
			c.now = end
			c.mu.Unlock()
			return
		}
		t := heap.Pop(&c.timers).(*fakeTimer)
		if t.when.After(c.now) {
			c.now = t.when
		}
		c.notifyLocked()
		c.mu.Unlock()

		done := make(chan struct{})
		go func() {
			defer close(done)
			t.f()
		}()
		<-done
	}
}

func (c *Clock) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// fakeTimer is one scheduled callback. index is its position in the heap,
// or -1 once it has been popped or removed.
type fakeTimer struct {
	when  time.Time
	seq   uint64
	f     func()
	index int
}

// timerHeap orders timers by due time, then by scheduling order.
type timerHeap []*fakeTimer

func (h timerHeap) Len() int { return len(h) }

func (h timerHeap) Less(i, j int) bool {
	if !h[i].when.Equal(h[j].when) {
		return h[i].when.Before(h[j].when)
	}
	return h[i].seq < h[j].seq
}

func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *timerHeap) Push(x any) {
	t := x.(*fakeTimer)
	t.index = len(*h)
	*h = append(*h, t)
}

func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*h = old[:len(old)-1]
	return t
}
