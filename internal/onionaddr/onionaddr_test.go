package onionaddr

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// Vectors from outside this package.
const (
	// tor's src/test/test_hs_common.c (test_build_address and
	// test_validate_address): the address tor builds for the public key of
	// RFC 8032's first test vector.
	rfcSeedHex = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
	rfcPubHex  = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
	rfcID      = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid"

	// bitcoin-s core-test NetworkUtilTest: a second (pubkey, address) pair.
	btcPubHex = "98908ec971ad17171365865a249c420d04a66f103f973a62d8404ce2f4af1ee2"
	btcID     = "tcii5slrvulroe3fqzncjhccbuckm3yqh6ltuywyibgof5fpd3rpycyd"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestServiceIDKnownVectors(t *testing.T) {
	for _, v := range []struct{ pub, id string }{{rfcPubHex, rfcID}, {btcPubHex, btcID}} {
		pub := ed25519.PublicKey(mustHex(t, v.pub))
		if got := ServiceID(pub); got != v.id {
			t.Errorf("ServiceID(%s) = %s, want %s", v.pub, got, v.id)
		}
		back, err := Parse(v.id)
		if err != nil {
			t.Fatalf("Parse(%s): %v", v.id, err)
		}
		if !bytes.Equal(back, pub) {
			t.Errorf("Parse(%s) = %x, want %s", v.id, back, v.pub)
		}
	}
}

func TestServiceIDFromSeed(t *testing.T) {
	// The seed of RFC 8032 test 1 gives the public key of tor's vector: this
	// ties ServiceID to a key made by crypto/ed25519.
	priv := ed25519.NewKeyFromSeed(mustHex(t, rfcSeedHex))
	id := ServiceID(priv.Public().(ed25519.PublicKey))
	if id != rfcID {
		t.Fatalf("ServiceID = %s, want %s", id, rfcID)
	}
	if len(id) != IDLen || strings.ToLower(id) != id || !strings.HasSuffix(id, "d") {
		// Every v3 id ends in 'd': the last 5 bits hold the low bits of
		// the version byte 0x03 followed by zero padding (00011 000 -> 'd').
		t.Fatalf("id %q is not 56 lowercase characters ending in d", id)
	}
}

func TestServiceIDWrongLength(t *testing.T) {
	for _, n := range []int{0, 31, 33, 64} {
		if got := ServiceID(make([]byte, n)); got != "" {
			t.Errorf("ServiceID(%d bytes) = %q, want empty", n, got)
		}
	}
}

func TestParseAcceptedForms(t *testing.T) {
	want := mustHex(t, rfcPubHex)
	for _, s := range []string{
		rfcID,
		rfcID + ".onion",
		strings.ToUpper(rfcID),
		strings.ToUpper(rfcID) + ".ONION",
		rfcID + ".Onion",
	} {
		pub, err := Parse(s)
		if err != nil {
			t.Errorf("Parse(%q): %v", s, err)
			continue
		}
		if !bytes.Equal(pub, want) {
			t.Errorf("Parse(%q) = %x", s, pub)
		}
	}
}

// reencode returns the id of pub with the checksum computed for version, so
// that only the version is wrong.
func reencode(pub []byte, version byte) string {
	raw := make([]byte, 0, decodedLen)
	raw = append(raw, pub...)
	sum := checksum(pub, version)
	raw = append(raw, sum[0], sum[1], version)
	return strings.ToLower(encoding.EncodeToString(raw))
}

func TestParseRejects(t *testing.T) {
	rfcPub := mustHex(t, rfcPubHex)
	flip := []byte(rfcID)
	flip[10] = 'a' + (flip[10]-'a'+1)%26 // one character off
	cases := []struct {
		name, in string
		reason   error
	}{
		{"empty", "", errLength},
		{"short (tor vector)", "blah", errLength},
		{"57 chars (tor vector)", "p3xnclpu4mu22dwaurjtsybyqk4xfjmcfz6z62yl24uwmhjatiwnlnadb", errLength},
		{"v2 address", "expyuzz4wqqyqhjn.onion", errLength},
		{"double suffix", rfcID + ".onion.onion", errLength},
		{"trailing dot", rfcID + ".onion.", errLength},
		{"not base32 (tor vector)", strings.Repeat("?", IDLen), errBase32},
		{"digit 1", "1" + rfcID[1:], errBase32},
		{"digit 8", rfcID[:55] + "8", errBase32},
		{"non-ASCII", "\u00e9" + rfcID[2:], errBase32},
		{"padding", rfcID[:55] + "=", errBase32},
		{"bad checksum (tor vector)", "l5satjgud6gucryazcyvyvhuxhr74u6ygigiuyixe3a6ysis67ororad", errChecksum},
		{"bad checksum (tor vector 2)", "btojiu7nu5y5iwut64eufevogqdw4wmqzugnoluw232r4t3ecsfv37ad", errChecksum},
		{"one character off", string(flip), errChecksum},
		{"version 4", reencode(rfcPub, 4), errVersion},
		{"version 0", reencode(rfcPub, 0), errVersion},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pub, err := Parse(c.in)
			if !errors.Is(err, ErrInvalid) || !errors.Is(err, c.reason) {
				t.Fatalf("Parse(%q) = %x, %v; want ErrInvalid (%v)", c.in, pub, err, c.reason)
			}
			if pub != nil {
				t.Fatalf("Parse returned a key with an error")
			}
		})
	}
}

