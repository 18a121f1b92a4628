package ghostcomm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// MaxEcho is the most bytes Node.Echo and Client.Echo send.
const MaxEcho = wire.MaxEcho - wire.EchoPrefix

// Ping measures the stream the node's messages to the peer `to` take: it
// sends one transport ping on that stream (the open one; one is opened, as
// a message would open it, if none is) and returns the time until its pong
// came back. The pong is written by the peer's reader as soon as it reads
// the ping, with no handler, so the figure is the stream's round trip
// through Tor and both ends' transport: the part of a hop's time that is
// not ghostcomm's processing. The ping carries nothing but a stream id, on a
// stream the peer already serves: it tells the peer only that the stream is
// being timed (its id is not 0, which liveness pings use), nothing of any
// message. A peer can delay its pong, or send one early for an id it
// guesses, so the figure is only as honest as the peer. The wait is bounded
// by ctx and by NodeConfig.IOTimeout.
//
// Errors: ctx's own error (matching context.Canceled or
// context.DeadlineExceeded), the stream left as it is; ErrClosed after
// Close; ErrBusy if the peer refused the stream; otherwise ErrHopUnreachable
// wrapping the cause (the stream broke, or the pong did not come within
// IOTimeout, after which the stream is judged dead and the next message
// opens a fresh one; or the dial failed, ErrOnionNotFound and
// ErrOnionUnreachable matching as from the Dialer).
func (n *Node) Ping(ctx context.Context, to Onion) (time.Duration, error) {
	return n.Echo(ctx, to, 0, 0)
}

// Echo is Ping with a body: the ping carries out random bytes and the
// peer's pong carries the first back of them back, so the figure is the
// round trip of that stream for frames of chosen sizes each way (a ping
// frame of 14+out bytes: its 10-byte header and 4 bytes that say how many
// come back; a pong frame of 10+back), such as a message's and its
// answer's. The peer reads the bytes and writes them back without a
// handler, charging them to its memory bounds like a message's. Echo with
// out and back both 0 is Ping.
//
// Errors are Ping's, and: ErrFrameTooLarge unless 0 <= back <= out <=
// MaxEcho, with nothing sent; ErrBusy when the peer had no room for the
// bytes, the stream left up; ErrHopUnreachable when the pong did not carry
// the bytes asked for, the stream then judged broken.
func (n *Node) Echo(ctx context.Context, to Onion, out, back int) (time.Duration, error) {
	if n.closed.Load() {
		return 0, fmt.Errorf("ghostcomm: ping: %w", ErrClosed)
	}
	body, err := echoBody(out, back)
	if err != nil {
		return 0, err
	}
	rtt, err := n.pool.Ping(ctx, to.Addr(), body, back)
	if err != nil {
		return 0, pingError(to, n.closed.Load(), err)
	}
	return rtt, nil
}

// echoBody returns out random bytes for an echo that asks for back of them
// back (nil for 0), or ErrFrameTooLarge.
func echoBody(out, back int) ([]byte, error) {
	if back < 0 || back > out || out > MaxEcho {
		return nil, fmt.Errorf("ghostcomm: echo of %d bytes, %d back (0 <= back <= out <= %d): %w", out, back, MaxEcho, ErrFrameTooLarge)
	}
	if out == 0 {
		return nil, nil
	}
	body := make([]byte, out)
	rand.Read(body)
	return body, nil
}

// Ping measures the stream the client's messages to the first hop `to`
// take, as Node.Ping does the node's: one transport ping on that stream
// (opened, as a message would open it, if none is), and the time until its
// pong came back. The wait is bounded by ctx (by ClientConfig.Timeout if
// ctx has no deadline), by ClientConfig.IOTimeout, and by Close. Its errors
// are Node.Ping's.
func (c *Client) Ping(ctx context.Context, to Onion) (time.Duration, error) {
	return c.Echo(ctx, to, 0, 0)
}

// Echo is Ping with out random bytes to the first hop and the first back of
// them back in its pong: see Node.Echo. Its errors are Node.Echo's.
func (c *Client) Echo(ctx context.Context, to Onion, out, back int) (time.Duration, error) {
	if err := c.closedErr("ping"); err != nil {
		return 0, err
	}
	body, err := echoBody(out, back)
	if err != nil {
		return 0, err
	}
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	rtt, err := c.pool.Ping(ctx, to.Addr(), body, back)
	if err != nil {
		return 0, pingError(to, c.closed.Load(), err)
	}
	return rtt, nil
}

// pingError maps a pool's ping error to the package's errors.
func pingError(to Onion, closed bool, err error) error {
	switch {
	case closed || errors.Is(err, ErrClosed):
		return fmt.Errorf("ghostcomm: ping: %w", ErrClosed)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, ErrBusy):
		return fmt.Errorf("ghostcomm: ping %s: %w", to.Addr(), err)
	}
	return fmt.Errorf("ghostcomm: ping %s: %w: %w", to.Addr(), ErrHopUnreachable, err)
}
