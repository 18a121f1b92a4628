// Package layer is ghostcomm's cryptographic core: the sealed box (a fresh
// key wrapped in an OpenPGP PKESK, then a raw Fernet token under that key),
// the nested onion layers built from it, and the OpenPGP keys both use. The
// byte layouts are in docs/PROTOCOL.md.
package layer

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"slices"
	"sync"

	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/ghostcomm/ghostcomm/internal/errs"
)

// Errors; package ghostcomm exports these same values.
var (
	ErrMalformed          = errs.ErrMalformed
	ErrUnsupportedVersion = errs.ErrUnsupportedVersion
	ErrAuth               = errs.ErrAuth
)

// A sealed box is an OpenPGP v3 PKESK packet (ECDH cv25519, hidden recipient
// key ID, symmetric algorithm AES-256) that wraps a fresh 32-byte key,
// followed directly by a raw (not base64) Fernet token made with that key.
// Its Fernet timestamp is set by the caller: ghostcomm uses the lock-cycle's
// NotBefore, the same for every message of a cycle, so that it carries no
// per-message information.
//
// An onion layer is a sealed box whose plaintext is a one-byte header, then
// either the next hop's layer (header = index of the next hop in the cycle's
// node list) or random padding (header = ExitHop).
const (
	KeySize        = 32              // Fernet key, also the AES-256 session key
	FernetOverhead = 1 + 8 + 16 + 32 // version, timestamp, IV, HMAC
	ExitHop        = 0xFF            // header byte: this hop is the last
	MaxNodes       = ExitHop         // node indexes are 0..254

	fernetVersion = 0x80
	minTokenSize  = FernetOverhead + 16 // at least one padded block
)

// Overhead is the number of bytes each hop adds to the onion: a cv25519 PKESK
// (96 bytes), a Fernet token's overhead (57 bytes), the one-byte header and
// the PKCS#7 padding that makes the Fernet plaintext a whole number of AES
// blocks. Nested layers always add exactly this much: every layer's length is
// 9 modulo 16, so the padding of the next one out is always 6 bytes.
const Overhead = 160

// Key derivation purposes (HKDF-SHA256 info strings).
const (
	PurposeReply = "ghostcomm v1 reply"
	PurposeError = "ghostcomm v1 error"
)

// Key is a 32-byte Fernet key. The first half signs (HMAC-SHA256), the
// second half encrypts (AES-128-CBC), as the Fernet spec says.
type Key [KeySize]byte

// Derive returns the key for one purpose of this layer: HKDF-SHA256 with the
// layer key as secret, no salt, and the purpose as info.
func (k *Key) Derive(purpose string) Key {
	b, err := hkdf.Key(sha256.New, k[:], nil, purpose, KeySize)
	if err != nil {
		panic(err) // only for lengths over 255*32
	}
	var d Key
	copy(d[:], b)
	clear(b)
	return d
}

// Wipe zeroes the key.
func (k *Key) Wipe() { clear(k[:]) }

// NewKey reads a fresh key from rnd.
func NewKey(rnd io.Reader) (Key, error) {
	var k Key
	if _, err := io.ReadFull(rnd, k[:]); err != nil {
		return k, fmt.Errorf("ghostcomm: reading randomness: %w", err)
	}
	return k, nil
}

// FernetSeal appends to dst a raw Fernet token of msg under key with
// timestamp ts (unix seconds), its IV drawn from crypto/rand.
func FernetSeal(dst []byte, key *Key, ts int64, msg []byte) ([]byte, error) {
	return FernetSealRand(dst, key, ts, msg, rand.Reader)
}

// FernetSealRand is FernetSeal with the IV read from rnd.
//
// Tokens are made on the raw bytes, as the Fernet spec describes, rather
// than by fernet-go, whose API gives only the base64 text form: decoding
// every token it made cost a copy and a pass over the data for nothing. The
// tests check this code against the spec's vectors (generate.json), against
// fernet-go in both directions, and by a differential fuzzer.
//
// msg may overlap dst's spare capacity: it is copied into the token before
// anything else is written. When it lies exactly where the token's
// plaintext goes (at len(dst)+FernetHeader, with room for the padding and
// the HMAC after it), it is encrypted where it is, without a copy.
func FernetSealRand(dst []byte, key *Key, ts int64, msg []byte, rnd io.Reader) ([]byte, error) {
	var iv [aes.BlockSize]byte
	if _, err := io.ReadFull(rnd, iv[:]); err != nil {
		return nil, fmt.Errorf("ghostcomm: reading randomness: %w", err)
	}
	return fernetSeal(dst, key, ts, &iv, msg), nil
}

