package sealed_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"testing"

	"github.com/ghostcomm/ghostcomm/internal/replay"
	"github.com/ghostcomm/ghostcomm/internal/sealed"
)

// bitDiff is the fraction of bits in which a and b (of equal length) differ.
func bitDiff(a, b []byte) float64 {
	d := 0
	for i := range a {
		d += bits.OnesCount8(a[i] ^ b[i])
	}
	return float64(d) / float64(8*len(a))
}

// sameBytes is how many byte positions a and b agree in.
func sameBytes(a, b []byte) int {
	n := 0
	for i := range a {
		if a[i] == b[i] {
			n++
		}
	}
	return n
}

// TestX25519Count: the client does two X25519 per hop to build, a relaying
// hop and the exit exactly one, a hop wrapping a reply and the client
// opening it none, in both modes.
func TestX25519Count(t *testing.T) {
	for _, m := range modes {
		nw := newNetwork(t, "count", 5)
		before := sealed.X25519Ops()
		pkt, sent, err := sealed.Build(nil, sealed.Small, m, nw.route, []byte("count"))
		if err != nil {
			t.Fatal(err)
		}
		if got := sealed.X25519Ops() - before; got != 10 {
			t.Errorf("mode %d: building for 5 hops did %d X25519 operations, want 10", m, got)
		}
		rs := make([]sealed.Result, 5)
		for i := range 5 {
			before := sealed.X25519Ops()
			if err := sealed.Process(nw.keys[i], pkt, nw.caches[i], &rs[i]); err != nil {
				t.Fatal(err)
			}
			if m == sealed.Chain && i < 4 {
				d, err := rs[i].Data(pkt)
				if err != nil {
					t.Fatal(err)
				}
				if err := rs[i].Reseal(pkt, d); err != nil {
					t.Fatal(err)
				}
			}
			if got := sealed.X25519Ops() - before; got != 1 {
				t.Errorf("mode %d hop %d: %d X25519 operations, want 1", m, i+1, got)
			}
		}
		reply := make([]byte, sealed.Small.Size())
		before = sealed.X25519Ops()
		if err := rs[4].Answer(reply, []byte("ok")); err != nil {
			t.Fatal(err)
		}
		for i := 3; i >= 0; i-- {
			if err := rs[i].WrapReply(reply); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := sent.OpenReply(reply); err != nil {
			t.Fatal(err)
		}
		if got := sealed.X25519Ops() - before; got != 0 {
			t.Errorf("mode %d: the reply's way back did %d X25519 operations, want 0", m, got)
		}
	}
}

// TestPayloadTagging: one payload bit flipped on the way (after hop 1, or
// after any hop before the exit) makes the exit refuse the packet, and what
// the exit would read differs from the honest plaintext in 45-55% of bits.
// In chain mode the next hop already refuses.
func TestPayloadTagging(t *testing.T) {
	for _, c := range classes {
		const n = 5
		nw := newNetwork(t, "tag", n)
		data := []byte("the data a tagging hop would like to recognize")
		orig, _, err := sealed.Build(newDetRand("tag"), c, sealed.Relay, nw.route, data)
		if err != nil {
			t.Fatal(err)
		}
		honest := bytes.Clone(orig)
		var r sealed.Result
		for i := range n {
			if err := sealed.Process(nw.keys[i], honest, noReplay, &r); err != nil {
				t.Fatal(err)
			}
		}
		for _, at := range []int{1, 2, 4} { // flip after this hop
			for _, bit := range []int{0, 7, 8*(len(orig)-sealed.PayloadAt) - 1, 8 * 300} {
				pkt := bytes.Clone(orig)
				for i := range n {
					err := sealed.Process(nw.keys[i], pkt, noReplay, &r)
					if err != nil {
						t.Fatal(err)
					}
					if i+1 == at {
						pkt[sealed.PayloadAt+bit/8] ^= 1 << (bit % 8)
					}
				}
				if _, err := r.Data(pkt); !errors.Is(err, sealed.ErrAuth) {
					t.Fatalf("class %d, bit %d flipped after hop %d: exit's Data: %v, want ErrAuth", c, bit, at, err)
				}
				d := bitDiff(pkt[sealed.PayloadAt:], honest[sealed.PayloadAt:])
				t.Logf("class %d, bit %d after hop %d: exit's plaintext differs in %.2f%% of bits", c, bit, at, 100*d)
				if d < 0.45 || d > 0.55 {
					t.Errorf("class %d, bit %d after hop %d: exit's plaintext differs in %.2f%% of bits, want 45-55%%", c, bit, at, 100*d)
				}
			}
		}
	}
	// Chain mode: the hop after the flip refuses.
	nw := newNetwork(t, "tag", 3)
	pkt, _, err := sealed.Build(nil, sealed.Small, sealed.Chain, nw.route, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	var r sealed.Result
	if err := sealed.Process(nw.keys[0], pkt, noReplay, &r); err != nil {
		t.Fatal(err)
	}
	d, err := r.Data(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Reseal(pkt, d); err != nil {
		t.Fatal(err)
	}
	pkt[len(pkt)-1] ^= 1
	if err := sealed.Process(nw.keys[1], pkt, noReplay, &r); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Data(pkt); !errors.Is(err, sealed.ErrAuth) {
		t.Fatalf("chain mode, flipped payload: hop 2's Data: %v, want ErrAuth", err)
	}
}

// TestReplyTagging: one reply bit flipped at any hop on the way back makes
// the client refuse the reply, and what it would read at the author's depth
// differs from the honest reply in 45-55% of bits.
func TestReplyTagging(t *testing.T) {
	for _, c := range classes {
		const n = 5
		nw := newNetwork(t, "rtag", n)
		pkt, sent, err := sealed.Build(newDetRand("rtag"), c, sealed.Relay, nw.route, []byte("q"))
		if err != nil {
			t.Fatal(err)
		}
		rs, _ := nw.forward(t, pkt, nil)
		answer := func(flipAt, bit int) []byte { // flipAt: the hop after whose layer the bit flips; 0: none
			reply := make([]byte, c.Size())
			if err := rs[n-1].Answer(reply, []byte("the answer")); err != nil {
				t.Fatal(err)
			}
			for i := n; i >= 1; i-- {
				if i < n {
					if err := rs[i-1].WrapReply(reply); err != nil {
						t.Fatal(err)
					}
				}
				if i == flipAt {
					reply[bit/8] ^= 1 << (bit % 8)
				}
			}
			return reply
		}
		honest := answer(0, 0)
		if rep, err := sent.OpenReply(honest); err != nil || rep.Depth != n || string(rep.Body) != "the answer" {
			t.Fatalf("honest reply: %+v, %v", rep, err)
		}
		for at := 1; at <= n; at++ {
			for _, bit := range []int{0, 255, 256, 8*c.Size() - 1} {
				reply := answer(at, bit)
				if rep, err := sent.OpenReply(reply); !errors.Is(err, sealed.ErrAuth) {
					t.Fatalf("class %d, bit %d flipped at hop %d: OpenReply %+v, %v; want ErrAuth", c, bit, at, rep, err)
				}
				d := bitDiff(reply, honest) // both are peeled n times
				if d < 0.45 || d > 0.55 {
					t.Errorf("class %d, bit %d flipped at hop %d: client's plaintext differs in %.2f%% of bits, want 45-55%%", c, bit, at, 100*d)
				}
			}
		}
	}
}

// TestHeaderTamper: every single-bit flip of a 3-hop packet's header, as
// sent to hop 1 and as hop 1 forwards it to hop 2, is refused by the hop
// that receives it, without calling its Replay.
func TestHeaderTamper(t *testing.T) {
	nw := newNetwork(t, "tamper", 3)
	pkt, _, err := sealed.Build(newDetRand("tamper"), sealed.Small, sealed.Relay, nw.route, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	called := 0
	spy := sealed.ReplayFunc(func([]byte) error { called++; return nil })
	for hop := range 2 {
		for bit := range 8 * sealed.HeaderSize {
			p := bytes.Clone(pkt)
			p[bit/8] ^= 1 << (bit % 8)
			var r sealed.Result
			if err := sealed.Process(nw.keys[hop], p, spy, &r); err == nil {
				t.Fatalf("hop %d accepted header bit %d flipped", hop+1, bit)
			} else if !errors.Is(err, sealed.ErrAuth) && !errors.Is(err, sealed.ErrMalformed) && !errors.Is(err, sealed.ErrUnsupportedVersion) {
				t.Fatalf("hop %d, bit %d: %v", hop+1, bit, err)
			}
			if called != 0 {
				t.Fatalf("hop %d, bit %d: Replay called before the header was refused", hop+1, bit)
			}
		}
		var r sealed.Result
		if err := sealed.Process(nw.keys[hop], pkt, noReplay, &r); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReplay: a packet processed twice by a hop with a replay cache is
// refused the second time, with ErrReplay; another hop's cache is not
// involved.
func TestReplay(t *testing.T) {
	nw := newNetwork(t, "replay", 2)
	pkt, _, err := sealed.Build(nil, sealed.Small, sealed.Relay, nw.route, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	again := bytes.Clone(pkt)
	var r sealed.Result
	if err := sealed.Process(nw.keys[0], pkt, nw.caches[0], &r); err != nil {
		t.Fatal(err)
	}
	if err := sealed.Process(nw.keys[0], again, nw.caches[0], &r); !errors.Is(err, sealed.ErrReplay) {
		t.Fatalf("replay: %v, want ErrReplay", err)
	}
	// A full cache refuses too, with its own error.
	full := replay.New(1)
	p2, _, _ := sealed.Build(nil, sealed.Small, sealed.Relay, nw.route, []byte("y"))
	p3, _, _ := sealed.Build(nil, sealed.Small, sealed.Relay, nw.route, []byte("z"))
	if err := sealed.Process(nw.keys[0], p2, full, &r); err != nil {
		t.Fatal(err)
	}
	if err := sealed.Process(nw.keys[0], p3, full, &r); err == nil {
		t.Fatal("a full cache let a packet through")
	}
}

// TestBadAlpha: a non-canonical or low-order ephemeral key is refused with
// ErrMalformed before the Replay is called, with or without a valid MAC for
// it (the MAC cannot be valid: the test recomputes nothing, it checks the
// order of the checks).
func TestBadAlpha(t *testing.T) {
	nw := newNetwork(t, "alpha", 1)
	pkt, _, err := sealed.Build(nil, sealed.Small, sealed.Relay, nw.route, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	p := [32]byte{0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}
	bad := map[string][32]byte{
		"zero": {}, "one": {1}, "p-1": dec(p, 1), "p": p, "p+1": inc(p, 1), "2^255-1": ff(0x7f),
		"top bit set": func() [32]byte { a := [32]byte(pkt[1:33]); a[31] |= 0x80; return a }(),
		"order 8 (a)": mustHex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
		"order 8 (b)": mustHex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
		"all ones":    ff(0xff),
	}
	for name, a := range bad {
		q := bytes.Clone(pkt)
		copy(q[1:33], a[:])
		called := false
		var r sealed.Result
		err := sealed.Process(nw.keys[0], q, sealed.ReplayFunc(func([]byte) error { called = true; return nil }), &r)
		if !errors.Is(err, sealed.ErrMalformed) {
			t.Errorf("α %s: %v, want ErrMalformed", name, err)
		}
		if called {
			t.Errorf("α %s: Replay called", name)
		}
		if _, err := sealed.ParsePublicKey(a[:]); !errors.Is(err, sealed.ErrMalformed) {
			t.Errorf("ParsePublicKey(%s): %v, want ErrMalformed", name, err)
		}
		route := []sealed.Hop{{Key: sealed.PublicKey(a)}}
		if _, _, err := sealed.Build(nil, sealed.Small, sealed.Relay, route, nil); !errors.Is(err, sealed.ErrMalformed) {
			t.Errorf("Build to a hop with key %s: %v, want ErrMalformed", name, err)
		}
	}
}

// TestUnlinkable: a hop's input and output agree in at most 1/64 of byte
// positions, forward (relay and chain hops, the exit) and backward (reply
// layers).
func TestUnlinkable(t *testing.T) {
	for _, c := range classes {
		for _, m := range modes {
			const n = 4
			nw := newNetwork(t, "link", n)
			pkt, _, err := sealed.Build(nil, c, m, nw.route, bytes.Repeat([]byte("same"), 100))
			if err != nil {
				t.Fatal(err)
			}
			rs := make([]sealed.Result, n)
			for i := range n {
				in := bytes.Clone(pkt)
				if err := sealed.Process(nw.keys[i], pkt, noReplay, &rs[i]); err != nil {
					t.Fatal(err)
				}
				if i == n-1 {
					break // the exit forwards nothing
				}
				if m == sealed.Chain {
					d, _ := rs[i].Data(pkt)
					if err := rs[i].Reseal(pkt, d); err != nil {
						t.Fatal(err)
					}
				}
				if s := sameBytes(in, pkt); s > len(pkt)/64 {
					t.Errorf("class %d mode %d hop %d: input and output agree in %d of %d positions", c, m, i+1, s, len(pkt))
				}
			}
			reply := make([]byte, c.Size())
			if err := rs[n-1].Answer(reply, bytes.Repeat([]byte("same"), 100)); err != nil {
				t.Fatal(err)
			}
			for i := n - 2; i >= 0; i-- {
				in := bytes.Clone(reply)
				if err := rs[i].WrapReply(reply); err != nil {
					t.Fatal(err)
				}
				if s := sameBytes(in, reply); s > len(reply)/64 {
					t.Errorf("class %d mode %d reply at hop %d: input and output agree in %d of %d positions", c, m, i+1, s, len(reply))
				}
			}
		}
	}
}

// TestNoZeroRun: the routing block a hop is left with after taking its slot
// off (and so the exit's view of the rest of β) has no run of 4 zero bytes,
// for every route length: the filler is random, not zeros.
func TestNoZeroRun(t *testing.T) {
	for n := 1; n <= sealed.MaxHops; n++ {
		nw := newNetwork(t, "zero", n)
		pkt, _, err := sealed.Build(nil, sealed.Small, sealed.Relay, nw.route, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			var r sealed.Result
			if err := sealed.Process(nw.keys[i], pkt, noReplay, &r); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(pkt[1:sealed.GammaAt], make([]byte, 4)) {
				t.Errorf("%d hops: hop %d is left a header with a zero run", n, i+1)
			}
		}
	}
}

// TestAttribution: a failure report written by hop k of an n-hop route
// opens at depth k, for every k of every route of 1..8 hops, in both modes.
func TestAttribution(t *testing.T) {
	for _, m := range modes {
		for n := 1; n <= sealed.MaxHops; n++ {
			nw := newNetwork(t, "attr", n)
			pkt, sent, err := sealed.Build(nil, sealed.Small, m, nw.route, []byte("x"))
			if err != nil {
				t.Fatal(err)
			}
			rs, _ := nw.forward(t, pkt, nil)
			for k := 1; k <= n; k++ {
				reply := make([]byte, sealed.Small.Size())
				detail := fmt.Sprintf("hop %d of %d failed", k, n)
				if err := rs[k-1].Fail(reply, byte(k), []byte(detail)); err != nil {
					t.Fatal(err)
				}
				back(t, rs, k, reply)
				rep, err := sent.OpenReply(reply)
				if err != nil {
					t.Fatalf("mode %d, %d hops, report by hop %d: %v", m, n, k, err)
				}
				if rep.Depth != k || rep.Type != sealed.Failure || rep.Code != byte(k) || string(rep.Body) != detail {
					t.Fatalf("mode %d, %d hops, report by hop %d: got depth %d type %d code %d %q", m, n, k, rep.Depth, rep.Type, rep.Code, rep.Body)
				}
			}
		}
	}
}
