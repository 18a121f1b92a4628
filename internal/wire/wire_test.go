package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/ghostcomm/ghostcomm/internal/errs"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, Reply, 42, []byte("ab"), nil, []byte("c")); err != nil {
		t.Fatal(err)
	}
	want := []byte{Version, byte(Reply), 0, 0, 0, 42, 0, 0, 0, 3, 'a', 'b', 'c'}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("frame %x, want %x", buf.Bytes(), want)
	}
	h, body, err := ReadFrame(&buf, 3)
	if err != nil || h != (Header{Type: Reply, ID: 42, Len: 3}) || string(body) != "abc" {
		t.Fatalf("read back %+v %q %v", h, body, err)
	}
	if _, _, err := ReadFrame(&buf, 3); err != io.EOF {
		t.Fatalf("at a frame boundary: %v, want io.EOF", err)
	}
}

func TestReadFrameErrors(t *testing.T) {
	full := Header{Type: Message, ID: 1, Len: 4}.Append(nil)
	full = append(full, 1, 2, 3, 4)
	for _, tc := range []struct {
		name string
		in   []byte
		max  int
		want error
	}{
		{"short header", full[:5], 10, errs.ErrMalformed},
		{"short body", full[:12], 10, errs.ErrMalformed},
		{"version", append([]byte{2}, full[1:]...), 10, errs.ErrUnsupportedVersion},
		{"too large", full, 3, errs.ErrFrameTooLarge},
	} {
		if _, _, err := ReadFrame(bytes.NewReader(tc.in), tc.max); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestParseMsg(t *testing.T) {
	m := &Msg{BudgetMS: 9, Layer: []byte("L"), Data: []byte("DD")}
	b := bytes.Join(m.Parts(), nil)
	got, err := ParseMsg(b)
	if err != nil || got.BudgetMS != 9 || string(got.Layer) != "L" || string(got.Data) != "DD" {
		t.Fatalf("%+v %v", got, err)
	}
	for _, bad := range [][]byte{b[:7], b[:9], {0, 0, 0, 0, 0, 0, 0, 0, 1}, {0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1}} {
		if _, err := ParseMsg(bad); !errors.Is(err, errs.ErrMalformed) {
			t.Errorf("%x: %v, want ErrMalformed", bad, err)
		}
	}
}

func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	WriteFrame(&buf, Message, 7, []byte("body"))
	f.Add(buf.Bytes())
	f.Add(Header{Type: Reply, ID: 1, Len: 1 << 30}.Append(nil))
	f.Add([]byte{Version})
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 1 << 16
		h, body, err := ReadFrame(bytes.NewReader(b), max)
		if err != nil {
			if !errors.Is(err, errs.ErrMalformed) && !errors.Is(err, errs.ErrUnsupportedVersion) &&
				!errors.Is(err, errs.ErrFrameTooLarge) && !errors.Is(err, io.EOF) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if int(h.Len) != len(body) || len(body) > max {
			t.Fatalf("header says %d bytes, body has %d", h.Len, len(body))
		}
		var out bytes.Buffer
		if err := WriteFrame(&out, h.Type, h.ID, body); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), b[:HeaderSize+len(body)]) {
			t.Fatal("frame does not round-trip")
		}
	})
}

func FuzzParseMsg(f *testing.F) {
	m := &Msg{BudgetMS: 1000, Layer: []byte("layer"), Data: []byte("data")}
	f.Add(bytes.Join(m.Parts(), nil))
	f.Add([]byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMsg(b)
		if err != nil {
			if !errors.Is(err, errs.ErrMalformed) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if !bytes.Equal(bytes.Join(m.Parts(), nil), b) {
			t.Fatal("message does not round-trip")
		}
	})
}

// Every frame type has its own name, and the first unused one says so.
func TestTypeNames(t *testing.T) {
	seen := map[string]Type{}
	for typ := PayloadRequest; typ <= SealedReply; typ++ {
		name := typ.String()
		if strings.HasPrefix(name, "frame-type-") {
			t.Errorf("type %d has no name", typ)
		}
		if prev, dup := seen[name]; dup {
			t.Errorf("types %d and %d are both %q", prev, typ, name)
		}
		seen[name] = typ
	}
	if SealedPacket.String() != "sealed-packet" || SealedReply.String() != "sealed-reply" {
		t.Errorf("sealed frames named %q, %q", SealedPacket, SealedReply)
	}
	if got := (SealedReply + 1).String(); got != "frame-type-15" {
		t.Errorf("unused type named %q", got)
	}
}

