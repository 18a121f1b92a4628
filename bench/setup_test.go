package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"
	sphinx "github.com/lightningnetwork/lightning-onion"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/internal/layer"
	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// These tests check that every benchmark setup does the work it claims, so
// that a broken benchmark fails here instead of measuring nothing.

func TestFloorSealOpen(t *testing.T) {
	k, err := newFloorKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := newFloorKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 15, 16, 17, 1000} {
		msg := bytes.Repeat([]byte{byte(n)}, n)
		box, err := floorSeal(nil, &k.pub, cycleTS, msg, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if want := floorOverhead + (n/16+1)*16; len(box) != want {
			t.Fatalf("box of a %d-byte message is %d bytes, want %d", n, len(box), want)
		}
		o, err := floorOpen(k, box)
		if err != nil {
			t.Fatalf("open %d bytes: %v", n, err)
		}
		if !bytes.Equal(o.msg, msg) || o.ts != cycleTS {
			t.Fatalf("round trip of %d bytes: got %d bytes at %d", n, len(o.msg), o.ts)
		}
		if _, err := floorOpen(other, box); !errors.Is(err, errFloorAuth) {
			t.Fatalf("opened with the wrong key: %v", err)
		}
		for _, i := range []int{0, floorEphSize, floorEphSize + 3, len(box) / 2, len(box) - 1} {
			bad := bytes.Clone(box)
			bad[i] ^= 1
			if _, err := floorOpen(k, bad); err == nil {
				t.Fatalf("opened a box altered at byte %d of %d", i, len(box))
			}
		}
	}
}

