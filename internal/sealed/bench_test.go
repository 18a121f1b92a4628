package sealed_test

import (
	"fmt"
	"testing"

	"github.com/ghostcomm/ghostcomm/internal/sealed"
)

// hopInput is the packet hop 1 of a 5-hop route receives.
func hopInput(b *testing.B, c sealed.Class, m sealed.Mode) (*network, []byte, *sealed.Sent) {
	nw := newNetwork(b, "bench", 5)
	pkt, sent, err := sealed.Build(nil, c, m, nw.route, make([]byte, c.Capacity()))
	if err != nil {
		b.Fatal(err)
	}
	return nw, pkt, sent
}

// forgetful is a replay set that forgets each tag again, so that one input
// can be processed b.N times.
type forgetful map[[sealed.TagSize]byte]struct{}

func (f forgetful) Add(tag []byte) error {
	k := [sealed.TagSize]byte(tag)
	if _, ok := f[k]; ok {
		return sealed.ErrReplay
	}
	f[k] = struct{}{}
	return nil
}

// BenchmarkProcess is one relaying hop (hop 1 of 5): a copy of the input
// (the packet is processed in place), Process, and in chain mode Data and
// Reseal.
func BenchmarkProcess(b *testing.B) {
	for _, m := range modes {
		for _, c := range classes {
			name := map[sealed.Mode]string{sealed.Relay: "relay", sealed.Chain: "chain"}[m]
			b.Run(fmt.Sprintf("%s/%dKiB", name, c/1024), func(b *testing.B) {
				nw, in, _ := hopInput(b, c, m)
				pkt := make([]byte, len(in))
				rs := forgetful{}
				var r sealed.Result
				b.SetBytes(int64(c.Capacity()))
				b.ReportAllocs()
				for b.Loop() {
					copy(pkt, in)
					if err := sealed.Process(nw.keys[0], pkt, rs, &r); err != nil {
						b.Fatal(err)
					}
					if m == sealed.Chain {
						d, err := r.Data(pkt)
						if err != nil {
							b.Fatal(err)
						}
						if err := r.Reseal(pkt, d); err != nil {
							b.Fatal(err)
						}
					}
					delete(rs, r.Tag)
				}
			})
		}
	}
}

// BenchmarkBuild is a client building a packet for 5 hops.
func BenchmarkBuild(b *testing.B) {
	for _, c := range classes {
		b.Run(fmt.Sprintf("hops=5/%dKiB", c/1024), func(b *testing.B) {
			nw := newNetwork(b, "bench", 5)
			data := make([]byte, c.Capacity())
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := sealed.Build(nil, c, sealed.Relay, nw.route, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReply is one hop's layer on a reply (WrapReply), and the client
// opening a reply from the exit of 5 hops (OpenReply, 5 layers).
func BenchmarkReply(b *testing.B) {
	for _, c := range classes {
		nw, pkt, sent := hopInput(b, c, sealed.Relay)
		rs, _ := nw.forward(b, pkt, nil)
		reply := make([]byte, c.Size())
		if err := rs[4].Answer(reply, make([]byte, c.ReplyCapacity())); err != nil {
			b.Fatal(err)
		}
		back(b, rs, 5, reply)
		b.Run(fmt.Sprintf("wrap/%dKiB", c/1024), func(b *testing.B) {
			buf := make([]byte, c.Size())
			b.SetBytes(int64(c.Size()))
			b.ReportAllocs()
			for b.Loop() {
				if err := rs[1].WrapReply(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("open/hops=5/%dKiB", c/1024), func(b *testing.B) {
			buf := make([]byte, c.Size())
			b.SetBytes(int64(c.Size()))
			b.ReportAllocs()
			for b.Loop() {
				copy(buf, reply)
				if _, err := sent.OpenReply(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
