package tortest_test

import (
	"context"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// A Primary with a HeldSource forms its cycle from the source's nodes; the
// test reaches each of them, and they carry the Primary's default
// processing.
func TestHeldSource(t *testing.T) {
	n := tortest.NewNetwork(tortest.Config{})
	defer n.Close()
	src := &tortest.HeldSource{TC: n.Controller(), Dialer: n.Dialer(), Count: 3}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := ghostcomm.NewPrimary(ctx, n.Controller(), n.Dialer(), ghostcomm.PrimaryConfig{Sources: []ghostcomm.NodeSource{src}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := p.Cycle()
	if len(c.Nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(c.Nodes))
	}
	for _, info := range c.Nodes {
		node := src.Node(info.Onion)
		if node == nil {
			t.Fatalf("the source does not hold %s", info.Onion.Addr())
		}
		if got := node.Info().Processor.Name; got != "hash" {
			t.Errorf("%s processes with %q, want the default hash", info.Onion.Addr(), got)
		}
	}
	if src.Node(ghostcomm.Onion{ServiceID: "nosuch"}) != nil {
		t.Error("Node of an unknown onion is not nil")
	}
}
