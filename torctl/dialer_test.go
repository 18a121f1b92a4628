package torctl

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
)

// fakeSOCKS is a SOCKS5 server (RFC 1928, no authentication, CONNECT only)
// that answers the i-th request with replies[i] (the last one repeats). On
// success (0x00) it echoes the stream.
type fakeSOCKS struct {
	l       net.Listener
	mu      sync.Mutex
	replies []byte
	hosts   []string // requested host:port, in order
	wg      sync.WaitGroup
}

func newFakeSOCKS(t *testing.T, replies ...byte) *fakeSOCKS {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeSOCKS{l: l, replies: replies}
	s.wg.Go(s.serve)
	t.Cleanup(func() {
		l.Close()
		s.wg.Wait()
	})
	return s
}

func (s *fakeSOCKS) addr() string { return s.l.Addr().String() }

func (s *fakeSOCKS) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.hosts...)
}

func (s *fakeSOCKS) serve() {
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.wg.Go(func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			s.handle(c)
		})
	}
}

func (s *fakeSOCKS) handle(c net.Conn) {
	var b [262]byte
	if _, err := io.ReadFull(c, b[:2]); err != nil || b[0] != 5 {
		return
	}
	if _, err := io.ReadFull(c, b[:b[1]]); err != nil {
		return
	}
	c.Write([]byte{5, 0}) // no authentication
	if _, err := io.ReadFull(c, b[:4]); err != nil || b[1] != 1 {
		return
	}
	var host string
	switch b[3] {
	case 1:
		io.ReadFull(c, b[:4])
		host = net.IP(b[:4]).String()
	case 3:
		io.ReadFull(c, b[:1])
		n := int(b[0])
		io.ReadFull(c, b[:n])
		host = string(b[:n])
	case 4:
		io.ReadFull(c, b[:16])
		host = net.IP(b[:16]).String()
	default:
		return
	}
	io.ReadFull(c, b[:2])
	port := int(b[0])<<8 | int(b[1])
	s.mu.Lock()
	i := len(s.hosts)
	s.hosts = append(s.hosts, net.JoinHostPort(host, strconv.Itoa(port)))
	reply := s.replies[min(i, len(s.replies)-1)]
	s.mu.Unlock()
	c.Write([]byte{5, reply, 0, 1, 0, 0, 0, 0, 0, 0})
	if reply == 0 {
		io.Copy(c, c)
	}
}

var testOnion = ghostcomm.Onion{ServiceID: ServiceID(ed25519.PublicKey(make([]byte, 32))), Port: 80}

func dialTimeoutCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestSOCKSReplyCodes pins how golang.org/x/net/proxy reports SOCKS failure
// replies ("unknown error <message>" and "unknown error unknown code: <n>"):
// every code must come back as a *SOCKSError with that code. An x/net
// upgrade that changes the format fails here.
func TestSOCKSReplyCodes(t *testing.T) {
	codes := []byte{1, 2, 3, 4, 5, 6, 7, 8, 0x09, 0x42, 0xEF}
	for c := SOCKSOnionNotFound; c <= SOCKSOnionIntroTimedOut; c++ {
		codes = append(codes, c)
	}
	for _, code := range codes {
		s := newFakeSOCKS(t, code)
		d, err := NewDialer(s.addr(), DialerConfig{RetryFor: -1})
		if err != nil {
			t.Fatal(err)
		}
		_, err = d.DialContext(dialTimeoutCtx(t), "tcp", testOnion.Addr())
		var se *SOCKSError
		if !errors.As(err, &se) || se.Code != code {
			t.Errorf("reply 0x%02X: error %v, want *SOCKSError{0x%02X}", code, err, code)
			continue
		}
		notFound, unreachable := errors.Is(err, ghostcomm.ErrOnionNotFound), errors.Is(err, ghostcomm.ErrOnionUnreachable)
		if code == SOCKSOnionNotFound {
			if !notFound || unreachable {
				t.Errorf("0xF0: ErrOnionNotFound %v, ErrOnionUnreachable %v", notFound, unreachable)
			}
		} else if notFound || !unreachable {
			t.Errorf("0x%02X: ErrOnionNotFound %v, ErrOnionUnreachable %v", code, notFound, unreachable)
		}
	}
}

