package torctl

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

// VectorSeed and VectorServiceID are a test vector: the ed25519 key from
// seed 00 01 02 ... 1f has this v3 service ID. TestIntegrationGivenKey
// checks that tor answers ADD_ONION with the same ID for that key.
var (
	VectorSeed = func() []byte {
		b := make([]byte, 32)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}()
	VectorServiceID = "aoqqpp7tzyil4hlq3umoos6atft6jvrqtosq2xy53sdgiesvgg4bqead"
)

func TestServiceIDVector(t *testing.T) {
	pub := ed25519.NewKeyFromSeed(VectorSeed).Public().(ed25519.PublicKey)
	if got := ServiceID(pub); got != VectorServiceID {
		t.Fatalf("ServiceID = %s, want %s", got, VectorServiceID)
	}
}

func TestValidServiceID(t *testing.T) {
	for range 50 {
		id := randomServiceID()
		if !validServiceID(id) {
			t.Fatalf("validServiceID(%s) = false", id)
		}
	}
	id := VectorServiceID
	flip := func(i int) string {
		c := byte('a')
		if id[i] == 'a' {
			c = 'b'
		}
		return id[:i] + string(c) + id[i+1:]
	}
	for name, bad := range map[string]string{
		"empty":          "",
		"short":          id[:55],
		"long":           id + "a",
		"upper":          strings.ToUpper(id),
		"checksum":       flip(10),
		"version":        flip(55),
		"not base32":     id[:20] + "1" + id[21:],
		"with .onion":    id[:50] + ".onion",
		"space":          id[:55] + " ",
		"v2-length name": "expyuzz4wqqyqhjn",
	} {
		if validServiceID(bad) {
			t.Errorf("%s: validServiceID(%q) = true", name, bad)
		}
	}
}

// TestClientAuthKeyVector uses RFC 7748's X25519 test vector (Alice's key).
func TestClientAuthKeyVector(t *testing.T) {
	priv, _ := hex.DecodeString("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
	pub, _ := hex.DecodeString("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
	k, err := NewClientAuthKey(bytes.NewReader(priv))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.Public[:], pub) || !bytes.Equal(k.Private[:], priv) {
		t.Fatalf("key %x / %x", k.Private, k.Public)
	}
	for name, s := range map[string]string{"public": k.PublicBase32(), "private": k.PrivateBase32()} {
		if len(s) != 52 || strings.ToUpper(s) != s || strings.Contains(s, "=") {
			t.Errorf("%s base32 %q: want 52 upper-case characters, no padding", name, s)
		}
	}
	if got, _ := onionBase32.DecodeString(k.PublicBase32()); !bytes.Equal(got, pub) {
		t.Errorf("PublicBase32 does not decode to the key")
	}
	if _, err := NewClientAuthKey(bytes.NewReader(priv[:10])); err == nil {
		t.Error("short random source accepted")
	}
	a, _ := NewClientAuthKey(nil)
	b, _ := NewClientAuthKey(nil)
	if a == b {
		t.Error("two random keys are equal")
	}
}

// TestTorKeyBlob checks the layout of the expanded key tor takes: 64 bytes,
// the scalar clamped. That tor derives the right service ID from it is
// checked against tor by TestIntegrationGivenKey.
func TestTorKeyBlob(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(VectorSeed)
	blob := torKeyBlob(priv)
	if len(blob) != 88 {
		t.Fatalf("blob %q: %d base64 characters, want 88 (64 bytes)", blob, len(blob))
	}
	raw, err := base64.StdEncoding.DecodeString(blob)
	if err != nil || len(raw) != 64 {
		t.Fatalf("blob does not decode to 64 bytes: %v", err)
	}
	if raw[0]&7 != 0 || raw[31]&0x80 != 0 || raw[31]&0x40 == 0 {
		t.Errorf("scalar not clamped: %x", raw[:32])
	}
}

func FuzzValidServiceID(f *testing.F) {
	f.Add(VectorServiceID)
	f.Add(strings.ToUpper(VectorServiceID))
	f.Add("")
	f.Add(VectorServiceID[:55] + "a")
	f.Fuzz(func(t *testing.T, id string) {
		if !validServiceID(id) {
			return
		}
		// A valid ID round-trips through its public key.
		raw, err := onionBase32.DecodeString(strings.ToUpper(id))
		if err != nil || len(raw) != 35 {
			t.Fatalf("valid ID %q does not decode: %v", id, err)
		}
		if got := ServiceID(ed25519.PublicKey(raw[:32])); got != id {
			t.Fatalf("ServiceID(key of %q) = %q", id, got)
		}
	})
}
