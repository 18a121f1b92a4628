package ghostcomm

// How a Primary, its Nodes and a Client use internal/transport: the limits
// of their servers and pools, and the budget a message carries.

import (
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/transport"
	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// Defaults for stream timing and limits, used when a Config leaves the field
// zero.
const (
	// DefaultIdleTimeout is how long an open stream may carry no frame
	// before it is closed, on both ends.
	DefaultIdleTimeout = transport.DefaultIdleTimeout
	// DefaultIOTimeout bounds writing one frame, the rest of a frame once
	// its first byte has arrived (plus the time its body takes at
	// DefaultMinReadRate), and how long a stream with messages waiting on
	// it may leave a ping unanswered before it is judged dead.
	DefaultIOTimeout = transport.DefaultIOTimeout
	// DefaultDialTimeout bounds one dial of a next hop or first hop,
	// however many messages wait for it. A caller whose own deadline is
	// nearer waits less, and a dial slower than a few times the recent
	// dial time no longer holds new callers: they start a dial of their
	// own.
	DefaultDialTimeout = transport.DefaultDialTimeout
	// DefaultMinReadRate is the slowest, in bytes per second, a frame body
	// may arrive once DefaultIOTimeout has passed.
	DefaultMinReadRate = transport.DefaultMinReadRate
	// DefaultMaxConcurrent bounds the messages a Node or Primary computes
	// at once (peeling, processing, sealing); more are refused with
	// ErrBusy. A message waiting for the rest of its route does not count.
	DefaultMaxConcurrent = 256
	// DefaultMaxConns bounds the streams a Node or Primary keeps open.
	// Beyond it a new stream evicts the longest-idle stream that has no
	// message in flight (streams that never carried a genuine message
	// first); when every stream has one in flight, the new stream is
	// refused with reject 5.
	DefaultMaxConns = 1024
	// DefaultMaxInflightBytes bounds the bytes a Node or Primary holds for
	// messages, over all its streams: bodies as they arrive, a fixed 8 KiB
	// per message, and the forwarded copy of each message waiting on its
	// next hop. A frame that finds no room is read past and refused with
	// ErrBusy.
	DefaultMaxInflightBytes = 16 * DefaultMaxFrameSize
)

// MinBudget is the smallest budget a hop accepts. A message that arrives
// with less is refused (reject 10) before any public-key work, and a hop
// whose remaining time would leave its successor less does not forward: it
// reports that the next hop timed out.
const MinBudget = 100 * time.Millisecond

// forwardBudget is what a hop with remaining time left passes on to the next
// hop: all but a margin of 1/128 of it, at least 10 ms, in which the hop can
// still report a failure of the rest of the route before its own
// predecessor gives up. From any first budget of 5 s or more, 255 hops fit.
func forwardBudget(remaining time.Duration) time.Duration {
	return remaining - max(remaining/128, 10*time.Millisecond)
}

// firstBudget is the budget a client gives the first hop: a uniformly random
// share between a half and nine tenths of the time it will wait, so that the
// budget a hop sees says little about how many hops came before.
func firstBudget(wait time.Duration, rnd io.Reader) (time.Duration, error) {
	var b [8]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return 0, err
	}
	frac := float64(binary.BigEndian.Uint64(b[:])>>11) / (1 << 53) // [0, 1)
	return time.Duration(float64(wait) * (0.5 + 0.4*frac)), nil
}

func budgetMS(d time.Duration) uint32 {
	return uint32(min(max(d/time.Millisecond, 0), 1<<32-1))
}

func (c *NodeConfig) serverConfig(refused func(wire.Type, error)) transport.ServerConfig {
	return transport.ServerConfig{
		MaxFrame: c.MaxFrameSize, MaxConcurrent: c.MaxConcurrent, MaxConns: c.MaxConns,
		MaxInflight: c.MaxInflightBytes, MaxStreamBytes: c.MaxStreamBytes,
		IdleTimeout: c.IdleTimeout, IOTimeout: c.IOTimeout, MinReadRate: c.MinReadRate,
		Logger: c.Logger, Refused: refused,
	}
}

func newPool(d Dialer, maxFrame int, ioTimeout, idle, dial time.Duration, log *slog.Logger) *transport.Pool {
	return transport.NewPool(transport.PoolConfig{
		Dial: d.DialContext, MaxFrame: maxFrame, IOTimeout: ioTimeout, IdleTimeout: idle,
		DialTimeout: dial, Logger: log, RetryDial: retryDial,
	})
}

// retryDial: a dial that failed to reach an onion that exists (not one
// whose descriptor is missing) gets a second try.
func retryDial(err error) bool {
	return errors.Is(err, ErrOnionUnreachable) && !errors.Is(err, ErrOnionNotFound)
}

// discardLogger is the logger of a zero Config: silent.
var discardLogger = slog.New(slog.DiscardHandler)

func loggerOr(l *slog.Logger) *slog.Logger {
	if l == nil {
		return discardLogger
	}
	return l
}
