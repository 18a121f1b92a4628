package torctl_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/wire"
	"github.com/ghostcomm/ghostcomm/torctl"
	"github.com/ghostcomm/ghostcomm/torctl/testnet"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// overheadRounds is how many interleaved rounds TestIntegrationTorOverhead
// measures (go test ./torctl -overhead.rounds=N), and overheadMsgs how many
// messages each of its throughput runs sends (-overhead.msgs=N), with
// throughputWindow of them in flight at once; overheadExtras adds the
// figures beside the targets (-overhead.extras): pings on streams of their
// own, raw echoes, a size sweep and a raw chain, four more onions and
// their rounds. The report asks for all of it; the defaults keep the test
// short in the suite. overheadSettle is how long the streams stay idle
// before each message and each set of pings or echoes: on the private
// network an exchange right after another on the same circuit often takes
// tens of milliseconds longer, so without it whichever went second would
// lose (-overhead.settle=0 shows it).
var (
	overheadRounds = flag.Int("overhead.rounds", 3, "rounds of TestIntegrationTorOverhead")
	overheadMsgs   = flag.Int("overhead.msgs", 100, "messages per throughput run of TestIntegrationTorOverhead")
	overheadExtras = flag.Bool("overhead.extras", false, "TestIntegrationTorOverhead: also the figures beside the targets")
	overheadSettle = flag.Duration("overhead.settle", 300*time.Millisecond, "TestIntegrationTorOverhead: idle time on the streams before each message and each set of pings or echoes")
)

const throughputWindow = 16

// pinger holds a stream to a node's onion on which it sends transport pings:
// a one-hop echo through tor to the node's server, answered by its reader
// without any handler.
type pinger struct {
	c  net.Conn
	id uint32
}

func (p *pinger) ping() (time.Duration, error) {
	p.id++
	p.c.SetDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	if err := wire.WriteFrame(p.c, wire.Ping, p.id); err != nil {
		return 0, err
	}
	h, _, err := wire.ReadFrame(p.c, 1<<10)
	if err != nil {
		return 0, err
	}
	if h.Type != wire.Pong || h.ID != p.id {
		return 0, fmt.Errorf("ping %d answered by %v id %d", p.id, h.Type, h.ID)
	}
	return time.Since(start), nil
}

