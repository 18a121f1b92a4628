package ghostcomm

import (
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/layer"

	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"

	"github.com/ghostcomm/ghostcomm/internal/onionaddr"
	"github.com/ghostcomm/ghostcomm/internal/sealed"
)

// Payload formats (docs/PROTOCOL.md, "Payload request" and "Lock-cycle
// payload"). All integers are big endian.

const (
	// payloadRequestVersion is the version of a payload request;
	// payloadVersion that of the signed payload (2: nodes carry an
	// operator label; 3: the cycle announces its protocol, and a sealed
	// cycle's nodes their sealed-mode keys).
	payloadRequestVersion = 1
	payloadVersion        = 3
	// sealedKeySize is the size of a node's sealed-mode X25519 public key.
	sealedKeySize = 32
	nonceSize     = 32
	// maxOperatorSize bounds a node's operator label.
	maxOperatorSize = 64

	// maxSignatureSize bounds the Primary's detached signature (an EdDSA
	// signature packet is ~120 bytes).
	maxSignatureSize = 1024
	maxParams        = 32
	maxParamValue    = 1024
)

// NodeInfo is what a lock-cycle payload says about one node.
type NodeInfo struct {
	// Onion is the node's onion service.
	Onion Onion
	// PublicKey is the node's binary OpenPGP public key for this cycle.
	PublicKey []byte
	// Processor is what the node does to the data.
	Processor ProcessorSpec
	// Operator names who runs the node, at most 64 bytes: for a remote
	// node, the label its identity was enrolled with
	// (RemoteSource.Enroll); empty for a Primary's local nodes and for
	// remote nodes enrolled without one. The default route takes at most
	// one node per non-empty label.
	Operator string
	// SealedKey is the node's sealed-mode X25519 public key for this
	// cycle (32 bytes: the point of a cv25519 OpenPGP key made for sealed
	// mode alone), in a cycle whose Protocol is ProtocolSealed; nil
	// otherwise.
	SealedKey []byte

	pub *layer.PublicKey
}

// Fingerprint returns the SHA-256 fingerprint of the node's public key.
func (n *NodeInfo) Fingerprint() Fingerprint {
	if n.pub == nil {
		return Fingerprint{}
	}
	return n.pub.Fpr
}

// Cycle is one lock-cycle: the set of nodes a Primary runs from NotBefore to
// NotAfter. Nodes keep accepting messages for Grace after NotAfter, so that
// messages in flight at a rotation finish.
type Cycle struct {
	ID        [16]byte
	NotBefore time.Time
	NotAfter  time.Time
	Grace     time.Duration
	Nodes     []NodeInfo
	// Protocol is the message protocol the cycle's nodes speak:
	// ProtocolLayered or ProtocolSealed.
	Protocol Protocol
	// Sealed is the sealed-mode form and largest packet class, when
	// Protocol is ProtocolSealed; zero otherwise.
	Sealed SealedConfig
}

// ValidAt reports whether a client may start a message in this cycle at t.
func (c *Cycle) ValidAt(t time.Time) bool {
	return !t.Before(c.NotBefore.Add(-maxClockSkew)) && t.Before(c.NotAfter)
}

// maxClockSkew is how far a hop's clock may run behind the Primary's.
const maxClockSkew = 60 * time.Second

// payloadRequest is what a client sends to the Primary.
//
//	offset size
//	0      1    version (1)
//	1      32   nonce, echoed in the signed payload
//	33     2    k = length of the client's public key
//	35     k    client's binary OpenPGP public key (curve25519)
type payloadRequest struct {
	nonce  [nonceSize]byte
	client []byte
}

func (r *payloadRequest) marshal() []byte {
	b := make([]byte, 0, 35+len(r.client))
	b = append(b, payloadRequestVersion)
	b = append(b, r.nonce[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.client)))
	return append(b, r.client...)
}

func parsePayloadRequest(b []byte) (*payloadRequest, error) {
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != payloadRequestVersion {
		return nil, fmt.Errorf("%w: payload request version %d", ErrUnsupportedVersion, v)
	}
	r := &payloadRequest{}
	copy(r.nonce[:], d.bytes(nonceSize))
	r.client = d.bytes(int(d.u16()))
	if err := d.finish("payload request"); err != nil {
		return nil, err
	}
	return r, nil
}

