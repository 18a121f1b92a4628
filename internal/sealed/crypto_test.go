package sealed

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"testing"
)

// TestScratchHMAC checks the reused HMAC-SHA256 states against crypto/hmac
// for every key length the package could use (0..64 bytes) and messages
// around the block size, including a state used again after another key.
func TestScratchHMAC(t *testing.T) {
	s := getScratch()
	defer s.put()
	for klen := 0; klen <= sha256.BlockSize; klen++ {
		for _, mlen := range []int{0, 1, 55, 56, 63, 64, 65, 200, 4097} {
			key := make([]byte, klen)
			msg := make([]byte, mlen)
			rand.Read(key)
			rand.Read(msg)
			s.macStart(key)
			s.inner.Write(msg)
			s.macEnd(key)
			m := hmac.New(sha256.New, key)
			m.Write(msg)
			if want := m.Sum(nil); !bytes.Equal(s.sum[:], want) {
				t.Fatalf("key of %d bytes, message of %d: HMAC %x, crypto/hmac %x", klen, mlen, s.sum, want)
			}
		}
	}
}

// TestScratchHKDF checks deriveHopKeys against crypto/hkdf's Key with the
// same secret, no salt and the same info, as the package derived them
// before it reused its HMAC states.
func TestScratchHKDF(t *testing.T) {
	s := getScratch()
	defer s.put()
	for range 50 {
		var sec, alpha [KeySize]byte
		var pub PublicKey
		rand.Read(sec[:])
		rand.Read(alpha[:])
		rand.Read(pub[:])
		s.sec = sec
		s.deriveHopKeys(alpha[:], &pub)
		info := append(append([]byte(hopLabel), alpha[:]...), pub[:]...)
		want, err := hkdf.Key(sha256.New, sec[:], nil, string(info), hopKeysSize)
		if err != nil {
			t.Fatal(err)
		}
		k := &s.k
		got := bytes.Join([][]byte{k.mac[:], k.hdr[:], k.fwd[:], k.bck[:], k.tag[:]}, nil)
		if !bytes.Equal(got, want) {
			t.Fatalf("hop keys\n%x\ncrypto/hkdf\n%x", got, want)
		}
		if s.sec != ([KeySize]byte{}) || s.prk != ([sha256.Size]byte{}) {
			t.Fatal("deriveHopKeys left the secret or the PRK in the scratch state")
		}
	}
}

// refLioness is LIONESS round by round with crypto/hmac and a fresh
// AES-256-CTR per round, as the package computed it before it fused a
// stream round with the hash round after it.
func refLioness(k *[128]byte, b []byte, decrypt bool) {
	L, R := b[:lionessBlock], b[lionessBlock:]
	stream := func(sub []byte) {
		key := make([]byte, 32)
		subtle.XORBytes(key, L, sub)
		blk, _ := aes.NewCipher(key)
		cipher.NewCTR(blk, make([]byte, aes.BlockSize)).XORKeyStream(R, R)
	}
	hash := func(sub []byte) {
		m := hmac.New(sha256.New, sub)
		m.Write(R)
		subtle.XORBytes(L, L, m.Sum(nil))
	}
	if decrypt {
		hash(k[96:])
		stream(k[64:96])
		hash(k[32:64])
		stream(k[:32])
		return
	}
	stream(k[:32])
	hash(k[32:64])
	stream(k[64:96])
	hash(k[96:])
}

// TestLionessRounds checks the fused LIONESS against the round-by-round
// reference, in both directions, for blocks that end before, on and after
// a chunk boundary.
func TestLionessRounds(t *testing.T) {
	s := getScratch()
	defer s.put()
	for _, n := range []int{lionessBlock + 1, 100, lionessBlock + lionessChunk - 1, lionessBlock + lionessChunk, lionessBlock + lionessChunk + 1, Small.Size(), Large.Size(), Large.Size() - payloadAt} {
		var seed [KeySize]byte
		rand.Read(seed[:])
		b := make([]byte, n)
		rand.Read(b)
		l := s.lioness(&seed)
		for _, dec := range []bool{false, true} {
			got := bytes.Clone(b)
			want := bytes.Clone(b)
			if dec {
				l.decrypt(got)
			} else {
				l.encrypt(got)
			}
			refLioness(&l.k, want, dec)
			if !bytes.Equal(got, want) {
				t.Fatalf("%d bytes, decrypt %v: differs from the round-by-round LIONESS", n, dec)
			}
		}
		c := bytes.Clone(b)
		l.encrypt(c)
		l.decrypt(c)
		if !bytes.Equal(c, b) {
			t.Fatalf("%d bytes: decrypt(encrypt(b)) != b", n)
		}
	}
}

// TestScratchWiped: a scratch state goes back to the pool with no secret
// in it (shared secret, PRK, HKDF output, hop keys, LIONESS key, pads,
// MAC).
func TestScratchWiped(t *testing.T) {
	s := getScratch()
	rand.Read(s.sec[:])
	var alpha [KeySize]byte
	var pub PublicKey
	s.deriveHopKeys(alpha[:], &pub)
	s.headerMAC(&s.k.mac, []byte("header"))
	var seed [KeySize]byte
	rand.Read(seed[:])
	s.lioness(&seed).encrypt(make([]byte, 100))
	s.put()
	var zero scratch
	if s.sec != zero.sec || s.prk != zero.prk || s.okm != zero.okm || s.k != zero.k ||
		s.l.k != zero.l.k || s.l.s != nil || s.pad != zero.pad || s.sum != zero.sum {
		t.Fatal("put left a secret in the scratch state")
	}
}
