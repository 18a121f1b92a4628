// Package transport carries ghostcomm's frames between parties: a Server
// answers request frames on the streams it accepts, and a Pool sends requests
// to peers over multiplexed streams it dials and keeps open.
//
// Its rules, after HTTP/2's split between stream and connection errors (RFC
// 9113, 5.4), each checked by a test in this package:
//
//   - A request's fate is its own. Its deadline, cancellation or refusal
//     ends that request only; a stream is torn down only by its own
//     liveness: its reader failing, a frame that cannot be parsed, a write
//     that fails or misses the I/O timeout, or a ping unanswered for the I/O
//     timeout. Writes are bounded by the I/O timeout, never by one
//     request's context.
//   - Memory is charged as it is used. A frame body is charged to a
//     server-wide budget and to its stream's cap as its bytes arrive, never
//     on the strength of its header; a body that finds no room is read past
//     and refused (reject 5). A body must arrive at MinReadRate.
//   - Work slots bound work, not waits. A handler holds one of
//     MaxConcurrent slots while it computes, and gives it back (Park) while
//     it waits on another party; a parked request holds only what it keeps
//     charged.
//   - Stream slots are fair. Beyond MaxConns, a new stream evicts the
//     longest-idle stream that has nothing in flight, preferring streams
//     that never carried an accepted request; if every stream is busy the
//     new one gets reject 5 on stream id 0 and is closed.
//   - Nothing is lost to a dead stream or a stuck dial. A request whose
//     stream dies before its answer is sent again on a fresh stream (up to
//     Attempts times; the receiver makes a duplicate harmless). A caller
//     waiting on a dial that is slow starts a dial of its own rather than
//     share the slow one's fate.
package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/errs"
)

// Defaults for a zero field of ServerConfig or PoolConfig.
const (
	DefaultIdleTimeout = 2 * time.Minute
	DefaultIOTimeout   = 30 * time.Second
	DefaultDialTimeout = time.Minute
	// DefaultMinReadRate: a frame body must arrive at 16 KiB/s or better,
	// after a first I/O timeout's grace.
	DefaultMinReadRate = 16 << 10
	// DefaultAttempts: a request is sent at most three times.
	DefaultAttempts = 3
)

// HandlerCost is what a dispatched request is charged on top of its body,
// and what a parked request keeps charged: its goroutine and its state.
const HandlerCost = 8 << 10

// workerIdle is how long a handler goroutine that has finished waits for
// the next request before it exits.
const workerIdle = time.Second

// firstChunk is the first allocation for a body, once its first byte has
// arrived; later allocations double, by at most wire.Chunk at a time.
const firstChunk = 4 << 10

// ErrStreamLost: the stream a request was sent on broke before its answer
// came, and the request was sent as many times as allowed. The peer may or
// may not have received it.
var ErrStreamLost = errors.New("stream to peer lost")

// errNoRoom: a frame body found no room in its stream's cap or the
// server-wide budget.
var errNoRoom = errors.New("no room for the frame body")

// ErrStreamRefused: the peer refused the stream itself (too many streams,
// none of them idle). It matches errs.ErrBusy.
var ErrStreamRefused = fmt.Errorf("%w: the peer refused the stream", errs.ErrBusy)

// budget is a byte count with a ceiling, taken without waiting.
type budget struct {
	max  int64
	used atomic.Int64
}

func (b *budget) take(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *budget) give(n int64) { b.used.Add(-n) }

func loggerOr(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