// writeCounter records each Write it is handed.
type writeCounter struct{ writes [][]byte }

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, bytes.Clone(p))
	return len(p), nil
}

// A frame up to CoalesceMax goes to the writer in one Write, whatever the
// writer is (a Write per part would be a segment per part on a stream
// without Nagle's algorithm); a larger one arrives whole too.
func TestWriteFrameOneWrite(t *testing.T) {
	for _, n := range []int{0, 1, 1 << 10, CoalesceMax - HeaderSize, CoalesceMax - HeaderSize + 1, 1 << 20} {
		a := bytes.Repeat([]byte{0xa1}, n/3)
		b := bytes.Repeat([]byte{0xb2}, n-n/3-n/5)
		c := bytes.Repeat([]byte{0xc3}, n/5)
		var w writeCounter
		if err := WriteFrame(&w, Message, 7, a, nil, b, c); err != nil {
			t.Fatal(err)
		}
		if HeaderSize+n <= CoalesceMax && len(w.writes) != 1 {
			t.Errorf("%d-byte body: %d writes, want 1", n, len(w.writes))
		}
		h, body, err := ReadFrame(bytes.NewReader(bytes.Join(w.writes, nil)), 1<<21)
		if err != nil || h != (Header{Type: Message, ID: 7, Len: uint32(n)}) || !bytes.Equal(body, bytes.Join([][]byte{a, b, c}, nil)) {
			t.Errorf("%d-byte body: read back %+v, %d bytes, %v", n, h, len(body), err)
		}
	}
}

// Frames written at once by many goroutines each arrive intact: the pooled
// buffer one WriteFrame fills is never another's.
func TestWriteFrameConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				n := (g*200 + i) % 3000
				body := bytes.Repeat([]byte{byte(g)}, n)
				var w writeCounter
				if err := WriteFrame(&w, Reply, uint32(i), body[:n/2], body[n/2:]); err != nil {
					t.Error(err)
					return
				}
				h, got, err := ReadFrame(bytes.NewReader(bytes.Join(w.writes, nil)), 1<<12)
				if err != nil || h.ID != uint32(i) || !bytes.Equal(got, body) {
					t.Errorf("goroutine %d frame %d: %+v, %v", g, i, h, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// An echo request asks for the first back bytes of what it carries: an
// empty one is an empty Ping (answered by an empty Pong); a body too short
// for its prefix, or asking for more than it carries, is malformed.
func TestPingBody(t *testing.T) {
	if b := PingBody(nil, 0); b != nil {
		t.Fatalf("PingBody(nil, 0) = %x; want nil", b)
	}
	for _, c := range []struct {
		out  string
		back int
	}{{"abc", 0}, {"abc", 2}, {"abc", 3}} {
		b := PingBody([]byte(c.out), c.back)
		if len(b) != EchoPrefix+len(c.out) {
			t.Fatalf("PingBody(%q, %d) is %d bytes", c.out, c.back, len(b))
		}
		got, err := PongBody(b)
		if err != nil || string(got) != c.out[:c.back] {
			t.Fatalf("PongBody(PingBody(%q, %d)) = %q, %v", c.out, c.back, got, err)
		}
	}
	for _, bad := range [][]byte{{0}, {0, 0, 0}, {0, 0, 0, 1}, {0, 0, 0, 3, 'a', 'b'}, {0xff, 0xff, 0xff, 0xff, 'a'}} {
		if _, err := PongBody(bad); !errors.Is(err, errs.ErrMalformed) {
			t.Errorf("PongBody(%x): %v; want ErrMalformed", bad, err)
		}
	}
}

func FuzzPongBody(f *testing.F) {
	f.Add([]byte{})
	f.Add(PingBody([]byte("hello"), 3))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		back, err := PongBody(b)
		if err != nil {
			if !errors.Is(err, errs.ErrMalformed) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if len(b) == 0 {
			if len(back) != 0 {
				t.Fatalf("an empty ping answered with %d bytes", len(back))
			}
			return
		}
		if !bytes.Equal(back, b[EchoPrefix:EchoPrefix+len(back)]) {
			t.Fatal("the pong is not the start of what the ping carried")
		}
		if len(b) > EchoPrefix && !bytes.Equal(PingBody(b[EchoPrefix:], len(back)), b) {
			t.Fatal("echo does not round-trip")
		}
	})
}