// Keys that tor's ed25519_validate_pubkey rejects, and non-canonical
// encodings. The low-order points are the eight listed in
// https://hdevalence.ca/blog/2020-10-04-its-25519am; the mixed-order key is
// from C2SP/CCTV ed25519vectors.json (flag low_order_component_A without
// low_order_A).
func TestParseRejectsBadKeys(t *testing.T) {
	cases := []struct {
		name, key string
		reason    error
	}{
		{"identity", "0100000000000000000000000000000000000000000000000000000000000000", errIdentity},
		{"order 2", "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", errTorsion},
		{"order 4", "0000000000000000000000000000000000000000000000000000000000000000", errTorsion},
		{"order 4 negated", "0000000000000000000000000000000000000000000000000000000000000080", errTorsion},
		{"order 8 a", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a", errTorsion},
		{"order 8 b", "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa", errTorsion},
		{"order 8 c", "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05", errTorsion},
		{"order 8 d", "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85", errTorsion},
		{"mixed order (CCTV)", "10eb7c3acfb2bed3e0d6ab89bf5a3d6afddd1176ce4812e38d9fd485058fdb1f", errTorsion},
		{"y = p", "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", errNonCanonical},
		{"y = p + 1", "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", errNonCanonical},
		{"x = 0 with sign bit", "0100000000000000000000000000000000000000000000000000000000000080", errNonCanonical},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := ServiceID(mustHex(t, c.key)) // checksum and version are right
			_, err := Parse(id)
			if !errors.Is(err, ErrInvalid) || !errors.Is(err, errKey) || !errors.Is(err, c.reason) {
				t.Fatalf("Parse(%s) for key %s: %v; want %v", id, c.key, err, c.reason)
			}
		})
	}
}

// stdlibOnCurve asks crypto/ed25519 whether b decodes to a curve point: its
// verifier fails with "bad public key" exactly when decoding fails. It
// accepts non-canonical encodings, so callers only ask about canonical ones.
func stdlibOnCurve(b []byte) bool {
	err := ed25519.VerifyWithOptions(b, nil, make([]byte, ed25519.SignatureSize), &ed25519.Options{})
	return err == nil || !strings.Contains(err.Error(), "bad public key")
}

func TestOffCurveKeysAgreeWithStdlib(t *testing.T) {
	// Walk small y values (sign bit clear, canonical): the decoder must
	// call a key off the curve exactly when crypto/ed25519 does, and both
	// outcomes must occur.
	var on, off int
	for y := 2; y < 200; y++ {
		key := make([]byte, 32)
		key[0] = byte(y)
		var p point
		err := decodePoint(&p, key)
		if stdlibOnCurve(key) != (err == nil) {
			t.Fatalf("y=%d: decodePoint error %v, crypto/ed25519 on curve %v", y, err, stdlibOnCurve(key))
		}
		if err == nil {
			on++
		} else {
			off++
			if _, perr := Parse(ServiceID(key)); !errors.Is(perr, errNotOnCurve) {
				t.Fatalf("y=%d: Parse: %v, want %v", y, perr, errNotOnCurve)
			}
		}
	}
	if on == 0 || off == 0 {
		t.Fatalf("walk saw %d on-curve and %d off-curve keys; want both", on, off)
	}
}

