package layer

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/ecdh"
	"github.com/ProtonMail/go-crypto/openpgp/ed25519"
	"github.com/ProtonMail/go-crypto/openpgp/eddsa"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/x25519"
	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"
)

// MaxPublicKeySize bounds a serialized OpenPGP public key accepted from the
// network. A curve25519 key with one user ID and one subkey is ~250 bytes.
const MaxPublicKeySize = 4096

// PublicKey is a parsed OpenPGP public key with the parts the hot path needs
// looked up once: the encryption key and the fingerprint.
type PublicKey struct {
	Raw  []byte            // binary transferable public key, as received
	Ring *pgp.KeyRing      // verifies signatures (a KeyPair's is its private ring)
	Enc  *packet.PublicKey // the curve25519 encryption (sub)key
	Fpr  [32]byte          // SHA-256 fingerprint of the primary key
}

// KeyPair is an OpenPGP key pair, unlocked once, with its decryption keys
// cached for the hot path.
type KeyPair struct {
	PublicKey
	Priv *pgp.KeyRing         // signing
	Dec  []*packet.PrivateKey // decryption (sub)keys
}

// GenerateKeyPair makes a fresh curve25519 key pair (EdDSA primary key for
// signatures, ECDH cv25519 subkey for encryption). RSA is never used: an
// RSA-2048 decryption is ~30x slower per hop and key generation takes up to
// seconds.
func GenerateKeyPair(name string) (*KeyPair, error) {
	k, err := pgp.GenerateKey(name, "", "x25519", 0)
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: generating key: %w", err)
	}
	return wrapKey(k) // nobody else holds k: no copy needed
}

// NewKeyPair wraps an unlocked private key that has a curve25519 encryption
// key. It works on a copy: Wipe never touches the caller's key. The private
// keys must be EdDSA, Ed25519, ECDH or X25519 ones, as ghostcomm generates.
func NewKeyPair(k *pgp.Key) (*KeyPair, error) {
	if k == nil {
		return nil, fmt.Errorf("%w: no key", ErrMalformed)
	}
	if !k.IsPrivate() {
		return nil, fmt.Errorf("%w: not a private key", ErrMalformed)
	}
	e, err := copyEntity(k.GetEntity())
	if err != nil {
		return nil, err
	}
	if k, err = pgp.NewKeyFromEntity(e); err != nil {
		return nil, fmt.Errorf("ghostcomm: copying key: %w", err)
	}
	return wrapKey(k)
}

// copyEntity copies e in memory, with private key material of its own. The
// public parts (keys, identities, signatures), which nothing modifies, are
// shared. It does not use pgp.Key.Copy, which serializes the private key
// into a buffer and parses it back: the serialized key, and the parser's
// buffers, would stay in memory that nobody wipes.
func copyEntity(e *openpgp.Entity) (*openpgp.Entity, error) {
	cp := *e
	var err error
	if cp.PrivateKey, err = copyPrivateKey(e.PrivateKey); err != nil {
		return nil, err
	}
	if e.PrivateKey != nil && e.PrimaryKey == &e.PrivateKey.PublicKey {
		cp.PrimaryKey = &cp.PrivateKey.PublicKey
	}
	cp.Subkeys = slices.Clone(e.Subkeys)
	for i := range cp.Subkeys {
		sk := &cp.Subkeys[i]
		if sk.PrivateKey, err = copyPrivateKey(e.Subkeys[i].PrivateKey); err != nil {
			return nil, err
		}
		if e.Subkeys[i].PrivateKey != nil && e.Subkeys[i].PublicKey == &e.Subkeys[i].PrivateKey.PublicKey {
			sk.PublicKey = &sk.PrivateKey.PublicKey
		}
	}
	return &cp, nil
}

// copyPrivateKey copies a private key packet and its secret.
func copyPrivateKey(pk *packet.PrivateKey) (*packet.PrivateKey, error) {
	if pk == nil {
		return nil, nil
	}
	cp := *pk
	switch k := pk.PrivateKey.(type) {
	case nil: // locked or a stub: no secret in the clear
	case *eddsa.PrivateKey:
		c := *k
		c.D = bytes.Clone(k.D)
		cp.PrivateKey = &c
	case *ecdh.PrivateKey:
		c := *k
		c.D = bytes.Clone(k.D)
		cp.PrivateKey = &c
	case *ed25519.PrivateKey:
		c := *k
		c.Key = bytes.Clone(k.Key)
		cp.PrivateKey = &c
	case *x25519.PrivateKey:
		c := *k
		c.Secret = bytes.Clone(k.Secret)
		cp.PrivateKey = &c
	default:
		return nil, fmt.Errorf("%w: private key of type %T (want EdDSA, Ed25519, ECDH or X25519)", ErrMalformed, k)
	}
	return &cp, nil
}

