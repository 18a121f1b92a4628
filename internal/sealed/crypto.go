package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"hash"
)

// Labels of the key derivations.
const (
	hopLabel = "ghostcomm sealed v1 hop"
)

// hopKeys are the keys one hop derives from its shared secret.
type hopKeys struct {
	mac [32]byte      // γ's HMAC key
	hdr [32]byte      // β's AES-256-CTR key
	fwd [KeySize]byte // payload LIONESS seed (and, in Chain mode, the previous hop's link key)
	bck [KeySize]byte // reply LIONESS seed
	tag [TagSize]byte // replay tag
}

// deriveHopKeys is HKDF-SHA256 with s as the secret, no salt, and
// hopLabel ‖ α ‖ the hop's public key as info (the KEM context, as in RFC
// 9180's DHKEM): mac ‖ hdr ‖ fwd ‖ bck ‖ tag.
func deriveHopKeys(k *hopKeys, s *[KeySize]byte, alpha []byte, pub *PublicKey) {
	var info [len(hopLabel) + 2*KeySize]byte
	n := copy(info[:], hopLabel)
	n += copy(info[n:], alpha)
	copy(info[n:], pub[:])
	out, _ := hkdf.Key(sha256.New, s[:], nil, string(info[:]), 32+32+2*KeySize+TagSize) // 144 bytes: cannot fail
	n = copy(k.mac[:], out[:])
	n += copy(k.hdr[:], out[n:])
	n += copy(k.fwd[:], out[n:])
	n += copy(k.bck[:], out[n:])
	copy(k.tag[:], out[n:])
	clear(out)
}

// headerMAC returns HMAC-SHA256(key, ver ‖ α ‖ β)[:MACSize] into out.
func headerMAC(out *[MACSize]byte, key *[32]byte, verAlphaBeta []byte) {
	m := hmac.New(sha256.New, key[:])
	m.Write(verAlphaBeta)
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	copy(out[:], sum[:])
}

// headerStream is β's keystream: AES-256-CTR under key with a zero IV, of
// (MaxHops+1) slots: the routing block and the slot of fresh bytes that
// takes the place of the one shifted off.
func headerStream(out *[(MaxHops + 1) * SlotSize]byte, key *[32]byte) {
	clear(out[:])
	ctrXOR(key[:], out[:])
}

// newCTR is AES-256-CTR under key with a zero IV.
func newCTR(key []byte) cipher.Stream {
	block, _ := aes.NewCipher(key) // every key here is 32 bytes: never fails
	var iv [aes.BlockSize]byte
	return cipher.NewCTR(block, iv[:])
}

// ctrXOR XORs AES-256-CTR(key, IV 0) into b.
func ctrXOR(key, b []byte) { newCTR(key).XORKeyStream(b, b) }

// lioness is a LIONESS key (Anderson and Biham 1996) with AES-256-CTR as the
// stream cipher and HMAC-SHA256 as the hash: four 32-byte subkeys. It is a
// strong pseudorandom permutation on blocks of more than 32 bytes: a change
// to any bit of the ciphertext turns all of the plaintext into garbage.
type lioness struct {
	k [4 * 32]byte // K1 ‖ K2 ‖ K3 ‖ K4
}

// sub is subkey i (1..4).
func (l *lioness) sub(i int) *[32]byte { return (*[32]byte)(l.k[(i-1)*32 : i*32]) }

// lionessBlock is the left part's size: an AES-256 key, a SHA-256 output.
const lionessBlock = 32

// init expands a KeySize-byte seed into a LIONESS key: the subkeys are the
// first 128 bytes of the AES-256-CTR keystream under the seed (zero IV), a
// PRF of the seed that costs one key schedule and eight blocks.
func (l *lioness) init(seed *[KeySize]byte) {
	block, _ := aes.NewCipher(seed[:]) // 32 bytes: never fails
	var ctr [aes.BlockSize]byte
	for i := 0; i < len(l.k); i += aes.BlockSize {
		ctr[aes.BlockSize-1] = byte(i / aes.BlockSize) // the counter blocks 0..7 of CTR with a zero IV
		block.Encrypt(l.k[i:i+aes.BlockSize], ctr[:])
	}
}

// encrypt enciphers b (more than lionessBlock bytes) in place:
// R ^= S(L⊕K1); L ^= H_K2(R); R ^= S(L⊕K3); L ^= H_K4(R).
func (l *lioness) encrypt(b []byte) {
	L, R := b[:lionessBlock], b[lionessBlock:]
	l.stream(L, l.sub(1), R)
	l.hash(L, l.sub(2), R)
	l.stream(L, l.sub(3), R)
	l.hash(L, l.sub(4), R)
}

// decrypt deciphers b in place: the rounds of encrypt, in reverse.
func (l *lioness) decrypt(b []byte) {
	L, R := b[:lionessBlock], b[lionessBlock:]
	l.hash(L, l.sub(4), R)
	l.stream(L, l.sub(3), R)
	l.hash(L, l.sub(2), R)
	l.stream(L, l.sub(1), R)
}

// stream XORs AES-256-CTR(L ⊕ k, IV 0) into R.
func (l *lioness) stream(L []byte, k *[32]byte, R []byte) {
	var key [32]byte
	subtle.XORBytes(key[:], L, k[:])
	ctrXOR(key[:], R)
	clear(key[:])
}

// hash XORs HMAC-SHA256(k, R) into L.
func (l *lioness) hash(L []byte, k *[32]byte, R []byte) {
	var m hash.Hash = hmac.New(sha256.New, k[:])
	m.Write(R)
	var sum [sha256.Size]byte
	m.Sum(sum[:0])
	subtle.XORBytes(L, L, sum[:])
}
