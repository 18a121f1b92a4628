package ghostcomm

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/fernet/fernet-go"
)

// Layer format (docs/PROTOCOL.md, "Sealed box" and "Onion layer").
//
// A sealed box is an OpenPGP v3 PKESK packet (ECDH cv25519, hidden recipient
// key ID, symmetric algorithm AES-256) that wraps a fresh 32-byte key, followed
// directly by a raw (not base64) Fernet token made with that key. The Fernet
// token's timestamp is set to the lock-cycle's NotBefore, the same for every
// message of a cycle, so it carries no per-message information.
//
// An onion layer is a sealed box whose plaintext is a one-byte header, then
// either the next hop's onion layer (header = index of the next hop in the
// cycle's node list) or random padding (header = exitHop).

const (
	keySize        = 32                                   // Fernet key, also the AES-256 session key
	fernetVersion  = 0x80                                 // Fernet spec version byte
	fernetOverhead = 1 + 8 + 16 + 32                      // version, timestamp, IV, HMAC
	minTokenSize   = fernetOverhead + 16                  // at least one padded block
	exitHop        = 0xFF                                 // header byte: this hop is the last
	maxNodes       = exitHop                              // node indexes are 0..254
	maxPKESKSize   = 2 + 1 + 8 + 1 + 2 + 33 + 1 + 48 + 64 // generous bound for a cv25519 v3 PKESK
)

// LayerOverhead is the number of bytes each hop adds to the onion: a
// cv25519 PKESK (96 bytes), a Fernet token's overhead (57 bytes), the
// one-byte header and the PKCS#7 padding that makes the Fernet plaintext a
// whole number of AES blocks. Nested layers always add exactly this much.
const LayerOverhead = 160

var b64 = base64.URLEncoding // fernet-go's token encoding

// layerKey is a 32-byte Fernet key. The first half signs (HMAC-SHA256), the
// second half encrypts (AES-128-CBC), as the Fernet spec says.
type layerKey [keySize]byte

func (k *layerKey) fernet() *fernet.Key { return (*fernet.Key)(k) }

// derive returns the key for one purpose of this layer: HKDF-SHA256 with the
// layer key as secret and the purpose as info.
func (k *layerKey) derive(purpose string) layerKey {
	b, err := hkdf.Key(sha256.New, k[:], nil, purpose, keySize)
	if err != nil {
		panic(err) // only for lengths > 255*32
	}
	var d layerKey
	copy(d[:], b)
	return d
}

const (
	purposeReply = "ghostcomm v1 reply"
	purposeError = "ghostcomm v1 error"
)

func newLayerKey(rnd io.Reader) (layerKey, error) {
	var k layerKey
	if _, err := io.ReadFull(rnd, k[:]); err != nil {
		return k, fmt.Errorf("ghostcomm: reading randomness: %w", err)
	}
	return k, nil
}

// fernetSeal appends to dst a raw Fernet token of msg under key with
// timestamp ts.
func fernetSeal(dst []byte, key *layerKey, ts int64, msg []byte) ([]byte, error) {
	tok, err := fernet.EncryptAndSignAtTime(msg, key.fernet(), time.Unix(ts, 0))
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: fernet: %w", err)
	}
	out, err := b64.AppendDecode(dst, tok)
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: fernet token: %w", err)
	}
	return out, nil
}

// fernetOpen verifies and decrypts a raw Fernet token. It returns the
// plaintext and the token's timestamp, or an error matching ErrAuth (wrong key,
// altered bytes) or ErrMalformed. The timestamp is not checked here: it is
// authenticated with the rest and the caller compares it with its cycle.
func fernetOpen(key *layerKey, tok []byte) ([]byte, int64, error) {
	if len(tok) < minTokenSize || (len(tok)-fernetOverhead)%16 != 0 {
		return nil, 0, fmt.Errorf("%w: fernet token of %d bytes", ErrMalformed, len(tok))
	}
	if tok[0] != fernetVersion {
		return nil, 0, fmt.Errorf("%w: fernet version %#x", ErrUnsupportedVersion, tok[0])
	}
	// fernet-go only takes the text form; encode once more. It reports a
	// failure as a nil result, not an error.
	text := b64.AppendEncode(make([]byte, 0, b64.EncodedLen(len(tok))), tok)
	msg := fernet.VerifyAndDecrypt(text, 0, []*fernet.Key{key.fernet()})
	if msg == nil {
		return nil, 0, fmt.Errorf("%w: fernet token does not verify", ErrAuth)
	}
	return msg, int64(binary.BigEndian.Uint64(tok[1:9])), nil
}

// seal appends to dst a sealed box: key wrapped for pub in a hidden-recipient
// PKESK, then a raw Fernet token of msg under key at time ts. rnd supplies the
// PKESK's ephemeral key; fernet-go draws the IV from crypto/rand itself.
func seal(dst []byte, pub *packet.PublicKey, key *layerKey, ts int64, msg []byte, rnd io.Reader) ([]byte, error) {
	w := bytes.NewBuffer(dst)
	cfg := &packet.Config{Rand: rnd}
	if err := packet.SerializeEncryptedKeyWithHiddenOption(w, pub, packet.CipherAES256, key[:], true, cfg); err != nil {
		return nil, fmt.Errorf("ghostcomm: wrapping layer key: %w", err)
	}
	return fernetSeal(w.Bytes(), key, ts, msg)
}

