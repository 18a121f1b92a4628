package ghostcomm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"
)

// maxPublicKeySize bounds a serialized OpenPGP public key accepted from the
// network. A curve25519 key with one user ID and one subkey is ~250 bytes.
const maxPublicKeySize = 4096

// Fingerprint is the SHA-256 fingerprint of an OpenPGP public key: SHA-256
// over the primary key's public-key packet body, as gopenpgp's
// GetSHA256Fingerprint computes it. Clients pin a Primary by it.
type Fingerprint [32]byte

// String returns the fingerprint in lowercase hex.
func (f Fingerprint) String() string { return hex.EncodeToString(f[:]) }

// publicKey is a parsed OpenPGP public key with the parts the hot path needs
// looked up once: the encryption subkey and the fingerprint.
type publicKey struct {
	raw  []byte            // binary transferable public key, as received
	ring *pgp.KeyRing      // for signature verification
	enc  *packet.PublicKey // the curve25519 encryption (sub)key
	fpr  Fingerprint
}

// keyPair is an OpenPGP key pair, unlocked once, with its decryption subkeys
// cached for the hot path.
type keyPair struct {
	publicKey
	priv *pgp.KeyRing         // signing
	dec  []*packet.PrivateKey // decryption (sub)keys
}

// generateKeyPair makes a fresh curve25519 key pair (EdDSA primary key for
// signatures, ECDH cv25519 subkey for encryption). RSA is never used: an
// RSA-2048 decryption is ~30x slower per hop and key generation takes up to
// seconds.
func generateKeyPair(name string) (*keyPair, error) {
	k, err := pgp.GenerateKey(name, "", "x25519", 0)
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: generating key: %w", err)
	}
	return newKeyPair(k)
}

// newKeyPair wraps an unlocked private key.
func newKeyPair(k *pgp.Key) (*keyPair, error) {
	if !k.IsPrivate() {
		return nil, fmt.Errorf("%w: not a private key", ErrMalformed)
	}
	if unlocked, err := k.IsUnlocked(); err != nil || !unlocked {
		return nil, fmt.Errorf("%w: private key is locked", ErrMalformed)
	}
	ring, err := pgp.NewKeyRing(k)
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: key ring: %w", err)
	}
	pub, err := k.GetPublicKey()
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: public key: %w", err)
	}
	pk, err := parsePublicKey(pub)
	if err != nil {
		return nil, err
	}
	kp := &keyPair{publicKey: *pk, priv: ring}
	e := k.GetEntity()
	for _, sk := range e.Subkeys {
		if sk.PrivateKey != nil && !sk.PrivateKey.Encrypted && isCurve25519Encryption(sk.PublicKey) {
			kp.dec = append(kp.dec, sk.PrivateKey)
		}
	}
	if e.PrivateKey != nil && !e.PrivateKey.Encrypted && isCurve25519Encryption(e.PrimaryKey) {
		kp.dec = append(kp.dec, e.PrivateKey)
	}
	if len(kp.dec) == 0 {
		return nil, fmt.Errorf("%w: key has no curve25519 decryption key", ErrMalformed)
	}
	return kp, nil
}

// wipe clears the private key material. The key pair must not be used after.
func (kp *keyPair) wipe() {
	if kp.priv != nil {
		kp.priv.ClearPrivateParams()
	}
	kp.dec = nil
}

func isCurve25519Encryption(pk *packet.PublicKey) bool {
	switch pk.PubKeyAlgo {
	case packet.PubKeyAlgoECDH:
		c, err := pk.Curve()
		return err == nil && c == packet.Curve25519
	case packet.PubKeyAlgoX25519:
		return true
	}
	return false
}

var errNoEncryptionKey = errors.New("no curve25519 encryption key")

// parsePublicKey parses a binary (unarmored) transferable OpenPGP public key
// and finds its curve25519 encryption key. It accepts exactly one key.
func parsePublicKey(b []byte) (*publicKey, error) {
	if len(b) == 0 || len(b) > maxPublicKeySize {
		return nil, fmt.Errorf("%w: public key of %d bytes", ErrMalformed, len(b))
	}
	el, err := openpgp.ReadKeyRing(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %v", ErrMalformed, err)
	}
	if len(el) != 1 {
		return nil, fmt.Errorf("%w: %d keys where one was expected", ErrMalformed, len(el))
	}
	e := el[0]
	var enc *packet.PublicKey
	for _, sk := range e.Subkeys {
		if sk.Sig != nil && sk.Sig.FlagsValid && (sk.Sig.FlagEncryptCommunications || sk.Sig.FlagEncryptStorage) &&
			isCurve25519Encryption(sk.PublicKey) && len(sk.Revocations) == 0 {
			enc = sk.PublicKey
			break
		}
	}
	if enc == nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, errNoEncryptionKey)
	}
	k, err := pgp.NewKeyFromEntity(e)
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %v", ErrMalformed, err)
	}
	ring, err := pgp.NewKeyRing(k)
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %v", ErrMalformed, err)
	}
	pk := &publicKey{raw: bytes.Clone(b), ring: ring, enc: enc}
	pk.fpr = fingerprintOf(e.PrimaryKey)
	return pk, nil
}

// fingerprintOf is SHA-256 over the serialized public-key packet body, the
// same value gopenpgp's GetSHA256Fingerprint returns in hex.
func fingerprintOf(pk *packet.PublicKey) Fingerprint {
	h := sha256.New()
	// SerializeForHash writes the 0x99-prefixed packet body that fingerprints
	// are computed over.
	_ = pk.SerializeForHash(h)
	var f Fingerprint
	h.Sum(f[:0])
	return f
}
