package bench

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/layer"
	"github.com/ghostcomm/ghostcomm/internal/onionaddr"
)

// newCycleKeys is what Primary.newCycle does for n nodes besides Tor: each
// NewNode, in its own goroutine, makes the node's processor and generates its
// key pair (layer.GenerateKeyPair); then the cycle's NodeInfo list is made
// from the nodes (Node.Info copies each public key) and encoded once for all
// the cycle's payloads (marshalNodes). onions are the nodes' onion services,
// which Tor would have made. Listeners and onion services are not part of
// this.
func newCycleKeys(onions []ghostcomm.Onion, procs []ghostcomm.ProcessorSpec) ([]*layer.KeyPair, []ghostcomm.NodeInfo, []byte, error) {
	n := len(onions)
	keys := make([]*layer.KeyPair, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := ghostcomm.NewProcessor(procs[i]); err != nil {
				errs[i] = err
				return
			}
			keys[i], errs[i] = layer.GenerateKeyPair("ghostcomm node")
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, nil, nil, err
	}
	infos := make([]ghostcomm.NodeInfo, n)
	for i, kp := range keys {
		infos[i] = ghostcomm.NodeInfo{Onion: onions[i], PublicKey: append([]byte(nil), kp.Raw...), Processor: procs[i]}
	}
	encoded, err := marshalNodes(infos)
	if err != nil {
		return nil, nil, nil, err
	}
	return keys, infos, encoded, nil
}

// marshalNodes mirrors payload.go's marshalNodes (unexported there): the
// count, then per node its onion key (onionaddr.Decode of the service id),
// port, OpenPGP public key, processor spec and operator label.
func marshalNodes(nodes []ghostcomm.NodeInfo) ([]byte, error) {
	b := make([]byte, 0, 512*len(nodes))
	b = append(b, byte(len(nodes)))
	for i := range nodes {
		n := &nodes[i]
		key, err := onionaddr.Decode(n.Onion.ServiceID)
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
		b = append(b, key...)
		b = binary.BigEndian.AppendUint16(b, uint16(n.Onion.Port))
		b = binary.BigEndian.AppendUint16(b, uint16(len(n.PublicKey)))
		b = append(b, n.PublicKey...)
		b = append(b, byte(len(n.Processor.Name)))
		b = append(b, n.Processor.Name...)
		b = append(b, byte(len(n.Processor.Params)))
		for _, k := range slices.Sorted(maps.Keys(n.Processor.Params)) {
			v := n.Processor.Params[k]
			b = append(b, byte(len(k)))
			b = append(b, k...)
			b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
			b = append(b, v...)
		}
		b = append(b, byte(len(n.Operator)))
		b = append(b, n.Operator...)
	}
	return b, nil
}

// payloadBody mirrors payload.marshal: the per-request header, the cycle's
// encoded node list, then tail: the protocol announcement (layered: 1, 0, 0)
// and, for a sealed cycle, its nodes' sealed-mode keys.
func payloadBody(id [16]byte, notBefore, notAfter time.Time, grace time.Duration, nonce [32]byte,
	client [32]byte, primary []byte, nodes []byte, tail []byte) []byte {
	b := make([]byte, 0, 103+len(primary)+len(nodes)+len(tail))
	b = append(b, 3) // payload version 3: the cycle announces its protocol
	b = append(b, id[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(notBefore.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(notAfter.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(grace/time.Second))
	b = append(b, nonce[:]...)
	b = append(b, client[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(primary)))
	b = append(b, primary...)
	b = append(b, nodes...)
	return append(b, tail...)
}

// layeredTail is the protocol announcement of a layered cycle.
var layeredTail = []byte{1, 0, 0}

// signPayload mirrors payload.go's signPayload: the Primary's detached
// binary OpenPGP signature, its length, then the body.
func signPayload(primary *layer.KeyPair, body []byte) ([]byte, error) {
	sig, err := primary.Priv.SignDetached(pgp.NewPlainMessage(body))
	if err != nil {
		return nil, err
	}
	s := sig.GetBinary()
	out := make([]byte, 0, 2+len(s)+len(body))
	out = binary.BigEndian.AppendUint16(out, uint16(len(s)))
	out = append(out, s...)
	return append(out, body...), nil
}

// fakeOnions returns n onion services with fresh ed25519 keys, the kind of
// address tortest and tor hand out.
func fakeOnions(n int) ([]ghostcomm.Onion, error) {
	out := make([]ghostcomm.Onion, n)
	for i := range out {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		out[i] = ghostcomm.Onion{ServiceID: onionaddr.ServiceID(pub), Port: ghostcomm.DefaultOnionPort}
	}
	return out, nil
}

// lockCycle is a benchmark fixture: the Primary's key and what a new
// lock-cycle of n nodes needs from outside (onions, processing specs).
type lockCycle struct {
	primary *layer.KeyPair
	onions  []ghostcomm.Onion
	procs   []ghostcomm.ProcessorSpec
}

func newLockCycle(n int) (*lockCycle, error) {
	kp, err := layer.GenerateKeyPair("ghostcomm primary")
	if err != nil {
		return nil, err
	}
	onions, err := fakeOnions(n)
	if err != nil {
		return nil, err
	}
	procs := make([]ghostcomm.ProcessorSpec, n)
	for i := range procs {
		procs[i] = ghostcomm.IdentitySpec
	}
	return &lockCycle{primary: kp, onions: onions, procs: procs}, nil
}

// signed is newCycleKeys followed by one signed payload for a client, as
// Primary.answer makes it (without the client-key parse and the final seal).
func (lc *lockCycle) signed(rnd io.Reader) ([]byte, []ghostcomm.NodeInfo, error) {
	_, infos, encoded, err := newCycleKeys(lc.onions, lc.procs)
	if err != nil {
		return nil, nil, err
	}
	var id [16]byte
	var nonce, client [32]byte
	if _, err := io.ReadFull(rnd, id[:]); err != nil {
		return nil, nil, err
	}
	nb := time.Unix(cycleTS, 0)
	body := payloadBody(id, nb, nb.Add(ghostcomm.DefaultPeriod), ghostcomm.DefaultGrace, nonce, client, lc.primary.Raw, encoded, layeredTail)
	signed, err := signPayload(lc.primary, body)
	return signed, infos, err
}
