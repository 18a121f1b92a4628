package layer

import (
	"bytes"
	"errors"
	mrand "math/rand/v2"
	"testing"
)

// The PKESK written directly is, from the same randomness, byte for byte
// the one go-crypto's packet writer makes.
func TestSealPKESKMatchesGoCrypto(t *testing.T) {
	for i, kp := range testKeys(t, 4) {
		if _, ok := cv25519Key(kp.Enc); !ok {
			t.Fatalf("key %d is not a v4 cv25519 ECDH key", i)
		}
		for j := range 8 {
			seed := [32]byte{byte(i), byte(j)}
			var k Key
			mrand.NewChaCha8(seed).Read(k[:])
			got, err := sealPKESK([]byte{1, 2}, kp.Enc, &k, mrand.NewChaCha8(seed))
			if err != nil {
				t.Fatal(err)
			}
			want, err := sealPKESKPacket([]byte{1, 2}, kp.Enc, &k, mrand.NewChaCha8(seed))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("key %d: direct PKESK\n%x\ndiffers from go-crypto's\n%x", i, got, want)
			}
		}
	}
}

// sameUnwrap checks that unwrapping pkesk directly and through go-crypto's
// packet layer agree: the same key, or errors of the same kind.
func sameUnwrap(t *testing.T, kps []*KeyPair, pkesk []byte) {
	t.Helper()
	var dec = kps[0].Dec
	for _, kp := range kps[1:] {
		dec = append(dec[:len(dec):len(dec)], kp.Dec...)
	}
	k1, err1 := unwrap(dec, pkesk, true)
	k2, err2 := unwrap(dec, pkesk, false)
	switch {
	case (err1 == nil) != (err2 == nil):
		t.Fatalf("direct: %v; go-crypto: %v", err1, err2)
	case err1 == nil && k1 != k2:
		t.Fatal("direct and go-crypto unwrap different keys")
	case err1 != nil && (errors.Is(err1, ErrAuth) != errors.Is(err2, ErrAuth) || errors.Is(err1, ErrMalformed) != errors.Is(err2, ErrMalformed)):
		t.Fatalf("direct: %v; go-crypto: %v", err1, err2)
	}
}

// Unwrapping directly agrees with go-crypto's packet layer on genuine
// PKESKs, on every one-bit change of them that Open does not refuse for
// its layout, and with the wrong keys.
func TestUnwrapMatchesGoCrypto(t *testing.T) {
	kps := testKeys(t, 3)
	var k Key
	pk, err := sealPKESK(nil, kps[1].Enc, &k, mrand.NewChaCha8([32]byte{9}))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := unwrapPKESK(kps[1].Dec, pk); err != nil || got != k {
		t.Fatalf("unwrap: %v", err)
	}
	if _, err := unwrapPKESK(kps[0].Dec, pk); !errors.Is(err, ErrAuth) {
		t.Fatalf("unwrap with the wrong key: %v", err)
	}
	sameUnwrap(t, kps, pk)
	sameUnwrap(t, kps[:1], pk)
	for i := range pk {
		for bit := range 8 {
			b := bytes.Clone(pk)
			b[i] ^= 1 << bit
			if checkPKESK(b) == nil {
				sameUnwrap(t, kps, b)
			}
		}
	}
}

func FuzzUnwrapPKESK(f *testing.F) {
	kps := testKeys(f, 2)
	var k Key
	pk, err := sealPKESK(nil, kps[1].Enc, &k, mrand.NewChaCha8([32]byte{1}))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pk[14:])
	f.Fuzz(func(t *testing.T, fields []byte) {
		// The fields after the fixed prefix: the point, the wrap length,
		// the wrapped key.
		b := append(bytes.Clone(pk[:14]), fields...)
		if len(b) != PKESKSize || checkPKESK(b) != nil {
			return // refused by open before any unwrapping
		}
		sameUnwrap(t, kps, b)
	})
}
