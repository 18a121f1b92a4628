package ghostcomm

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Defaults of the bound on a Primary's payload work (PrimaryConfig).
const (
	// DefaultPayloadRate is how many payload requests per second a Primary
	// answers on average. An answer costs about 0.3 ms of CPU (a key
	// parse, a signature, an encryption), so the default bounds the work
	// to about 3% of one core, and serves 60,000 clients per ten-minute
	// cycle.
	DefaultPayloadRate = 100
	// DefaultPayloadBurst is how many requests a Primary answers at once
	// after a quiet spell.
	DefaultPayloadBurst = 20
	// DefaultPayloadQueue is how many requests may wait for their turn; at
	// the default rate the last one waits about 1.3 s.
	DefaultPayloadQueue = 128
)

// payloadGate bounds a Primary's payload work: a token bucket of rate
// answers per second holding at most burst tokens, a FIFO of at most
// maxQueue requests waiting for a token, and one request at a time per
// stream. A request beyond the queue, or a second one on a stream whose
// first is not answered, is refused at once, for the cost of reading it. A
// waiting request whose stream ends leaves the queue without using a token.
// Time is real time: the bound is on CPU, not on the protocol's clock.
type payloadGate struct {
	rate     float64 // tokens per second; 0: no bound
	burst    float64
	maxQueue int

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	queue   []chan struct{} // closed when the waiter may go
	timer   *time.Timer     // wakes dispatch while the queue is not empty
	streams map[<-chan struct{}]struct{}
}

func newPayloadGate(rate, burst, maxQueue int) *payloadGate {
	return &payloadGate{
		rate: float64(max(rate, 0)), burst: float64(burst), maxQueue: maxQueue,
		tokens: float64(burst), last: time.Now(), streams: map[<-chan struct{}]struct{}{},
	}
}

// admit waits for the turn of a request that came on a stream which ends
// when gone is closed (nil: not said). It calls park before it waits. It
// returns ErrBusy if the queue is full or the stream already has a request
// admitted or waiting (or park fails), and ErrClosed if ctx or the stream
// ends first. On success the caller calls done once it has answered.
func (g *payloadGate) admit(ctx context.Context, gone <-chan struct{}, park func() error) (done func(), err error) {
	g.mu.Lock()
	if gone != nil {
		if _, ok := g.streams[gone]; ok {
			g.mu.Unlock()
			return nil, ErrBusy
		}
		g.streams[gone] = struct{}{}
	}
	done = func() {
		if gone != nil {
			g.mu.Lock()
			delete(g.streams, gone)
			g.mu.Unlock()
		}
	}
	if g.rate == 0 {
		g.mu.Unlock()
		return done, nil
	}
	g.refill()
	if len(g.queue) == 0 && g.tokens >= 1 {
		g.tokens--
		g.mu.Unlock()
		return done, nil
	}
	if len(g.queue) >= g.maxQueue {
		g.mu.Unlock()
		done()
		return nil, ErrBusy
	}
	g.mu.Unlock()
	if err := park(); err != nil {
		done()
		return nil, err
	}
	g.mu.Lock()
	if len(g.queue) >= g.maxQueue {
		g.mu.Unlock()
		done()
		return nil, ErrBusy
	}
	ready := make(chan struct{})
	g.queue = append(g.queue, ready)
	g.arm()
	g.mu.Unlock()

	select {
	case <-ready:
		return done, nil
	case <-ctx.Done():
	case <-gone:
	}
	g.mu.Lock()
	select {
	case <-ready: // given a token meanwhile: give it back
		g.tokens = min(g.tokens+1, g.burst)
	default:
		if i := slices.Index(g.queue, ready); i >= 0 {
			g.queue = slices.Delete(g.queue, i, i+1)
		}
	}
	g.mu.Unlock()
	done()
	return nil, ErrClosed
}

// refill adds the tokens earned since the last refill. g.mu is held.
func (g *payloadGate) refill() {
	now := time.Now()
	g.tokens = min(g.burst, g.tokens+now.Sub(g.last).Seconds()*g.rate)
	g.last = now
}

// arm sets the timer for the next token if requests wait. g.mu is held.
func (g *payloadGate) arm() {
	if len(g.queue) == 0 || g.timer != nil {
		return
	}
	wait := time.Duration((1 - g.tokens) / g.rate * float64(time.Second))
	g.timer = time.AfterFunc(max(wait, 0), g.dispatch)
}

// dispatch hands the tokens earned to the waiters, oldest first.
func (g *payloadGate) dispatch() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.timer = nil
	g.refill()
	for len(g.queue) > 0 && g.tokens >= 1 {
		g.tokens--
		close(g.queue[0])
		g.queue[0] = nil
		g.queue = g.queue[1:]
	}
	g.arm()
}

// waiting returns the number of requests waiting for a token.
func (g *payloadGate) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue)
}
