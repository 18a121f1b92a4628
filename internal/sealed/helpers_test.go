package sealed_test

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"testing"

	"github.com/ghostcomm/ghostcomm/internal/errs"
	"github.com/ghostcomm/ghostcomm/internal/replay"
	"github.com/ghostcomm/ghostcomm/internal/sealed"
)

// detRand is a deterministic reader: SHA-256 in counter mode over a seed.
// It makes the vectors reproducible; it is not a CSPRNG for real use.
type detRand struct {
	seed []byte
	ctr  uint64
	buf  []byte
}

func newDetRand(seed string) *detRand { return &detRand{seed: []byte(seed)} }

func (d *detRand) Read(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if len(d.buf) == 0 {
			var c [8]byte
			binary.BigEndian.PutUint64(c[:], d.ctr)
			d.ctr++
			h := sha256.Sum256(append(append([]byte{}, d.seed...), c[:]...))
			d.buf = h[:]
		}
		k := copy(p, d.buf)
		p, d.buf = p[k:], d.buf[k:]
	}
	return n, nil
}

// network is a route's worth of nodes with keys and replay caches.
type network struct {
	keys   []*sealed.PrivateKey
	caches []*replay.Cache
	route  []sealed.Hop
}

func newNetwork(t testing.TB, seed string, n int) *network {
	t.Helper()
	rnd := newDetRand("nodes " + seed)
	nw := &network{}
	for i := range n {
		k, err := sealed.GenerateKey(rnd)
		if err != nil {
			t.Fatal(err)
		}
		nw.keys = append(nw.keys, k)
		nw.caches = append(nw.caches, replay.New(1024))
		nw.route = append(nw.route, sealed.Hop{Index: byte(10 + i), Key: k.PublicKey()})
	}
	sealed.EqualBudgets(nw.route, 4000)
	return nw
}

// forward runs pkt through every hop as the network would, returning each
// hop's Result and the exit's data. In chain mode each hop reseals what it
// read, with process applied (nil: unchanged).
func (nw *network) forward(t testing.TB, pkt []byte, process func(hop int, d []byte) []byte) ([]sealed.Result, []byte) {
	t.Helper()
	rs := make([]sealed.Result, len(nw.keys))
	for i := range nw.keys {
		if err := sealed.Process(nw.keys[i], pkt, nw.caches[i], &rs[i]); err != nil {
			t.Fatalf("hop %d: %v", i+1, err)
		}
		r := &rs[i]
		last := i == len(nw.keys)-1
		if (r.Command == sealed.CmdExit) != last {
			t.Fatalf("hop %d: command %d", i+1, r.Command)
		}
		if !last && r.Next != nw.route[i+1].Index {
			t.Fatalf("hop %d: next %d, want %d", i+1, r.Next, nw.route[i+1].Index)
		}
		if r.BudgetMS != nw.route[i].BudgetMS {
			t.Fatalf("hop %d: budget %d", i+1, r.BudgetMS)
		}
		if last {
			d, err := r.Data(pkt)
			if err != nil {
				t.Fatalf("exit: %v", err)
			}
			return rs, d
		}
		if r.Mode == sealed.Chain {
			d, err := r.Data(pkt)
			if err != nil {
				t.Fatalf("hop %d: %v", i+1, err)
			}
			if process != nil {
				d = process(i+1, d)
			}
			if err := r.Reseal(pkt, d); err != nil {
				t.Fatalf("hop %d: %v", i+1, err)
			}
		}
	}
	panic("unreachable")
}

// back sends a reply written by hop author (1-based) back through hops
// author-1..1.
func back(t testing.TB, rs []sealed.Result, author int, reply []byte) {
	t.Helper()
	for i := author - 2; i >= 0; i-- {
		if err := rs[i].WrapReply(reply); err != nil {
			t.Fatalf("hop %d: %v", i+1, err)
		}
	}
}

var noReplay = sealed.ReplayFunc(func([]byte) error { return nil })

var _ sealed.Replay = (*replay.Cache)(nil)

var _ = errs.ErrReplay

func mustHex(s string) [32]byte {
	var a [32]byte
	if _, err := hex.Decode(a[:], []byte(s)); err != nil {
		panic(err)
	}
	return a
}

// inc and dec add and subtract a small number to a little-endian 256-bit
// number.
func inc(a [32]byte, k byte) [32]byte {
	c := uint16(k)
	for i := range a {
		c += uint16(a[i])
		a[i] = byte(c)
		c >>= 8
	}
	return a
}

func dec(a [32]byte, k byte) [32]byte {
	b := int16(k)
	for i := range a {
		v := int16(a[i]) - b
		b = 0
		if v < 0 {
			v += 256
			b = 1
		}
		a[i] = byte(v)
	}
	return a
}

func ff(top byte) [32]byte {
	var a [32]byte
	for i := range a {
		a[i] = 0xff
	}
	a[31] = top
	return a
}
