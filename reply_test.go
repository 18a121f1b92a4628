package ghostcomm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/ghostcomm/ghostcomm"
)

// replyTap records the bodies of the reply frames that come back on the
// connections dialed to one onion: what the hop before it relays.
type replyTap struct {
	mu    sync.Mutex
	conns []*bytes.Buffer
}

func (rt *replyTap) wrap(target string) func(addr string, c net.Conn) net.Conn {
	return func(addr string, c net.Conn) net.Conn {
		if addr != target {
			return c
		}
		rt.mu.Lock()
		defer rt.mu.Unlock()
		buf := new(bytes.Buffer)
		rt.conns = append(rt.conns, buf)
		return &readTapConn{Conn: c, record: func(b []byte) {
			rt.mu.Lock()
			buf.Write(b)
			rt.mu.Unlock()
		}}
	}
}

// replySizes returns the body size of every reply frame read so far, in
// order per connection, and forgets them.
func (rt *replyTap) replySizes(t *testing.T) []int {
	t.Helper()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var sizes []int
	for _, buf := range rt.conns {
		r := bytes.NewReader(buf.Bytes())
		for r.Len() > 0 {
			typ, body, err := ReadFrame(r, DefaultMaxFrameSize)
			if err != nil {
				t.Fatalf("tapped stream: %v", err)
			}
			if typ == FrameReply {
				sizes = append(sizes, len(body))
			}
		}
		buf.Reset()
	}
	return sizes
}

// readTapConn records what is read from it.
type readTapConn struct {
	net.Conn
	record func([]byte)
}

func (c *readTapConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.record(b[:n])
	return n, err
}

func identityNet(t *testing.T, nodes int, nc NodeConfig) *hopNet {
	return newHopNet(t, PrimaryConfig{
		Nodes:      nodes,
		Node:       nc,
		Processing: func(int, io.Reader) ProcessorSpec { return IdentitySpec },
	}, ClientConfig{Route: func(cy *Cycle) []int {
		r := make([]int, len(cy.Nodes))
		for i := range r {
			r[i] = i
		}
		return r
	}})
}

// A relaying hop cannot tell a result from a failure report by its size:
// hop 1 relays replies from hop 2 of the same size whether the message
// succeeded with a short result or failed further on, and learns a result's
// length only to its bucket.
func TestRelayedReplySizesHideOutcome(t *testing.T) {
	hn := identityNet(t, 3, NodeConfig{})
	var tap replyTap
	hn.net.SetWrapConn(tap.wrap(hn.cycle.Nodes[1].Onion.Addr()))
	hn.net.Sever(hn.cycle.Nodes[1].Onion.ServiceID) // streams opened ahead were not tapped
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	send := func(n int) int {
		t.Helper()
		msg := bytes.Repeat([]byte{'a'}, n)
		res, err := hn.client.Send(ctx, msg)
		if err != nil || !bytes.Equal(res.Data, msg) {
			t.Fatalf("%d bytes: %v", n, err)
		}
		sizes := tap.replySizes(t)
		if len(sizes) != 1 {
			t.Fatalf("%d bytes: hop 1 relayed %d replies, want 1", n, len(sizes))
		}
		return sizes[0]
	}
	smallest := send(256)
	for _, n := range []int{0, 1, 15, 16, 17, 64, 128, 200} {
		if got := send(n); got != smallest {
			t.Errorf("result of %d bytes relayed as %d bytes, result of 256 bytes as %d", n, got, smallest)
		}
	}
	bigger := send(257)
	if bigger <= smallest {
		t.Fatalf("a 257-byte result relayed as %d bytes, not more than a 256-byte one (%d)", bigger, smallest)
	}
	for _, n := range []int{300, 700, 1024} {
		if got := send(n); got != bigger {
			t.Errorf("result of %d bytes relayed as %d bytes, result of 257 bytes as %d", n, got, bigger)
		}
	}

	// A failure further on: hop 3 cannot be reached, hop 2 reports it, and
	// hop 1 relays the report.
	third := hn.cycle.Nodes[2].Onion.ServiceID
	hn.net.Partition(third)
	hn.net.Sever(third) // as a partition breaks the circuits already open
	hn.net.Sever(third)
	_, err := hn.client.Send(ctx, []byte("lost"))
	var he *HopError
	if !errors.As(err, &he) || he.Hop != 3 || !errors.Is(err, ErrHopUnreachable) {
		t.Fatalf("partitioned hop 3: got %v", err)
	}
	sizes := tap.replySizes(t)
	t.Logf("hop 1 relayed results of 0..256 bytes as %d bytes, of 257..1024 as %d, hop 2's failure report as %v", smallest, bigger, sizes)
	if len(sizes) != 1 || sizes[0] != smallest {
		t.Fatalf("hop 2's failure report relayed as %v bytes, a short result as %d", sizes, smallest)
	}
}