// wrapKey wraps k itself, which Wipe will clear.
func wrapKey(k *pgp.Key) (*KeyPair, error) {
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
	// The entity is parsed already and its self-signatures were made (or
	// checked when it was read): take the encryption subkey and the
	// fingerprint from it, rather than serializing, re-parsing and
	// re-verifying it with ParsePublicKey, which costs as much again as
	// generating the key.
	e := k.GetEntity()
	enc := encryptionSubkey(e)
	if enc == nil {
		return nil, fmt.Errorf("%w: no curve25519 encryption subkey", ErrMalformed)
	}
	kp := &KeyPair{PublicKey: PublicKey{Raw: pub, Ring: ring, Enc: enc, Fpr: fingerprintOf(e.PrimaryKey)}, Priv: ring}
	for _, sk := range e.Subkeys {
		if sk.PrivateKey != nil && !sk.PrivateKey.Encrypted && isCurve25519Encryption(sk.PublicKey) {
			kp.Dec = append(kp.Dec, sk.PrivateKey)
		}
	}
	if len(kp.Dec) == 0 {
		return nil, fmt.Errorf("%w: key has no curve25519 decryption key", ErrMalformed)
	}
	return kp, nil
}

// Wipe zeroes the private key material and drops the key pair's references
// to it. The key pair must not be used to decrypt or sign after. It may be
// called more than once, but not while the key pair is in use.
func (kp *KeyPair) Wipe() {
	if kp.Priv != nil {
		kp.Priv.ClearPrivateParams()
	}
	kp.Dec = nil
}

// isCurve25519Encryption accepts legacy ECDH over Curve25519 (algorithm 18,
// what gopenpgp v2 generates), whose PKESK has the fixed encoding Open
// requires.
func isCurve25519Encryption(pk *packet.PublicKey) bool {
	switch pk.PubKeyAlgo {
	case packet.PubKeyAlgoECDH:
		c, err := pk.Curve()
		return err == nil && c == packet.Curve25519
	}
	return false
}

// ParsePublicKey parses a binary (unarmored) transferable OpenPGP public key
// and finds its curve25519 encryption subkey. It accepts exactly one key.
func ParsePublicKey(b []byte) (*PublicKey, error) {
	if len(b) == 0 || len(b) > MaxPublicKeySize {
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
	enc := encryptionSubkey(e)
	if enc == nil {
		return nil, fmt.Errorf("%w: no curve25519 encryption subkey", ErrMalformed)
	}
	k, err := pgp.NewKeyFromEntity(e)
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %v", ErrMalformed, err)
	}
	ring, err := pgp.NewKeyRing(k)
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %v", ErrMalformed, err)
	}
	return &PublicKey{Raw: bytes.Clone(b), Ring: ring, Enc: enc, Fpr: fingerprintOf(e.PrimaryKey)}, nil
}

// fingerprintOf is SHA-256 over the 0x99-prefixed public-key packet body, the
// same value gopenpgp's GetSHA256Fingerprint returns in hex.
func fingerprintOf(pk *packet.PublicKey) [32]byte {
	h := sha256.New()
	_ = pk.SerializeForHash(h) // writing to a hash cannot fail
	var f [32]byte
	h.Sum(f[:0])
	return f
}

// encryptionSubkey returns the entity's first unrevoked curve25519 subkey
// whose binding signature allows encryption, or nil.
func encryptionSubkey(e *openpgp.Entity) *packet.PublicKey {
	for _, sk := range e.Subkeys {
		if sk.Sig != nil && sk.Sig.FlagsValid && (sk.Sig.FlagEncryptCommunications || sk.Sig.FlagEncryptStorage) &&
			isCurve25519Encryption(sk.PublicKey) && len(sk.Revocations) == 0 {
			return sk.PublicKey
		}
	}
	return nil
}
