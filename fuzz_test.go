package ghostcomm

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/layer"
	"github.com/ghostcomm/ghostcomm/internal/onionaddr"
)

// Fuzz targets for every parser of network input. Each checks: no panic,
// only typed errors, and that what parses marshals back to the same bytes.

func isTyped(err error) bool {
	for _, e := range []error{ErrMalformed, ErrUnsupportedVersion, ErrFrameTooLarge, ErrAuth, ErrBadInvite} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	writeFrame(&buf, frameMessage, 7, []byte("body"))
	f.Add(buf.Bytes())
	f.Add(frameHeader{typ: frameReply, id: 1, len: 1 << 30}.append(nil))
	f.Add([]byte{frameVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 1 << 16
		h, body, err := readFrame(bytes.NewReader(b), max)
		if err != nil {
			if !isTyped(err) && !errors.Is(err, io.EOF) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if int(h.len) != len(body) || len(body) > max {
			t.Fatalf("header says %d bytes, body has %d", h.len, len(body))
		}
		var out bytes.Buffer
		if err := writeFrame(&out, h.typ, h.id, body); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), b[:frameHeaderSize+len(body)]) {
			t.Fatal("frame does not round-trip")
		}
	})
}

func FuzzParseMessage(f *testing.F) {
	m := &message{budgetMS: 1000, layer: []byte("layer"), data: []byte("data")}
	f.Add(bytes.Join(m.parts(), nil))
	f.Add([]byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMessage(b)
		if err != nil {
			if !isTyped(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if !bytes.Equal(bytes.Join(m.parts(), nil), b) {
			t.Fatal("message does not round-trip")
		}
	})
}

func FuzzParsePayloadRequest(f *testing.F) {
	kp, err := layer.GenerateKeyPair("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	f.Add((&payloadRequest{client: kp.Raw}).marshal())
	f.Add([]byte{payloadVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parsePayloadRequest(b)
		if err != nil {
			if !isTyped(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if !bytes.Equal(r.marshal(), b) {
			t.Fatal("request does not round-trip")
		}
	})
}

// seedPayload is a well-formed payload with n nodes.
func seedPayload(tb testing.TB, n int) *payload {
	primary, err := layer.GenerateKeyPair("primary")
	if err != nil {
		tb.Fatal(err)
	}
	p := &payload{primary: primary.Raw}
	p.cycle.NotBefore = time.Unix(1700000000, 0)
	p.cycle.NotAfter = p.cycle.NotBefore.Add(10 * time.Minute)
	p.cycle.Grace = 2 * time.Minute
	rand.Read(p.cycle.ID[:])
	rand.Read(p.nonce[:])
	for i := range n {
		kp, err := layer.GenerateKeyPair("node")
		if err != nil {
			tb.Fatal(err)
		}
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		spec := IdentitySpec
		if i%2 == 1 {
			spec = HashSpec("sha256", []byte{1, 2, 3}, 2, true)
		}
		p.cycle.Nodes = append(p.cycle.Nodes, NodeInfo{
			Onion: Onion{ServiceID: onionaddr.ServiceID(pub), Port: 80 + i}, PublicKey: kp.Raw, Processor: spec,
		})
	}
	return p
}

func FuzzParsePayload(f *testing.F) {
	seed, err := seedPayload(f, 3).marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:120])
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePayload(b)
		if err != nil {
			if !isTyped(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		out, err := p.marshal()
		if err != nil {
			t.Fatalf("parsed payload does not marshal: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatal("payload does not round-trip")
		}
	})
}

func FuzzParseInvite(f *testing.F) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	inv := Invite{Primary: Onion{ServiceID: onionaddr.ServiceID(pub), Port: 80}}
	rand.Read(inv.Fingerprint[:])
	f.Add(inv.String())
	var k [32]byte
	inv.ClientAuthKey = &k
	f.Add(inv.String())
	f.Add("ghostcomm1:")
	f.Fuzz(func(t *testing.T, s string) {
		inv, err := ParseInvite(s)
		if err != nil {
			if !errors.Is(err, ErrBadInvite) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		again, err := ParseInvite(inv.String())
		if err != nil || again.String() != inv.String() {
			t.Fatalf("invite does not round-trip: %v", err)
		}
	})
}
