package bench

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/dh/x25519"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/layer"
)

// The floor is ghostcomm's per-message work done with raw primitives only,
// as cheaply as the same cryptographic construction allows:
//
//   - public key: X25519 from github.com/cloudflare/circl, the implementation
//     that go-crypto (and so gopenpgp) calls for curve25519 keys. Sealing is
//     one ephemeral key generation (a fixed-base scalar multiplication) plus
//     one X25519; opening is one X25519. These are the public-key operations
//     of a cv25519 PKESK, one for one.
//   - key derivation: one SHA-256 over counter || Z || Param with a 56-byte
//     Param, the input RFC 6637's KDF hashes for a cv25519 key. The output is
//     used directly as the Fernet-layout key (16 bytes HMAC, 16 bytes AES), so
//     the floor has no fresh key to wrap: no AES key wrap.
//   - symmetric: Fernet's construction on raw bytes: AES-128-CBC with PKCS#7
//     padding, then HMAC-SHA256 over version || timestamp || IV || ciphertext
//     (encrypt-then-MAC), no base64.
//
// A floor box is eph (32) || version (1) || timestamp (8) || IV (16) ||
// ciphertext || tag (32). Its plaintexts have exactly the lengths of
// ghostcomm's (see floorRoute.fill), so the floor encrypts and MACs the same
// number of bytes and does the same number of public-key operations as the
// ghostcomm operation it is the floor of.
const (
	floorEphSize  = x25519.Size
	floorHdrSize  = 1 + 8
	floorTagSize  = sha256.Size
	floorOverhead = floorEphSize + floorHdrSize + aes.BlockSize + floorTagSize // plus PKCS#7 padding
	floorVersion  = 0x80
	floorKDFParam = 56 // RFC 6637 Param for cv25519: OID, algorithm ids, "Anonymous Sender    ", fingerprint
)

var errFloorAuth = errors.New("floor: authentication failed")

// floorKey is a recipient's X25519 key pair.
type floorKey struct {
	priv, pub x25519.Key
}

func newFloorKey(rnd io.Reader) (*floorKey, error) {
	k := &floorKey{}
	if _, err := io.ReadFull(rnd, k.priv[:]); err != nil {
		return nil, err
	}
	x25519.KeyGen(&k.pub, &k.priv)
	return k, nil
}

// floorKDF derives the Fernet-layout key (HMAC half, AES half) from a shared
// secret, hashing as many bytes as RFC 6637's KDF does.
func floorKDF(z *x25519.Key) (key [32]byte) {
	var in [4 + x25519.Size + floorKDFParam]byte
	in[3] = 1
	copy(in[4:], z[:])
	return sha256.Sum256(in[:])
}

// floorSeal appends to dst a floor box of msg for pub at time ts. rnd gives
// the ephemeral key and the IV.
func floorSeal(dst []byte, pub *x25519.Key, ts int64, msg []byte, rnd io.Reader) ([]byte, error) {
	var eph, ephPub, z x25519.Key
	if _, err := io.ReadFull(rnd, eph[:]); err != nil {
		return nil, err
	}
	x25519.KeyGen(&ephPub, &eph)
	if !x25519.Shared(&z, &eph, pub) {
		return nil, errors.New("floor: low-order public key")
	}
	key := floorKDF(&z)

	out := append(dst, ephPub[:]...)
	hdr := len(out)
	out = append(out, floorVersion)
	out = binary.BigEndian.AppendUint64(out, uint64(ts))
	ivAt := len(out)
	out = append(out, make([]byte, aes.BlockSize)...)
	if _, err := io.ReadFull(rnd, out[ivAt:]); err != nil {
		return nil, err
	}
	ctAt := len(out)
	if len(msg) > 0 && cap(out) >= ctAt+len(msg) && &out[:ctAt+1][ctAt] == &msg[0] {
		out = out[:ctAt+len(msg)] // msg is already where it is encrypted
	} else {
		out = append(out, msg...)
	}
	p := byte(aes.BlockSize - len(msg)%aes.BlockSize)
	for range p {
		out = append(out, p)
	}
	bc, err := aes.NewCipher(key[16:])
	if err != nil {
		return nil, err
	}
	cipher.NewCBCEncrypter(bc, out[ivAt:ctAt]).CryptBlocks(out[ctAt:], out[ctAt:])
	mac := hmac.New(sha256.New, key[:16])
	mac.Write(out[hdr:])
	return mac.Sum(out), nil
}

