package ghostcomm_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// downSource is a NodeSource that adds no node, and fails while down is set.
type downSource struct{ down atomic.Bool }

var errSourceDown = errors.New("test: source down")

type noNodes struct{}

func (noNodes) Infos() []ghostcomm.NodeInfo                       { return nil }
func (noNodes) Start(context.Context, []ghostcomm.NodeInfo) error { return nil }
func (noNodes) Close() error                                      { return nil }
func (s *downSource) CycleNodes(context.Context, *ghostcomm.Cycle) (ghostcomm.CycleNodes, error) {
	if s.down.Load() {
		return nil, errSourceDown
	}
	return noNodes{}, nil
}

// A rotation that fails extends the current cycle into its grace window:
// a client fetching after the cycle's first end gets the later end and its
// messages still cross the nodes; the cycle is extended once only, and
// NotAfter plus Grace, when the nodes stop, does not move.
func TestFailedRotationExtendsCycle(t *testing.T) {
	t.Parallel()
	clk := tortest.NewClock(time.Unix(1_800_000_000, 0))
	tn := tortest.NewNetwork(tortest.Config{})
	t.Cleanup(func() { tn.Close() })
	src := &downSource{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := ghostcomm.NewPrimary(ctx, tn.Controller(), tn.Dialer(), ghostcomm.PrimaryConfig{
		Nodes: 2, Period: 10 * time.Minute, Grace: 4 * time.Minute, Clock: clk, Sources: []ghostcomm.NodeSource{src}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	c, err := ghostcomm.NewClient(tn.Dialer(), p.Invite(nil), ghostcomm.ClientConfig{Clock: clk, PrefetchBefore: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	send := func() error {
		res, err := c.Send(ctx, []byte("still here"))
		if err == nil && !res.Verified {
			t.Fatal("answer not verified")
		}
		return err
	}
	if err := send(); err != nil {
		t.Fatal(err)
	}
	before := p.Cycle()

	src.down.Store(true)
	if err := p.Rotate(ctx); !errors.Is(err, errSourceDown) {
		t.Fatalf("Rotate: %v, want the source's error", err)
	}
	after := p.Cycle()
	if after.ID != before.ID {
		t.Fatal("the cycle changed although the rotation failed")
	}
	if want := before.NotAfter.Add(2 * time.Minute); !after.NotAfter.Equal(want) || after.Grace != 2*time.Minute {
		t.Fatalf("extended cycle ends %v with grace %v, want %v and 2m", after.NotAfter, after.Grace, want)
	}
	if err := p.Rotate(ctx); err == nil {
		t.Fatal("second Rotate succeeded with the source down")
	}
	if again := p.Cycle(); !again.NotAfter.Equal(after.NotAfter) {
		t.Fatalf("extended twice: ends %v, then %v", after.NotAfter, again.NotAfter)
	}
	if got := p.Stats().CyclesFailed; got < 2 {
		t.Fatalf("CyclesFailed %d, want at least 2", got)
	}

	// A minute after the cycle's first end: the client's cached cycle has
	// ended, it fetches the extended one, and the nodes still serve it.
	clk.Set(before.NotAfter.Add(time.Minute))
	if err := send(); err != nil {
		t.Fatalf("Send a minute after the first end: %v", err)
	}
	got, err := c.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !got.NotAfter.Equal(after.NotAfter) {
		t.Fatalf("the client sees the cycle end %v, want %v", got.NotAfter, after.NotAfter)
	}
	// Past the extended end, with still no new cycle: no payload is valid.
	// The client fetches again while its time allows (the Primary may be
	// late), so this send gets a short deadline: ErrStaleCycle before it.
	clk.Set(after.NotAfter.Add(time.Second))
	sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = c.Send(sctx, []byte("too late"))
	scancel()
	if !errors.Is(err, ghostcomm.ErrStaleCycle) {
		t.Fatalf("Send past the extended end: %v, want ErrStaleCycle", err)
	}

	// The source is back: the next rotation forms a cycle.
	src.down.Store(false)
	if err := p.Rotate(ctx); err != nil {
		t.Fatalf("Rotate with the source back: %v", err)
	}
	if err := send(); err != nil {
		t.Fatalf("Send on the new cycle: %v", err)
	}
}
