package bench

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	sphinx "github.com/lightningnetwork/lightning-onion"
)

// sphinxRoute is the peer: a lightning-onion route of n Sphinx routers, set
// up as the package's own benchmarks do (bench_test.go, newTestRoute in
// sphinx_test.go): secp256k1 node keys, legacy per-hop payloads, in-memory
// replay logs. The packet filler and the associated data are what lnd passes
// when it sends (DeterministicPacketFiller, the 32-byte payment hash), and
// every packet gets a fresh session key, as every real payment does.
type sphinxRoute struct {
	keys    []*btcec.PrivateKey
	routers []*sphinx.Router
	path    sphinx.PaymentPath
	assoc   []byte
}

func newSphinxRoute(n int) (*sphinxRoute, error) {
	if n < 1 || n > sphinx.NumMaxHops {
		return nil, fmt.Errorf("sphinx route of %d hops", n)
	}
	h := sha256.Sum256([]byte("ghostcomm bench payment"))
	r := &sphinxRoute{assoc: h[:]}
	for i := range n {
		k, err := btcec.NewPrivateKey()
		if err != nil {
			return nil, err
		}
		r.keys = append(r.keys, k)
		r.routers = append(r.routers, sphinx.NewRouter(&sphinx.PrivKeyECDH{PrivKey: k}, sphinx.NewMemoryReplayLog()))
		hd := sphinx.HopData{ForwardAmount: uint64(i), OutgoingCltv: uint32(i)}
		copy(hd.NextAddress[:], bytes.Repeat([]byte{byte(i)}, len(hd.NextAddress)))
		p, err := sphinx.NewLegacyHopPayload(&hd)
		if err != nil {
			return nil, err
		}
		r.path[i] = sphinx.OnionHop{NodePub: *k.PubKey(), HopPayload: p}
	}
	return r, nil
}

// build makes an onion packet for the route with a fresh session key. It
// writes the per-hop HMACs into r.path, so one route serves one goroutine.
func (r *sphinxRoute) build() (*sphinx.OnionPacket, error) {
	sk, err := btcec.NewPrivateKey()
	if err != nil {
		return nil, err
	}
	return sphinx.NewOnionPacket(&r.path, sk, r.assoc, sphinx.DeterministicPacketFiller)
}

// freshRouter returns a router for hop i with a new, started, in-memory
// replay log, as the package's BenchmarkProcessPacket replaces its router
// between iterations so that the same packet is never a replay.
func (r *sphinxRoute) freshRouter(i int) (*sphinx.Router, error) {
	rt := sphinx.NewRouter(&sphinx.PrivKeyECDH{PrivKey: r.keys[i]}, sphinx.NewMemoryReplayLog())
	if err := rt.Start(); err != nil {
		return nil, err
	}
	return rt, nil
}

// packetSize is the serialized size of a packet.
func packetSize(p *sphinx.OnionPacket) (int, error) {
	var b bytes.Buffer
	if err := p.Encode(&b); err != nil {
		return 0, err
	}
	return b.Len(), nil
}