// floorOpened is an opened floor box.
type floorOpened struct {
	msg []byte
	ts  int64
	tag []byte
	buf []byte // the buffer msg is in, with room to seal it where it lies
}

// floorSealAt is where a floor box's plaintext begins.
const floorSealAt = floorEphSize + floorHdrSize + aes.BlockSize

// sealBuffer is the floor of layer.Opened.SealBuffer: a dst for floorSeal
// that seals out where it lies when out is o.msg or a prefix of it.
func (o *floorOpened) sealBuffer(out []byte) []byte {
	if len(out) > 0 && len(out) <= len(o.msg) && &out[0] == &o.msg[0] {
		return o.buf[:0]
	}
	return make([]byte, 0, len(out)+floorOverhead+aes.BlockSize)
}

// floorOpen verifies and decrypts a floor box into a fresh plaintext slice,
// at floorSealAt of a buffer with room for a box of it around it.
func floorOpen(k *floorKey, box []byte) (*floorOpened, error) {
	if len(box) < floorOverhead+aes.BlockSize || (len(box)-floorOverhead)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("floor: box of %d bytes", len(box))
	}
	ct := box[floorEphSize+floorHdrSize+aes.BlockSize : len(box)-floorTagSize]
	var ephPub, z x25519.Key
	copy(ephPub[:], box[:floorEphSize])
	if !x25519.Shared(&z, &k.priv, &ephPub) {
		return nil, errFloorAuth
	}
	key := floorKDF(&z)
	mac := hmac.New(sha256.New, key[:16])
	mac.Write(box[floorEphSize : len(box)-floorTagSize])
	var sum [sha256.Size]byte
	tag := box[len(box)-floorTagSize:]
	if subtle.ConstantTimeCompare(mac.Sum(sum[:0]), tag) != 1 {
		return nil, errFloorAuth
	}
	if box[floorEphSize] != floorVersion {
		return nil, fmt.Errorf("floor: version %#x", box[floorEphSize])
	}
	bc, err := aes.NewCipher(key[16:])
	if err != nil {
		return nil, err
	}
	iv := box[floorEphSize+floorHdrSize : floorEphSize+floorHdrSize+aes.BlockSize]
	buf := make([]byte, floorSealAt+len(ct), floorSealAt+len(ct)+floorTagSize)
	msg := buf[floorSealAt:]
	cipher.NewCBCDecrypter(bc, iv).CryptBlocks(msg, ct)
	p := int(msg[len(msg)-1])
	if p == 0 || p > aes.BlockSize {
		return nil, errFloorAuth
	}
	for _, c := range msg[len(msg)-p:] {
		if int(c) != p {
			return nil, errFloorAuth
		}
	}
	return &floorOpened{
		msg: msg[:len(msg)-p],
		ts:  int64(binary.BigEndian.Uint64(box[floorEphSize+1:])),
		tag: tag,
		buf: buf,
	}, nil
}

// floorRoute is the floor's counterpart of route: the same hops, with X25519
// keys.
type floorRoute struct {
	keys []*floorKey
	next []byte
	ts   int64
	// fill is how many bytes each relay layer's plaintext carries after the
	// inner layer, so that it is exactly as long as ghostcomm's: a
	// ghostcomm layer is longer than a floor layer by the PKESK minus the
	// 32-byte ephemeral key, at every depth.
	fill  int
	proc  ghostcomm.Processor
	zeros []byte
}