// FernetHeader is the size of a Fernet token before its ciphertext:
// version, timestamp and IV.
const FernetHeader = 1 + 8 + aes.BlockSize

// fernetSize is the size of the token of an n-byte plaintext.
func fernetSize(n int) int { return FernetOverhead + (n/aes.BlockSize+1)*aes.BlockSize }

// fernetSeal appends to dst the token of msg with the given IV: version,
// timestamp, IV, AES-128-CBC of msg with PKCS#7 padding, then the
// HMAC-SHA256 of all that.
func fernetSeal(dst []byte, key *Key, ts int64, iv *[aes.BlockSize]byte, msg []byte) []byte {
	start := len(dst)
	dst = slices.Grow(dst, fernetSize(len(msg)))
	tok := dst[start : start+fernetSize(len(msg))]
	ctEnd := len(tok) - sha256.Size
	ct := tok[FernetHeader:ctEnd]
	if len(msg) == 0 || &ct[0] != &msg[0] {
		copy(ct, msg)
	}
	tok[0] = fernetVersion
	binary.BigEndian.PutUint64(tok[1:9], uint64(ts))
	copy(tok[9:FernetHeader], iv[:])
	pad := len(ct) - len(msg)
	for i := len(msg); i < len(ct); i++ {
		ct[i] = byte(pad)
	}
	block, err := aes.NewCipher(key[16:])
	if err != nil {
		panic(err) // a 16-byte key always makes a cipher
	}
	cipher.NewCBCEncrypter(block, iv[:]).CryptBlocks(ct, ct)
	fernetMAC(tok[ctEnd:ctEnd], key, tok[:ctEnd])
	return dst[:start+len(tok)]
}

// fernetMAC appends to dst the HMAC-SHA256 (RFC 2104) of b under key's
// signing half. It is crypto/hmac's construction on a pooled SHA-256 state:
// hmac.New allocates five objects per call, a token's key changes every
// time, and crypto/hmac cannot be rekeyed. The spec's vectors and the
// comparisons with fernet-go check it.
func fernetMAC(dst []byte, key *Key, b []byte) []byte {
	m := macPool.Get().(*macState)
	defer macPool.Put(m)
	for i := range m.pad {
		m.pad[i] = 0x36
	}
	for i, c := range key[:16] {
		m.pad[i] ^= c
	}
	m.h.Reset()
	m.h.Write(m.pad[:])
	m.h.Write(b)
	inner := m.h.Sum(m.sum[:0])
	for i := range m.pad {
		m.pad[i] ^= 0x36 ^ 0x5c
	}
	m.h.Reset()
	m.h.Write(m.pad[:])
	m.h.Write(inner)
	dst = m.h.Sum(dst)
	clear(m.pad[:]) // nothing of the key stays in the pool
	clear(m.sum[:])
	m.h.Reset()
	return dst
}

// fernetVerify reports, in constant time, whether tag is the HMAC of b
// under key's signing half.
func fernetVerify(key *Key, b, tag []byte) bool {
	m := macPool.Get().(*macState)
	defer macPool.Put(m)
	return hmac.Equal(fernetMAC(m.mac[:0], key, b), tag)
}

// macState is fernetMAC's scratch state.
type macState struct {
	h   hash.Hash
	pad [64]byte // sha256.BlockSize
	sum [sha256.Size]byte
	mac [sha256.Size]byte
}

var macPool = sync.Pool{New: func() any { return &macState{h: sha256.New()} }}

// FernetOpen verifies and decrypts a raw Fernet token. It returns the
// plaintext and the token's timestamp, or an error matching ErrAuth (wrong
// key, altered bytes), ErrMalformed or ErrUnsupportedVersion. The timestamp
// is not checked here: it is authenticated with the rest and the caller
// compares it with its cycle.
//
// Opening works on the raw bytes directly, as the Fernet spec describes,
// rather than through fernet-go, whose API takes only the base64 text form:
// encoding every token once more only for fernet-go to decode it again
// halved the throughput of large messages. The tests check this code
// against the Fernet spec's vectors and against fernet-go in both
// directions, and by a differential fuzzer.
func FernetOpen(key *Key, tok []byte) ([]byte, int64, error) {
	return fernetOpen(key, tok, 0)
}

