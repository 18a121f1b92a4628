package bench

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/cloudflare/circl/dh/x25519"
	sphinx "github.com/lightningnetwork/lightning-onion"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/layer"
	"github.com/ghostcomm/ghostcomm/internal/onionaddr"
)

// Benchmark names are <Operation>/<implementation>/<parameters>; cmd/report
// reads them by these names.

// BenchmarkBuild is what a client does per message before sending: the
// nested layers of an n-hop route plus the data box for hop 1 (ghostcomm and
// floor), or a Sphinx packet for the same route (sphinx, which carries no
// data). Each reports the onion's size (onion-B) and the bytes one more hop
// adds (B/layer, measured without padding).
func BenchmarkBuild(b *testing.B) {
	f := crypto(b)
	gs, fs, err := onionSizes(f)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range hopCounts {
		for _, s := range sizes {
			data := f.data[s.name]
			b.Run(fmt.Sprintf("ghostcomm/hops=%d/%s", n, s.name), func(b *testing.B) {
				r := f.ghost.prefix(n)
				b.ReportAllocs()
				b.SetBytes(int64(len(data)))
				var m message
				for b.Loop() {
					_, m, err = r.clientBuild(data, meanPad(n), rand.Reader)
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(m.layer)), "onion-B")
				d, _ := perLayer(gs, n)
				b.ReportMetric(float64(d), "B/layer")
			})
			b.Run(fmt.Sprintf("floor/hops=%d/%s", n, s.name), func(b *testing.B) {
				r := *f.floor
				r.keys, r.next = r.keys[:n], r.next[:n-1]
				b.ReportAllocs()
				b.SetBytes(int64(len(data)))
				var m message
				for b.Loop() {
					m, err = r.build(data, meanPad(n), rand.Reader)
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(m.layer)), "onion-B")
				d, _ := perLayer(fs, n)
				b.ReportMetric(float64(d), "B/layer")
			})
		}
		b.Run(fmt.Sprintf("sphinx/hops=%d", n), func(b *testing.B) {
			r, err := newSphinxRoute(n)
			if err != nil {
				b.Fatal(err)
			}
			r1, err := newSphinxRoute(n + 1)
			if err != nil {
				b.Fatal(err)
			}
			p1, err := r1.build()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			var pkt *sphinx.OnionPacket
			for b.Loop() {
				if pkt, err = r.build(); err != nil {
					b.Fatal(err)
				}
			}
			sz, err := packetSize(pkt)
			if err != nil {
				b.Fatal(err)
			}
			sz1, err := packetSize(p1)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(sz), "onion-B")
			b.ReportMetric(float64(sz1-sz), "B/layer")
		})
		benchSealedBuild(b, n)
	}
}

// peelInput is the message hop 1 of a 3-hop route receives: its onion layer
// (built with a client's mean padding) and its data box.
func peelInput(tb testing.TB, f *cryptoFixture, data []byte) (ghost, floor message) {
	tb.Helper()
	var err error
	if _, ghost, err = f.ghost.prefix(3).clientBuild(data, meanPad(3), rand.Reader); err != nil {
		tb.Fatal(err)
	}
	r := *f.floor
	r.keys, r.next = r.keys[:3], r.next[:2]
	if floor, err = r.build(data, meanPad(3), rand.Reader); err != nil {
		tb.Fatal(err)
	}
	return ghost, floor
}

