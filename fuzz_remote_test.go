package ghostcomm

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"
)

// Fuzz targets for the remote-node messages (docs/PROTOCOL.md, "Remote
// nodes"): no panic, only typed errors, and what parses marshals back to
// the same bytes.

func isRemoteTyped(err error) bool {
	return isTyped(err) || errors.Is(err, ErrBadSignature) || errors.Is(err, ErrUnknownProcessor)
}

func FuzzParseDescriptor(f *testing.F) {
	_, id, _ := ed25519.GenerateKey(rand.Reader)
	p := seedPayload(f, 2)
	sealedSeed(p, SealedConfig{}) // one descriptor with a sealed-mode key, one without
	p.cycle.Nodes[1].SealedKey = nil
	for _, n := range p.cycle.Nodes {
		d := descriptor{identity: id.Public().(ed25519.PublicKey), cycle: p.cycle.ID, notBefore: 1700000000, node: n}
		b, err := d.sign(id)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{remoteVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, body, sig, err := parseDescriptor(b)
		if err != nil {
			if !isRemoteTyped(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		again, err := d.body()
		if err != nil || !bytes.Equal(append(again, sig...), b) || !bytes.Equal(again, body) {
			t.Fatalf("descriptor does not round-trip: %v", err)
		}
		if err := verifyDescriptor(d, body, sig); err != nil && !isRemoteTyped(err) {
			t.Fatalf("untyped verify error %v", err)
		}
	})
}

func FuzzParseNodeHello(f *testing.F) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	f.Add((&nodeHello{identity: pub, after: [16]byte{1}}).marshal())
	f.Add([]byte{remoteVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseNodeHello(b)
		if err != nil {
			if !isTyped(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if !bytes.Equal(h.marshal(), b) {
			t.Fatal("hello does not round-trip")
		}
	})
}

func FuzzParseNodeCycle(f *testing.F) {
	now := time.Unix(1700000000, 0)
	f.Add((&nodeCycle{cycle: Cycle{ID: [16]byte{2}, NotBefore: now, NotAfter: now.Add(time.Hour), Grace: time.Minute}, wait: 20 * time.Second}).marshal())
	f.Add((&nodeCycle{cycle: Cycle{ID: [16]byte{3}, NotBefore: now, NotAfter: now.Add(time.Hour), Protocol: ProtocolSealed,
		Sealed: SealedConfig{Form: FormRelay, MaxPacket: SealedSmall}}, wait: time.Second}).marshal())
	f.Add([]byte{remoteVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseNodeCycle(b)
		if err != nil {
			if !isTyped(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if !bytes.Equal(c.marshal(), b) {
			t.Fatal("node cycle does not round-trip")
		}
	})
}

func FuzzParsePeers(f *testing.F) {
	p := seedPayload(f, 3)
	seed, err := marshalPeers(p.cycle.ID, p.cycle.Nodes)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte{remoteVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, peers, err := parsePeers(b)
		if err != nil {
			if !isTyped(err) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		again, err := marshalPeers(id, peers)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("peer list does not round-trip: %v", err)
		}
	})
}
