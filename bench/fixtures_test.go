package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/layer"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// Data sizes of the micro benchmarks.
var sizes = []struct {
	name string
	n    int
}{{"1KiB", 1 << 10}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}}

// Route lengths of the build benchmarks.
var hopCounts = []int{3, 5}

// maxHops is the longest route any fixture needs: hopCounts' largest plus
// one, for bytes added per layer (n+1 hops minus n hops).
const maxHops = 6

// floorFill is how much longer a ghostcomm layer is than a floor layer at
// the same depth: a cv25519 PKESK minus the floor's 32-byte ephemeral key.
// It is measured, not assumed (TestFloorPlaintextSizesMatch checks it).
var floorFill int

type cryptoFixture struct {
	ghost *route
	floor *floorRoute
	data  map[string][]byte
}

var (
	cryptoOnce sync.Once
	cryptoFix  *cryptoFixture
	cryptoErr  error
)

// crypto returns the shared fixture of the crypto benchmarks: maxHops
// ghostcomm key pairs, as many floor keys, and random data of each size.
func crypto(tb testing.TB) *cryptoFixture {
	tb.Helper()
	cryptoOnce.Do(func() {
		f := &cryptoFixture{data: map[string][]byte{}}
		if f.ghost, cryptoErr = newRoute(maxHops); cryptoErr != nil {
			return
		}
		if floorFill, cryptoErr = pkeskSize(f.ghost); cryptoErr != nil {
			return
		}
		floorFill -= floorEphSize
		if f.floor, cryptoErr = newFloorRoute(maxHops, floorFill, rand.Reader); cryptoErr != nil {
			return
		}
		for _, s := range sizes {
			b := make([]byte, s.n)
			if _, cryptoErr = io.ReadFull(rand.Reader, b); cryptoErr != nil {
				return
			}
			f.data[s.name] = b
		}
		cryptoFix = f
	})
	if cryptoErr != nil {
		tb.Fatalf("crypto fixture: %v", cryptoErr)
	}
	return cryptoFix
}

// pkeskSize is the size of the PKESK that layer.Seal writes for hop 1:
// a sealed box's length minus its Fernet token's.
func pkeskSize(r *route) (int, error) {
	k, err := layer.NewKey(rand.Reader)
	if err != nil {
		return 0, err
	}
	box, err := layer.Seal(nil, r.pubs[0].Enc, &k, r.ts, nil, rand.Reader)
	if err != nil {
		return 0, err
	}
	tok, err := layer.FernetSeal(nil, &k, r.ts, nil)
	if err != nil {
		return 0, err
	}
	return len(box) - len(tok), nil
}

// onionSizes returns the size of the onion a client builds with no padding
// for each route length 1..maxHops, ghostcomm's and the floor's. The floor's
// are its natural sizes, without the fill that makes its plaintexts as long
// as ghostcomm's for the timing comparison.
func onionSizes(f *cryptoFixture) (ghost, floor []int, err error) {
	for n := 1; n <= maxHops; n++ {
		o, err := layer.Build(f.ghost.pubs[:n], f.ghost.next[:n-1], cycleTS, 0, rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		ghost = append(ghost, len(o.Layer))
		fr := *f.floor
		fr.keys, fr.next = fr.keys[:n], fr.next[:n-1]
		fr.fill, fr.zeros = 0, nil
		m, err := fr.build(nil, 0, rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		floor = append(floor, len(m.layer))
	}
	return ghost, floor, nil
}

// perLayer returns sizes[n] - sizes[n-1] (size of n+1 hops minus n hops),
// and whether that difference is the same for every n.
func perLayer(sizes []int, n int) (int, bool) {
	d := sizes[n] - sizes[n-1]
	for i := 1; i < len(sizes); i++ {
		if sizes[i]-sizes[i-1] != d {
			return d, false
		}
	}
	return d, true
}

// boundedInFlight is the MaxInFlight of the network fixture's second
// Client: eight messages a core on the two-core machines the report is made
// on.
const boundedInFlight = 16

// netFixture is a Primary of three identity nodes and a Client on the fake
// Tor, shared by every network benchmark.
type netFixture struct {
	net     *tortest.Network
	primary *ghostcomm.Primary
	client  *ghostcomm.Client
	bounded *ghostcomm.Client // a second Client, with ClientConfig.MaxInFlight boundedInFlight
	route   *route            // a 3-hop route of fresh keys for the crypto-only bound
	floor   *socketFloor      // relays of route on the same fake Tor: the socket floor

	// hopNanos and hops sum HopEvent.Process over every hop the nodes
	// handled: what the hops themselves computed, as against the round
	// trip.
	hopNanos, hops atomic.Int64
}

func (f *netFixture) observe(ev ghostcomm.HopEvent) {
	f.hopNanos.Add(int64(ev.Process))
	f.hops.Add(1)
}

var (
	netOnce sync.Once
	netFix  *netFixture
	netErr  error
)

func network(tb testing.TB) *netFixture {
	tb.Helper()
	netOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		f := &netFixture{net: tortest.NewNetwork(tortest.Config{})}
		// A period far longer than any benchmark run: no rotation happens
		// while messages are timed.
		f.primary, netErr = ghostcomm.NewPrimary(ctx, f.net.Controller(), f.net.Dialer(), ghostcomm.PrimaryConfig{
			Nodes:      3,
			Period:     24 * time.Hour,
			Processing: func(int, io.Reader) ghostcomm.ProcessorSpec { return ghostcomm.IdentitySpec },
			Node:       ghostcomm.NodeConfig{Observer: f.observe},
		})
		if netErr != nil {
			f.net.Close()
			return
		}
		f.client, netErr = ghostcomm.NewClient(f.net.Dialer(), f.primary.Invite(nil), ghostcomm.ClientConfig{})
		if netErr == nil {
			_, netErr = f.client.Fetch(ctx)
		}
		if netErr == nil {
			f.bounded, netErr = ghostcomm.NewClient(f.net.Dialer(), f.primary.Invite(nil), ghostcomm.ClientConfig{MaxInFlight: boundedInFlight})
		}
		if netErr == nil {
			_, netErr = f.bounded.Fetch(ctx)
		}
		if netErr == nil {
			f.route, netErr = newRoute(3)
		}
		if netErr == nil {
			f.floor, netErr = newSocketFloor(ctx, f.net, f.route)
		}
		if netErr != nil {
			f.close()
			return
		}
		netFix = f
	})
	if netErr != nil {
		tb.Fatalf("network fixture: %v", netErr)
	}
	return netFix
}

func (f *netFixture) close() error {
	var err error
	if f.floor != nil {
		f.floor.close()
	}
	if f.client != nil {
		f.client.Close()
	}
	if f.bounded != nil {
		f.bounded.Close()
	}
	if f.primary != nil {
		err = f.primary.Close()
	}
	f.net.Close()
	return err
}

var (
	cycleOnce sync.Once
	cycleFix  *lockCycle
	cycleErr  error
)

// lockCycleFixture is the Primary key and the onions of an 8-node cycle.
func lockCycleFixture(tb testing.TB) *lockCycle {
	tb.Helper()
	cycleOnce.Do(func() { cycleFix, cycleErr = newLockCycle(8) })
	if cycleErr != nil {
		tb.Fatalf("lock-cycle fixture: %v", cycleErr)
	}
	return cycleFix
}

func TestMain(m *testing.M) {
	code := m.Run()
	if netFix != nil {
		if err := netFix.close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing the network fixture:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}