// fernetOpen is FernetOpen that returns a fresh buffer with the plaintext
// at offset at, and with room after it for the padding and the HMAC of a
// token of the same plaintext: a token of it can be sealed in place.
func fernetOpen(key *Key, tok []byte, at int) ([]byte, int64, error) {
	if len(tok) < minTokenSize || (len(tok)-FernetOverhead)%aes.BlockSize != 0 {
		return nil, 0, fmt.Errorf("%w: fernet token of %d bytes", ErrMalformed, len(tok))
	}
	if tok[0] != fernetVersion {
		return nil, 0, fmt.Errorf("%w: fernet version %#x", ErrUnsupportedVersion, tok[0])
	}
	// Encrypt-then-MAC: nothing is decrypted before the HMAC over version,
	// timestamp, IV and ciphertext verifies (in constant time).
	n := len(tok) - sha256.Size
	if !fernetVerify(key, tok[:n], tok[n:]) {
		return nil, 0, fmt.Errorf("%w: fernet token does not verify", ErrAuth)
	}
	block, err := aes.NewCipher(key[16:])
	if err != nil {
		return nil, 0, err
	}
	ct := tok[FernetHeader:n]
	c := at + len(ct)
	if at > 0 {
		c += sha256.Size
	}
	buf := make([]byte, at+len(ct), c)
	out := buf[at:]
	cipher.NewCBCDecrypter(block, tok[1+8:FernetHeader]).CryptBlocks(out, ct)
	pad := int(out[len(out)-1])
	if pad == 0 || pad > aes.BlockSize || pad > len(out) {
		return nil, 0, fmt.Errorf("%w: fernet padding", ErrAuth)
	}
	for _, b := range out[len(out)-pad:] {
		if int(b) != pad {
			return nil, 0, fmt.Errorf("%w: fernet padding", ErrAuth)
		}
	}
	return buf[:len(buf)-pad], int64(binary.BigEndian.Uint64(tok[1:9])), nil
}

// appender is an io.Writer that appends to its slice, in its capacity
// while there is room.
type appender struct{ b []byte }

func (a *appender) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

// Seal appends to dst a sealed box: key wrapped for pub in a hidden-recipient
// PKESK, then a raw Fernet token of msg under key at time ts. rnd supplies
// the PKESK's ephemeral key and the Fernet IV.
//
// msg may lie in dst's spare capacity where the box's plaintext goes, as
// with the buffer Opened.SealBuffer returns: it is then sealed in place,
// without a copy. It must not overlap the PKESKSize bytes after len(dst).
func Seal(dst []byte, pub *packet.PublicKey, key *Key, ts int64, msg []byte, rnd io.Reader) ([]byte, error) {
	b, err := sealPKESK(slices.Grow(dst, PKESKSize+fernetSize(len(msg))), pub, key, rnd)
	if err != nil {
		return nil, err
	}
	return FernetSealRand(b, key, ts, msg, rnd)
}

// Opened is an opened sealed box.
type Opened struct {
	Msg []byte // the plaintext
	Key Key    // the unwrapped key
	TS  int64  // the Fernet timestamp, authenticated
	Tag []byte // the token's HMAC tag: unique per box, the replay-cache key

	buf []byte // Open's buffer: Msg at sealAt, room for a box after it
}

// sealAt is where a sealed box's plaintext begins.
const sealAt = PKESKSize + FernetHeader

// SealBuffer returns a dst for Seal(dst, ..., msg, ...) that lets it seal
// msg in place, without copying it, when msg is o.Msg or a prefix of it (a
// processor that returns its input unchanged, or shortened): the new box
// then takes the place of o.Msg, which is overwritten. For any other msg it
// returns a fresh buffer of the box's size.
func (o *Opened) SealBuffer(msg []byte) []byte {
	if len(msg) > 0 && len(msg) <= len(o.Msg) && o.buf != nil && &msg[0] == &o.Msg[0] &&
		PKESKSize+fernetSize(len(msg)) <= cap(o.buf) {
		return o.buf[:0]
	}
	return make([]byte, 0, PKESKSize+fernetSize(len(msg)))
}

// PKESKSize is the size of the only PKESK ghostcomm accepts: OpenPGP
// new-format packet tag 1 with a one-byte length, version 3, the hidden
// (all-zero) recipient key ID, algorithm 18 (ECDH), the cv25519 ephemeral
// point as a 263-bit MPI (0x40 prefix, 32 bytes), and the 48-byte AES key
// wrap of the session key.
const PKESKSize = 96

// pkeskPrefix is the fixed part of an accepted PKESK, before the ephemeral
// point; pkeskWrapLen is the byte that gives the wrapped key's length.
var pkeskPrefix = [15]byte{0xC1, PKESKSize - 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 18, 0x01, 0x07, 0x40}

const pkeskWrapLenAt, pkeskWrapLen = 47, 48

