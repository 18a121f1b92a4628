package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/subtle"
	"hash"
	"sync"
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

// hopKeysSize is the length of HKDF's output that hopKeys holds.
const hopKeysSize = 32 + 32 + 2*KeySize + TagSize // 144

// scratch is the working state of one call that hashes: two SHA-256 states
// that HMAC-SHA256 reuses (crypto/hmac cannot be given a new key, and each
// hmac.New costs five allocations), and the buffers whose slices pass
// through the hash.Hash interface (which would move them to the heap on
// every call). A hop's keys live here too, so that handing the replay tag to
// a Replay does not move them to the heap. It comes from scratchPool and
// goes back wiped.
type scratch struct {
	inner, outer hash.Hash
	pad          [sha256.BlockSize]byte
	sum          [sha256.Size]byte
	prk          [sha256.Size]byte
	sec          [KeySize]byte // the X25519 shared secret
	info         [len(hopLabel) + 2*KeySize + 1]byte
	okm          [(hopKeysSize + sha256.Size - 1) / sha256.Size * sha256.Size]byte
	k            hopKeys
	gamma        [MACSize]byte
	l            lioness
}

var scratchPool = sync.Pool{New: func() any {
	return &scratch{inner: sha256.New(), outer: sha256.New()}
}}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

// put wipes s's secrets and returns it to the pool. (The SHA-256 states
// keep the last partial block they hashed in their buffers, as the states
// crypto/hmac leaves to the garbage collector do.)
func (s *scratch) put() {
	s.inner.Reset()
	s.outer.Reset()
	clear(s.pad[:])
	clear(s.sum[:])
	clear(s.prk[:])
	clear(s.sec[:])
	clear(s.okm[:])
	s.k = hopKeys{}
	clear(s.l.k[:])
	s.l.s = nil
	scratchPool.Put(s)
}

// macStart begins HMAC-SHA256 (RFC 2104) under key (at most a block, 64
// bytes, as every key here is): write the message to s.inner, then call
// macEnd with the same key.
func (s *scratch) macStart(key []byte) {
	for i := range s.pad {
		s.pad[i] = 0x36
	}
	subtle.XORBytes(s.pad[:len(key)], s.pad[:len(key)], key)
	s.inner.Reset()
	s.inner.Write(s.pad[:])
}

// macEnd finishes the HMAC macStart began: the MAC is in s.sum.
func (s *scratch) macEnd(key []byte) {
	s.inner.Sum(s.sum[:0])
	for i := range s.pad {
		s.pad[i] = 0x5c
	}
	subtle.XORBytes(s.pad[:len(key)], s.pad[:len(key)], key)
	s.outer.Reset()
	s.outer.Write(s.pad[:])
	s.outer.Write(s.sum[:])
	s.outer.Sum(s.sum[:0])
}

// deriveHopKeys is HKDF-SHA256 (RFC 5869) with s.sec as the secret, no salt,
// and hopLabel ‖ α ‖ the hop's public key as info (the KEM context, as in
// RFC 9180's DHKEM): mac ‖ hdr ‖ fwd ‖ bck ‖ tag, into s.k. It is
// crypto/hkdf's Key on s's reused HMAC states (the tests compare the two).
func (s *scratch) deriveHopKeys(alpha []byte, pub *PublicKey) {
	// Extract: PRK = HMAC(salt, secret); no salt is HashLen zero bytes,
	// which HMAC pads to the same block as an empty key.
	s.macStart(nil)
	s.inner.Write(s.sec[:])
	s.macEnd(nil)
	s.prk = s.sum
	clear(s.sec[:])
	// Expand: T(i) = HMAC(PRK, T(i-1) ‖ info ‖ i).
	n := copy(s.info[:], hopLabel)
	n += copy(s.info[n:], alpha)
	n += copy(s.info[n:], pub[:])
	for i := 0; i*sha256.Size < len(s.okm); i++ {
		s.info[n] = byte(i + 1)
		s.macStart(s.prk[:])
		if i > 0 {
			s.inner.Write(s.okm[(i-1)*sha256.Size : i*sha256.Size])
		}
		s.inner.Write(s.info[:])
		s.macEnd(s.prk[:])
		copy(s.okm[i*sha256.Size:], s.sum[:])
	}
	k := &s.k
	n = copy(k.mac[:], s.okm[:])
	n += copy(k.hdr[:], s.okm[n:])
	n += copy(k.fwd[:], s.okm[n:])
	n += copy(k.bck[:], s.okm[n:])
	copy(k.tag[:], s.okm[n:])
	clear(s.okm[:])
	clear(s.prk[:])
}

// headerMAC writes HMAC-SHA256(key, ver ‖ α ‖ β)[:MACSize] to s.gamma.
func (s *scratch) headerMAC(key *[32]byte, verAlphaBeta []byte) {
	s.macStart(key[:])
	s.inner.Write(verAlphaBeta)
	s.macEnd(key[:])
	copy(s.gamma[:], s.sum[:])
}

