package ghostcomm

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/ecdh"
	"github.com/ProtonMail/go-crypto/openpgp/eddsa"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Remote-node internals exposed to the external tests.

// Admit checks and records a signed descriptor as the Primary's handler
// does, for a Primary whose key has fingerprint primary.
func (s *RemoteSource) Admit(b []byte, primary Fingerprint) error {
	_, _, err := s.admit(b, primary)
	return err
}

// WaitOpen waits until a cycle is gathering descriptors and returns it.
func (s *RemoteSource) WaitOpen(ctx context.Context) (Cycle, error) {
	for {
		s.mu.Lock()
		g := s.open
		s.mu.Unlock()
		if g != nil {
			return g.cycle, nil
		}
		select {
		case <-ctx.Done():
			return Cycle{}, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// SignDescriptor makes the descriptor a RemoteNode would submit.
func SignDescriptor(id ed25519.PrivateKey, primary Fingerprint, c *Cycle, n NodeInfo) ([]byte, error) {
	d := descriptor{identity: id.Public().(ed25519.PublicKey), primary: primary, cycle: c.ID, notBefore: c.NotBefore.Unix(), node: n}
	return d.sign(id)
}

// Nodes returns the remote node's live Nodes.
func (rn *RemoteNode) Nodes() []*Node {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	var out []*Node
	for n := range rn.nodes {
		out = append(out, n)
	}
	return out
}

// KeyMaterial returns the secret scalars of the node's OpenPGP keys.
func (n *Node) KeyMaterial() [][]byte {
	var out [][]byte
	for _, k := range n.keys.Priv.GetKeys() {
		e := k.GetEntity()
		pks := []*packet.PrivateKey{e.PrivateKey}
		for _, sk := range e.Subkeys {
			pks = append(pks, sk.PrivateKey)
		}
		for _, pk := range pks {
			switch k := pk.PrivateKey.(type) {
			case *eddsa.PrivateKey:
				out = append(out, bytes.Clone(k.D))
			case *ecdh.PrivateKey:
				out = append(out, bytes.Clone(k.D))
			}
		}
	}
	return out
}

// PayloadSize returns the size of the signed payload the Primary hands a
// client now (before its encryption to the client, which adds a fixed
// LayerOverhead-like amount).
func (p *Primary) PayloadSize() (int, error) {
	p.mu.Lock()
	cs := p.current
	cycle := *cs.cycle
	p.mu.Unlock()
	pl := payload{cycle: cycle, primary: p.keys.Raw, nodes: cs.encoded}
	content, err := pl.marshal()
	if err != nil {
		return 0, err
	}
	signed, err := signPayload(p.keys, content)
	return len(signed), err
}

// RingHasPrivateKey reports whether the node info's key ring holds a
// private key.
func (ni *NodeInfo) RingHasPrivateKey() bool {
	if ni.pub == nil || ni.pub.Ring == nil {
		return false
	}
	for _, k := range ni.pub.Ring.GetKeys() {
		if k.IsPrivate() {
			return true
		}
	}
	return false
}