// payload is the signed content of a lock-cycle payload.
//
//	offset size
//	0      1    version (3)
//	1      16   cycle id
//	17     8    not before, unix seconds
//	25     8    not after, unix seconds
//	33     4    grace, seconds
//	37     32   nonce from the request
//	69     32   SHA-256 fingerprint of the requesting client's key
//	101    2    p = length of the Primary's public key
//	103    p    Primary's binary OpenPGP public key
//	...    1    n = number of nodes, 1..255
//	then n times:
//	       32   the node's onion service ed25519 public key
//	       2    the onion's virtual port
//	       2    k = length of the node's public key
//	       k    the node's binary OpenPGP public key
//	       1    m = length of the processor name
//	       m    processor name
//	       1    q = number of parameters, then q times, in key order:
//	            1 length, key; 2 length, value
//	       1    o = length of the operator label, 0..64
//	       o    operator label
//	then the protocol announcement:
//	       1    protocol: 1 layered, 2 sealed
//	       1    sealed form: 1 chain, 2 relay (0 when layered)
//	       1    largest packet class: 1 for 2 KiB, 2 for 32 KiB (0 when layered)
//	then, when sealed, n times, in node order:
//	       32   the node's sealed-mode X25519 public key
type payload struct {
	cycle   Cycle
	nonce   [nonceSize]byte
	client  Fingerprint
	primary []byte
	nodes   []byte // marshalNodes(cycle.Nodes), if already computed
}

func (p *payload) marshal() ([]byte, error) {
	nodes := p.nodes
	if nodes == nil {
		var err error
		if nodes, err = marshalNodes(p.cycle.Nodes); err != nil {
			return nil, err
		}
	}
	c := &p.cycle
	b := make([]byte, 0, 103+len(p.primary)+len(nodes))
	b = append(b, payloadVersion)
	b = append(b, c.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.NotBefore.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(c.NotAfter.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(c.Grace/time.Second))
	b = append(b, p.nonce[:]...)
	b = append(b, p.client[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.primary)))
	b = append(b, p.primary...)
	b = append(b, nodes...)
	return appendProtocol(b, c)
}

// appendProtocol appends a cycle's protocol announcement and, for a sealed
// cycle, its nodes' sealed-mode keys: what follows the node list in a
// payload.
func appendProtocol(b []byte, c *Cycle) ([]byte, error) {
	codes, err := protocolCodes(c.Protocol, c.Sealed)
	if err != nil {
		return nil, err
	}
	b = append(b, codes[:]...)
	if codes[0] != codeSealed {
		for i := range c.Nodes {
			if c.Nodes[i].SealedKey != nil {
				return nil, fmt.Errorf("%w: node %d has a sealed-mode key in a %s cycle", ErrBadProtocol, i, protocolOf(c.Protocol))
			}
		}
		return b, nil
	}
	for i := range c.Nodes {
		if len(c.Nodes[i].SealedKey) != sealedKeySize {
			return nil, fmt.Errorf("%w: node %d has no sealed-mode key", ErrBadProtocol, i)
		}
		b = append(b, c.Nodes[i].SealedKey...)
	}
	return b, nil
}

// marshalNodes encodes the node list of a payload: the count, then each
// node. A Primary does it once per cycle.
func marshalNodes(nodes []NodeInfo) ([]byte, error) {
	if len(nodes) == 0 || len(nodes) > layer.MaxNodes {
		return nil, fmt.Errorf("ghostcomm: %d nodes in a cycle (1..%d)", len(nodes), layer.MaxNodes)
	}
	b := make([]byte, 0, 512*len(nodes))
	b = append(b, byte(len(nodes)))
	for i := range nodes {
		n := &nodes[i]
		key, err := onionaddr.Decode(n.Onion.ServiceID)
		if err != nil {
			return nil, fmt.Errorf("ghostcomm: node %d: %w", i, err)
		}
		if n.Onion.Port < 1 || n.Onion.Port > 65535 {
			return nil, fmt.Errorf("ghostcomm: node %d: bad port %d", i, n.Onion.Port)
		}
		b = append(b, key...)
		b = binary.BigEndian.AppendUint16(b, uint16(n.Onion.Port))
		if len(n.PublicKey) > layer.MaxPublicKeySize {
			return nil, fmt.Errorf("ghostcomm: node %d: public key too large", i)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(n.PublicKey)))
		b = append(b, n.PublicKey...)
		if len(n.Processor.Name) == 0 || len(n.Processor.Name) > 64 || len(n.Processor.Params) > maxParams {
			return nil, fmt.Errorf("ghostcomm: node %d: bad processor spec", i)
		}
		b = append(b, byte(len(n.Processor.Name)))
		b = append(b, n.Processor.Name...)
		b = append(b, byte(len(n.Processor.Params)))
		for _, k := range slices.Sorted(maps.Keys(n.Processor.Params)) {
			v := n.Processor.Params[k]
			if len(k) == 0 || len(k) > 255 || len(v) > maxParamValue {
				return nil, fmt.Errorf("ghostcomm: node %d: bad processor parameter", i)
			}
			b = append(b, byte(len(k)))
			b = append(b, k...)
			b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
			b = append(b, v...)
		}
		if len(n.Operator) > maxOperatorSize {
			return nil, fmt.Errorf("ghostcomm: node %d: operator label of %d bytes", i, len(n.Operator))
		}
		b = append(b, byte(len(n.Operator)))
		b = append(b, n.Operator...)
	}
	return b, nil
}