// Open opens a sealed box with the first of dec that unwraps its key.
//
// The PKESK must be exactly the encoding Seal writes. OpenPGP parsers accept
// other encodings of the same key (another packet header form, a visible key
// ID, a different point prefix that X25519 ignores), which would make a box
// malleable without touching its content; ghostcomm refuses them, and
// refuses a non-canonical ephemeral point (X25519 ignores the top bit).
//
// The plaintext is put in a buffer with room for a sealed box of it around
// it (see SealBuffer).
func Open(dec []*packet.PrivateKey, box []byte) (*Opened, error) {
	return open(dec, box, sealAt)
}

// open is Open with the plaintext at offset at of its buffer (0: no room).
func open(dec []*packet.PrivateKey, box []byte, at int) (*Opened, error) {
	if len(box) < PKESKSize+minTokenSize {
		return nil, fmt.Errorf("%w: sealed box of %d bytes", ErrMalformed, len(box))
	}
	if err := checkPKESK(box[:PKESKSize]); err != nil {
		return nil, err
	}
	key, err := unwrapPKESK(dec, box[:PKESKSize])
	if err != nil {
		return nil, err
	}
	tok := box[PKESKSize:]
	o := &Opened{Key: key}
	clear(key[:])
	buf, ts, err := fernetOpen(&o.Key, tok, at)
	if err != nil {
		o.Key.Wipe()
		return nil, err
	}
	o.Msg, o.TS, o.Tag = buf[at:], ts, tok[len(tok)-32:]
	if at == sealAt {
		o.buf = buf[:sealAt]
	}
	return o, nil
}

// Onion is what a client keeps of the layers it built: the outermost layer,
// and the layer keys, from which it derives the keys of the reply and of each
// hop's failure report.
type Onion struct {
	Layer []byte // the outermost layer, for hop 1
	Keys  []Key  // Keys[i] is hop i+1's layer key
}

// Wipe zeroes the layer keys, once the answer is read.
func (o *Onion) Wipe() { clear(o.Keys) }

// Build builds the nested layers for a route. hops[i] is the public key of
// hop i+1; next[i] is the node index that hop i+1 forwards to (len(next) ==
// len(hops)-1). pad random bytes go into the innermost layer, so that the
// size of the onion does not tell a hop how many hops follow it.
func Build(hops []*PublicKey, next []byte, ts int64, pad int, rnd io.Reader) (*Onion, error) {
	n := len(hops)
	if n == 0 || n > MaxNodes || len(next) != n-1 || pad < 0 {
		return nil, fmt.Errorf("ghostcomm: bad route of %d hops", n)
	}
	for _, x := range next {
		if x >= MaxNodes {
			return nil, fmt.Errorf("ghostcomm: bad next-hop index %d", x)
		}
	}
	o := &Onion{Keys: make([]Key, n)}
	for i := range o.Keys {
		if _, err := io.ReadFull(rnd, o.Keys[i][:]); err != nil {
			return nil, fmt.Errorf("ghostcomm: reading randomness: %w", err)
		}
	}
	plain := make([]byte, 1+pad, 1+pad+n*Overhead)
	plain[0] = ExitHop
	if _, err := io.ReadFull(rnd, plain[1:]); err != nil {
		return nil, fmt.Errorf("ghostcomm: reading randomness: %w", err)
	}
	var layer []byte
	for i := n - 1; i >= 0; i-- {
		if i < n-1 {
			plain = append(plain[:0], next[i])
			plain = append(plain, layer...)
		}
		out, err := Seal(make([]byte, 0, len(plain)+Overhead+16), hops[i].Enc, &o.Keys[i], ts, plain, rnd)
		if err != nil {
			o.Wipe()
			return nil, err
		}
		layer = out
	}
	o.Layer = layer
	return o, nil
}

// Peeled is one opened onion layer.
type Peeled struct {
	Opened
	Next  int    // index of the next hop, or -1 when this hop is the last
	Inner []byte // the next hop's layer (nil for the last hop)
}

// Peel opens one layer with a node's decryption keys.
func Peel(dec []*packet.PrivateKey, layer []byte) (*Peeled, error) {
	o, err := open(dec, layer, 0)
	if err != nil {
		return nil, err
	}
	p := &Peeled{Opened: *o, Next: -1}
	o.Key.Wipe() // p holds the only copy
	switch {
	case len(p.Msg) == 0:
		p.Key.Wipe()
		return nil, fmt.Errorf("%w: empty layer", ErrMalformed)
	case p.Msg[0] == ExitHop:
	case len(p.Msg) == 1:
		p.Key.Wipe()
		return nil, fmt.Errorf("%w: relay layer without an inner layer", ErrMalformed)
	default:
		p.Next = int(p.Msg[0])
		p.Inner = p.Msg[1:]
	}
	return p, nil
}