// TestIntegrationTorOverhead measures what ghostcomm adds to what tor itself
// costs (issue 13), on the private network:
//
//   - a warm 3-hop round trip (Result.RoundTrip, 1 KiB and 32 B messages) ÷
//     the sum of the three one-hop echoes on the chain's own streams: in
//     each round, right after the message, Client.Ping on the client's
//     stream to hop 1 and Node.Ping on hop 1's stream to hop 2 and hop 2's
//     to hop 3, the very streams the message took (a transport ping, which
//     the next hop's reader answers at once, without any handler). Medians
//     are compared. The same rounds give each leg of the chain as the hops
//     saw it (the client's round trip less hop 1's HopEvent.Total; hop i's
//     Total less its Process and hop i+1's Total), next to the ping on
//     that leg's stream.
//   - the same pings on streams of their own, from the same tors to the
//     same onions (a stream each, dialed by the test), in the same rounds:
//     what another circuit to the same onion makes of the same hop.
//   - the round trip ÷ a raw chain of three echo servers behind onions of
//     the same tors (2 KiB each way; each answers once the next one has,
//     as a node does; no ghostcomm), in the same rounds: what tor itself
//     makes of a chain of round trips, against the sum of one-hop ones.
//   - raw echoes through one onion by size (10 B .. 2 KiB, around tor's
//     498-byte cell), on one stream, in the same rounds.
//   - with one hop, the message's leg (the round trip less the hop's
//     Total) ÷ the ping on the same stream, in the same rounds.
//   - one node's throughput (a 1-node Primary, 1 KiB messages,
//     throughputWindow in flight at once on the client's one stream) ÷ a raw
//     echo service on the same tor, dialed from the same tor, with the same
//     message size and the same number in flight on one stream.
//
// The figures go to testnet.Figure (GHOSTCOMM_FIGURES); `go run ./cmd/report
// -tor` in bench/ runs this test and puts them in docs/PERFORMANCE.md.
func TestIntegrationTorOverhead(t *testing.T) {
	e, _ := setup(t)
	// Whether loopback delays its acknowledgements decides the private
	// network's latency steps (see testnet.LoopbackQuickAck): the report
	// reads the run's mode from this figure.
	switch qa, err := testnet.LoopbackQuickAck(); {
	case err != nil:
		testnet.Figure(t, "loopback TCP acknowledgements: unknown (%v)", err)
	case qa:
		testnet.Figure(t, "loopback TCP acknowledgements: immediate (the route to 127.0.0.1 has quickack 1)")
	default:
		testnet.Figure(t, "loopback TCP acknowledgements: delayed (the kernel's default: up to 40 ms)")
	}
	// The rounds take longer than the other integration tests' bound when
	// the report asks for many on slow circuits: about 3 s a round at most.
	ctx, cancel := context.WithTimeout(context.Background(), integrationTimeout+time.Duration(*overheadRounds)*3*time.Second)
	t.Cleanup(cancel)

	t.Run("3 hops", func(t *testing.T) {
		// The hops' own compute: HopEvent.Process of the hops that forward,
		// Total of the last (it forwards nothing). Every hop's observer has
		// run before the client has its answer.
		var compute atomic.Int64
		var evMu sync.Mutex
		events := map[ghostcomm.Onion]ghostcomm.HopEvent{}
		observe := func(ev ghostcomm.HopEvent) {
			if ev.Last {
				compute.Add(int64(ev.Total))
			} else {
				compute.Add(int64(ev.Process))
			}
			evMu.Lock()
			events[ev.Onion] = ev
			evMu.Unlock()
		}
		// Every byte each leg's stream carries, counted on the dialing
		// side: the client's streams to hop 1, the nodes' to the next.
		fromClientBytes, fromNodeBytes := newLegBytes(e.dialer), newLegBytes(e.selfDial)
		src := &tortest.HeldSource{TC: e.ctrl, Dialer: fromNodeBytes, Count: 3, Config: ghostcomm.NodeConfig{Observer: observe}}
		p, err := ghostcomm.NewPrimary(ctx, e.ctrl, e.selfDial, ghostcomm.PrimaryConfig{Sources: []ghostcomm.NodeSource{src}, Period: time.Hour})
		if err != nil {
			t.Fatalf("NewPrimary: %v", err)
		}
		defer p.Close()
		client, err := ghostcomm.NewClient(fromClientBytes, p.Invite(nil), ghostcomm.ClientConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		res, err := client.Send(ctx, []byte("warm"))
		if err != nil || !res.Verified || len(res.Route) != 3 {
			t.Fatalf("first Send: %v", err)
		}
		// The client picks the order of the nodes for each message: open
		// every stream a route may take (a ping opens the stream a message
		// would, if none is open), so that no round waits for a dial.
		for _, a := range res.Route {
			if _, err := client.Ping(ctx, a.Onion); err != nil {
				t.Fatalf("client to %s: %v", a.Onion.Addr(), err)
			}
			for _, b := range res.Route {
				if a.Onion != b.Onion {
					if _, err := src.Node(a.Onion).Ping(ctx, b.Onion); err != nil {
						t.Fatalf("%s to %s: %v", a.Onion.Addr(), b.Onion.Addr(), err)
					}
				}
			}
		}
		// A pinger to each node from each tor on a stream of its own: the
		// client dials hop 1 through its own tor, nodes dial the next hop
		// through the service tor.
		fromClient := map[ghostcomm.Onion]*pinger{}
		fromService := map[ghostcomm.Onion]*pinger{}
		for _, n := range res.Route {
			if !*overheadExtras {
				break
			}
			for _, side := range []struct {
				d  *torctl.Dialer
				to map[ghostcomm.Onion]*pinger
			}{{e.dialer, fromClient}, {e.selfDial, fromService}} {
				c, err := side.d.DialContext(ctx, "tcp", n.Onion.Addr())
				if err != nil {
					t.Fatalf("dial %s: %v", n.Onion.Addr(), err)
				}
				defer c.Close()
				pg := &pinger{c: c}
				if _, err := pg.ping(); err != nil { // warm
					t.Fatalf("ping %s: %v", n.Onion.Addr(), err)
				}
				side.to[n.Onion] = pg
			}
		}
		// Tor's own cost of a chain: three raw echo servers behind onions
		// of the service tor, each of which, as a node does, answers once
		// the next has answered (dialed through the service tor), the
		// first dialed from the client's tor: the chain's shape, with no
		// ghostcomm in it.
		var chain net.Conn
		chainMsg := bytes.Repeat([]byte("c"), 2<<10)
		if *overheadExtras {
			rawEchoes(t, ctx, e)
			chain, err = e.dialer.DialContext(ctx, "tcp", nestedEcho(t, ctx, e.ctrl, e.selfDial, 3, 2<<10).Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer chain.Close()
			if err := echo(chain, chainMsg); err != nil { // warm
				t.Fatal(err)
			}
		}

		for _, size := range []int{1 << 10, 32} {
			msg := bytes.Repeat([]byte("m"), size)
			var trips, computed, raw []time.Duration
			var same, echoes, own, legs [3][]time.Duration
			var ratios, echoRatios []float64
			var frames [3][2]int64 // each leg's frame bytes, request and answer, of the last round
			for range *overheadRounds {
				before := compute.Load()
				evMu.Lock()
				clear(events)
				evMu.Unlock()
				bytesBefore := [2]map[string][2]int64{fromClientBytes.snapshot(), fromNodeBytes.snapshot()}
				time.Sleep(*overheadSettle)
				res, err := client.Send(ctx, msg)
				computed = append(computed, time.Duration(compute.Load()-before))
				if err != nil || !res.Verified || len(res.Route) != 3 {
					t.Fatalf("Send: %v", err)
				}
				// Each leg of the chain as the hops saw it: leg 1 is the
				// client's round trip less hop 1's Total, leg i+1 hop i's
				// Total less its Process and hop i+1's Total (tor, both
				// ends' transport and framing, the next hop's reading).
				evMu.Lock()
				var ev [3]ghostcomm.HopEvent
				for i, n := range res.Route {
					ev[i] = events[n.Onion]
				}
				evMu.Unlock()
				legs[0] = append(legs[0], res.RoundTrip-ev[0].Total)
				for i := range 2 {
					legs[i+1] = append(legs[i+1], ev[i].Total-ev[i].Process-ev[i+1].Total)
				}
				// The bytes each leg's stream carried for the message:
				// its request frame and its answer's.
				for i, n := range res.Route {
					side, lb := 1, fromNodeBytes
					if i == 0 {
						side, lb = 0, fromClientBytes
					}
					frames[i] = lb.since(bytesBefore[side], n.Onion.Addr())
				}
				// On each stream the message took, a ping and an echo: a
				// transport ping whose frames are as long as the leg's, the
				// stream's round trip for the message's cells (a ping
				// frame is 14+out bytes, a pong 10+back, back at most
				// out). Which goes first alternates from round to round,
				// so that neither always finds the stream just used.
				var sum, echoSum time.Duration
				for k := range 2 {
					isEcho := (k+len(trips))%2 == 1
					time.Sleep(*overheadSettle)
					for i, n := range res.Route {
						var out, back int
						if isEcho {
							back = int(frames[i][1]) - wire.HeaderSize
							out = max(int(frames[i][0])-wire.HeaderSize-wire.EchoPrefix, back)
						}
						var d time.Duration
						if i == 0 {
							d, err = client.Echo(ctx, n.Onion, out, back)
						} else {
							d, err = src.Node(res.Route[i-1].Onion).Echo(ctx, n.Onion, out, back)
						}
						if err != nil {
							t.Fatalf("echo of %d bytes, %d back, to hop %d on the chain's stream: %v", out, back, i+1, err)
						}
						if isEcho {
							echoes[i] = append(echoes[i], d)
							echoSum += d
						} else {
							same[i] = append(same[i], d)
							sum += d
						}
					}
				}
				echoRatios = append(echoRatios, float64(res.RoundTrip)/float64(echoSum))
				// A ping along each leg on a stream of its own.
				for i, n := range res.Route {
					if !*overheadExtras {
						break
					}
					pg := fromService[n.Onion]
					if i == 0 {
						pg = fromClient[n.Onion]
					}
					if pg == nil {
						t.Fatalf("hop %d: node %s not in the first route", i+1, n.Onion.Addr())
					}
					d, err := pg.ping()
					if err != nil {
						t.Fatalf("ping hop %d on a stream of its own: %v", i+1, err)
					}
					own[i] = append(own[i], d)
				}
				if *overheadExtras {
					s := time.Now()
					if err := echo(chain, chainMsg); err != nil {
						t.Fatalf("raw chain: %v", err)
					}
					raw = append(raw, time.Since(s))
				}
				trips = append(trips, res.RoundTrip)
				ratios = append(ratios, float64(res.RoundTrip)/float64(sum))
				n := len(trips) - 1
				t.Logf("%d B round %d: trip %v; legs %v %v %v; echoes on the chain's streams %v %v %v; pings %v %v %v",
					size, n+1, res.RoundTrip.Round(100*time.Microsecond),
					legs[0][n].Round(100*time.Microsecond), legs[1][n].Round(100*time.Microsecond), legs[2][n].Round(100*time.Microsecond),
					echoes[0][n].Round(100*time.Microsecond), echoes[1][n].Round(100*time.Microsecond), echoes[2][n].Round(100*time.Microsecond),
					same[0][n].Round(100*time.Microsecond), same[1][n].Round(100*time.Microsecond), same[2][n].Round(100*time.Microsecond))
				if *overheadExtras {
					t.Logf("%d B round %d: pings on streams of their own %v %v %v; raw chain %v", size, n+1,
						own[0][n].Round(100*time.Microsecond), own[1][n].Round(100*time.Microsecond), own[2][n].Round(100*time.Microsecond),
						raw[n].Round(100*time.Microsecond))
				}
			}
			r := func(d time.Duration) time.Duration { return d.Round(time.Microsecond) }
			medSum := median(same[0]) + median(same[1]) + median(same[2])
			medEcho := median(echoes[0]) + median(echoes[1]) + median(echoes[2])
			slices.Sort(ratios)
			slices.Sort(echoRatios)
			testnet.Figure(t, "3-hop round trip (%d B, warm) ÷ sum of the three one-hop echoes of the legs' frames on the chain's own streams: %.2f× (median %v vs %v + %v + %v = %v; median of the per-round ratios %.2f×; frames, request/answer: hop 1 %d/%d B, hop 2 %d/%d B, hop 3 %d/%d B; %d rounds)",
				size, float64(median(trips))/float64(medEcho), r(median(trips)),
				r(median(echoes[0])), r(median(echoes[1])), r(median(echoes[2])), r(medEcho),
				echoRatios[len(echoRatios)/2], frames[0][0], frames[0][1], frames[1][0], frames[1][1], frames[2][0], frames[2][1], *overheadRounds)
			testnet.Figure(t, "3-hop round trip (%d B, warm), leg by leg, the chain's leg vs the echo on the stream it took: hop 1 %v vs %v, hop 2 %v vs %v, hop 3 %v vs %v (medians)",
				size, r(median(legs[0])), r(median(echoes[0])), r(median(legs[1])), r(median(echoes[1])),
				r(median(legs[2])), r(median(echoes[2])))
			testnet.Figure(t, "3-hop round trip (%d B, warm) ÷ sum of the three one-hop pings on the chain's own streams: %.2f× (median %v vs %v + %v + %v = %v; median of the per-round ratios %.2f×; the hops' own compute: median %v a message; %d rounds)",
				size, float64(median(trips))/float64(medSum), r(median(trips)),
				r(median(same[0])), r(median(same[1])), r(median(same[2])), r(medSum),
				ratios[len(ratios)/2], r(median(computed)), *overheadRounds)
			testnet.Figure(t, "3-hop round trip (%d B, warm), leg by leg, the chain's leg vs the ping on the stream it took: hop 1 %v vs %v, hop 2 %v vs %v, hop 3 %v vs %v (medians)",
				size, r(median(legs[0])), r(median(same[0])), r(median(legs[1])), r(median(same[1])),
				r(median(legs[2])), r(median(same[2])))
			if !*overheadExtras {
				continue
			}
			medOwn := median(own[0]) + median(own[1]) + median(own[2])
			testnet.Figure(t, "3-hop round trip (%d B, warm) ÷ sum of three one-hop pings on streams of their own (from the same tors to the same onions, in the same rounds): %.2f× (%v vs %v + %v + %v = %v)",
				size, float64(median(trips))/float64(medOwn), r(median(trips)),
				r(median(own[0])), r(median(own[1])), r(median(own[2])), r(medOwn))
			testnet.Figure(t, "3-hop round trip (%d B, warm) ÷ a raw chain of three echo servers on the same tors (2 KiB each way, each answering once the next has, in the same rounds): %.2f× (%v vs %v; the raw chain ÷ the sum of the pings on the chain's own streams: %.2f×)",
				size, float64(median(trips))/float64(median(raw)), r(median(trips)), r(median(raw)), float64(median(raw))/float64(medSum))
		}
	})

	t.Run("throughput", func(t *testing.T) {
		var total atomic.Int64 // the last message's HopEvent.Total
		p, err := ghostcomm.NewPrimary(ctx, e.ctrl, e.selfDial, ghostcomm.PrimaryConfig{Nodes: 1, Period: time.Hour,
			Node: ghostcomm.NodeConfig{Observer: func(ev ghostcomm.HopEvent) { total.Store(int64(ev.Total)) }}})
		if err != nil {
			t.Fatalf("NewPrimary: %v", err)
		}
		defer p.Close()
		lb := newLegBytes(e.dialer)
		client, err := ghostcomm.NewClient(lb, p.Invite(nil), ghostcomm.ClientConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		msg := bytes.Repeat([]byte("m"), 1<<10)
		res, err := client.Send(ctx, msg)
		if err != nil || !res.Verified || len(res.Route) != 1 {
			t.Fatalf("first Send: %v", err)
		}

		// One hop, one stream: a message's leg (the round trip less the
		// hop's Total) against an echo of its frames and a ping on the
		// same stream, in the same rounds, with no other hop and no other
		// stream in play.
		var legs, echoes, pings []time.Duration
		for range *overheadRounds {
			snap := lb.snapshot()
			time.Sleep(*overheadSettle)
			res, err := client.Send(ctx, msg)
			if err != nil || !res.Verified {
				t.Fatalf("Send: %v", err)
			}
			legs = append(legs, res.RoundTrip-time.Duration(total.Load()))
			hop := res.Route[0].Onion
			frames := lb.since(snap, hop.Addr())
			back := int(frames[1]) - wire.HeaderSize
			out := max(int(frames[0])-wire.HeaderSize-wire.EchoPrefix, back)
			for k := range 2 { // which goes first alternates, as above
				time.Sleep(*overheadSettle)
				if (k+len(legs))%2 == 0 {
					d, err := client.Ping(ctx, hop)
					if err != nil {
						t.Fatalf("Ping: %v", err)
					}
					pings = append(pings, d)
				} else {
					d, err := client.Echo(ctx, hop, out, back)
					if err != nil {
						t.Fatalf("Echo: %v", err)
					}
					echoes = append(echoes, d)
				}
			}
		}
		testnet.Figure(t, "1 hop (1024 B, warm), one stream: the message's leg (round trip less the hop's HopEvent.Total) ÷ the echo of its frames on the same stream, in the same rounds: %.2f× (medians %v vs %v; ÷ the ping on the same stream: %.2f×, %v; %d rounds)",
			float64(median(legs))/float64(median(echoes)), median(legs).Round(time.Microsecond), median(echoes).Round(time.Microsecond),
			float64(median(legs))/float64(median(pings)), median(pings).Round(time.Microsecond), *overheadRounds)
		_, c := createAndEcho(t, ctx, e.ctrl, e.dialer, ghostcomm.OnionConfig{})

		var node, raw []float64
		for range 3 { // interleaved runs; the best of each is compared
			rate, err := ghostThroughput(ctx, client, msg)
			if err != nil {
				t.Fatal(err)
			}
			node = append(node, rate)
			if rate, err = echoThroughput(c, msg); err != nil {
				t.Fatal(err)
			}
			raw = append(raw, rate)
		}
		slices.Sort(node)
		slices.Sort(raw)
		testnet.Figure(t, "one node's throughput over tor ÷ raw echo service on the same tor (1 KiB, %d in flight, %d messages per run): %.2f (median of 3 runs: %.0f vs %.0f msg/s; runs: %.0f / %.0f msg/s)",
			throughputWindow, *overheadMsgs, node[1]/raw[1], node[1], raw[1], node, raw)
	})
}

// nestedEcho makes a chain of depth onions on ctrl, each in front of a
// server that reads n bytes at a time and, as a node does, answers once it
// has all of them: the last at once, the others once the next onion of the
// chain, on a stream of theirs dialed through d, has answered the same n
// bytes. It returns the first onion. Tor's own cost of a chain of round
// trips, with no ghostcomm in it.
func nestedEcho(t *testing.T, ctx context.Context, ctrl *torctl.Controller, d ghostcomm.Dialer, depth, n int) ghostcomm.Onion {
	t.Helper()
	var next ghostcomm.Onion
	for k := depth; k >= 1; k-- {
		to := next
		l, wg := testListener(t)
		var fwd net.Conn
		var err error
		if k < depth {
			if fwd, err = d.DialContext(ctx, "tcp", to.Addr()); err != nil {
				t.Fatalf("dial %s: %v", to.Addr(), err)
			}
			t.Cleanup(func() { fwd.Close() })
		}
		wg.Go(func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					defer c.Close()
					buf := make([]byte, n)
					for {
						if _, err := io.ReadFull(c, buf); err != nil {
							return
						}
						if fwd != nil {
							if err := echo(fwd, buf); err != nil {
								return
							}
						}
						if _, err := c.Write(buf); err != nil {
							return
						}
					}
				})
			}
		})
		next, err = ctrl.CreateOnion(ctx, ghostcomm.OnionConfig{VirtualPort: ghostcomm.DefaultOnionPort, Target: l.Addr().String()})
		if err != nil {
			t.Fatalf("CreateOnion: %v", err)
		}
	}
	return next
}