// parsePayload parses the signed content. It checks structure only; the
// caller checks the signature, the nonce, the fingerprints and the times.
func parsePayload(b []byte) (*payload, error) {
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != payloadVersion {
		return nil, fmt.Errorf("%w: payload version %d", ErrUnsupportedVersion, v)
	}
	p := &payload{}
	c := &p.cycle
	copy(c.ID[:], d.bytes(16))
	c.NotBefore = time.Unix(int64(d.u64()), 0)
	c.NotAfter = time.Unix(int64(d.u64()), 0)
	c.Grace = time.Duration(d.u32()) * time.Second
	copy(p.nonce[:], d.bytes(nonceSize))
	copy(p.client[:], d.bytes(32))
	p.primary = d.bytes(int(d.u16()))
	n := int(d.u8())
	if d.err == nil && n == 0 {
		return nil, fmt.Errorf("%w: payload without nodes", ErrMalformed)
	}
	for i := 0; i < n && d.err == nil; i++ {
		ni, err := parseNodeEntry(&d, i)
		if err != nil {
			return nil, err
		}
		if d.err != nil {
			break
		}
		c.Nodes = append(c.Nodes, ni)
	}
	var codes [3]byte
	copy(codes[:], d.bytes(3))
	if d.err == nil {
		var err error
		if c.Protocol, c.Sealed, err = parseProtocolCodes(codes); err != nil {
			return nil, err
		}
		if c.Protocol == ProtocolSealed {
			for i := range c.Nodes {
				c.Nodes[i].SealedKey = d.bytes(sealedKeySize)
			}
		}
	}
	if err := d.finish("payload"); err != nil {
		return nil, err
	}
	if c.NotAfter.Before(c.NotBefore) {
		return nil, fmt.Errorf("%w: cycle ends before it starts", ErrMalformed)
	}
	return p, nil
}

// parseNodeEntry reads one node of a payload's list (or of a descriptor).
// A short read leaves d.err set and returns no error.
func parseNodeEntry(d *decoder, i int) (NodeInfo, error) {
	var ni NodeInfo
	key := d.bytes(ed25519.PublicKeySize)
	port := int(d.u16())
	ni.PublicKey = d.bytes(int(d.u16()))
	ni.Processor.Name = string(d.bytes(int(d.u8())))
	q := int(d.u8())
	if d.err != nil {
		return ni, nil
	}
	if q > maxParams {
		return ni, fmt.Errorf("%w: %d processor parameters", ErrMalformed, q)
	}
	if q > 0 {
		ni.Processor.Params = make(map[string]string, q)
	}
	prev := ""
	for j := 0; j < q && d.err == nil; j++ {
		k := string(d.bytes(int(d.u8())))
		v := string(d.bytes(int(d.u16())))
		if d.err == nil && (k == "" || (j > 0 && k <= prev)) {
			return ni, fmt.Errorf("%w: processor parameters not in strict key order", ErrMalformed)
		}
		prev = k
		ni.Processor.Params[k] = v
	}
	op := d.bytes(int(d.u8()))
	if d.err != nil {
		return ni, nil
	}
	if len(op) > maxOperatorSize {
		return ni, fmt.Errorf("%w: node %d: operator label of %d bytes", ErrMalformed, i, len(op))
	}
	ni.Operator = string(op)
	// The bounds marshalNodes keeps: what parses, marshals back.
	if port == 0 || ni.Processor.Name == "" || len(ni.Processor.Name) > 64 || len(ni.PublicKey) > layer.MaxPublicKeySize {
		return ni, fmt.Errorf("%w: node %d: zero port, processor name not 1..64 bytes, or key too large", ErrMalformed, i)
	}
	for _, v := range ni.Processor.Params {
		if len(v) > maxParamValue {
			return ni, fmt.Errorf("%w: node %d: processor parameter of %d bytes", ErrMalformed, i, len(v))
		}
	}
	// The key is checked to be a valid ed25519 point by
	// openSignedPayload, once the signature verifies (0.35 ms each).
	ni.Onion = Onion{ServiceID: onionaddr.ServiceID(ed25519.PublicKey(key)), Port: port}
	return ni, nil
}