// openBox opens a sealed box with the first of dec that unwraps its key. It
// returns the plaintext, the unwrapped key, the token's timestamp and the
// token's HMAC tag (unique per box; replay caches key on it).
func openBox(dec []*packet.PrivateKey, box []byte) (msg []byte, key layerKey, ts int64, tag []byte, err error) {
	r := bytes.NewReader(box)
	p, err := packet.Read(r)
	if err != nil {
		return nil, key, 0, nil, fmt.Errorf("%w: key packet: %v", ErrMalformed, err)
	}
	ek, ok := p.(*packet.EncryptedKey)
	if !ok || ek.Version != 3 {
		return nil, key, 0, nil, fmt.Errorf("%w: expected a v3 PKESK packet", ErrMalformed)
	}
	if used := len(box) - r.Len(); used > maxPKESKSize {
		return nil, key, 0, nil, fmt.Errorf("%w: key packet of %d bytes", ErrMalformed, used)
	}
	tok := box[len(box)-r.Len():]
	unwrapped := false
	for _, k := range dec {
		if ek.Decrypt(k, nil) == nil {
			unwrapped = true
			break
		}
	}
	if !unwrapped {
		return nil, key, 0, nil, fmt.Errorf("%w: layer key does not unwrap with this node's key", ErrAuth)
	}
	if ek.CipherFunc != packet.CipherAES256 || len(ek.Key) != keySize {
		return nil, key, 0, nil, fmt.Errorf("%w: layer key is not AES-256", ErrMalformed)
	}
	copy(key[:], ek.Key)
	msg, ts, err = fernetOpen(&key, tok)
	if err != nil {
		return nil, key, 0, nil, err
	}
	return msg, key, ts, tok[len(tok)-32:], nil
}

// onion is what a client keeps of the layers it built: the layer keys, from
// which it derives the keys of the reply and of each hop's error report.
type onion struct {
	layer []byte     // the outermost layer, for hop 1
	keys  []layerKey // keys[i] is hop i+1's layer key
}

// buildOnion builds the nested layers for a route. hops[i] is the public key
// of hop i+1; next[i] is the node index that hop i+1 forwards to (len(next) ==
// len(hops)-1). pad random bytes go into the innermost layer, so that the size
// of the onion does not tell a hop how many hops follow it.
func buildOnion(hops []*publicKey, next []byte, ts int64, pad int, rnd io.Reader) (*onion, error) {
	n := len(hops)
	if n == 0 || n > maxNodes || len(next) != n-1 || pad < 0 {
		return nil, fmt.Errorf("ghostcomm: bad route of %d hops", n)
	}
	o := &onion{keys: make([]layerKey, n)}
	for i := range o.keys {
		k, err := newLayerKey(rnd)
		if err != nil {
			return nil, err
		}
		o.keys[i] = k
	}
	plain := make([]byte, 1+pad)
	plain[0] = exitHop
	if _, err := io.ReadFull(rnd, plain[1:]); err != nil {
		return nil, fmt.Errorf("ghostcomm: reading randomness: %w", err)
	}
	// Each layer's plaintext is the header byte followed by the inner layer;
	// allocate once for the largest and build from the inside out.
	var layer []byte
	for i := n - 1; i >= 0; i-- {
		if i < n-1 {
			plain = append(plain[:0], next[i])
			plain = append(plain, layer...)
		}
		out, err := seal(make([]byte, 0, len(plain)+LayerOverhead+16), hops[i].enc, &o.keys[i], ts, plain, rnd)
		if err != nil {
			return nil, err
		}
		layer = out
	}
	o.layer = layer
	return o, nil
}

// peeled is one opened onion layer.
type peeled struct {
	key   layerKey
	ts    int64
	tag   []byte // HMAC tag of the layer's token: the replay-cache key
	next  int    // index of the next hop, or -1 when this hop is the last
	inner []byte // the next hop's layer (nil for the last hop)
}

// peelOnion opens one layer with a node's decryption keys.
func peelOnion(dec []*packet.PrivateKey, layer []byte) (*peeled, error) {
	msg, key, ts, tag, err := openBox(dec, layer)
	if err != nil {
		return nil, err
	}
	if len(msg) == 0 {
		return nil, fmt.Errorf("%w: empty layer", ErrMalformed)
	}
	p := &peeled{key: key, ts: ts, tag: tag, next: -1}
	if msg[0] != exitHop {
		if len(msg) == 1 {
			return nil, fmt.Errorf("%w: relay layer without an inner layer", ErrMalformed)
		}
		p.next = int(msg[0])
		p.inner = msg[1:]
	}
	return p, nil
}
