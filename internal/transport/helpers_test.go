package transport

// Helpers shared by the server and pool tests: loopback listeners, raw
// streams driven with internal/wire, event-driven waits and a goroutine
// count that must settle.

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// waitLimit bounds every wait in these tests. It is generous on purpose: a
// test fails because something never happens, not because it was slow.
const waitLimit = 10 * time.Second

// waitFor polls cond until it holds, failing the test after waitLimit.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testCtx returns a context that ends after waitLimit, or with the test.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// listen returns a TCP listener on 127.0.0.1.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// baseServerConfig is a valid ServerConfig for tests to adjust.
func baseServerConfig() ServerConfig {
	return ServerConfig{
		MaxFrame:      64 << 10,
		MaxConcurrent: 8,
		MaxConns:      64,
		MaxInflight:   4 << 20,
		IdleTimeout:   time.Hour,
		IOTimeout:     5 * time.Second,
	}
}

// startServer serves a new loopback listener with h and returns the server
// and its address. The server is closed when the test ends.
func startServer(t testing.TB, h Handler, cfg ServerConfig) (*Server, string) {
	t.Helper()
	ln := listen(t)
	s := NewServer(ln, h, cfg)
	t.Cleanup(func() { s.Close() })
	return s, ln.Addr().String()
}

// echo answers every request with a Reply carrying its body.
func echo(_ context.Context, r *Request) (wire.Type, [][]byte) {
	return wire.Reply, [][]byte{r.Body}
}

// dialRaw opens a stream to addr that the test drives frame by frame.
func dialRaw(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// send writes one frame on c.
func send(t testing.TB, c net.Conn, typ wire.Type, id uint32, body []byte) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(waitLimit))
	if err := wire.WriteFrame(c, typ, id, body); err != nil {
		t.Fatalf("writing a %v frame: %v", typ, err)
	}
}

// sendRaw writes bytes on c as they are.
func sendRaw(t testing.TB, c net.Conn, b []byte) {
	t.Helper()
	c.SetWriteDeadline(time.Now().Add(waitLimit))
	if _, err := c.Write(b); err != nil {
		t.Fatalf("writing %d bytes: %v", len(b), err)
	}
}

// header encodes a frame header announcing n body bytes.
func header(typ wire.Type, id uint32, n int) []byte {
	return wire.Header{Type: typ, ID: id, Len: uint32(n)}.Append(nil)
}

// recv reads one frame from c.
func recv(t testing.TB, c net.Conn) (wire.Header, []byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitLimit))
	h, body, err := wire.ReadFrame(c, 16<<20)
	if err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	return h, body
}

// expectFrame reads one frame and checks its type, id and body.
func expectFrame(t testing.TB, c net.Conn, typ wire.Type, id uint32, body []byte) {
	t.Helper()
	h, b := recv(t, c)
	if h.Type != typ || h.ID != id || string(b) != string(body) {
		t.Fatalf("got %v id %d body %q; want %v id %d body %q", h.Type, h.ID, trim(b), typ, id, trim(body))
	}
}

func trim(b []byte) []byte {
	if len(b) > 16 {
		return b[:16]
	}
	return b
}

// expectClosed checks that the peer closes c: reads end with an error other
// than a timeout, within waitLimit. Frames still on the way are skipped.
func expectClosed(t testing.TB, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitLimit))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the stream was not closed")
		}
		return
	}
}

// alive checks that the server still serves c, with a ping.
func alive(t testing.TB, c net.Conn, id uint32) {
	t.Helper()
	send(t, c, wire.Ping, id, nil)
	expectFrame(t, c, wire.Pong, id, nil)
}

// goroutines returns a check, to run at the end of a test, that the number
// of goroutines settles back to what it is now.
func goroutines(t testing.TB) func() {
	t.Helper()
	before := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(waitLimit)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
				t.Fatalf("%d goroutines left running, %d before", runtime.NumGoroutine(), before)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// fakePeer is a peer for a Pool that the test scripts: serve runs for each
// stream accepted, with the stream's number (1, 2, ...).
type fakePeer struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	n    int
	open []net.Conn
}

func newFakePeer(t testing.TB, serve func(n int, c net.Conn)) *fakePeer {
	t.Helper()
	ln := listen(t)
	f := &fakePeer{addr: ln.Addr().String(), ln: ln}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.n++
			n := f.n
			f.open = append(f.open, c)
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				serve(n, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.open {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

// streams returns how many streams the peer accepted.
func (f *fakePeer) streams() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// tcpDial is a Pool's Dial over loopback TCP.
func tcpDial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// newTestPool returns a pool closed when the test ends. A nil Dial dials TCP.
func newTestPool(t testing.TB, cfg PoolConfig) *Pool {
	t.Helper()
	if cfg.Dial == nil {
		cfg.Dial = tcpDial
	}
	if cfg.MaxFrame == 0 {
		cfg.MaxFrame = 64 << 10
	}
	p := NewPool(cfg)
	t.Cleanup(p.Close)
	return p
}