// signPayload returns the signed payload: 2-byte signature length, the
// Primary's detached binary OpenPGP signature over body, then body.
func signPayload(signer *layer.KeyPair, body []byte) ([]byte, error) {
	sig, err := signer.Priv.SignDetached(pgp.NewPlainMessage(body))
	if err != nil {
		return nil, fmt.Errorf("ghostcomm: signing payload: %w", err)
	}
	s := sig.GetBinary()
	if len(s) > maxSignatureSize {
		return nil, fmt.Errorf("ghostcomm: signature of %d bytes", len(s))
	}
	out := make([]byte, 0, 2+len(s)+len(body))
	out = binary.BigEndian.AppendUint16(out, uint16(len(s)))
	out = append(out, s...)
	return append(out, body...), nil
}

// openSignedPayload splits a signed payload, checks that the embedded Primary
// key is the pinned one and that its signature verifies, parses the body, and
// checks that every node's onion key is a valid ed25519 point (ErrMalformed,
// also matching onionaddr.ErrInvalid) and its OpenPGP key parses.
func openSignedPayload(b []byte, pinned Fingerprint) (*payload, *layer.PublicKey, error) {
	d := decoder{b: b}
	sig := d.bytes(int(d.u16()))
	if d.err != nil {
		return nil, nil, fmt.Errorf("%w: signed payload: %v", ErrMalformed, d.err)
	}
	if len(sig) > maxSignatureSize {
		return nil, nil, fmt.Errorf("%w: signature of %d bytes", ErrMalformed, len(sig))
	}
	body := d.rest()
	p, err := parsePayload(body)
	if err != nil {
		return nil, nil, err
	}
	primary, err := layer.ParsePublicKey(p.primary)
	if err != nil {
		return nil, nil, fmt.Errorf("primary key: %w", err)
	}
	if primary.Fpr != pinned {
		return nil, nil, fmt.Errorf("%w: got %s, pinned %s", ErrWrongPrimary, primary.Fpr, pinned)
	}
	// Time checks are ours (nonce and cycle window), not OpenPGP's.
	if err := primary.Ring.VerifyDetached(pgp.NewPlainMessage(body), pgp.NewPGPSignature(sig), 0); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	for i := range p.cycle.Nodes {
		n := &p.cycle.Nodes[i]
		// parsePayload made the service id from 32 bytes: it decodes.
		key, err := onionaddr.Decode(n.Onion.ServiceID)
		if err == nil {
			err = onionaddr.CheckKey(key)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: node %d: onion key: %w", ErrMalformed, i, err)
		}
		pk, err := layer.ParsePublicKey(n.PublicKey)
		if err != nil {
			return nil, nil, fmt.Errorf("node %d: %w", i, err)
		}
		n.pub = pk
		if n.SealedKey != nil {
			if _, err := sealed.ParsePublicKey(n.SealedKey); err != nil {
				return nil, nil, fmt.Errorf("node %d: sealed-mode key: %w", i, err)
			}
		}
	}
	return p, primary, nil
}

// decoder reads big-endian fields; the first short read sets err and every
// later read returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = fmt.Errorf("%w: need %d bytes, have %d", ErrMalformed, n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() uint8 {
	if b := d.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if b := d.bytes(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if b := d.bytes(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if b := d.bytes(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (d *decoder) rest() []byte {
	if d.err != nil {
		return nil
	}
	v := d.b
	d.b = nil
	return v
}

// finish reports a short read, or bytes left over.
func (d *decoder) finish(what string) error {
	if d.err != nil {
		return fmt.Errorf("%s: %w", what, d.err)
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %s: %d trailing bytes", ErrMalformed, what, len(d.b))
	}
	return nil
}

func hexFingerprint(s string) (Fingerprint, error) {
	var f Fingerprint
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(f) {
		return f, fmt.Errorf("%w: fingerprint must be 64 hex digits", ErrBadInvite)
	}
	copy(f[:], b)
	return f, nil
}
