package ghostcomm_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// sealedConfig is a Primary of n local nodes speaking sealed mode in form f.
func sealedConfig(n int, f ghostcomm.SealedForm) ghostcomm.PrimaryConfig {
	return ghostcomm.PrimaryConfig{Nodes: n, Protocol: ghostcomm.ProtocolSealed, Sealed: ghostcomm.SealedConfig{Form: f}}
}

// The whole network in process, in both forms, over routes of 1..8 hops
// and both packet classes: every message verified (chain: every hop's
// processing, in order; relay: the exit's).
func TestSealedRoundTrip(t *testing.T) {
	t.Parallel()
	for _, form := range []ghostcomm.SealedForm{ghostcomm.FormChain, ghostcomm.FormRelay} {
		for _, hops := range []int{1, 3, 8} {
			t.Run(fmt.Sprintf("%s/%d hops", form, hops), func(t *testing.T) {
				tn := newTestNet(t, sealedConfig(hops, form), ghostcomm.ClientConfig{})
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				for _, size := range []int{0, 12, 1275, 1276, 31995} {
					msg := bytes.Repeat([]byte{byte(size)}, size)
					res, err := tn.client.Send(ctx, msg)
					if err != nil {
						t.Fatalf("%d bytes: Send: %v", size, err)
					}
					if len(res.Route) != hops {
						t.Fatalf("route of %d hops, want %d", len(res.Route), hops)
					}
					processed := res.Route
					if form == ghostcomm.FormRelay {
						processed = res.Route[hops-1:]
					}
					want, ok := ghostcomm.Expected(processed, msg)
					if !ok || !bytes.Equal(res.Data, want) || !res.Verified {
						t.Fatalf("%d bytes: result %q (verified %v), want %q", size, res.Data, res.Verified, want)
					}
				}
			})
		}
	}
}

// Every hop saw every message; in relay form only the exit saw the data.
func TestSealedRelayHopsSeeNoData(t *testing.T) {
	var mu sync.Mutex
	var events []ghostcomm.HopEvent
	pc := sealedConfig(4, ghostcomm.FormRelay)
	pc.Node.Observer = func(ev ghostcomm.HopEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}
	tn := newTestNet(t, pc, ghostcomm.ClientConfig{Route: payloadOrder})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := []byte("for the exit's eyes")
	if _, err := tn.client.Send(ctx, msg); err != nil {
		t.Fatal(err)
	}
	cy := tn.primary.Cycle()
	exit := cy.Nodes[3].Onion
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 4 {
		t.Fatalf("%d hop events, want 4", len(events))
	}
	for _, ev := range events {
		isExit := ev.Onion == exit
		if ev.Last != isExit || ev.Err != nil || ev.Refused {
			t.Fatalf("hop %s: last %v, err %v, refused %v", ev.Onion.Addr(), ev.Last, ev.Err, ev.Refused)
		}
		if isExit && ev.InSize != len(msg) || !isExit && (ev.InSize != 0 || ev.OutSize != 0) {
			t.Fatalf("hop %s (exit %v) saw %d bytes in, %d out", ev.Onion.Addr(), isExit, ev.InSize, ev.OutSize)
		}
	}
}

