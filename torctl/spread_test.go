package torctl_test

import (
	"context"
	"testing"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

func TestSpread(t *testing.T) {
	n := tortest.NewNetwork(tortest.Config{})
	defer n.Close()
	a, b := n.Controller(), n.Controller()
	s := torctl.Spread(a, b)
	ctx := context.Background()
	var onions []ghostcomm.Onion
	for range 4 {
		o, err := s.CreateOnion(ctx, ghostcomm.OnionConfig{VirtualPort: 80, Target: "127.0.0.1:9"})
		if err != nil {
			t.Fatal(err)
		}
		onions = append(onions, o)
	}
	if len(a.Onions()) != 2 || len(b.Onions()) != 2 {
		t.Fatalf("onions spread %d/%d, want 2/2", len(a.Onions()), len(b.Onions()))
	}
	for _, o := range onions {
		// tortest refuses removal through a controller that does not own
		// the service: Spread must route each removal to its creator.
		if err := s.RemoveOnion(ctx, o.ServiceID); err != nil {
			t.Fatal(err)
		}
	}
	if len(n.Onions()) != 0 {
		t.Fatalf("onions left: %v", n.Onions())
	}
	if err := s.RemoveOnion(ctx, onions[0].ServiceID); err != nil {
		t.Fatalf("removing again: %v", err)
	}
}
