package ghostcomm

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/ghostcomm/ghostcomm/internal/transport"
	"github.com/ghostcomm/ghostcomm/internal/wire"
	"net"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm/internal/layer"
	"github.com/ghostcomm/ghostcomm/internal/onionaddr"
)

// Benchmarks of one message's work, without a network. Whole networks on the
// fake Tor are benchmarked in network_bench_test.go; comparisons with the
// cryptographic floor and lightning-onion live in the bench/ module.

// stubTor is a TorController and Dialer that create nothing and connect
// nowhere: enough for a Node whose handler is called directly.
type stubTor struct{}

func (stubTor) CreateOnion(_ context.Context, c OnionConfig) (Onion, error) {
	return Onion{ServiceID: "stub", Port: c.VirtualPort}, nil
}
func (stubTor) RemoveOnion(context.Context, string) error { return nil }
func (stubTor) DialContext(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("stub: no network")
}

// benchCycle makes n nodes on the stub Tor and a client holding their cycle.
func benchCycle(b *testing.B, n int, spec ProcessorSpec) ([]*Node, *Client, *Cycle) {
	b.Helper()
	cy := &Cycle{NotBefore: time.Now().Truncate(time.Second)}
	cy.NotAfter = cy.NotBefore.Add(time.Hour)
	var nodes []*Node
	for range n {
		nd, err := NewNode(context.Background(), stubTor{}, stubTor{}, NodeConfig{
			Processor: spec, NotBefore: cy.NotBefore, NotAfter: cy.NotAfter, ReplayCacheSize: 1 << 24,
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { nd.Close() })
		nodes = append(nodes, nd)
		cy.Nodes = append(cy.Nodes, nd.Info())
	}
	for _, nd := range nodes {
		nd.SetPeers(cy.Nodes)
	}
	c, err := NewClient(stubTor{}, Invite{Primary: Onion{ServiceID: "stub", Port: 80}}, ClientConfig{PadHops: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return nodes, c, cy
}

var sizes = []int{1 << 10, 64 << 10, 1 << 20}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

// BenchmarkWrap measures what a client does per message: the onion for N
// hops and the data box for hop 1.
func BenchmarkWrap(b *testing.B) {
	_, c, cy := benchCycle(b, 8, IdentitySpec)
	data := make([]byte, 1<<10)
	for _, n := range []int{1, 3, 5, 8} {
		b.Run(fmt.Sprintf("hops=%d/1KiB", n), func(b *testing.B) {
			c.cfg.Route = func(*Cycle) []int { return []int{0, 1, 2, 3, 4, 5, 6, 7}[:n] }
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.prepare(cy, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPeel measures opening one hop's onion layer and data box.
func BenchmarkPeel(b *testing.B) {
	nodes, c, cy := benchCycle(b, 3, IdentitySpec)
	for _, size := range sizes {
		pm, err := c.prepare(cy, make([]byte, size))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(sizeName(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := layer.Peel(nodes[0].keys.Dec, pm.onion.Layer); err != nil {
					b.Fatal(err)
				}
				if _, err := layer.Open(nodes[0].keys.Dec, pm.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRelayHop measures a relaying hop's work before forwarding: peel,
// open the data, process (identity), seal the data for the next hop, frame.
func BenchmarkRelayHop(b *testing.B) {
	nodes, c, cy := benchCycle(b, 3, IdentitySpec)
	nd := nodes[0]
	next := cy.Nodes[1].pub.Enc
	for _, size := range sizes {
		// Routes are random per message: this one starts at nd.
		pm, err := c.prepareRoute(cy, []int{0, 1, 2}, make([]byte, size))
		if err != nil {
			b.Fatal(err)
		}
		var out bytes.Buffer
		b.Run(sizeName(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				p, err := layer.Peel(nd.keys.Dec, pm.onion.Layer)
				if err != nil {
					b.Fatal(err)
				}
				in, err := layer.Open(nd.keys.Dec, pm.data)
				if err != nil {
					b.Fatal(err)
				}
				data, err := nd.proc.Process(in.Msg)
				if err != nil {
					b.Fatal(err)
				}
				k, _ := layer.NewKey(rand.Reader)
				box, err := layer.Seal(in.SealBuffer(data), next, &k, nd.ts, data, rand.Reader)
				if err != nil {
					b.Fatal(err)
				}
				out.Reset()
				m := &wire.Msg{BudgetMS: 1000, Layer: p.Inner, Data: box}
				if err := wire.WriteFrame(&out, wire.Message, 1, m.Parts()...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkExitHop runs the real handler of a last hop: parse, peel, cycle
// and replay checks, open, process, seal the reply. Each iteration sends a
// fresh message (a replay would be refused), built outside the timer.
func BenchmarkExitHop(b *testing.B) {
	nodes, c, cy := benchCycle(b, 1, IdentitySpec)
	const batch = 256
	body := make([][]byte, batch)
	for i := range body {
		pm, err := c.prepare(cy, make([]byte, 1<<10))
		if err != nil {
			b.Fatal(err)
		}
		body[i] = bytes.Join(pm.body(time.Minute), nil)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%batch == 0 && i > 0 {
			b.StopTimer()
			for j := range body {
				pm, _ := c.prepare(cy, make([]byte, 1<<10))
				body[j] = bytes.Join(pm.body(time.Minute), nil)
			}
			b.StartTimer()
		}
		typ, _ := nodes[0].handle(context.Background(), transport.NewRequest(wire.Message, body[i%batch]))
		if typ != wire.Reply {
			b.Fatalf("answer %v", typ)
		}
	}
}

// BenchmarkNewCycleKeys measures the key work of a lock-cycle of 8 nodes:
// 8 key pairs, the encoded node list, and one signed payload.
func BenchmarkNewCycleKeys(b *testing.B) {
	primary, err := layer.GenerateKeyPair("primary")
	if err != nil {
		b.Fatal(err)
	}
	_, c, cy := benchCycle(b, 1, IdentitySpec)
	onions := make([]Onion, 8)
	for i := range onions {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		onions[i] = Onion{ServiceID: onionaddr.ServiceID(pub), Port: 80}
	}
	b.ReportAllocs()
	for b.Loop() {
		infos := make([]NodeInfo, 8)
		for i := range infos {
			kp, err := layer.GenerateKeyPair("ghostcomm node")
			if err != nil {
				b.Fatal(err)
			}
			infos[i] = NodeInfo{Onion: onions[i], PublicKey: kp.Raw, Processor: IdentitySpec, pub: &kp.PublicKey}
		}
		nodes, err := marshalNodes(infos)
		if err != nil {
			b.Fatal(err)
		}
		p := payload{cycle: *cy, client: Fingerprint(c.keys.Fpr), primary: primary.Raw, nodes: nodes}
		content, err := p.marshal()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := signPayload(primary, content); err != nil {
			b.Fatal(err)
		}
	}
}