func TestSealedPayloadAnnounced(t *testing.T) {
	tn := newTestNet(t, ghostcomm.PrimaryConfig{Nodes: 3, Protocol: ghostcomm.ProtocolSealed,
		Sealed: ghostcomm.SealedConfig{Form: ghostcomm.FormRelay, MaxPacket: ghostcomm.SealedSmall}}, ghostcomm.ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cy, err := tn.client.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cy.Protocol != ghostcomm.ProtocolSealed || cy.Sealed.Form != ghostcomm.FormRelay || cy.Sealed.MaxPacket != ghostcomm.SealedSmall {
		t.Fatalf("cycle announces %q %+v", cy.Protocol, cy.Sealed)
	}
	seen := map[string]bool{}
	for i, n := range cy.Nodes {
		if len(n.SealedKey) != 32 || seen[string(n.SealedKey)] {
			t.Fatalf("node %d: sealed key %x (a fresh 32-byte key per node wanted)", i, n.SealedKey)
		}
		seen[string(n.SealedKey)] = true
	}
	layered := newTestNet(t, ghostcomm.PrimaryConfig{Nodes: 2}, ghostcomm.ClientConfig{})
	cy, err = layered.client.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cy.Protocol != ghostcomm.ProtocolLayered || cy.Sealed != (ghostcomm.SealedConfig{}) || cy.Nodes[0].SealedKey != nil {
		t.Fatalf("layered cycle announces %q %+v, key %x", cy.Protocol, cy.Sealed, cy.Nodes[0].SealedKey)
	}
}

// A message too large for the cycle's largest class, or for the client's
// frame limit, is ErrFrameTooLarge before anything is sent.
func TestSealedTooLarge(t *testing.T) {
	cases := []struct {
		name     string
		max      int // PrimaryConfig.Sealed.MaxPacket
		frame    int // ClientConfig.MaxFrameSize
		ok, over int // the largest message that fits, and one byte more
	}{
		{"large class", 0, 0, 31995, 31996},
		{"small class only", ghostcomm.SealedSmall, 0, 1275, 1276},
		{"client frame limit", 0, 4096, 1275, 1276},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pc := sealedConfig(2, ghostcomm.FormChain)
			pc.Sealed.MaxPacket = tc.max
			tn := newTestNet(t, pc, ghostcomm.ClientConfig{MaxFrameSize: tc.frame, Route: payloadOrder})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := tn.client.Fetch(ctx); err != nil {
				t.Fatal(err)
			}
			before := tn.net.Stats(tn.primary.Cycle().Nodes[0].Onion.ServiceID)
			_, err := tn.client.Send(ctx, make([]byte, tc.over))
			if !errors.Is(err, ghostcomm.ErrFrameTooLarge) || ghostcomm.ActionFor(err) != ghostcomm.ActionGiveUp {
				t.Fatalf("%d bytes: got %v, want ErrFrameTooLarge", tc.over, err)
			}
			if after := tn.net.Stats(tn.primary.Cycle().Nodes[0].Onion.ServiceID); after != before {
				t.Fatalf("something reached the first hop: %+v -> %+v", before, after)
			}
			if got := tn.primary.Stats().Nodes.Accepted; got != 0 {
				t.Fatalf("%d packets accepted", got)
			}
			if _, err := tn.client.Send(ctx, make([]byte, tc.ok)); err != nil {
				t.Fatalf("%d bytes: %v", tc.ok, err)
			}
		})
	}
}

// A failure at hop k of a sealed route is attributed to hop k: a processor
// that fails (chain form: every hop processes; relay form: only the exit
// does, and a failing processor before it goes unnoticed), and a hop that
// cannot be reached.
func TestSealedFailingHopNamed(t *testing.T) {
	t.Parallel()
	registerOnce(t, ghostcomm.ProcessorKind{Name: "sealed-test-fail", New: func(map[string]string) (ghostcomm.Processor, error) {
		return ghostcomm.ProcessorFunc(func([]byte) ([]byte, error) { return nil, errors.New("refuses everything") }), nil
	}})
	const nodes = 4
	for _, form := range []ghostcomm.SealedForm{ghostcomm.FormChain, ghostcomm.FormRelay} {
		for k := 1; k <= nodes; k++ {
			t.Run(fmt.Sprintf("%s/processor at hop %d", form, k), func(t *testing.T) {
				pc := sealedConfig(nodes, form)
				pc.Processing = func(i int, _ io.Reader) ghostcomm.ProcessorSpec {
					if i == k-1 {
						return ghostcomm.ProcessorSpec{Name: "sealed-test-fail"}
					}
					return ghostcomm.IdentitySpec
				}
				tn := newTestNet(t, pc, ghostcomm.ClientConfig{Route: payloadOrder})
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				res, err := tn.client.Send(ctx, []byte("x"))
				if form == ghostcomm.FormRelay && k < nodes {
					if err != nil || string(res.Data) != "x" {
						t.Fatalf("relaying hop %d does not process: got %v, %q", k, err, res.Data)
					}
					return
				}
				var he *ghostcomm.HopError
				if !errors.As(err, &he) || he.Hop != k || !errors.Is(err, ghostcomm.ErrProcessing) {
					t.Fatalf("got %v, want a HopError for hop %d matching ErrProcessing", err, k)
				}
				if he.Onion != tn.primary.Cycle().Nodes[k-1].Onion.Addr() {
					t.Fatalf("error names %s, want hop %d", he.Onion, k)
				}
			})
		}
		t.Run(fmt.Sprintf("%s/unreachable", form), func(t *testing.T) {
			tn := newTestNet(t, sealedConfig(nodes, form), ghostcomm.ClientConfig{Route: payloadOrder})
			cy := tn.primary.Cycle()
			for k := 1; k <= nodes; k++ {
				id := cy.Nodes[k-1].Onion.ServiceID
				tn.net.Partition(id)
				tn.net.Sever(id)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := tn.client.Send(ctx, []byte("x"))
				cancel()
				tn.net.Heal(id)
				var he *ghostcomm.HopError
				if !errors.As(err, &he) || he.Hop != k || !errors.Is(err, ghostcomm.ErrHopUnreachable) {
					t.Fatalf("hop %d partitioned: got %v, want a HopError for hop %d matching ErrHopUnreachable", k, err, k)
				}
			}
		})
	}
}