func TestSOCKSErrorText(t *testing.T) {
	for code, want := range map[byte]string{
		0xF0: "tor SOCKS reply 0xF0: onion service descriptor can not be found",
		0xF4: "tor SOCKS reply 0xF4: onion service client authorization missing",
		0x05: "tor SOCKS reply 0x05: connection refused",
		0x99: "tor SOCKS reply 0x99: unknown reply",
	} {
		if got := (&SOCKSError{Code: code}).Error(); got != want {
			t.Errorf("0x%02X: %q, want %q", code, got, want)
		}
	}
}

func TestDialSucceedsAndSendsOnionName(t *testing.T) {
	s := newFakeSOCKS(t, 0)
	d, err := NewDialer(s.addr(), DialerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.DialContext(dialTimeoutCtx(t), "tcp", testOnion.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	// The onion name goes to tor as a name: nothing is resolved locally.
	if got := s.requests(); len(got) != 1 || got[0] != testOnion.Addr() {
		t.Errorf("SOCKS requests %v, want [%s]", got, testOnion.Addr())
	}
}

func TestDialRetries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		replies  []byte
		ok       bool
		attempts int
	}{
		{"descriptor propagates", []byte{0xF0, 0xF0, 0}, true, 3},
		{"intro, rendezvous, timeout", []byte{0xF2, 0xF3, 0xF7, 0}, true, 4},
		{"missing client auth is final", []byte{0xF4, 0}, false, 1},
		{"wrong client auth is final", []byte{0xF5, 0}, false, 1},
		{"bad address is final", []byte{0xF6, 0}, false, 1},
		{"invalid descriptor is final", []byte{0xF1, 0}, false, 1},
		{"general failure is final", []byte{0x01, 0}, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFakeSOCKS(t, tc.replies...)
			d, err := NewDialer(s.addr(), DialerConfig{RetryInterval: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			c, err := d.DialContext(dialTimeoutCtx(t), "tcp", testOnion.Addr())
			if c != nil {
				c.Close()
			}
			if (err == nil) != tc.ok {
				t.Errorf("err = %v, want success %v", err, tc.ok)
			}
			if n := len(s.requests()); n != tc.attempts {
				t.Errorf("%d attempts, want %d", n, tc.attempts)
			}
		})
	}
}

// TestDialRetryEndsWithCtx: retries stop when ctx ends; the error matches
// both ctx's error and the last SOCKS failure.
func TestDialRetryEndsWithCtx(t *testing.T) {
	s := newFakeSOCKS(t, 0xF0)
	d, err := NewDialer(s.addr(), DialerConfig{RetryInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = d.DialContext(ctx, "tcp", testOnion.Addr())
	var se *SOCKSError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ghostcomm.ErrOnionNotFound) || !errors.As(err, &se) {
		t.Fatalf("err = %v, want DeadlineExceeded and ErrOnionNotFound", err)
	}
	if n := len(s.requests()); n < 2 {
		t.Errorf("%d attempts, want retries", n)
	}
}

// lateCtx has a deadline that has passed but says it is not done yet, as a
// context does for a moment after its deadline, before its timer fires.
type lateCtx struct{ context.Context }

func (lateCtx) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// TestDialDeadlineBeforeCtxDone: a dial that fails by the caller's deadline
// before the context says so is still the caller's deadline.
func TestDialDeadlineBeforeCtxDone(t *testing.T) {
	s := newFakeSOCKS(t, 0)
	d, err := NewDialer(s.addr(), DialerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.DialContext(lateCtx{context.Background()}, "tcp", testOnion.Addr())
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ghostcomm.ErrOnionUnreachable) {
		t.Fatalf("err = %v, want DeadlineExceeded and not ErrOnionUnreachable", err)
	}
}

// TestDialRetryFor: RetryFor bounds the retries even without a ctx deadline.
func TestDialRetryFor(t *testing.T) {
	s := newFakeSOCKS(t, 0xF0)
	d, err := NewDialer(s.addr(), DialerConfig{RetryFor: 100 * time.Millisecond, RetryInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.DialContext(context.Background(), "tcp", testOnion.Addr())
	var se *SOCKSError
	if !errors.As(err, &se) || se.Code != SOCKSOnionNotFound || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the 0xF0 SOCKSError", err)
	}
	if n := len(s.requests()); n < 2 {
		t.Errorf("%d attempts, want retries", n)
	}
}

func TestDialRefusesNonOnion(t *testing.T) {
	s := newFakeSOCKS(t, 0)
	d, err := NewDialer(s.addr(), DialerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := dialTimeoutCtx(t)
	for _, addr := range []string{"example.com:80", "127.0.0.1:80", "[::1]:80", "onion:80", ".onion:80", "x.onion.example:80"} {
		if _, err := d.DialContext(ctx, "tcp", addr); !errors.Is(err, ErrNotOnion) {
			t.Errorf("dial %s: %v, want ErrNotOnion", addr, err)
		}
	}
	for _, network := range []string{"udp", "unix", "ip"} {
		if _, err := d.DialContext(ctx, network, testOnion.Addr()); err == nil {
			t.Errorf("network %s accepted", network)
		}
	}
	if _, err := d.DialContext(ctx, "tcp", "no-port.onion"); err == nil {
		t.Error("address without port accepted")
	}
	if n := len(s.requests()); n != 0 {
		t.Fatalf("refused dials reached the SOCKS server: %v", s.requests())
	}

	allow, err := NewDialer(s.addr(), DialerConfig{AllowNonOnion: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := allow.DialContext(ctx, "tcp", "127.0.0.1:80")
	if err != nil {
		t.Fatalf("AllowNonOnion: %v", err)
	}
	c.Close()
	// Upper case and a trailing dot are still onion addresses.
	up := strings.ToUpper(testOnion.ServiceID) + ".ONION.:80"
	if c, err := d.DialContext(ctx, "tcp", up); err != nil {
		t.Errorf("dial %s: %v", up, err)
	} else {
		c.Close()
	}
}

func TestDialProxyDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	d, err := NewDialer(addr, DialerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.DialContext(dialTimeoutCtx(t), "tcp", testOnion.Addr())
	var se *SOCKSError
	if !errors.Is(err, ghostcomm.ErrOnionUnreachable) || errors.As(err, &se) {
		t.Fatalf("err = %v, want ErrOnionUnreachable without a SOCKSError", err)
	}
}

func TestNewDialerValidates(t *testing.T) {
	for _, addr := range []string{"", "127.0.0.1", ":9050", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x"} {
		var ce *ConfigError
		if _, err := NewDialer(addr, DialerConfig{}); !errors.As(err, &ce) {
			t.Errorf("NewDialer(%q) = %v, want *ConfigError", addr, err)
		}
	}
	var ce *ConfigError
	if _, err := NewDialer("127.0.0.1:9050", DialerConfig{RetryInterval: -1}); !errors.As(err, &ce) {
		t.Errorf("negative RetryInterval: %v", err)
	}
}

func TestSocksReplyParser(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code byte
		ok   bool
	}{
		{&net.OpError{Op: "socks connect", Err: errors.New("unknown error unknown code: 240")}, 0xF0, true},
		{&net.OpError{Op: "socks connect", Err: errors.New("unknown error host unreachable")}, 0x04, true},
		{&net.OpError{Op: "socks connect", Err: errors.New("unknown error unknown code: 999")}, 0, false},
		{&net.OpError{Op: "socks connect", Err: errors.New("unknown error something new")}, 0, false},
		{&net.OpError{Op: "dial", Err: errors.New("unknown error unknown code: 240")}, 0, false},
		{&net.OpError{Op: "socks connect", Err: errors.New("connection refused")}, 0, false},
		{errors.New("unknown error unknown code: 240"), 0, false},
		{nil, 0, false},
	} {
		code, ok := socksReply(tc.err)
		if code != tc.code || ok != tc.ok {
			t.Errorf("socksReply(%v) = 0x%02X, %v; want 0x%02X, %v", tc.err, code, ok, tc.code, tc.ok)
		}
	}
}