// BenchmarkPeel is a hop's opening of one message: layer.Peel of its onion
// layer and layer.Open of its data box (node.handle, node.relay), and the
// floor of that.
func BenchmarkPeel(b *testing.B) {
	f := crypto(b)
	for _, s := range sizes {
		data := f.data[s.name]
		gm, fm := peelInput(b, f, data)
		b.Run("ghostcomm/"+s.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, _, err := f.ghost.peel(0, gm); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("floor/"+s.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, _, err := f.floor.peel(0, fm); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHop is one whole relaying hop without the network: parse the
// message body, peel, check cycle and replay set, open the data, identity
// processing, seal the data for the next hop with a fresh key, and write the
// message frame (frame header, message header, layer, data) with
// wire.WriteFrame to io.Discard (one Write: up to wire.CoalesceMax copied
// into one buffer, larger frames as net.Buffers). The replay entry is removed again after each
// iteration so the same input can be used b.N times. sphinx is
// lightning-onion's Router.ProcessOnionPacket for one hop, set up as its
// authors' BenchmarkProcessPacket (a fresh in-memory replay log per
// iteration, outside the timer).
func BenchmarkHop(b *testing.B) {
	f := crypto(b)
	for _, s := range sizes {
		data := f.data[s.name]
		gm, fm := peelInput(b, f, data)
		gbody, fbody := messageBody(gm), messageBody(fm)
		b.Run("ghostcomm/"+s.name, func(b *testing.B) {
			rs := newReplaySet()
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				m, budget, err := parseMessage(gbody)
				if err != nil {
					b.Fatal(err)
				}
				res, err := f.ghost.hop(0, rs, m, rand.Reader)
				if err != nil {
					b.Fatal(err)
				}
				if err := writeMessageFrame(io.Discard, 1, budget*9/10, res.out); err != nil {
					b.Fatal(err)
				}
				rs.forget(res.tag)
			}
		})
		b.Run("floor/"+s.name, func(b *testing.B) {
			rs := newReplaySet()
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				m, budget, err := parseMessage(fbody)
				if err != nil {
					b.Fatal(err)
				}
				res, err := f.floor.hop(0, rs, m, rand.Reader)
				if err != nil {
					b.Fatal(err)
				}
				if err := writeMessageFrame(io.Discard, 1, budget*9/10, res.out); err != nil {
					b.Fatal(err)
				}
				rs.forget(res.tag)
			}
		})
	}
	b.Run("sphinx", func(b *testing.B) {
		r, err := newSphinxRoute(3)
		if err != nil {
			b.Fatal(err)
		}
		pkt, err := r.build()
		if err != nil {
			b.Fatal(err)
		}
		rt, err := r.freshRouter(0)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := rt.ProcessOnionPacket(pkt, r.assoc, uint32(i)); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			rt.Stop()
			if rt, err = r.freshRouter(0); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		b.StopTimer()
		rt.Stop()
	})
	benchSealedHop(b, f)
}

// BenchmarkNetwork sends 1 KiB messages through a Primary's three identity
// nodes on the fake Tor with 1 and 64 concurrent senders sharing one Client
// (network), and does all the cryptography of the same messages in process
// with the same concurrency (crypto-only): client build and data seal, each
// hop's peel, open and seal for the next, the last hop's reply seal, the
// client's reply open. Both report msg/s; network also reports the p50 and
// p99 round-trip latency of Client.Send, and hop-ms, the mean time a hop
// computed (HopEvent.Process: peel, checks, processing, sealing for the
// next hop), so that what the hops compute shows apart from the time the
// message spent between them. With 64 senders, network-inflight=16 is the
// same through a second Client whose ClientConfig.MaxInFlight is 16.
func BenchmarkNetwork(b *testing.B) {
	nf := network(b)
	data := crypto(b).data["1KiB"]
	for _, senders := range []int{1, 64} {
		b.Run(fmt.Sprintf("senders=%d/network", senders), func(b *testing.B) {
			benchSends(b, nf, nf.client, senders, data)
		})
		if senders > boundedInFlight {
			b.Run(fmt.Sprintf("senders=%d/network-inflight=%d", senders, boundedInFlight), func(b *testing.B) {
				benchSends(b, nf, nf.bounded, senders, data)
			})
		}
		b.Run(fmt.Sprintf("senders=%d/crypto-only", senders), func(b *testing.B) {
			replays := []*replaySet{newReplaySet(), newReplaySet(), newReplaySet()}
			elapsed := runSenders(b, senders, func(int) error {
				out, err := nf.route.roundTrip(data, replays, rand.Reader)
				if err != nil {
					return err
				}
				if !bytes.Equal(out, data) {
					return fmt.Errorf("identity route changed the data")
				}
				return nil
			})
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
		})
		b.Run(fmt.Sprintf("senders=%d/socket-floor", senders), func(b *testing.B) {
			// Open the senders' streams before the timer starts, as the
			// network's Client already has its streams open.
			if err := nf.floor.warm(senders, data); err != nil {
				b.Fatal(err)
			}
			lat := make([]time.Duration, b.N)
			elapsed := runSenders(b, senders, func(i int) error {
				t0 := time.Now()
				err := checkSocketFloor(nf.floor, data)
				lat[i] = time.Since(t0)
				return err
			})
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
			b.ReportMetric(float64(percentile(lat, 50))/1e6, "p50-ms")
			b.ReportMetric(float64(percentile(lat, 99))/1e6, "p99-ms")
		})
	}
}

// benchSends is BenchmarkNetwork's network: cl.Send of data on senders
// goroutines, with its round trips' p50 and p99 (each Send's wall time, a
// wait for its turn under MaxInFlight included) and the hops' mean compute.
func benchSends(b *testing.B, nf *netFixture, cl *ghostcomm.Client, senders int, data []byte) {
	lat := make([]time.Duration, b.N)
	hopNanos, hops := nf.hopNanos.Load(), nf.hops.Load()
	elapsed := runSenders(b, senders, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		t0 := time.Now()
		res, err := cl.Send(ctx, data)
		lat[i] = time.Since(t0)
		if err != nil {
			return err
		}
		if !bytes.Equal(res.Data, data) {
			return fmt.Errorf("identity route changed the data")
		}
		return nil
	})
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
	b.ReportMetric(float64(percentile(lat, 50))/1e6, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 99))/1e6, "p99-ms")
	if n := nf.hops.Load() - hops; n > 0 {
		b.ReportMetric(float64(nf.hopNanos.Load()-hopNanos)/float64(n)/1e6, "hop-ms")
	}
}

