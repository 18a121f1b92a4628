package sealed

import (
	"crypto/ecdh"
	"io"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// PublicKey is an X25519 public key: a canonical little-endian u-coordinate.
type PublicKey [KeySize]byte

// PrivateKey is a node's sealed-mode X25519 key. It is safe for concurrent
// use.
type PrivateKey struct {
	k   *ecdh.PrivateKey
	pub PublicKey
}

// GenerateKey makes a private key from KeySize bytes of rnd (crypto/rand
// when rnd is nil).
func GenerateKey(rnd io.Reader) (*PrivateKey, error) { return nil, errNotImplemented }

// NewPrivateKey makes a private key from a KeySize-byte X25519 scalar (RFC
// 7748 order; it is clamped when used).
func NewPrivateKey(scalar []byte) (*PrivateKey, error) { return nil, errNotImplemented }

// PublicKey returns k's public key.
func (k *PrivateKey) PublicKey() PublicKey { return PublicKey{} }

// Bytes returns a copy of k's KeySize-byte scalar, for NewPrivateKey.
func (k *PrivateKey) Bytes() []byte { return nil }

// ParsePublicKey checks that b is a KeySize-byte canonical u-coordinate of
// a point that is not of low order, and returns it; otherwise ErrMalformed.
func ParsePublicKey(b []byte) (PublicKey, error) { return PublicKey{}, errNotImplemented }

// GenerateOpenPGPKey makes a dedicated sealed-mode key as an OpenPGP key:
// an EdDSA primary key and one ECDH cv25519 encryption subkey (what gopenpgp
// v2 generates for "x25519"), created at now, with rnd as its randomness
// (crypto/rand when nil). Give each node a new one every lock-cycle: no key
// should serve both sealed mode and OpenPGP messages.
func GenerateOpenPGPKey(rnd io.Reader, name string, now time.Time) (*openpgp.Entity, error) {
	return nil, errNotImplemented
}

// OpenPGPPrivateKey returns the X25519 private key of e's one cv25519
// encryption subkey (e must have exactly one, unlocked), after checking that
// its public point is X25519 of its secret; otherwise ErrMalformed.
func OpenPGPPrivateKey(e *openpgp.Entity) (*PrivateKey, error) { return nil, errNotImplemented }

// OpenPGPPublicKey returns the X25519 public key of e's one cv25519
// encryption subkey (e may be public only); otherwise ErrMalformed.
func OpenPGPPublicKey(e *openpgp.Entity) (PublicKey, error) { return PublicKey{}, errNotImplemented }
