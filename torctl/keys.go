package torctl

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha3"
	"crypto/sha512"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
)

// onionBase32 is tor's base32: RFC 4648 alphabet, no padding. Onion
// addresses are written in lower case, keys in upper case.
var onionBase32 = base32.StdEncoding.WithPadding(base32.NoPadding)

const onionVersion = 3

// ServiceID returns the v3 onion service ID (the 56 lower-case base32
// characters before ".onion") of an ed25519 public key, as in tor's
// rend-spec-v3 ("onion_address = base32(PUBKEY | CHECKSUM | VERSION)").
func ServiceID(pub ed25519.PublicKey) string {
	var b [ed25519.PublicKeySize + 3]byte
	copy(b[:], pub)
	sum := onionChecksum(pub)
	b[32], b[33] = sum[0], sum[1]
	b[34] = onionVersion
	return strings.ToLower(onionBase32.EncodeToString(b[:]))
}

func onionChecksum(pub []byte) [32]byte {
	h := sha3.New256()
	h.Write([]byte(".onion checksum"))
	h.Write(pub)
	h.Write([]byte{onionVersion})
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// validServiceID reports whether id is a well-formed v3 service ID: 56
// lower-case base32 characters whose checksum and version are right.
func validServiceID(id string) bool {
	if len(id) != 56 || strings.ToLower(id) != id {
		return false
	}
	b, err := onionBase32.DecodeString(strings.ToUpper(id))
	if err != nil || len(b) != 35 || b[34] != onionVersion {
		return false
	}
	sum := onionChecksum(b[:32])
	return b[32] == sum[0] && b[33] == sum[1]
}

// torKeyBlob returns the ADD_ONION "ED25519-V3" key blob of a Go ed25519
// private key: the base64 of tor's 64-byte expanded secret key (the clamped
// scalar, then the hash prefix), which is SHA-512 of the seed.
func torKeyBlob(priv ed25519.PrivateKey) string {
	h := sha512.Sum512(priv.Seed())
	h[0] &= 248
	h[31] &= 127
	h[31] |= 64
	return base64.StdEncoding.EncodeToString(h[:])
}

// ClientAuthKey is an x25519 key pair for v3 onion client authorization. The
// service lists Public (OnionConfig.ClientAuth); the client gives Private to
// its tor (Controller.AddClientAuth). Private is secret.
type ClientAuthKey struct {
	Public  [32]byte
	Private [32]byte
}

// NewClientAuthKey generates a client authorization key pair, reading 32
// bytes from random (nil means crypto/rand.Reader).
func NewClientAuthKey(random io.Reader) (ClientAuthKey, error) {
	if random == nil {
		random = rand.Reader
	}
	var k ClientAuthKey
	if _, err := io.ReadFull(random, k.Private[:]); err != nil {
		return ClientAuthKey{}, fmt.Errorf("torctl: client auth key: %w", err)
	}
	priv, err := ecdh.X25519().NewPrivateKey(k.Private[:])
	if err != nil {
		return ClientAuthKey{}, fmt.Errorf("torctl: client auth key: %w", err)
	}
	copy(k.Public[:], priv.PublicKey().Bytes())
	return k, nil
}

// PublicBase32 returns the public key in tor's format: 52 upper-case base32
// characters, as in an authorized_clients file
// ("descriptor:x25519:<PublicBase32>") and ADD_ONION ClientAuthV3.
func (k ClientAuthKey) PublicBase32() string {
	return onionBase32.EncodeToString(k.Public[:])
}

// PrivateBase32 returns the private key in tor's format, as in a client's
// .auth_private file ("<service id>:descriptor:x25519:<PrivateBase32>").
func (k ClientAuthKey) PrivateBase32() string {
	return onionBase32.EncodeToString(k.Private[:])
}
