package sealed_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/ghostcomm/ghostcomm/internal/sealed"
)

// fuzzVectors are the stored vectors, as seeds.
func fuzzVectors(f *testing.F) vectorFile {
	var v vectorFile
	b, err := os.ReadFile(vectorsPath)
	if err != nil {
		f.Fatal(err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		f.Fatal(err)
	}
	return v
}

// FuzzProcess feeds a hop arbitrary input: it must not panic, must refuse
// anything but a packet of a class's size, and must leave an accepted
// packet's size unchanged. The seeds are the vectors' packets for their
// first hop, whose key the target uses for seeds built for it.
func FuzzProcess(f *testing.F) {
	v := fuzzVectors(f)
	vc := v.Cases[2] // relay, 8 hops, small
	key, err := sealed.NewPrivateKey(vc.Hops[0].Scalar)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(vc.Packet))
	f.Add([]byte(vc.Packet[:sealed.HeaderSize]))
	f.Add([]byte{})
	f.Add(make([]byte, sealed.Small.Size()))
	f.Fuzz(func(t *testing.T, in []byte) {
		called := false
		rp := sealed.ReplayFunc(func([]byte) error { called = true; return nil })
		var r sealed.Result
		n := len(in)
		err := sealed.Process(key, in, rp, &r)
		if err != nil {
			if called && (errors.Is(err, sealed.ErrAuth) || errors.Is(err, sealed.ErrUnsupportedVersion)) {
				t.Fatalf("Replay called for a packet refused with %v", err)
			}
			return
		}
		if n != sealed.Small.Size() && n != sealed.Large.Size() || len(in) != n || !called {
			t.Fatalf("accepted a packet of %d bytes (replay called: %v)", n, called)
		}
		if r.Command == sealed.CmdExit || r.Mode == sealed.Chain {
			r.Data(in) // must not panic
		}
	})
}

// FuzzOpenReply feeds the client arbitrary replies to a packet it sent: no
// panic, ErrMalformed for a wrong size, and an accepted reply's depth and
// body within bounds.
func FuzzOpenReply(f *testing.F) {
	v := fuzzVectors(f)
	nw := newNetwork(f, "fuzz-reply", 3)
	_, sent, err := sealed.Build(newDetRand("fuzz-reply"), sealed.Small, sealed.Relay, nw.route, nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, vc := range v.Cases {
		for _, r := range vc.Replies {
			f.Add([]byte(r))
		}
	}
	f.Add([]byte{})
	f.Add(make([]byte, sealed.Small.Size()))
	f.Fuzz(func(t *testing.T, in []byte) {
		n := len(in)
		rep, err := sent.OpenReply(in)
		if err != nil {
			if n != sealed.Small.Size() && !errors.Is(err, sealed.ErrMalformed) {
				t.Fatalf("reply of %d bytes: %v", n, err)
			}
			return
		}
		if rep.Depth < 1 || rep.Depth > 3 || len(rep.Body) > sealed.Small.ReplyCapacity() {
			t.Fatalf("accepted %+v", rep)
		}
	})
}

// FuzzParseSlot feeds the slot parser arbitrary slots: no panic; an
// accepted slot has a known command and mode.
func FuzzParseSlot(f *testing.F) {
	f.Add(make([]byte, sealed.SlotSize))
	f.Add(append([]byte{1, 5, 0, 0, 1, 0, 0, 1}, make([]byte, 80)...))
	f.Add(append([]byte{2, 5, 0, 0, 1, 0, 0, 0}, make([]byte, 80)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := sealed.ParseSlot(in)
		if err != nil {
			return
		}
		if r.Command != sealed.CmdRelay && r.Command != sealed.CmdExit || r.Mode != sealed.Relay && r.Mode != sealed.Chain {
			t.Fatalf("accepted command %d mode %d", r.Command, r.Mode)
		}
	})
}

// FuzzExitPayload feeds the exit arbitrary opened payloads (as if a client
// had built them): Data must not panic, and returns at most the class's
// capacity, from inside the packet.
func FuzzExitPayload(f *testing.F) {
	nw := newNetwork(f, "fuzz-exit", 1)
	pkt, _, err := sealed.Build(newDetRand("fuzz-exit"), sealed.Small, sealed.Relay, nw.route, []byte("x"))
	if err != nil {
		f.Fatal(err)
	}
	var r sealed.Result
	if err := sealed.Process(nw.keys[0], pkt, noReplay, &r); err != nil {
		f.Fatal(err)
	}
	f.Add(bytes.Clone(pkt[sealed.PayloadAt:]))
	f.Add(append(make([]byte, 16), 0xff, 0xff, 0xff, 0xff))
	f.Fuzz(func(t *testing.T, in []byte) {
		p := bytes.Clone(pkt)
		copy(p[sealed.PayloadAt:], in)
		d, err := r.Data(p)
		if err == nil && len(d) > sealed.Small.Capacity() {
			t.Fatalf("Data of %d bytes", len(d))
		}
	})
}