// echoWrites writes msg on c cut at the offsets given, one write each
// piece, and reads it back.
func echoWrites(c net.Conn, msg []byte, cuts ...int) error {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	prev := 0
	for _, n := range append(cuts, len(msg)) {
		if _, err := c.Write(msg[prev:n]); err != nil {
			return err
		}
		prev = n
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo changed the message")
	}
	return nil
}

// ghostThroughput sends overheadMsgs messages through client with
// throughputWindow senders and returns messages per second.
func ghostThroughput(ctx context.Context, client *ghostcomm.Client, msg []byte) (float64, error) {
	var wg sync.WaitGroup
	errc := make(chan error, throughputWindow)
	work := make(chan struct{}, *overheadMsgs)
	for range *overheadMsgs {
		work <- struct{}{}
	}
	close(work)
	start := time.Now()
	for range throughputWindow {
		wg.Go(func() {
			for range work {
				res, err := client.Send(ctx, msg)
				if err == nil && !res.Verified {
					err = fmt.Errorf("result not verified")
				}
				if err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	select {
	case err := <-errc:
		return 0, err
	default:
	}
	return float64(*overheadMsgs) / took.Seconds(), nil
}

// echoThroughput writes overheadMsgs copies of msg on c, never more than
// throughputWindow ahead of what has come back, reads them all back and
// returns messages per second.
func echoThroughput(c net.Conn, msg []byte) (float64, error) {
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	window := make(chan struct{}, throughputWindow)
	werr := make(chan error, 1)
	done := make(chan struct{})
	defer close(done)
	start := time.Now()
	go func() {
		for range *overheadMsgs {
			select {
			case window <- struct{}{}:
			case <-done:
				werr <- nil
				return
			}
			if _, err := c.Write(msg); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	got := make([]byte, len(msg))
	for range *overheadMsgs {
		if _, err := io.ReadFull(c, got); err != nil {
			return 0, err
		}
		if !bytes.Equal(got, msg) {
			return 0, fmt.Errorf("echo changed the message")
		}
		<-window
	}
	took := time.Since(start)
	if err := <-werr; err != nil {
		return 0, err
	}
	return float64(*overheadMsgs) / took.Seconds(), nil
}

// wholeEchoServer listens on 127.0.0.1 and, on every connection, reads n
// bytes at a time and writes each n bytes back once all have arrived (as a
// node answers a frame), until the test ends. The first message of a
// connection, from createAndEcho, is answered as it comes.
func wholeEchoServer(t *testing.T, n int) string {
	t.Helper()
	l, wg := testListener(t)
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				hello := make([]byte, len("hello through tor"))
				if _, err := io.ReadFull(c, hello); err != nil {
					return
				}
				if _, err := c.Write(hello); err != nil {
					return
				}
				buf := make([]byte, n)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			})
		}
	})
	return l.Addr().String()
}

// rawEchoes reports what tor itself makes of a frame: a raw echo through an
// onion of the same tors of a ping's 10 bytes and of a 1 KiB message's frame
// (about 2 KiB), on one stream, and the same 2 KiB through an onion whose
// server, like a node, answers only once the whole message has arrived; the
// same 2 KiB written in four writes; and a size sweep around tor's cells.
func rawEchoes(t *testing.T, ctx context.Context, e *env) {
	_, ec := createAndEcho(t, ctx, e.ctrl, e.dialer, ghostcomm.OnionConfig{})
	_, wc := createAndEcho(t, ctx, e.ctrl, e.dialer, ghostcomm.OnionConfig{Target: wholeEchoServer(t, 2<<10)})
	small, large := bytes.Repeat([]byte("s"), wire.HeaderSize), bytes.Repeat([]byte("l"), 2<<10)
	var echoSmall, echoLarge, echoWhole, echoParts []time.Duration
	sweep := []int{32, 498, 499, 997}
	sweepMsg := bytes.Repeat([]byte("w"), slices.Max(sweep))
	echoSweep := make([][]time.Duration, len(sweep))
	for range *overheadRounds {
		for _, m := range []struct {
			c   net.Conn
			msg []byte
			to  *[]time.Duration
		}{{ec, small, &echoSmall}, {ec, large, &echoLarge}, {wc, large, &echoWhole}} {
			s := time.Now()
			if err := echo(m.c, m.msg); err != nil {
				t.Fatal(err)
			}
			*m.to = append(*m.to, time.Since(s))
		}
		// The same 2 KiB, answered once whole, written as a frame's
		// header and parts would be one by one (10, 8, 800 bytes,
		// the rest) where net.Buffers cannot gather them (a SOCKS
		// stream is no *net.TCPConn): the pool writes a frame at
		// once for this.
		s := time.Now()
		if err := echoWrites(wc, large, wire.HeaderSize, wire.HeaderSize+8, wire.HeaderSize+8+800); err != nil {
			t.Fatal(err)
		}
		echoParts = append(echoParts, time.Since(s))
		// A size sweep on the same stream, around one and two of
		// tor's cells (498 data bytes each).
		for i, n := range sweep {
			s := time.Now()
			if err := echo(ec, sweepMsg[:n]); err != nil {
				t.Fatal(err)
			}
			echoSweep[i] = append(echoSweep[i], time.Since(s))
		}
	}
	testnet.Figure(t, "raw echo through one onion on one stream (%d rounds, medians): %d B %v, 2 KiB %v, 2 KiB answered once whole %v; on that stream, in the same rounds, the same 2 KiB written in four writes (10, 8, 800 B, the rest) %v",
		*overheadRounds, wire.HeaderSize, median(echoSmall).Round(time.Microsecond), median(echoLarge).Round(time.Microsecond),
		median(echoWhole).Round(time.Microsecond), median(echoParts).Round(time.Microsecond))
	var sw []string
	for i, n := range sweep {
		sw = append(sw, fmt.Sprintf("%d B %v", n, median(echoSweep[i]).Round(time.Microsecond)))
	}
	testnet.Figure(t, "raw echo by size on the same stream, in the same rounds (tor's cell carries 498 bytes; medians): %s", strings.Join(sw, ", "))
}

// legBytes is a Dialer that counts, per address dialed, the bytes written
// and read on its streams.
type legBytes struct {
	d  ghostcomm.Dialer
	mu sync.Mutex
	by map[string]*[2]atomic.Int64
}

func newLegBytes(d ghostcomm.Dialer) *legBytes {
	return &legBytes{d: d, by: map[string]*[2]atomic.Int64{}}
}

func (lb *legBytes) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := lb.d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	lb.mu.Lock()
	n := lb.by[addr]
	if n == nil {
		n = new([2]atomic.Int64)
		lb.by[addr] = n
	}
	lb.mu.Unlock()
	return &countedConn{Conn: c, n: n}, nil
}

// snapshot returns the bytes written and read so far, by address.
func (lb *legBytes) snapshot() map[string][2]int64 {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	m := make(map[string][2]int64, len(lb.by))
	for a, n := range lb.by {
		m[a] = [2]int64{n[0].Load(), n[1].Load()}
	}
	return m
}

// since returns the bytes written and read on streams to addr since snap.
func (lb *legBytes) since(snap map[string][2]int64, addr string) [2]int64 {
	now := lb.snapshot()[addr]
	was := snap[addr]
	return [2]int64{now[0] - was[0], now[1] - was[1]}
}

type countedConn struct {
	net.Conn
	n *[2]atomic.Int64
}

func (c *countedConn) Write(p []byte) (int, error) {
	k, err := c.Conn.Write(p)
	c.n[0].Add(int64(k))
	return k, err
}

func (c *countedConn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	c.n[1].Add(int64(k))
	return k, err
}