// Combinations sealed mode cannot carry are ErrBadProtocol.
func TestSealedBadCombinations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n := tortest.NewNetwork(tortest.Config{})
	defer n.Close()
	for name, pc := range map[string]ghostcomm.PrimaryConfig{
		"unknown protocol":        {Protocol: "onion"},
		"sealed options, layered": {Sealed: ghostcomm.SealedConfig{Form: ghostcomm.FormRelay}},
		"unknown form":            {Protocol: ghostcomm.ProtocolSealed, Sealed: ghostcomm.SealedConfig{Form: "mesh"}},
		"unknown class":           {Protocol: ghostcomm.ProtocolSealed, Sealed: ghostcomm.SealedConfig{MaxPacket: 8192}},
		"nodes without keys":      {Nodes: 1, Protocol: ghostcomm.ProtocolSealed, Sources: []ghostcomm.NodeSource{layeredSource{n}}},
	} {
		p, err := ghostcomm.NewPrimary(ctx, n.Controller(), n.Dialer(), pc)
		if err == nil {
			p.Close()
		}
		if !errors.Is(err, ghostcomm.ErrBadProtocol) || ghostcomm.ActionFor(err) != ghostcomm.ActionGiveUp {
			t.Errorf("%s: got %v, want ErrBadProtocol", name, err)
		}
	}
	if _, err := ghostcomm.NewNode(ctx, n.Controller(), n.Dialer(), ghostcomm.NodeConfig{Protocol: ghostcomm.ProtocolSealed, Sealed: ghostcomm.SealedConfig{Form: "x"}}); !errors.Is(err, ghostcomm.ErrBadProtocol) {
		t.Errorf("NewNode, bad form: got %v, want ErrBadProtocol", err)
	}
	if got := len(n.Onions()); got != 0 {
		t.Errorf("%d onions left behind", got)
	}

	// A route longer than a sealed header holds.
	tn := newTestNet(t, sealedConfig(9, ghostcomm.FormChain), ghostcomm.ClientConfig{Route: payloadOrder})
	if _, err := tn.client.Send(ctx, []byte("x")); !errors.Is(err, ghostcomm.ErrBadProtocol) {
		t.Fatalf("9-hop route: got %v, want ErrBadProtocol", err)
	}
	// The default route of a 9-node sealed cycle takes 8 of them.
	c, err := ghostcomm.NewClient(tn.net.Dialer(), tn.primary.Invite(nil), ghostcomm.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Send(ctx, []byte("x"))
	if err != nil || len(res.Route) != ghostcomm.MaxSealedHops || !res.Verified {
		t.Fatalf("default route: %v, %d hops", err, len(res.Route))
	}
}

// layeredSource supplies one layered node, which has no sealed-mode key.
type layeredSource struct{ n *tortest.Network }

func (s layeredSource) CycleNodes(ctx context.Context, c *ghostcomm.Cycle) (ghostcomm.CycleNodes, error) {
	node, err := ghostcomm.NewNode(ctx, s.n.Controller(), s.n.Dialer(), ghostcomm.NodeConfig{NotBefore: c.NotBefore, NotAfter: c.NotAfter})
	if err != nil {
		return nil, err
	}
	return layeredNodes{node}, nil
}

type layeredNodes struct{ n *ghostcomm.Node }

func (l layeredNodes) Infos() []ghostcomm.NodeInfo                       { return []ghostcomm.NodeInfo{l.n.Info()} }
func (l layeredNodes) Start(context.Context, []ghostcomm.NodeInfo) error { return l.n.SetPeers(nil) }
func (l layeredNodes) Close() error                                      { return l.n.Close() }

