package ghostcomm

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
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

func FuzzParsePayloadRequest(f *testing.F) {
	kp, err := layer.GenerateKeyPair("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	f.Add((&payloadRequest{client: kp.Raw}).marshal())
	f.Add([]byte{payloadRequestVersion})
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
			Operator: []string{"", "operator-a"}[i%2],
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
	sealed, err := sealedSeed(seedPayload(f, 2), SealedConfig{Form: FormRelay, MaxPacket: SealedSmall}).marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
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

func FuzzParseIdentity(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "state")
	id, err := CreateIdentity(dir, nil)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := id.AddClient("alice", nil); err != nil {
		f.Fatal(err)
	}
	good, err := id.marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(identityHeader + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := parseIdentity(b)
		if err != nil {
			if !errors.Is(err, ErrStateCorrupt) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		out, err := id.marshal()
		if err != nil {
			t.Fatalf("a parsed identity does not marshal: %v", err)
		}
		id2, err := parseIdentity(out)
		if err != nil {
			t.Fatalf("a marshalled identity does not parse: %v", err)
		}
		out2, _ := id2.marshal()
		if !bytes.Equal(out, out2) {
			t.Fatal("identity does not round-trip")
		}
	})
}

func FuzzParseNodeIdentity(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "state")
	if _, _, err := LoadOrCreateNodeIdentity(dir, nil); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, NodeIdentityFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(nodeIdentityHeader + "\nidentity-key \nend\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		key, err := parseNodeIdentity(b)
		if err != nil {
			if !errors.Is(err, ErrStateCorrupt) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// Only the canonical encoding parses: the file is the key.
		want := nodeIdentityHeader + "\nidentity-key " + base64.StdEncoding.EncodeToString(key.Seed()) + "\nend\n"
		if string(b) != want {
			t.Fatalf("%q parsed, but the key's file is %q", b, want)
		}
	})
}
