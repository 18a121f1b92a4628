package bench

import (
	"crypto/rand"
	"fmt"
	"io"
	"testing"

	"github.com/ghostcomm/ghostcomm/internal/sealed"
)

// Sealed mode (issue 14), measured next to today's hop in the same run:
// Hop/sealed/<class> is hop 1 of a 5-hop relay-mode route (a copy of the
// input, as Process works in place; Process; the packet written to
// io.Discard), Hop/sealed-chain/<class> the same in chain mode (plus Data
// and Reseal), Hop/ghostcomm/sealed32KiB today's hop carrying the data a
// 32 KiB sealed packet carries (31995 bytes), Build/sealed/hops=n/<class>
// the client's sealed.Build, and ReplyHop/sealed/<class> one hop's layer on
// a reply.

// sealedClasses are the classes measured, by benchmark name.
var sealedClasses = []struct {
	name string
	c    sealed.Class
}{{"2KiB", sealed.Small}, {"32KiB", sealed.Large}}

// sealedRoute is n hops with fresh keys and equal budgets.
type sealedRoute struct {
	keys  []*sealed.PrivateKey
	route []sealed.Hop
}

func newSealedRoute(tb testing.TB, n int) *sealedRoute {
	tb.Helper()
	r := &sealedRoute{}
	for i := range n {
		k, err := sealed.GenerateKey(rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		r.keys = append(r.keys, k)
		r.route = append(r.route, sealed.Hop{Index: byte(i), Key: k.PublicKey()})
	}
	sealed.EqualBudgets(r.route, 4000)
	return r
}

// sealedHop is what the benchmark times: hop 1's work on a copy of in.
func (r *sealedRoute) hop(rs *replaySet, in, pkt []byte, res *sealed.Result) error {
	copy(pkt, in)
	if err := sealed.Process(r.keys[0], pkt, sealed.ReplayFunc(rs.add), res); err != nil {
		return err
	}
	if res.Mode == sealed.Chain {
		d, err := res.Data(pkt)
		if err != nil {
			return err
		}
		if err := res.Reseal(pkt, d); err != nil {
			return err
		}
	}
	_, err := io.Discard.Write(pkt)
	return err
}

func benchSealedHop(b *testing.B, f *cryptoFixture) {
	r := newSealedRoute(b, 5)
	for _, m := range []struct {
		name string
		m    sealed.Mode
	}{{"sealed", sealed.Relay}, {"sealed-chain", sealed.Chain}} {
		for _, s := range sealedClasses {
			b.Run(m.name+"/"+s.name, func(b *testing.B) {
				in, _, err := sealed.Build(rand.Reader, s.c, m.m, r.route, make([]byte, s.c.Capacity()))
				if err != nil {
					b.Fatal(err)
				}
				pkt := make([]byte, len(in))
				rs := newReplaySet()
				var res sealed.Result
				b.ReportAllocs()
				b.SetBytes(int64(s.c.Capacity()))
				for b.Loop() {
					if err := r.hop(rs, in, pkt, &res); err != nil {
						b.Fatal(err)
					}
					rs.forget(res.Tag[:])
				}
				b.ReportMetric(float64(len(pkt)), "packet-B")
			})
		}
	}
	data := make([]byte, sealed.Large.Capacity())
	rand.Read(data)
	gm, _ := peelInput(b, f, data)
	gbody := messageBody(gm)
	b.Run("ghostcomm/sealed32KiB", func(b *testing.B) {
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
}

func benchSealedBuild(b *testing.B, n int) {
	r := newSealedRoute(b, n)
	for _, s := range sealedClasses {
		b.Run(fmt.Sprintf("sealed/hops=%d/%s", n, s.name), func(b *testing.B) {
			data := make([]byte, s.c.Capacity())
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			var pkt []byte
			for b.Loop() {
				var err error
				if pkt, _, err = sealed.Build(rand.Reader, s.c, sealed.Relay, r.route, data); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(pkt)), "onion-B")
		})
	}
}

// BenchmarkReplyHop is one hop's layer on a sealed reply (no public-key
// work); today's hop passes replies on unchanged.
func BenchmarkReplyHop(b *testing.B) {
	r := newSealedRoute(b, 2)
	for _, s := range sealedClasses {
		b.Run("sealed/"+s.name, func(b *testing.B) {
			pkt, _, err := sealed.Build(rand.Reader, s.c, sealed.Relay, r.route, nil)
			if err != nil {
				b.Fatal(err)
			}
			var res sealed.Result
			if err := sealed.Process(r.keys[0], pkt, sealed.ReplayFunc(newReplaySet().add), &res); err != nil {
				b.Fatal(err)
			}
			reply := make([]byte, s.c.Size())
			b.ReportAllocs()
			b.SetBytes(int64(len(reply)))
			for b.Loop() {
				if err := res.WrapReply(reply); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSealedSetup checks the sealed benchmarks' setup: the timed hop
// accepts its input every time (the replay set forgets its tag) and
// forwards a packet hop 2 accepts; today's hop on the 32 KiB data works.
func TestSealedSetup(t *testing.T) {
	r := newSealedRoute(t, 5)
	for _, m := range []sealed.Mode{sealed.Relay, sealed.Chain} {
		for _, s := range sealedClasses {
			in, _, err := sealed.Build(rand.Reader, s.c, m, r.route, make([]byte, s.c.Capacity()))
			if err != nil {
				t.Fatal(err)
			}
			pkt := make([]byte, len(in))
			rs := newReplaySet()
			var res sealed.Result
			for range 3 {
				if err := r.hop(rs, in, pkt, &res); err != nil {
					t.Fatal(err)
				}
				rs.forget(res.Tag[:])
			}
			if res.Command != sealed.CmdRelay || len(pkt) != s.c.Size() {
				t.Fatalf("hop 1: command %d, %d bytes", res.Command, len(pkt))
			}
			var res2 sealed.Result
			if err := sealed.Process(r.keys[1], pkt, sealed.ReplayFunc(newReplaySet().add), &res2); err != nil {
				t.Fatalf("hop 2 refused hop 1's output: %v", err)
			}
		}
	}
	if err := r.hop(newReplaySet(), make([]byte, 2048), make([]byte, 2048), new(sealed.Result)); err == nil {
		t.Fatal("the hop accepted an all-zero packet")
	}
}
