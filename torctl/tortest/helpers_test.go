package tortest_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/onionaddr"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// testCtx returns a context that ends with the test, with a generous
// deadline so that a bug fails the test instead of hanging it.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newNetwork(t *testing.T) *tortest.Network {
	t.Helper()
	n := tortest.NewNetwork(tortest.Config{})
	t.Cleanup(func() { n.Close() })
	return n
}

// echoServer listens on 127.0.0.1 and echoes every connection until the test
// ends. It returns the listen address.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func createOnion(t *testing.T, ctrl *tortest.Controller, target string) ghostcomm.Onion {
	t.Helper()
	o, err := ctrl.CreateOnion(testCtx(t), ghostcomm.OnionConfig{VirtualPort: 80, Target: target})
	if err != nil {
		t.Fatalf("CreateOnion: %v", err)
	}
	return o
}

// echoOnce writes msg on c and reads it back.
func echoOnce(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
}

// expectClosed checks that the peer of c has gone: a read ends with an error
// (EOF or reset) instead of data or a timeout.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	_, err := c.Read(b[:])
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("read on a cut connection: %v; want EOF or closed", err)
	}
}

// dialErr dials and requires a *DialError with the given code.
func dialErr(t *testing.T, d *tortest.Dialer, addr string, code byte) *tortest.DialError {
	t.Helper()
	c, err := d.DialContext(testCtx(t), "tcp", addr)
	if err == nil {
		c.Close()
		t.Fatalf("dial %s succeeded, want code 0x%02x", addr, code)
	}
	var de *tortest.DialError
	if !errors.As(err, &de) {
		t.Fatalf("dial %s: %T %v, want *DialError", addr, err, err)
	}
	if de.Code != code {
		t.Fatalf("dial %s: code 0x%02x (%v), want 0x%02x", addr, de.Code, err, code)
	}
	if de.Addr != addr {
		t.Fatalf("DialError.Addr = %q, want %q", de.Addr, addr)
	}
	return de
}

// randomID returns the service id of a fresh key: a well-formed address
// that no service has.
func randomID(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return onionaddr.ServiceID(pub)
}