// Remote nodes in a sealed cycle: each makes its sealed-mode key when the
// Primary's NodeCycle announces sealed mode, and its descriptor carries the
// public half; messages cross them, in both forms, with a local node too.
func TestSealedRemoteNodes(t *testing.T) {
	for _, form := range []ghostcomm.SealedForm{ghostcomm.FormChain, ghostcomm.FormRelay} {
		t.Run(string(form), func(t *testing.T) {
			pc := sealedConfig(1, form)
			pc.MinNodes = 4
			rn := newRemoteNet(t, 3, pc, ghostcomm.RemoteSourceConfig{Wait: 10 * time.Second})
			c := rn.primary.Cycle()
			if len(c.Nodes) != 4 || c.Protocol != ghostcomm.ProtocolSealed || c.Sealed.Form != form {
				t.Fatalf("cycle of %d nodes, %q %+v", len(c.Nodes), c.Protocol, c.Sealed)
			}
			for i, n := range c.Nodes {
				if len(n.SealedKey) != 32 {
					t.Fatalf("node %d has no sealed-mode key", i)
				}
			}
			for range 3 {
				sendVerified(t, rn.client, 4)
			}
		})
	}
}

// A descriptor whose sealed-mode key does not fit the cycle's protocol is
// refused with ErrBadProtocol; one with a key that is no usable point with
// ErrMalformed.
func TestSealedRemoteDescriptorChecked(t *testing.T) {
	h := newHostileSource(t)
	id := newIdentity(t)
	h.src.Enroll(id.Public().(ed25519.PublicKey), "")
	n := tortest.NewNetwork(tortest.Config{})
	defer n.Close()
	sealedNode, err := ghostcomm.NewNode(context.Background(), n.Controller(), n.Dialer(), ghostcomm.NodeConfig{Protocol: ghostcomm.ProtocolSealed})
	if err != nil {
		t.Fatal(err)
	}
	defer sealedNode.Close()

	// A layered cycle, a sealed node's descriptor.
	c, _ := h.gather(21)
	b, err := ghostcomm.SignDescriptor(id, h.primary, &c, sealedNode.Info())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.src.Admit(b, h.primary); !errors.Is(err, ghostcomm.ErrBadProtocol) {
		t.Fatalf("sealed descriptor for a layered cycle: %v, want ErrBadProtocol", err)
	}
	h.abort()

	// A sealed cycle: a layered node's descriptor, a bad key, then the
	// sealed node's.
	now := time.Now().Truncate(time.Second)
	sc := &ghostcomm.Cycle{ID: [16]byte{22}, NotBefore: now, NotAfter: now.Add(time.Hour), Grace: time.Minute,
		Protocol: ghostcomm.ProtocolSealed, Sealed: ghostcomm.SealedConfig{Form: ghostcomm.FormRelay, MaxPacket: ghostcomm.SealedLarge}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan []ghostcomm.NodeInfo, 1)
	go func() {
		cn, err := h.src.CycleNodes(ctx, sc)
		if err != nil {
			done <- nil
			return
		}
		done <- cn.Infos()
	}()
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	for {
		open, err := h.src.WaitOpen(wctx)
		if err != nil {
			t.Fatalf("WaitOpen: %v", err)
		}
		if open.ID == sc.ID {
			break
		}
		time.Sleep(time.Millisecond)
	}
	sign := func(ni ghostcomm.NodeInfo) []byte {
		b, err := ghostcomm.SignDescriptor(id, h.primary, sc, ni)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if err := h.src.Admit(sign(h.newNode()), h.primary); !errors.Is(err, ghostcomm.ErrBadProtocol) {
		t.Fatalf("layered descriptor for a sealed cycle: %v, want ErrBadProtocol", err)
	}
	bad := sealedNode.Info()
	bad.SealedKey = make([]byte, 32) // zero: of low order
	if err := h.src.Admit(sign(bad), h.primary); !errors.Is(err, ghostcomm.ErrMalformed) {
		t.Fatalf("descriptor with a low-order sealed key: %v, want ErrMalformed", err)
	}
	if err := h.src.Admit(sign(sealedNode.Info()), h.primary); err != nil {
		t.Fatalf("sealed descriptor for a sealed cycle: %v", err)
	}
	cancel()
	if got := <-done; len(got) != 1 || !bytes.Equal(got[0].SealedKey, sealedNode.Info().SealedKey) {
		t.Fatalf("gathered %d nodes, want the sealed node with its key", len(got))
	}
}
