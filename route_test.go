package ghostcomm_test

import (
	"context"
	mrand "math/rand/v2"
	"testing"
	"time"

	. "github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

func TestDefaultRouteHidesPosition(t *testing.T) {
	// Over 3,000 default routes on a 5-node cycle, each node is at each
	// position (first, each middle one, last) about equally often: a
	// chi-square test per position, 4 degrees of freedom. The bound, 40,
	// is passed by chance with probability below 1e-7, whatever the seed;
	// payload order would give 12,000 for the first position.
	const nodes, routes, bound = 5, 3000, 40.0
	n := tortest.NewNetwork(tortest.Config{})
	defer n.Close()
	inv := Invite{Primary: Onion{ServiceID: "primary", Port: 80}}
	c, err := NewClient(n.Dialer(), inv, ClientConfig{Rand: mrand.NewChaCha8([32]byte{'r', 'o', 'u', 't', 'e'})})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cy := &Cycle{Nodes: make([]NodeInfo, nodes)}
	var count [nodes][nodes]int // count[position][node]
	for range routes {
		r, err := c.Route(cy)
		if err != nil {
			t.Fatal(err)
		}
		if len(r) != nodes {
			t.Fatalf("route %v: %d hops, want %d", r, len(r), nodes)
		}
		seen := make(map[int]bool)
		for pos, node := range r {
			if seen[node] {
				t.Fatalf("route %v visits node %d twice", r, node)
			}
			seen[node] = true
			count[pos][node]++
		}
	}
	want := float64(routes) / nodes
	for pos := range count {
		chi2 := 0.0
		for _, o := range count[pos] {
			chi2 += (float64(o) - want) * (float64(o) - want) / want
		}
		t.Logf("position %d: %v, chi-square %.1f", pos+1, count[pos], chi2)
		if chi2 > bound {
			t.Errorf("position %d: counts per node %v (expected %.0f each): chi-square %.1f > %.0f", pos+1, count[pos], want, chi2, bound)
		}
	}
}

func TestExplicitRouteKept(t *testing.T) {
	hn := newHopNet(t, PrimaryConfig{Nodes: 3}, ClientConfig{Route: func(*Cycle) []int { return []int{2, 0} }})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 5 {
		res, err := hn.client.Send(ctx, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Route) != 2 || res.Route[0].Onion != hn.cycle.Nodes[2].Onion || res.Route[1].Onion != hn.cycle.Nodes[0].Onion {
			t.Fatalf("route %v, want nodes 2 then 0", res.Route)
		}
	}
}

func TestDefaultRouteVariesOnTheNetwork(t *testing.T) {
	// Messages sent with the zero ClientConfig go through every node, and
	// not always in the same order: the first and the last hop change.
	hn := newHopNet(t, PrimaryConfig{Nodes: 3}, ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	firsts, lasts := map[Onion]bool{}, map[Onion]bool{}
	for range 40 {
		res, err := hn.client.Send(ctx, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if !res.Verified || len(res.Route) != 3 {
			t.Fatalf("verified %v, route of %d hops", res.Verified, len(res.Route))
		}
		firsts[res.Route[0].Onion], lasts[res.Route[2].Onion] = true, true
	}
	if len(firsts) < 2 || len(lasts) < 2 {
		t.Fatalf("40 messages: %d distinct first hops, %d distinct last hops", len(firsts), len(lasts))
	}
}

// payloadOrder routes through every node in payload order, for tests that
// name hops by their place in the payload.
func payloadOrder(cy *Cycle) []int {
	r := make([]int, len(cy.Nodes))
	for i := range r {
		r[i] = i
	}
	return r
}
