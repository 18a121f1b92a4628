// Package onionaddr encodes and parses Tor v3 onion service addresses, as
// specified in tor's rend-spec-v3 ("Encoding onion addresses"):
//
//	onion_address = base32(PUBKEY | CHECKSUM | VERSION) + ".onion"
//	CHECKSUM      = SHA3-256(".onion checksum" | PUBKEY | VERSION)[:2]
//	VERSION       = 0x03
//
// PUBKEY is the service's 32-byte ed25519 identity key. The base32 text is
// lowercase and exactly 56 characters long (35 bytes, no padding).
//
// Parse rejects what tor's client rejects (hs_address_is_valid): a wrong
// length, text that is not base32, a bad checksum, and an identity key that
// is not on the curve, is the identity point, or has a torsion component
// (which would give one service several addresses). It also rejects versions
// other than 3 and non-canonical point encodings, which no ed25519
// implementation produces.
package onionaddr

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha3"
	"encoding/base32"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

const (
	// Version is the onion service protocol version this package speaks.
	Version = 3

	// IDLen is the length of a v3 service id: the address without ".onion".
	IDLen = 56

	// Suffix is the top-level domain of onion addresses.
	Suffix = ".onion"
)

// ErrInvalid reports a string that is not a valid v3 onion address. Parse and
// SplitAddr wrap it with the reason.
var ErrInvalid = errors.New("onionaddr: invalid onion address")

// Reasons wrapped together with ErrInvalid; unexported so that tests can
// check which rule fired without callers depending on it.
var (
	errLength   = errors.New("wrong length")
	errBase32   = errors.New("not base32")
	errChecksum = errors.New("bad checksum")
	errVersion  = errors.New("unsupported version")
	errKey      = errors.New("bad identity key")
	errHostPort = errors.New("not host:port")
	errPort     = errors.New("bad port")
	errNoSuffix = errors.New("missing .onion suffix")
)

const (
	checksumPrefix = ".onion checksum"
	decodedLen     = ed25519.PublicKeySize + 2 + 1 // 35 bytes, 56 base32 chars
)

// encoding is RFC 4648 base32 without padding. Onion addresses use it in
// lowercase; Parse uppercases its input before decoding.
var encoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func checksum(pub []byte, version byte) [2]byte {
	h := sha3.New256()
	h.Write([]byte(checksumPrefix))
	h.Write(pub)
	h.Write([]byte{version})
	var sum [2]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// ServiceID returns the 56-character v3 service id (the onion address without
// ".onion") of the ed25519 identity key pub. It encodes any 32 bytes without
// validating them as a curve point; Parse does the validation. It returns ""
// if pub is not 32 bytes long.
func ServiceID(pub ed25519.PublicKey) string {
	if len(pub) != ed25519.PublicKeySize {
		return ""
	}
	var raw [decodedLen]byte
	copy(raw[:], pub)
	sum := checksum(pub, Version)
	raw[32], raw[33] = sum[0], sum[1]
	raw[34] = Version
	return strings.ToLower(encoding.EncodeToString(raw[:]))
}

// Parse returns the ed25519 identity key of the v3 onion address s, given as
// a service id ("<56 chars>") or as a host name ("<56 chars>.onion"), in any
// letter case. Every failure wraps ErrInvalid: wrong length, characters
// outside the base32 alphabet, a bad checksum, a version other than 3, or an
// identity key that is not a valid, torsion-free, canonical ed25519 point.
// The point check costs about 0.4 ms; Decode skips it.
func Parse(s string) (ed25519.PublicKey, error) {
	pub, err := Decode(s)
	if err != nil {
		return nil, err
	}
	if err := CheckKey(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// CheckKey reports why pub is not an ed25519 public key that tor accepts as
// an onion service identity (not a canonical encoding of a point of the
// curve, the identity point, or a point with a torsion component), wrapping
// ErrInvalid; nil if it is one. It is Parse's check of the key, for keys
// that arrive as raw bytes. It costs about 0.35 ms.
func CheckKey(pub []byte) error {
	if err := checkKey(pub); err != nil {
		return fmt.Errorf("%w: %w: %w", ErrInvalid, errKey, err)
	}
	return nil
}

// Decode is Parse without the check that the key is a valid ed25519 point:
// for addresses this program made itself (ServiceID of a key it holds), where
// only the encoding needs undoing.
func Decode(s string) (ed25519.PublicKey, error) {
	id := trimSuffix(s)
	if len(id) != IDLen {
		return nil, fmt.Errorf("%w: %w: %d characters, want %d", ErrInvalid, errLength, len(id), IDLen)
	}
	var up [IDLen]byte
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z':
			up[i] = c - 'a' + 'A'
		case c >= 'A' && c <= 'Z', c >= '2' && c <= '7':
			up[i] = c
		default:
			return nil, fmt.Errorf("%w: %w: byte 0x%02x at offset %d", ErrInvalid, errBase32, c, i)
		}
	}
	var raw [decodedLen]byte
	// 56 characters of 5 bits are exactly 35 bytes: no padding, no spare bits.
	if n, err := encoding.Decode(raw[:], up[:]); err != nil || n != decodedLen {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, errBase32)
	}
	pub, sum, version := raw[:32], raw[32:34], raw[34]
	want := checksum(pub, version)
	if sum[0] != want[0] || sum[1] != want[1] {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, errChecksum)
	}
	if version != Version {
		return nil, fmt.Errorf("%w: %w %d", ErrInvalid, errVersion, version)
	}
	return ed25519.PublicKey(bytes.Clone(pub)), nil
}

// SplitAddr splits a dialable onion address "<id>.onion:<port>" into its
// lowercase service id and its port (1 to 65535). The id is validated as
// Parse does. Every failure wraps ErrInvalid.
func SplitAddr(addr string) (serviceID string, port int, err error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %w", ErrInvalid, errHostPort)
	}
	if trimSuffix(host) == host {
		return "", 0, fmt.Errorf("%w: %w", ErrInvalid, errNoSuffix)
	}
	if _, err := Parse(host); err != nil {
		return "", 0, err
	}
	p, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || p == 0 {
		return "", 0, fmt.Errorf("%w: %w %q", ErrInvalid, errPort, truncate(portStr, 8))
	}
	return strings.ToLower(trimSuffix(host)), int(p), nil
}

// trimSuffix removes a ".onion" suffix in any letter case.
func trimSuffix(s string) string {
	if len(s) >= len(Suffix) && strings.EqualFold(s[len(s)-len(Suffix):], Suffix) {
		return s[:len(s)-len(Suffix)]
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