func TestGeneratedKeysRoundTrip(t *testing.T) {
	for i := range 64 {
		seed := bytes.Repeat([]byte{byte(i)}, ed25519.SeedSize)
		pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
		id := ServiceID(pub)
		back, err := Parse(id + ".onion")
		if err != nil {
			t.Fatalf("seed %d: Parse(%s): %v", i, id, err)
		}
		if !bytes.Equal(back, pub) {
			t.Fatalf("seed %d: round trip changed the key", i)
		}
	}
}

func TestSplitAddr(t *testing.T) {
	id, port, err := SplitAddr(strings.ToUpper(rfcID) + ".onion:80")
	if err != nil || id != rfcID || port != 80 {
		t.Fatalf("SplitAddr = %q, %d, %v", id, port, err)
	}
	if _, p, err := SplitAddr(rfcID + ".onion:65535"); err != nil || p != 65535 {
		t.Fatalf("port 65535: %d, %v", p, err)
	}
	for _, c := range []struct {
		in     string
		reason error
	}{
		{rfcID + ".onion", errHostPort},
		{"", errHostPort},
		{rfcID + ":80", errNoSuffix},
		{"example.com:80", errNoSuffix},
		{"127.0.0.1:80", errNoSuffix},
		{rfcID + ".onion:0", errPort},
		{rfcID + ".onion:65536", errPort},
		{rfcID + ".onion:-1", errPort},
		{rfcID + ".onion:http", errPort},
		{rfcID + ".onion:", errPort},
		{"btojiu7nu5y5iwut64eufevogqdw4wmqzugnoluw232r4t3ecsfv37ad.onion:80", errChecksum},
	} {
		if _, _, err := SplitAddr(c.in); !errors.Is(err, ErrInvalid) || !errors.Is(err, c.reason) {
			t.Errorf("SplitAddr(%q) = %v, want %v", c.in, err, c.reason)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(rfcID)
	f.Add(rfcID + ".onion")
	f.Add(strings.ToUpper(btcID))
	f.Add("l5satjgud6gucryazcyvyvhuxhr74u6ygigiuyixe3a6ysis67ororad")
	f.Add(reencode(mustHex(f, rfcPubHex), 4))
	f.Add(ServiceID(mustHex(f, "10eb7c3acfb2bed3e0d6ab89bf5a3d6afddd1176ce4812e38d9fd485058fdb1f")))
	f.Add("")
	f.Add(".onion")
	f.Fuzz(func(t *testing.T, s string) {
		pub, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || pub != nil {
				t.Fatalf("Parse(%q) = %x, %v", s, pub, err)
			}
			return
		}
		if len(pub) != ed25519.PublicKeySize {
			t.Fatalf("Parse(%q) returned %d bytes", s, len(pub))
		}
		if got, want := ServiceID(pub), strings.ToLower(trimSuffix(s)); got != want {
			t.Fatalf("ServiceID(Parse(%q)) = %q", s, got)
		}
		if !stdlibOnCurve(pub) {
			t.Fatalf("Parse accepted %x, which crypto/ed25519 cannot decode", pub)
		}
	})
}

// FuzzKey checks Parse(ServiceID(k)) on arbitrary 32-byte keys: keys made by
// crypto/ed25519 always round-trip, and an accepted key decodes in the
// standard library too.
func FuzzKey(f *testing.F) {
	f.Add(mustHex(f, rfcPubHex))
	f.Add(mustHex(f, "10eb7c3acfb2bed3e0d6ab89bf5a3d6afddd1176ce4812e38d9fd485058fdb1f"))
	f.Add(make([]byte, 32))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) != ed25519.SeedSize {
			return
		}
		pub := ed25519.NewKeyFromSeed(b).Public().(ed25519.PublicKey)
		back, err := Parse(ServiceID(pub))
		if err != nil || !bytes.Equal(back, pub) {
			t.Fatalf("generated key %x: Parse = %x, %v", pub, back, err)
		}
		// The same bytes taken as a raw public key.
		got, err := Parse(ServiceID(b))
		if err == nil {
			if !bytes.Equal(got, b) || !stdlibOnCurve(b) {
				t.Fatalf("raw key %x accepted as %x", b, got)
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("raw key %x: %v", b, err)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	for b.Loop() {
		if _, err := Parse(rfcID); err != nil {
			b.Fatal(err)
		}
	}
}
