package sealed

import (
	"github.com/ProtonMail/go-crypto/openpgp"
	pgpecdh "github.com/ProtonMail/go-crypto/openpgp/ecdh"
)

// X25519Ops is how many X25519 operations the package has done.
func X25519Ops() uint64 { return x25519Ops.Load() }

// Offsets for the tests.
const (
	PayloadAt = payloadAt
	GammaAt   = gammaAt
)

// ParseSlot exposes the slot parser to the fuzz target.
func ParseSlot(slot []byte) (Result, error) {
	var r Result
	var s [SlotSize]byte
	copy(s[:], slot)
	err := r.parseSlot(&s)
	return r, err
}

// CorruptOpenPGPSecret flips a bit of e's cv25519 subkey's secret.
func CorruptOpenPGPSecret(e *openpgp.Entity) {
	sk, _ := sealedSubkey(e)
	sk.PrivateKey.PrivateKey.(*pgpecdh.PrivateKey).D[5] ^= 1
}

// SharedSecret is X25519(k, u) as Process computes it.
func SharedSecret(k *PrivateKey, u []byte) ([KeySize]byte, error) {
	var s [KeySize]byte
	err := shared(&s, &k.sk, u)
	return s, err
}