// TestFloorPlaintextSizesMatch checks the floor's fairness: every layer the
// floor opens (and the data box) has exactly as many plaintext bytes as
// ghostcomm's, so both encrypt and MAC the same number of bytes.
func TestFloorPlaintextSizesMatch(t *testing.T) {
	f := crypto(t)
	if floorFill <= 0 {
		t.Fatalf("floor fill %d", floorFill)
	}
	for _, n := range hopCounts {
		data := f.data["1KiB"]
		_, gm, err := f.ghost.prefix(n).clientBuild(data, meanPad(n), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		fr := *f.floor
		fr.keys, fr.next = fr.keys[:n], fr.next[:n-1]
		fm, err := fr.build(data, meanPad(n), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if len(gm.layer)-len(fm.layer) != floorFill {
			t.Fatalf("%d hops: ghostcomm onion %d bytes, floor %d: differ by other than %d", n, len(gm.layer), len(fm.layer), floorFill)
		}
		for hop := range n {
			// The data box is for hop 1 only; later hops get a new one.
			if hop == 0 {
				gp, gd, err := f.ghost.peel(hop, gm)
				if err != nil {
					t.Fatalf("ghostcomm: %v", err)
				}
				fp, fd, err := fr.peel(hop, fm)
				if err != nil {
					t.Fatalf("floor: %v", err)
				}
				if len(gp.Msg) != len(fp.msg) || len(gd.Msg) != len(fd.msg) {
					t.Fatalf("%d hops: hop 1 plaintexts ghostcomm %d+%d bytes, floor %d+%d", n, len(gp.Msg), len(gd.Msg), len(fp.msg), len(fd.msg))
				}
				if !bytes.Equal(gd.Msg, data) || !bytes.Equal(fd.msg, data) {
					t.Fatal("data did not survive")
				}
			}
			gp, err := layer.Peel(f.ghost.keys[hop].Dec, gm.layer)
			if err != nil {
				t.Fatalf("ghostcomm hop %d: %v", hop, err)
			}
			fp, err := fr.peelLayer(hop, fm.layer)
			if err != nil {
				t.Fatalf("floor hop %d: %v", hop, err)
			}
			if len(gp.Msg) != len(fp.msg) {
				t.Fatalf("%d hops, hop %d: layer plaintexts ghostcomm %d bytes, floor %d", n, hop, len(gp.Msg), len(fp.msg))
			}
			if gp.Next != fp.next {
				t.Fatalf("hop %d: next %d vs %d", hop, gp.Next, fp.next)
			}
			if gp.Next < 0 {
				if hop != n-1 {
					t.Fatalf("route ended at hop %d of %d", hop+1, n)
				}
				break
			}
			gm.layer, fm.layer = gp.Inner, fp.inner
		}
	}
}

// TestGhostcommChain runs one message through route.hop at every hop and
// checks the reply, and that the benchmarked hop input is what a first hop
// receives.
func TestGhostcommChain(t *testing.T) {
	f := crypto(t)
	for _, n := range hopCounts {
		r := f.ghost.prefix(n)
		data := f.data["64KiB"]
		o, m, err := r.clientBuild(data, meanPad(n), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if len(o.Keys) != n {
			t.Fatalf("%d layer keys for %d hops", len(o.Keys), n)
		}
		// Through the wire format once, as the hop benchmark does.
		body := messageBody(m)
		m, _, err = parseMessage(body)
		if err != nil {
			t.Fatal(err)
		}
		rs := make([]*replaySet, n)
		for i := range rs {
			rs[i] = newReplaySet()
		}
		node, hops := 0, 0
		var reply []byte
		for reply == nil {
			res, err := r.hop(node, rs[node], m, rand.Reader)
			if err != nil {
				t.Fatalf("hop %d: %v", hops+1, err)
			}
			hops++
			if res.reply == nil {
				var w bytes.Buffer
				if err := writeMessageFrame(&w, 7, 1000, res.out); err != nil {
					t.Fatal(err)
				}
				if w.Len() != wire.HeaderSize+messageHeaderSize+len(res.out.layer)+len(res.out.data) {
					t.Fatalf("frame of %d bytes", w.Len())
				}
				if m, _, err = parseMessage(w.Bytes()[wire.HeaderSize:]); err != nil {
					t.Fatal(err)
				}
			}
			node, reply = res.next, res.reply
		}
		if hops != n {
			t.Fatalf("message took %d hops, route has %d", hops, n)
		}
		// The same message again is a replay at hop 1.
		again, _, err := parseMessage(body)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.hop(0, rs[0], again, rand.Reader); !errors.Is(err, errReplay) {
			t.Fatalf("replay at hop 1 not refused: %v", err)
		}
		out, err := openReply(o, reply)
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("reply: %v (%d bytes)", err, len(out))
		}
	}
}

func TestGhostcommRoundTrip(t *testing.T) {
	r := crypto(t).ghost.prefix(3)
	data := []byte("round trip")
	out, err := r.roundTrip(data, []*replaySet{newReplaySet(), newReplaySet(), newReplaySet()}, rand.Reader)
	if err != nil || !bytes.Equal(out, data) {
		t.Fatalf("roundTrip: %q, %v", out, err)
	}
}

func TestFloorChain(t *testing.T) {
	f := crypto(t)
	fr := *f.floor
	fr.keys, fr.next = fr.keys[:3], fr.next[:2]
	data := f.data["1KiB"]
	m, err := fr.build(data, meanPad(3), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rs := newReplaySet()
	node := 0
	for range 2 {
		res, err := fr.hop(node, rs, m, rand.Reader)
		if err != nil {
			t.Fatalf("node %d: %v", node, err)
		}
		if res.next != node+1 {
			t.Fatalf("node %d forwards to %d", node, res.next)
		}
		m, node = res.out, res.next
	}
	p, d, err := fr.peel(node, m)
	if err != nil || p.next != -1 || !bytes.Equal(d.msg, data) {
		t.Fatalf("last hop: next %v, %v", p, err)
	}
}

// TestBytesPerLayer checks the onion-size arithmetic the benchmarks report
// against the library's own constant.
func TestBytesPerLayer(t *testing.T) {
	gs, fs, err := onionSizes(crypto(t))
	if err != nil {
		t.Fatal(err)
	}
	d, same := perLayer(gs, 3)
	if !same || d != layer.Overhead {
		t.Fatalf("ghostcomm adds %d bytes per layer (constant: %v), layer.Overhead is %d: sizes %v", d, same, layer.Overhead, gs)
	}
	// The floor's natural layer: its overhead, the header byte and the
	// same 6 bytes of block padding (its overhead is also 9 mod 16).
	if fd, same := perLayer(fs, 3); !same || fd != floorOverhead+1+6 {
		t.Fatalf("floor adds %d bytes per layer (constant: %v): sizes %v", fd, same, fs)
	}
}

func TestSphinxRoute(t *testing.T) {
	for _, n := range hopCounts {
		r, err := newSphinxRoute(n)
		if err != nil {
			t.Fatal(err)
		}
		pkt, err := r.build()
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			rt, err := r.freshRouter(i)
			if err != nil {
				t.Fatal(err)
			}
			p, err := rt.ProcessOnionPacket(pkt, r.assoc, 1)
			if err != nil {
				t.Fatalf("hop %d: %v", i, err)
			}
			// The same packet again is a replay.
			if _, err := rt.ProcessOnionPacket(pkt, r.assoc, 1); !errors.Is(err, sphinx.ErrReplayedPacket) {
				t.Fatalf("hop %d: replay not detected: %v", i, err)
			}
			rt.Stop()
			var want sphinx.ProcessCode = sphinx.MoreHops
			if i == n-1 {
				want = sphinx.ExitNode
			}
			if p.Action != want {
				t.Fatalf("hop %d of %d: action %v", i, n, p.Action)
			}
			pkt = p.NextPacket
		}
	}
}

func TestLockCycle(t *testing.T) {
	lc := lockCycleFixture(t)
	signed, infos, err := lc.signed(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 8 {
		t.Fatalf("%d nodes", len(infos))
	}
	fprs := map[[32]byte]bool{}
	for i, ni := range infos {
		pk, err := layer.ParsePublicKey(ni.PublicKey)
		if err != nil {
			t.Fatalf("node %d key: %v", i, err)
		}
		fprs[pk.Fpr] = true
	}
	if len(fprs) != 8 {
		t.Fatalf("%d distinct node keys", len(fprs))
	}
	n := int(signed[0])<<8 | int(signed[1])
	sig, body := signed[2:2+n], signed[2+n:]
	if err := lc.primary.Ring.VerifyDetached(pgp.NewPlainMessage(body), pgp.NewPGPSignature(sig), 0); err != nil {
		t.Fatalf("payload signature: %v", err)
	}
	for _, ni := range infos {
		if !bytes.Contains(body, ni.PublicKey) {
			t.Fatal("payload lacks a node key")
		}
	}
}

func TestNetworkFixture(t *testing.T) {
	nf := network(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data := crypto(t).data["1KiB"]
	res, err := nf.client.Send(ctx, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Route) != 3 || !bytes.Equal(res.Data, data) || !res.Verified {
		t.Fatalf("%d hops, verified %v, data intact %v", len(res.Route), res.Verified, bytes.Equal(res.Data, data))
	}
	for _, ni := range res.Route {
		if ni.Processor.Name != ghostcomm.IdentitySpec.Name {
			t.Fatalf("node runs %v", ni.Processor)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	if percentile(d, 50) != 50 || percentile(d, 99) != 99 || percentile(d[:1], 99) != 1 {
		t.Fatalf("percentiles %v %v", percentile(d, 50), percentile(d, 99))
	}
}

// TestSameDependencyVersions checks that this module measures the library
// with the module versions the library itself requires: a bench go.mod that
// drifted would measure other code.
func TestSameDependencyVersions(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) >= 2 && strings.Contains(f[0], ".") && strings.HasPrefix(f[1], "v") {
			want[f[0]] = f[1]
		}
	}
	out, err := exec.Command("go", "list", "-m", "all").Output()
	if err != nil {
		t.Fatalf("go list -m all: %v", err)
	}
	checked := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		w, ok := want[f[0]]
		if !ok {
			continue
		}
		checked++
		if f[1] != w {
			t.Errorf("%s: bench builds %s, the library requires %s", f[0], f[1], w)
		}
	}
	if checked < len(want) {
		t.Errorf("only %d of the library's %d requirements found in the bench module", checked, len(want))
	}
}