// headerStream is β's keystream: AES-256-CTR under key with a zero IV, of
// (MaxHops+1) slots: the routing block and the slot of fresh bytes that
// takes the place of the one shifted off.
func headerStream(out *[(MaxHops + 1) * SlotSize]byte, key *[32]byte) {
	clear(out[:])
	ctrXOR(key[:], out[:])
}

// zeroIV is the IV of every CTR stream here (read only: NewCTR copies it).
var zeroIV [aes.BlockSize]byte

// newCTR is AES-256-CTR under key with a zero IV.
func newCTR(key []byte) cipher.Stream {
	block, _ := aes.NewCipher(key) // every key here is 32 bytes: never fails
	return cipher.NewCTR(block, zeroIV[:])
}

// ctrXOR XORs AES-256-CTR(key, IV 0) into b.
func ctrXOR(key, b []byte) { newCTR(key).XORKeyStream(b, b) }

// lioness is a LIONESS key (Anderson and Biham 1996) with AES-256-CTR as the
// stream cipher and HMAC-SHA256 as the hash: four 32-byte subkeys. It is a
// strong pseudorandom permutation on blocks of more than 32 bytes: a change
// to any bit of the ciphertext turns all of the plaintext into garbage.
type lioness struct {
	k [4 * 32]byte // K1 ‖ K2 ‖ K3 ‖ K4
	s *scratch     // the HMAC states of its hash rounds
}

// lioness returns s's LIONESS key, made from seed. It lives in s: put
// wipes it.
func (s *scratch) lioness(seed *[KeySize]byte) *lioness {
	s.l.s = s
	s.l.init(seed)
	return &s.l
}

// lionessCounters are the CTR counter blocks 0..7 under a zero IV.
var lionessCounters = func() (c [4 * 32 / aes.BlockSize][aes.BlockSize]byte) {
	for i := range c {
		c[i][aes.BlockSize-1] = byte(i)
	}
	return c
}()

// sub is subkey i (1..4).
func (l *lioness) sub(i int) *[32]byte { return (*[32]byte)(l.k[(i-1)*32 : i*32]) }

// lionessBlock is the left part's size: an AES-256 key, a SHA-256 output.
const lionessBlock = 32

// init expands a KeySize-byte seed into a LIONESS key: the subkeys are the
// first 128 bytes of the AES-256-CTR keystream under the seed (zero IV), a
// PRF of the seed that costs one key schedule and eight blocks.
func (l *lioness) init(seed *[KeySize]byte) {
	block, _ := aes.NewCipher(seed[:]) // 32 bytes: never fails
	for i := range lionessCounters {
		block.Encrypt(l.k[i*aes.BlockSize:(i+1)*aes.BlockSize], lionessCounters[i][:])
	}
}

// encrypt enciphers b (more than lionessBlock bytes) in place:
// R ^= S(L⊕K1); L ^= H_K2(R); R ^= S(L⊕K3); L ^= H_K4(R).
func (l *lioness) encrypt(b []byte) {
	L, R := b[:lionessBlock], b[lionessBlock:]
	l.streamHash(L, l.sub(1), l.sub(2), R)
	l.streamHash(L, l.sub(3), l.sub(4), R)
}

// decrypt deciphers b in place: the rounds of encrypt, in reverse.
func (l *lioness) decrypt(b []byte) {
	L, R := b[:lionessBlock], b[lionessBlock:]
	l.hash(L, l.sub(4), R)
	l.streamHash(L, l.sub(3), l.sub(2), R)
	l.stream(L, l.sub(1), R)
}

// lionessChunk is how much of R streamHash enciphers before it hashes it:
// small enough that the hash reads it from the L1 cache the stream wrote
// it to.
const lionessChunk = 4096

// streamHash is stream(L, ks, R) then hash(L, kh, R) in one pass over R:
// each chunk of R is enciphered, then hashed while it is in the cache. The
// stream's key is L ⊕ ks before the hash changes L, as in the two rounds.
func (l *lioness) streamHash(L []byte, ks, kh *[32]byte, R []byte) {
	var key [32]byte
	subtle.XORBytes(key[:], L, ks[:])
	ctr := newCTR(key[:])
	clear(key[:])
	s := l.s
	s.macStart(kh[:])
	for len(R) > 0 {
		n := min(len(R), lionessChunk)
		ctr.XORKeyStream(R[:n], R[:n])
		s.inner.Write(R[:n])
		R = R[n:]
	}
	s.macEnd(kh[:])
	subtle.XORBytes(L, L, s.sum[:])
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
	s := l.s
	s.macStart(k[:])
	s.inner.Write(R)
	s.macEnd(k[:])
	subtle.XORBytes(L, L, s.sum[:])
}
