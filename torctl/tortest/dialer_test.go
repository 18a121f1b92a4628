package tortest_test

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

func TestDialEcho(t *testing.T) {
	n := newNetwork(t)
	o := createOnion(t, n.Controller(), echoServer(t))
	// Upper case works, as host names are case-insensitive.
	addr := strings.ToUpper(o.ServiceID) + ".onion:80"
	c, err := n.Dialer().DialContext(testCtx(t), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RemoteAddr(); got.String() != o.Addr() || got.Network() != "onion" {
		t.Fatalf("RemoteAddr = %s %s, want onion %s", got.Network(), got, o.Addr())
	}
	echoOnce(t, c, "one")
	echoOnce(t, c, "two")
	if s := n.Stats(o.ServiceID); s != (tortest.OnionStats{Dials: 1, Conns: 1, Open: 1}) {
		t.Fatalf("stats %+v", s)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c.Close() // a second Close must not count twice
	if s := n.Stats(o.ServiceID + ".onion"); s != (tortest.OnionStats{Dials: 1, Conns: 1, Open: 0}) {
		t.Fatalf("stats after Close %+v", s)
	}
	if _, ok := c.(interface{ CloseWrite() error }); ok {
		t.Fatal("connection offers CloseWrite, which tor streams do not support")
	}
}

func TestDialNotFound(t *testing.T) {
	n := newNetwork(t)
	ctrl := n.Controller()
	d := n.Dialer()
	removed := createOnion(t, ctrl, echoServer(t))
	if err := ctrl.RemoveOnion(testCtx(t), removed.ServiceID); err != nil {
		t.Fatal(err)
	}
	live := createOnion(t, ctrl, echoServer(t))
	for name, addr := range map[string]string{
		"unknown":    randomID(t) + ".onion:80",
		"removed":    removed.Addr(),
		"wrong port": live.ServiceID + ".onion:81",
	} {
		t.Run(name, func(t *testing.T) {
			de := dialErr(t, d, addr, tortest.CodeOnionNotFound)
			if !errors.Is(de, ghostcomm.ErrOnionNotFound) || errors.Is(de, ghostcomm.ErrOnionUnreachable) {
				t.Fatalf("%v: want ErrOnionNotFound only", de)
			}
		})
	}
	if s := n.Stats(removed.ServiceID); s.Dials != 1 || s.Conns != 0 {
		t.Fatalf("stats of the removed service %+v", s)
	}
}

func TestDialBadAddresses(t *testing.T) {
	n := newNetwork(t)
	d := n.Dialer()
	id := randomID(t)
	cases := []struct {
		name, network, addr string
		code                byte
		badAddr             bool
	}{
		{"short onion", "tcp", "abc.onion:80", tortest.CodeBadAddress, true},
		{"bad checksum", "tcp", "btojiu7nu5y5iwut64eufevogqdw4wmqzugnoluw232r4t3ecsfv37ad.onion:80", tortest.CodeBadAddress, true},
		{"port 0", "tcp", id + ".onion:0", tortest.CodeBadAddress, true},
		{"port too big", "tcp", id + ".onion:70000", tortest.CodeBadAddress, true},
		{"no port", "tcp", id + ".onion", tortest.CodeBadAddress, true},
		{"clearnet name", "tcp", "example.com:80", tortest.CodeNotAllowed, false},
		{"ip address", "tcp", "127.0.0.1:80", tortest.CodeNotAllowed, false},
		{"bare id", "tcp", id + ":80", tortest.CodeNotAllowed, false},
		{"udp", "udp", id + ".onion:80", tortest.CodeCommandNotSupported, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := d.DialContext(testCtx(t), c.network, c.addr)
			var de *tortest.DialError
			if !errors.As(err, &de) || de.Code != c.code {
				t.Fatalf("dial %s %q: %v, want code 0x%02x", c.network, c.addr, err, c.code)
			}
			if !errors.Is(err, ghostcomm.ErrOnionUnreachable) || errors.Is(err, ghostcomm.ErrOnionNotFound) {
				t.Fatalf("%v: want ErrOnionUnreachable only", err)
			}
			if errors.Is(err, tortest.ErrBadAddress) != c.badAddr {
				t.Fatalf("%v: matches ErrBadAddress = %v, want %v", err, !c.badAddr, c.badAddr)
			}
		})
	}
}

func TestDialTargetRefused(t *testing.T) {
	n := newNetwork(t)
	o := createOnion(t, n.Controller(), closedPort(t))
	de := dialErr(t, n.Dialer(), o.Addr(), tortest.CodeConnectionRefused)
	if !errors.Is(de, ghostcomm.ErrOnionUnreachable) {
		t.Fatalf("%v", de)
	}
}

func TestClientAuthPublicKeyRFC7748(t *testing.T) {
	// RFC 7748, section 6.1: Alice's key pair.
	priv, _ := hex.DecodeString("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
	pub := tortest.ClientAuthPublicKey([32]byte(priv))
	if got := hex.EncodeToString(pub[:]); got != "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a" {
		t.Fatalf("public key %s", got)
	}
}

func TestDialClientAuth(t *testing.T) {
	n := newNetwork(t)
	alice, mallory := [32]byte{1, 2, 3}, [32]byte{4, 5, 6}
	o, err := n.Controller().CreateOnion(testCtx(t), ghostcomm.OnionConfig{
		VirtualPort: 80,
		Target:      echoServer(t),
		ClientAuth:  [][32]byte{{9}, tortest.ClientAuthPublicKey(alice)},
	})
	if err != nil {
		t.Fatal(err)
	}
	d := n.Dialer()
	de := dialErr(t, d, o.Addr(), tortest.CodeMissingClientAuth)
	if !errors.Is(de, ghostcomm.ErrOnionUnreachable) {
		t.Fatalf("%v", de)
	}
	if err := d.AddClientAuth(context.Background(), o.ServiceID, mallory); err != nil {
		t.Fatal(err)
	}
	dialErr(t, d, o.Addr(), tortest.CodeWrongClientAuth)

	// Replace the key; the ".onion" form names the same service.
	if err := d.AddClientAuth(context.Background(), o.ServiceID+".onion", alice); err != nil {
		t.Fatal(err)
	}
	c, err := d.DialContext(testCtx(t), "tcp", o.Addr())
	if err != nil {
		t.Fatalf("authorized dial: %v", err)
	}
	echoOnce(t, c, "authorized")
	c.Close()

	// Keys are per Dialer.
	dialErr(t, n.Dialer(), o.Addr(), tortest.CodeMissingClientAuth)
	d.RemoveClientAuth(o.ServiceID)
	dialErr(t, d, o.Addr(), tortest.CodeMissingClientAuth)

	if err := d.AddClientAuth(context.Background(), "not-an-onion", alice); !errors.Is(err, tortest.ErrBadAddress) {
		t.Fatalf("AddClientAuth with a bad id: %v", err)
	}
}

func TestDialCanceledDuringLatency(t *testing.T) {
	n := newNetwork(t)
	o := createOnion(t, n.Controller(), echoServer(t))
	entered := make(chan string, 1)
	n.SetDialLatency(func(addr string) time.Duration {
		entered <- addr
		return time.Hour
	})
	ctx, cancel := context.WithCancel(testCtx(t))
	errc := make(chan error, 1)
	go func() {
		_, err := n.Dialer().DialContext(ctx, "tcp", strings.ToUpper(o.Addr()))
		errc <- err
	}()
	if got := <-entered; got != o.Addr() {
		t.Fatalf("latency hook got %q, want the normalized %q", got, o.Addr())
	}
	cancel()
	err := <-errc
	var de *tortest.DialError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &de) || de.Code != 0 || de.Timeout() {
		t.Fatalf("canceled dial: %v", err)
	}
	if errors.Is(err, ghostcomm.ErrOnionNotFound) || errors.Is(err, ghostcomm.ErrOnionUnreachable) {
		t.Fatalf("canceled dial matches an onion sentinel: %v", err)
	}
	if s := n.Stats(o.ServiceID); s.Dials != 1 || s.Conns != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDialDeadlineDuringLatency(t *testing.T) {
	n := newNetwork(t)
	o := createOnion(t, n.Controller(), echoServer(t))
	n.SetDialLatency(func(string) time.Duration { return time.Hour })
	ctx, cancel := context.WithTimeout(testCtx(t), 10*time.Millisecond)
	defer cancel()
	_, err := n.Dialer().DialContext(ctx, "tcp", o.Addr())
	var de *tortest.DialError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &de) || !de.Timeout() {
		t.Fatalf("dial past its deadline: %v", err)
	}
	// Latency removed: the same dial works.
	n.SetDialLatency(nil)
	c, err := n.Dialer().DialContext(testCtx(t), "tcp", o.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestDialAlreadyCanceled(t *testing.T) {
	n := newNetwork(t)
	o := createOnion(t, n.Controller(), echoServer(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := n.Dialer().DialContext(ctx, "tcp", o.Addr()); !errors.Is(err, context.Canceled) {
		t.Fatalf("dial with a canceled ctx: %v", err)
	}
}

func TestCloseDuringLatency(t *testing.T) {
	n := tortest.NewNetwork(tortest.Config{})
	o := createOnion(t, n.Controller(), echoServer(t))
	entered := make(chan struct{})
	n.SetDialLatency(func(string) time.Duration {
		close(entered)
		return time.Hour
	})
	errc := make(chan error, 1)
	go func() {
		_, err := n.Dialer().DialContext(testCtx(t), "tcp", o.Addr())
		errc <- err
	}()
	<-entered
	n.Close()
	if err := <-errc; !errors.Is(err, ghostcomm.ErrOnionNotFound) {
		t.Fatalf("dial cut by Close: %v", err)
	}
}

func TestDialHook(t *testing.T) {
	n := newNetwork(t)
	o := createOnion(t, n.Controller(), echoServer(t))
	d := n.Dialer()
	injected := errors.New("injected")
	var hookErr atomic.Value // error to return
	n.SetDialHook(func(addr string) error {
		if addr != o.Addr() {
			return errors.New("hook got " + addr)
		}
		if e, ok := hookErr.Load().(error); ok {
			return e
		}
		return nil
	})
	hookErr.Store(ghostcomm.ErrOnionNotFound)
	dialErr(t, d, o.Addr(), tortest.CodeOnionNotFound)

	hookErr.Store(ghostcomm.ErrOnionUnreachable)
	dialErr(t, d, o.Addr(), tortest.CodeIntroFailed)

	hookErr.Store(injected)
	de := dialErr(t, d, o.Addr(), tortest.CodeGeneralFailure)
	if !errors.Is(de, injected) || !errors.Is(de, ghostcomm.ErrOnionUnreachable) {
		t.Fatalf("%v: want the injected error and ErrOnionUnreachable", de)
	}
	n.SetDialHook(nil)
	c, err := d.DialContext(testCtx(t), "tcp", o.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if s := n.Stats(o.ServiceID); s.Dials != 4 || s.Conns != 1 {
		t.Fatalf("stats %+v, want 4 dials, 1 connection", s)
	}
}

func TestPartitionHealSever(t *testing.T) {
	n := newNetwork(t)
	o := createOnion(t, n.Controller(), echoServer(t))
	d := n.Dialer()
	c, err := d.DialContext(testCtx(t), "tcp", o.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	n.Partition(o.ServiceID + ".onion")
	de := dialErr(t, d, o.Addr(), tortest.CodeIntroFailed)
	if !errors.Is(de, ghostcomm.ErrOnionUnreachable) {
		t.Fatalf("%v", de)
	}
	echoOnce(t, c, "still open") // Partition leaves open connections

	if got := n.Sever(o.ServiceID); got != 1 {
		t.Fatalf("Sever closed %d connections, want 1", got)
	}
	expectClosed(t, c)
	if got := n.Sever(o.ServiceID); got != 0 {
		t.Fatalf("second Sever closed %d", got)
	}

	n.Heal(o.ServiceID)
	c2, err := d.DialContext(testCtx(t), "tcp", o.Addr())
	if err != nil {
		t.Fatalf("dial after Heal: %v", err)
	}
	echoOnce(t, c2, "healed")
	c2.Close()
	if s := n.Stats(o.ServiceID); s != (tortest.OnionStats{Dials: 3, Conns: 2, Open: 0}) {
		t.Fatalf("stats %+v", s)
	}
}

// flipConn inverts every byte written, like a corrupting link.
type flipConn struct{ net.Conn }

func (c flipConn) Write(p []byte) (int, error) {
	q := make([]byte, len(p))
	for i, b := range p {
		q[i] = ^b
	}
	return c.Conn.Write(q)
}

func TestWrapConn(t *testing.T) {
	n := newNetwork(t)
	o := createOnion(t, n.Controller(), echoServer(t))
	var wrapped atomic.Int32
	n.SetWrapConn(func(addr string, c net.Conn) net.Conn {
		if addr == o.Addr() {
			wrapped.Add(1)
		}
		return flipConn{c}
	})
	c, err := n.Dialer().DialContext(testCtx(t), "tcp", o.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte{0x00, 0x0f}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if got[0] != 0xff || got[1] != 0xf0 || wrapped.Load() != 1 {
		t.Fatalf("echo through the corrupting wrapper = %x (wrapped %d times)", got, wrapped.Load())
	}
	n.SetWrapConn(nil)
	c2, err := n.Dialer().DialContext(testCtx(t), "tcp", o.Addr())
	if err != nil {
		t.Fatal(err)
	}
	echoOnce(t, c2, "plain")
	c2.Close()
}

// Many controllers and dialers at once, with hooks changing under them and
// services removed while dials are in flight. Run with -race.
func TestConcurrentCreatesAndDials(t *testing.T) {
	n := newNetwork(t)
	target := echoServer(t)
	ctx := testCtx(t)
	const workers, rounds = 8, 10

	stop := make(chan struct{})
	var churn sync.WaitGroup
	churn.Add(1)
	go func() { // flips hooks while traffic flows
		defer churn.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				n.SetDialLatency(func(string) time.Duration { return time.Microsecond })
				n.SetWrapConn(func(_ string, c net.Conn) net.Conn { return c })
			} else {
				n.SetDialLatency(nil)
				n.SetWrapConn(nil)
			}
			n.Partition("nobody")
			n.Heal("nobody")
			_ = n.Onions()
			time.Sleep(time.Millisecond)
		}
	}()

	var wg sync.WaitGroup
	errc := make(chan error, workers*rounds*2)
	ctrls := make([]*tortest.Controller, workers)
	for w := range workers {
		ctrls[w] = n.Controller()
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctrl, d := ctrls[w], n.Dialer()
			for range rounds {
				o, err := ctrl.CreateOnion(ctx, ghostcomm.OnionConfig{VirtualPort: 80, Target: target})
				if err != nil {
					errc <- err
					return
				}
				c, err := d.DialContext(ctx, "tcp", o.Addr())
				if err != nil {
					errc <- err
					return
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, "x"); err != nil {
					errc <- err
				}
				b := make([]byte, 1)
				if _, err := io.ReadFull(c, b); err != nil {
					errc <- err
				}
				// Remove while another dial is in flight: it either
				// connects or finds nothing.
				var inflight sync.WaitGroup
				inflight.Add(1)
				go func() {
					defer inflight.Done()
					c2, err := d.DialContext(ctx, "tcp", o.Addr())
					if err == nil {
						c2.Close()
					} else if !errors.Is(err, ghostcomm.ErrOnionNotFound) {
						errc <- err
					}
				}()
				if err := ctrl.RemoveOnion(ctx, o.ServiceID); err != nil {
					errc <- err
				}
				inflight.Wait()
				c.Close()
				if s := n.Stats(o.ServiceID); s.Open != 0 || s.Dials != 2 {
					errc <- errors.New("stats after round: open connections left or dials miscounted")
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	churn.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if got := n.Onions(); len(got) != 0 {
		t.Fatalf("services left: %v", got)
	}
}
