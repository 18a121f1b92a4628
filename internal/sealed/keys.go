package sealed

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	pgpecdh "github.com/ProtonMail/go-crypto/openpgp/ecdh"
	"github.com/ProtonMail/go-crypto/openpgp/eddsa"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/cloudflare/circl/dh/x25519"
	"github.com/ghostcomm/ghostcomm/internal/curve"
)

// PublicKey is an X25519 public key: a canonical little-endian u-coordinate.
type PublicKey [KeySize]byte

// PrivateKey is a node's sealed-mode X25519 key. It is safe for concurrent
// use.
type PrivateKey struct {
	sk  x25519.Key
	pub PublicKey
}

// x25519Ops counts X25519 scalar multiplications (fixed-base and
// variable-base), for the test that a relaying hop does exactly one.
var x25519Ops atomic.Uint64

// X25519 is circl's (github.com/cloudflare/circl/dh/x25519, already in the
// module graph through go-crypto): with its amd64 field arithmetic it is
// about 25% faster than crypto/ecdh's, and half as costly for the client's
// fixed-base multiplications, and it allocates nothing. The tests check it
// against crypto/ecdh.

// keyGen writes X25519(sk, 9) to pub: one fixed-base multiplication.
func keyGen(pub, sk *x25519.Key) {
	x25519Ops.Add(1)
	x25519.KeyGen(pub, sk)
}

// shared writes X25519(sk, u) to s. It refuses a non-canonical u or a
// low-order point (whose result is all zeros) with ErrMalformed.
func shared(s *[KeySize]byte, sk *x25519.Key, u []byte) error {
	if !curve.CanonicalU(u) {
		return fmt.Errorf("%w: non-canonical X25519 point", ErrMalformed)
	}
	x25519Ops.Add(1)
	if !x25519.Shared((*x25519.Key)(s), sk, (*x25519.Key)(u)) {
		return fmt.Errorf("%w: low-order X25519 point", ErrMalformed)
	}
	return nil
}

// GenerateKey makes a private key from KeySize bytes of rnd (crypto/rand
// when rnd is nil).
func GenerateKey(rnd io.Reader) (*PrivateKey, error) {
	var b [KeySize]byte
	if err := readRand(rnd, b[:]); err != nil {
		return nil, err
	}
	return NewPrivateKey(b[:])
}

// readRand fills b from rnd, or crypto/rand when rnd is nil.
func readRand(rnd io.Reader, b []byte) error {
	if rnd == nil {
		rand.Read(b) // never fails (Go 1.24+)
		return nil
	}
	if _, err := io.ReadFull(rnd, b); err != nil {
		return fmt.Errorf("sealed: reading randomness: %w", err)
	}
	return nil
}

// NewPrivateKey makes a private key from a KeySize-byte X25519 scalar (RFC
// 7748 order; it is clamped when used).
func NewPrivateKey(scalar []byte) (*PrivateKey, error) {
	if len(scalar) != KeySize {
		return nil, fmt.Errorf("%w: X25519 scalar of %d bytes", ErrMalformed, len(scalar))
	}
	k := &PrivateKey{sk: x25519.Key(scalar)}
	keyGen((*x25519.Key)(&k.pub), &k.sk)
	return k, nil
}

// PublicKey returns k's public key.
func (k *PrivateKey) PublicKey() PublicKey { return k.pub }

// Bytes returns a copy of k's KeySize-byte scalar, for NewPrivateKey.
func (k *PrivateKey) Bytes() []byte { return bytes.Clone(k.sk[:]) }

// Wipe zeroes k's scalar. k must not be used after (Process then fails every
// packet's MAC). It may be called more than once, not while k is in use.
func (k *PrivateKey) Wipe() {
	clear(k.sk[:])
	clear(k.pub[:])
}

// ParsePublicKey checks that b is a KeySize-byte canonical u-coordinate of
// a point that is not of low order, and returns it; otherwise ErrMalformed.
func ParsePublicKey(b []byte) (PublicKey, error) {
	var pk PublicKey
	if len(b) != KeySize {
		return pk, fmt.Errorf("%w: X25519 public key of %d bytes", ErrMalformed, len(b))
	}
	if !curve.CanonicalU(b) {
		return pk, fmt.Errorf("%w: non-canonical X25519 public key", ErrMalformed)
	}
	if lowOrder(b) {
		return pk, fmt.Errorf("%w: low-order X25519 public key", ErrMalformed)
	}
	copy(pk[:], b)
	return pk, nil
}