func newFloorRoute(n int, fill int, rnd io.Reader) (*floorRoute, error) {
	proc, err := ghostcomm.NewProcessor(ghostcomm.IdentitySpec)
	if err != nil {
		return nil, err
	}
	r := &floorRoute{next: make([]byte, n-1), ts: cycleTS, fill: fill, proc: proc, zeros: make([]byte, fill)}
	for i := range n {
		k, err := newFloorKey(rnd)
		if err != nil {
			return nil, err
		}
		r.keys = append(r.keys, k)
		if i > 0 {
			r.next[i-1] = byte(i)
		}
	}
	return r, nil
}

// build is the floor of route.clientBuild: n nested layers and the data box
// for hop 1.
func (r *floorRoute) build(data []byte, pad int, rnd io.Reader) (message, error) {
	n := len(r.keys)
	plain := make([]byte, 1+pad, 1+pad+n*(floorOverhead+aes.BlockSize+r.fill))
	plain[0] = layer.ExitHop
	if _, err := io.ReadFull(rnd, plain[1:]); err != nil {
		return message{}, err
	}
	var lay []byte
	for i := n - 1; i >= 0; i-- {
		if i < n-1 {
			plain = append(plain[:0], r.next[i])
			plain = append(plain, lay...)
			plain = append(plain, r.zeros...)
		}
		out, err := floorSeal(make([]byte, 0, len(plain)+floorOverhead+aes.BlockSize), &r.keys[i].pub, r.ts, plain, rnd)
		if err != nil {
			return message{}, err
		}
		lay = out
	}
	box, err := floorSeal(make([]byte, 0, len(data)+floorOverhead+aes.BlockSize), &r.keys[0].pub, r.ts, data, rnd)
	if err != nil {
		return message{}, err
	}
	return message{layer: lay, data: box}, nil
}

// floorPeeled is the floor of layer.Peeled.
type floorPeeled struct {
	*floorOpened
	next  int
	inner []byte
}

// peelLayer is the floor of layer.Peel.
func (r *floorRoute) peelLayer(hop int, lay []byte) (*floorPeeled, error) {
	o, err := floorOpen(r.keys[hop], lay)
	if err != nil {
		return nil, err
	}
	p := &floorPeeled{floorOpened: o, next: -1}
	if o.msg[0] != layer.ExitHop {
		if len(o.msg) < 1+r.fill+1 {
			return nil, fmt.Errorf("floor: short relay layer")
		}
		p.next = int(o.msg[0])
		p.inner = o.msg[1 : len(o.msg)-r.fill]
	}
	return p, nil
}

// peel is the floor of layer.Peel + layer.Open of the data box.
func (r *floorRoute) peel(hop int, in message) (*floorPeeled, *floorOpened, error) {
	p, err := r.peelLayer(hop, in.layer)
	if err != nil {
		return nil, nil, err
	}
	d, err := floorOpen(r.keys[hop], in.data)
	if err != nil {
		return nil, nil, err
	}
	return p, d, nil
}

// hop is the floor of route.hop for a relaying hop: peel, check the cycle
// and the replay set, open the data, process it, seal it for the next hop.
func (r *floorRoute) hop(i int, rs *replaySet, in message, rnd io.Reader) (hopResult, error) {
	p, d, err := r.peel(i, in)
	if err != nil {
		return hopResult{}, err
	}
	if p.ts != r.ts || d.ts != r.ts {
		return hopResult{}, errors.New("floor: stale cycle")
	}
	if err := rs.add(p.tag); err != nil {
		return hopResult{}, err
	}
	res := hopResult{next: p.next, tag: p.tag}
	out, err := r.proc.Process(d.msg)
	if err != nil {
		return res, err
	}
	if p.next < 0 || p.next >= len(r.keys) {
		return res, errors.New("floor: hop is not a relay")
	}
	box, err := floorSeal(d.sealBuffer(out), &r.keys[p.next].pub, r.ts, out, rnd)
	if err != nil {
		return res, err
	}
	res.out = message{layer: p.inner, data: box}
	return res, nil
}