// runSenders runs send(i) for i in [0, b.N) on senders goroutines and
// returns the wall time they took. It also reports cpu-us/msg, the CPU time
// (user and system) the whole process spent per message: unlike msg/s, it
// hardly moves when other processes compete for the cores.
func runSenders(b *testing.B, senders int, send func(i int) error) time.Duration {
	b.ReportAllocs()
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for range senders {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N || failed.Load() != nil {
					return
				}
				if err := send(i); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/msg")
	}
	return elapsed
}

// cpuTime is the CPU time (user and system) the process has used so far,
// or 0 where getrusage is missing.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// percentile returns the p-th percentile (nearest rank) of sorted.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

// BenchmarkLockCycle is a new lock-cycle of 8 nodes, keys only (no Tor):
// 8 key pairs one after the other (keys-sequential); what Primary.newCycle
// does besides Tor, each node's key pair in its own goroutine, then the
// NodeInfo list and its encoding (newcycle); and that plus one payload
// marshalled and signed with the Primary's key as Primary.answer does
// (newcycle-signed).
func BenchmarkLockCycle(b *testing.B) {
	lc := lockCycleFixture(b)
	b.Run("nodes=8/keys-sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for range 8 {
				if _, err := layer.GenerateKeyPair("ghostcomm node"); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("nodes=8/newcycle", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, _, err := newCycleKeys(lc.onions, lc.procs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("nodes=8/newcycle-signed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := lc.signed(rand.Reader); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkParts measures the pieces the operations above are made of, for
// the analysis in docs/PERFORMANCE.md.
func BenchmarkParts(b *testing.B) {
	f := crypto(b)
	kp := f.ghost.keys[0]
	b.Run("x25519-circl", func(b *testing.B) {
		var s, pub, z x25519.Key
		io.ReadFull(rand.Reader, s[:])
		x25519.KeyGen(&pub, &s)
		for b.Loop() {
			x25519.Shared(&z, &s, &pub)
		}
	})
	b.Run("x25519-keygen-circl", func(b *testing.B) {
		var s, pub x25519.Key
		for b.Loop() {
			io.ReadFull(rand.Reader, s[:])
			x25519.KeyGen(&pub, &s)
		}
	})
	b.Run("x25519-crypto-ecdh", func(b *testing.B) {
		k, _ := ecdh.X25519().GenerateKey(rand.Reader)
		peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
		for b.Loop() {
			if _, err := k.ECDH(peer.PublicKey()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("x25519-keygen-crypto-ecdh", func(b *testing.B) {
		for b.Loop() {
			if _, err := ecdh.X25519().GenerateKey(rand.Reader); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pkesk-seal", func(b *testing.B) {
		key, _ := layer.NewKey(rand.Reader)
		var buf bytes.Buffer
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			if err := packet.SerializeEncryptedKeyWithHiddenOption(&buf, kp.Enc, packet.CipherAES256, key[:], true, &packet.Config{Rand: rand.Reader}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pkesk-open", func(b *testing.B) {
		key, _ := layer.NewKey(rand.Reader)
		var buf bytes.Buffer
		if err := packet.SerializeEncryptedKeyWithHiddenOption(&buf, kp.Enc, packet.CipherAES256, key[:], true, nil); err != nil {
			b.Fatal(err)
		}
		raw := buf.Bytes()
		b.ReportAllocs()
		for b.Loop() {
			p, err := packet.Read(bytes.NewReader(raw))
			if err != nil {
				b.Fatal(err)
			}
			if err := p.(*packet.EncryptedKey).Decrypt(kp.Dec[0], nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, s := range []string{"1KiB", "1MiB"} {
		data := f.data[s]
		key, _ := layer.NewKey(rand.Reader)
		tok, err := layer.FernetSeal(nil, &key, cycleTS, data)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("fernet-seal/"+s, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := layer.FernetSeal(nil, &key, cycleTS, data); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("fernet-open/"+s, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, _, err := layer.FernetOpen(&key, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("keypair", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := layer.GenerateKeyPair("ghostcomm node"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse-public-key", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := layer.ParsePublicKey(kp.Raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("onionaddr-parse", func(b *testing.B) {
		id := lockCycleFixture(b).onions[0].ServiceID
		b.ReportAllocs()
		for b.Loop() {
			if _, err := onionaddr.Parse(id); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("onionaddr-decode", func(b *testing.B) {
		id := lockCycleFixture(b).onions[0].ServiceID
		b.ReportAllocs()
		for b.Loop() {
			if _, err := onionaddr.Decode(id); err != nil {
				b.Fatal(err)
			}
		}
	})
}