// lowOrderPoints are the canonical u-coordinates of the points of order 1,
// 2, 4 and 8 on Curve25519 and its twist (RFC 7748 §7, and the list
// libsodium refuses): X25519 of any of them is 0 for every clamped scalar.
var lowOrderPoints = [][KeySize]byte{
	{}, // 0
	{1},
	{0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
	{0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57},
	{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, // p-1
}

// lowOrder reports whether the canonical u is a low-order point.
func lowOrder(u []byte) bool {
	bad := 0
	for i := range lowOrderPoints {
		bad |= subtle.ConstantTimeCompare(u, lowOrderPoints[i][:])
	}
	return bad == 1
}

// GenerateOpenPGPKey makes a dedicated sealed-mode key as an OpenPGP key:
// an EdDSA primary key and one ECDH cv25519 encryption subkey (what gopenpgp
// v2 generates for "x25519"), created at now, with rnd as its randomness
// (crypto/rand when nil). Give each node a new one every lock-cycle: no key
// should serve both sealed mode and OpenPGP messages.
func GenerateOpenPGPKey(rnd io.Reader, name string, now time.Time) (*openpgp.Entity, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	cfg := &packet.Config{
		Rand:      rnd,
		Time:      func() time.Time { return now },
		Algorithm: packet.PubKeyAlgoEdDSA,
		Curve:     packet.Curve25519,
	}
	e, err := openpgp.NewEntity(name, "ghostcomm sealed-mode key", "", cfg)
	if err != nil {
		return nil, fmt.Errorf("sealed: generating OpenPGP key: %w", err)
	}
	return e, nil
}

// sealedSubkey returns e's one cv25519 ECDH encryption subkey.
func sealedSubkey(e *openpgp.Entity) (*openpgp.Subkey, error) {
	if e == nil {
		return nil, fmt.Errorf("%w: no OpenPGP key", ErrMalformed)
	}
	var found *openpgp.Subkey
	for i := range e.Subkeys {
		sk := &e.Subkeys[i]
		if sk.PublicKey == nil || sk.PublicKey.PubKeyAlgo != packet.PubKeyAlgoECDH {
			continue
		}
		if c, err := sk.PublicKey.Curve(); err != nil || c != packet.Curve25519 {
			continue
		}
		if sk.Sig == nil || !sk.Sig.FlagsValid || !(sk.Sig.FlagEncryptCommunications || sk.Sig.FlagEncryptStorage) {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("%w: OpenPGP key has more than one cv25519 encryption subkey", ErrMalformed)
		}
		found = sk
	}
	if found == nil {
		return nil, fmt.Errorf("%w: OpenPGP key has no cv25519 encryption subkey", ErrMalformed)
	}
	return found, nil
}

// GenerateOpenPGPKeyPair is GenerateOpenPGPKey and OpenPGPPrivateKey in one
// call, which then wipes the entity's private keys (WipeOpenPGPKey): the
// entity it returns is public only (Serialize writes the public key), and
// the X25519 key is the only copy of the secret.
func GenerateOpenPGPKeyPair(rnd io.Reader, name string, now time.Time) (*openpgp.Entity, *PrivateKey, error) {
	e, err := GenerateOpenPGPKey(rnd, name, now)
	if err != nil {
		return nil, nil, err
	}
	k, err := OpenPGPPrivateKey(e)
	WipeOpenPGPKey(e)
	if err != nil {
		return nil, nil, err
	}
	return e, k, nil
}

// WipeOpenPGPKey zeroes the secret bytes of e's EdDSA primary key and of its
// ECDH subkeys' private keys (the kinds GenerateOpenPGPKey makes) and drops
// every private key from e, which is then a public key.
func WipeOpenPGPKey(e *openpgp.Entity) {
	if e == nil {
		return
	}
	wipe := func(pk *packet.PrivateKey) {
		if pk == nil {
			return
		}
		switch k := pk.PrivateKey.(type) {
		case *pgpecdh.PrivateKey:
			clear(k.D)
		case *eddsa.PrivateKey:
			clear(k.D)
		}
		pk.PrivateKey = nil
	}
	wipe(e.PrivateKey)
	e.PrivateKey = nil
	for i := range e.Subkeys {
		wipe(e.Subkeys[i].PrivateKey)
		e.Subkeys[i].PrivateKey = nil
	}
}

// OpenPGPPrivateKey returns the X25519 private key of e's one cv25519
// encryption subkey (e must have exactly one, unlocked), after checking that
// its public point is X25519 of its secret; otherwise ErrMalformed.
func OpenPGPPrivateKey(e *openpgp.Entity) (*PrivateKey, error) {
	sk, err := sealedSubkey(e)
	if err != nil {
		return nil, err
	}
	pub, err := OpenPGPPublicKey(e)
	if err != nil {
		return nil, err
	}
	if sk.PrivateKey == nil || sk.PrivateKey.Encrypted {
		return nil, fmt.Errorf("%w: cv25519 subkey has no unlocked private key", ErrMalformed)
	}
	priv, ok := sk.PrivateKey.PrivateKey.(*pgpecdh.PrivateKey)
	if !ok || len(priv.D) != KeySize {
		return nil, fmt.Errorf("%w: cv25519 subkey's secret is not an X25519 scalar", ErrMalformed)
	}
	k, err := NewPrivateKey(priv.D) // go-crypto keeps D in native (RFC 7748) order
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(k.pub[:], pub[:]) != 1 {
		return nil, fmt.Errorf("%w: cv25519 subkey's point is not X25519 of its secret", ErrMalformed)
	}
	return k, nil
}

// OpenPGPPublicKey returns the X25519 public key of e's one cv25519
// encryption subkey (e may be public only); otherwise ErrMalformed.
func OpenPGPPublicKey(e *openpgp.Entity) (PublicKey, error) {
	sk, err := sealedSubkey(e)
	if err != nil {
		return PublicKey{}, err
	}
	pub, ok := sk.PublicKey.PublicKey.(*pgpecdh.PublicKey)
	if !ok {
		return PublicKey{}, fmt.Errorf("%w: cv25519 subkey is not ECDH", ErrMalformed)
	}
	return ParsePublicKey(pub.Point) // native order, prefix removed by go-crypto
}