// A report written by the last hop itself (its processor failed) is relayed
// at the size of a short result too.
func TestLastHopReportSizeIsResultSize(t *testing.T) {
	registerOnce(t, ProcessorKind{
		Name: "fail-on-x",
		New: func(map[string]string) (Processor, error) {
			return ProcessorFunc(func(in []byte) ([]byte, error) {
				if bytes.HasPrefix(in, []byte("x")) {
					return nil, errors.New("refused")
				}
				return in, nil
			}), nil
		},
	})
	hn := newHopNet(t, PrimaryConfig{
		Nodes: 2,
		Processing: func(i int, _ io.Reader) ProcessorSpec {
			if i == 1 {
				return ProcessorSpec{Name: "fail-on-x"}
			}
			return IdentitySpec
		},
	}, ClientConfig{Route: func(*Cycle) []int { return []int{0, 1} }})
	var tap replyTap
	hn.net.SetWrapConn(tap.wrap(hn.cycle.Nodes[1].Onion.Addr()))
	hn.net.Sever(hn.cycle.Nodes[1].Onion.ServiceID) // streams opened ahead were not tapped
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if _, err := hn.client.Send(ctx, []byte(strings.Repeat("y", 100))); err != nil {
		t.Fatalf("Send: %v", err)
	}
	ok := tap.replySizes(t)
	_, err := hn.client.Send(ctx, []byte("x"))
	var he *HopError
	if !errors.As(err, &he) || he.Hop != 2 || !errors.Is(err, ErrProcessing) {
		t.Fatalf("failing last hop: got %v", err)
	}
	failed := tap.replySizes(t)
	if len(ok) != 1 || len(failed) != 1 || ok[0] != failed[0] {
		t.Fatalf("hop 1 relayed a result as %v bytes and the last hop's report as %v", ok, failed)
	}
}

// Messages of every size around the bucket edges come back whole.
func TestRoundTripBucketEdges(t *testing.T) {
	hn := identityNet(t, 2, NodeConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sizes := []int{0, 1}
	for _, b := range []int{256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20} {
		sizes = append(sizes, b-1, b, b+1)
	}
	for _, n := range sizes {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(i*7 + n)
		}
		res, err := hn.client.Send(ctx, msg)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !bytes.Equal(res.Data, msg) || !res.Verified {
			t.Fatalf("%d bytes: got %d bytes back (verified %v)", n, len(res.Data), res.Verified)
		}
	}
}

// The last hop refuses a result whose padded, sealed reply would not fit in
// a frame, rather than send a frame the hop before it must refuse.
func TestLastHopBoundsPaddedReply(t *testing.T) {
	const limit = 1<<20 + 64<<10
	hn := identityNet(t, 2, NodeConfig{MaxFrameSize: limit})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// 1 MiB fits (its reply is 1 MiB plus 73 bytes); one byte more is
	// padded to the 2 MiB bucket, which does not.
	for _, tc := range []struct {
		n  int
		ok bool
	}{{1 << 20, true}, {1<<20 + 1, false}} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			msg := bytes.Repeat([]byte{1}, tc.n)
			res, err := hn.client.Send(ctx, msg)
			if tc.ok {
				if err != nil || !bytes.Equal(res.Data, msg) {
					t.Fatalf("Send: %v", err)
				}
				return
			}
			var he *HopError
			if !errors.As(err, &he) || he.Hop != 2 || !errors.Is(err, ErrProcessing) {
				t.Fatalf("got %v, want hop 2 to report ErrProcessing", err)
			}
		})
	}
}
