// Package curve holds the Curve25519 checks that ghostcomm's two packet
// formats (internal/layer and internal/sealed) share.
package curve

// CanonicalU reports whether u is a 32-byte little-endian Curve25519
// u-coordinate in canonical form: below 2^255-19. X25519 ignores the top
// bit and reduces larger values, so without this check two encodings give
// the same key and the same shared secret.
func CanonicalU(u []byte) bool {
	if len(u) != 32 || u[31]&0x80 != 0 {
		return false
	}
	if u[31] != 0x7f || u[0] < 0xed {
		return true
	}
	for _, b := range u[1:31] {
		if b != 0xff {
			return true
		}
	}
	return false
}
