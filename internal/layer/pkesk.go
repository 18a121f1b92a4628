package layer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp/ecdh"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ghostcomm/ghostcomm/internal/curve"
)

// The PKESK of a sealed box, made and opened with go-crypto's ECDH
// (RFC 6637: X25519, the KDF, AES key wrap) without its packet layer. The
// packet around the ECDH fields has the one fixed layout Open accepts
// (pkeskPrefix), so it is written and read here directly: go-crypto's
// packet writer and parser cost about twenty allocations per box, more than
// the ECDH itself. Keys that are not v4 cv25519 ECDH keys go through
// go-crypto's packet layer as before. The tests check that both ways give
// the same bytes from the same randomness and open the same packets.

// cv25519OID is the OID of Curve25519 for legacy OpenPGP ECDH
// (1.3.6.1.4.1.3029.1.5.1), with its length byte, as the KDF takes it.
var cv25519OID = []byte{0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x97, 0x55, 0x01, 0x05, 0x01}

// keyBlockSize is the size of the wrapped key block: cipher algorithm,
// the key, its two-byte checksum.
const keyBlockSize = 1 + KeySize + 2

// cv25519Key returns pub's ECDH key when pub is a v4 cv25519 ECDH key.
func cv25519Key(pub *packet.PublicKey) (*ecdh.PublicKey, bool) {
	if pub.Version != 4 || pub.PubKeyAlgo != packet.PubKeyAlgoECDH || len(pub.Fingerprint) != 20 {
		return nil, false
	}
	if c, err := pub.Curve(); err != nil || c != packet.Curve25519 {
		return nil, false // the KDF takes the key's OID: it must be cv25519OID
	}
	k, ok := pub.PublicKey.(*ecdh.PublicKey)
	return k, ok
}

// sealPKESK appends to dst the PKESK that wraps key for pub.
func sealPKESK(dst []byte, pub *packet.PublicKey, key *Key, rnd io.Reader) ([]byte, error) {
	k, ok := cv25519Key(pub)
	if !ok {
		return sealPKESKPacket(dst, pub, key, rnd)
	}
	var block [keyBlockSize]byte
	block[0] = byte(packet.CipherAES256)
	copy(block[1:], key[:])
	binary.BigEndian.PutUint16(block[1+KeySize:], checksum(key[:]))
	vsG, c, err := ecdh.Encrypt(rnd, k, block[:], cv25519OID, pub.Fingerprint)
	clear(block[:])
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: wrapping layer key: %w", err)
	}
	if len(vsG) != 33 || vsG[0] != pkeskPrefix[14] || len(c) != pkeskWrapLen {
		return nil, fmt.Errorf("ghostcomm: wrapping layer key: unexpected ECDH output")
	}
	dst = append(dst, pkeskPrefix[:14]...)
	dst = append(dst, vsG...)
	dst = append(dst, pkeskWrapLen)
	return append(dst, c...), nil
}

// sealPKESKPacket is sealPKESK through go-crypto's packet writer.
func sealPKESKPacket(dst []byte, pub *packet.PublicKey, key *Key, rnd io.Reader) ([]byte, error) {
	w := &appender{dst}
	if err := packet.SerializeEncryptedKeyWithHiddenOption(w, pub, packet.CipherAES256, key[:], true, &packet.Config{Rand: rnd}); err != nil {
		return nil, fmt.Errorf("ghostcomm: wrapping layer key: %w", err)
	}
	if len(w.b) != len(dst)+PKESKSize {
		return nil, fmt.Errorf("ghostcomm: wrapping layer key: PKESK of %d bytes", len(w.b)-len(dst))
	}
	return w.b, nil
}

func checksum(b []byte) uint16 {
	var s uint16
	for _, c := range b {
		s += uint16(c)
	}
	return s
}

// checkPKESK refuses a PKESK of another layout than the one Seal writes,
// or with a non-canonical ephemeral point.
func checkPKESK(b []byte) error {
	if [15]byte(b[:15]) != pkeskPrefix || b[pkeskWrapLenAt] != pkeskWrapLen {
		return fmt.Errorf("%w: not a hidden-recipient cv25519 PKESK", ErrMalformed)
	}
	if !curve.CanonicalU(b[15:47]) {
		return fmt.Errorf("%w: non-canonical ephemeral point", ErrMalformed)
	}
	return nil
}

// unwrapPKESK returns the key that the first of dec unwraps from pkesk,
// whose layout checkPKESK has accepted. It fails with ErrAuth when no key
// unwraps it, and with ErrMalformed when the unwrapped key is not an
// AES-256 key.
func unwrapPKESK(dec []*packet.PrivateKey, pkesk []byte) (Key, error) {
	return unwrap(dec, pkesk, true)
}

// unwrap is unwrapPKESK; with direct false, every key goes through
// go-crypto's packet layer (for the tests).
func unwrap(dec []*packet.PrivateKey, pkesk []byte, direct bool) (Key, error) {
	var ek *packet.EncryptedKey // parsed only for a key that needs it
	for _, k := range dec {
		var cipher packet.CipherFunction
		var raw []byte
		if priv, ok := k.PrivateKey.(*ecdh.PrivateKey); ok && direct && !k.Dummy() {
			if _, ok := cv25519Key(&k.PublicKey); ok {
				b, err := ecdh.Decrypt(priv, pkesk[14:47], pkesk[48:PKESKSize], cv25519OID, k.PublicKey.Fingerprint)
				if err != nil || len(b) < 3 {
					continue
				}
				cipher, raw = packet.CipherFunction(b[0]), b[1:len(b)-2]
				if !cipher.IsSupported() || checksum(raw) != binary.BigEndian.Uint16(b[len(b)-2:]) {
					clear(b)
					continue
				}
				defer clear(b)
				return keyOf(cipher, raw)
			}
		}
		if ek == nil {
			p, err := packet.Read(bytes.NewReader(pkesk))
			if err != nil {
				return Key{}, fmt.Errorf("%w: key packet: %v", ErrMalformed, err)
			}
			var ok bool
			if ek, ok = p.(*packet.EncryptedKey); !ok || ek.Version != 3 {
				return Key{}, fmt.Errorf("%w: expected a v3 PKESK packet", ErrMalformed)
			}
		}
		if ek.Decrypt(k, nil) == nil {
			defer clear(ek.Key)
			return keyOf(ek.CipherFunc, ek.Key)
		}
	}
	return Key{}, fmt.Errorf("%w: layer key does not unwrap with this key", ErrAuth)
}

// keyOf checks that an unwrapped key is an AES-256 key, and copies it.
func keyOf(cipher packet.CipherFunction, raw []byte) (Key, error) {
	var k Key
	if cipher != packet.CipherAES256 || len(raw) != KeySize {
		return k, fmt.Errorf("%w: layer key is not AES-256", ErrMalformed)
	}
	copy(k[:], raw)
	return k, nil
}
