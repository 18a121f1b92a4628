package sealed_test

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/ghostcomm/ghostcomm/internal/sealed"
)

func TestCapacities(t *testing.T) {
	if sealed.HeaderSize != 753 {
		t.Fatalf("HeaderSize %d", sealed.HeaderSize)
	}
	for _, c := range classes {
		if got := sealed.HeaderSize + 16 + 4 + c.Capacity(); got != c.Size() {
			t.Errorf("class %d: header, tag, length and capacity make %d bytes", c, got)
		}
		if got := 16 + 1 + 4 + c.ReplyCapacity(); got != c.Size() {
			t.Errorf("class %d: reply tag, type, length and capacity make %d bytes", c, got)
		}
		if got, err := sealed.ClassOf(c.Size()); err != nil || got != c {
			t.Errorf("ClassOf(%d) = %d, %v", c.Size(), got, err)
		}
	}
	for n, want := range map[int]sealed.Class{0: sealed.Small, 1275: sealed.Small, 1276: sealed.Large, 31995: sealed.Large} {
		if got, err := sealed.ClassFor(n); err != nil || got != want {
			t.Errorf("ClassFor(%d) = %d, %v; want %d", n, got, err, want)
		}
	}
	if _, err := sealed.ClassFor(-1); !errors.Is(err, sealed.ErrMalformed) {
		t.Errorf("ClassFor(-1): %v", err)
	}
	if _, err := sealed.ClassFor(31996); !errors.Is(err, sealed.ErrFrameTooLarge) {
		t.Errorf("ClassFor(31996): %v", err)
	}
	for _, n := range []int{0, 2047, 2049, 4096, 32767} {
		if _, err := sealed.ClassOf(n); !errors.Is(err, sealed.ErrMalformed) {
			t.Errorf("ClassOf(%d): %v", n, err)
		}
	}
	if sealed.Class(4096).Capacity() != 0 || sealed.Class(4096).ReplyCapacity() != 0 {
		t.Error("an invalid class has a capacity")
	}
}

// TestBuildRefuses: what Build refuses, with ErrMalformed, and data longer
// than the class holds, with ErrFrameTooLarge.
func TestBuildRefuses(t *testing.T) {
	nw := newNetwork(t, "build", sealed.MaxHops+1)
	for name, f := range map[string]func() error{
		"no hops":    func() error { _, _, err := sealed.Build(nil, sealed.Small, sealed.Relay, nil, nil); return err },
		"9 hops":     func() error { _, _, err := sealed.Build(nil, sealed.Small, sealed.Relay, nw.route, nil); return err },
		"class 4096": func() error { _, _, err := sealed.Build(nil, 4096, sealed.Relay, nw.route[:2], nil); return err },
		"mode 0":     func() error { _, _, err := sealed.Build(nil, sealed.Small, 0, nw.route[:2], nil); return err },
		"mode 3":     func() error { _, _, err := sealed.Build(nil, sealed.Small, 3, nw.route[:2], nil); return err },
	} {
		if err := f(); !errors.Is(err, sealed.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if _, _, err := sealed.Build(nil, sealed.Small, sealed.Relay, nw.route[:2], make([]byte, 1276)); !errors.Is(err, sealed.ErrFrameTooLarge) {
		t.Errorf("data too long: %v, want ErrFrameTooLarge", err)
	}
}

// TestEqualBudgets: every slot carries the same budget, and Process hands
// each hop its own.
func TestEqualBudgets(t *testing.T) {
	nw := newNetwork(t, "budget", 5)
	sealed.EqualBudgets(nw.route, 1234)
	pkt, _, err := sealed.Build(nil, sealed.Small, sealed.Relay, nw.route, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := nw.forward(t, pkt, nil)
	for i, r := range rs {
		if r.BudgetMS != 1234 {
			t.Errorf("hop %d: budget %d", i+1, r.BudgetMS)
		}
	}
}

// TestMisuse: Data at a relaying hop in relay mode, Reseal outside chain
// mode, calls before Process, buffers of the wrong size, bodies too long.
func TestMisuse(t *testing.T) {
	nw := newNetwork(t, "misuse", 2)
	var fresh sealed.Result
	buf := make([]byte, sealed.Small.Size())
	if _, err := fresh.Data(buf); err == nil {
		t.Error("Data before Process")
	}
	if err := fresh.Answer(buf, nil); err == nil {
		t.Error("Answer before Process")
	}
	if err := fresh.WrapReply(buf); err == nil {
		t.Error("WrapReply before Process")
	}
	if err := sealed.Process(nw.keys[0], buf, nil, &fresh); err == nil {
		t.Error("Process without a Replay")
	}
	if err := sealed.Process(nil, buf, noReplay, &fresh); err == nil {
		t.Error("Process without a key")
	}
	pkt, _, err := sealed.Build(nil, sealed.Small, sealed.Relay, nw.route, []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	var r sealed.Result
	if err := sealed.Process(nw.keys[0], pkt, noReplay, &r); err != nil {
		t.Fatal(err)
	}
	if r.Mode != sealed.Relay || r.Class() != sealed.Small {
		t.Fatalf("mode %d class %d", r.Mode, r.Class())
	}
	if _, err := r.Data(pkt); !errors.Is(err, sealed.ErrAuth) {
		t.Errorf("Data at a relaying hop in relay mode: %v", err)
	}
	if err := r.Reseal(pkt, nil); !errors.Is(err, sealed.ErrMalformed) {
		t.Errorf("Reseal in relay mode: %v", err)
	}
	if _, err := r.Data(pkt[:100]); !errors.Is(err, sealed.ErrMalformed) {
		t.Errorf("Data of a short packet: %v", err)
	}
	if err := r.WrapReply(make([]byte, sealed.Large.Size())); !errors.Is(err, sealed.ErrMalformed) {
		t.Errorf("WrapReply of another class: %v", err)
	}
	if err := r.Answer(buf, make([]byte, sealed.Small.ReplyCapacity()+1)); !errors.Is(err, sealed.ErrFrameTooLarge) {
		t.Errorf("Answer too long: %v", err)
	}
	if err := r.Fail(buf, 1, make([]byte, sealed.Small.ReplyCapacity())); !errors.Is(err, sealed.ErrFrameTooLarge) {
		t.Errorf("Fail too long: %v", err)
	}
	// Chain mode: Reseal too long; the exit cannot Reseal.
	cp, _, err := sealed.Build(nil, sealed.Small, sealed.Chain, nw.route, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sealed.Process(nw.keys[0], cp, noReplay, &r); err != nil {
		t.Fatal(err)
	}
	if err := r.Reseal(cp, make([]byte, 1276)); !errors.Is(err, sealed.ErrFrameTooLarge) {
		t.Errorf("Reseal too long: %v", err)
	}
	if err := r.Reseal(cp, []byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := sealed.Process(nw.keys[1], cp, noReplay, &r); err != nil {
		t.Fatal(err)
	}
	if err := r.Reseal(cp, nil); !errors.Is(err, sealed.ErrMalformed) {
		t.Errorf("Reseal at the exit: %v", err)
	}
	if d, err := r.Data(cp); err != nil || string(d) != "y" {
		t.Errorf("chain exit read %q, %v", d, err)
	}
	// A packet of another version.
	v, _, _ := sealed.Build(nil, sealed.Small, sealed.Relay, nw.route, nil)
	v[0] = 2
	if err := sealed.Process(nw.keys[0], v, noReplay, &r); !errors.Is(err, sealed.ErrUnsupportedVersion) {
		t.Errorf("version 2: %v", err)
	}
	// A packet for another key fails its MAC.
	o, _, _ := sealed.Build(nil, sealed.Small, sealed.Relay, nw.route, nil)
	if err := sealed.Process(nw.keys[1], o, noReplay, &r); !errors.Is(err, sealed.ErrAuth) {
		t.Errorf("packet for another hop: %v", err)
	}
}

// TestChainProcessing: in chain mode each hop reads what the previous hop
// resealed, so hops can transform the data on the way.
func TestChainProcessing(t *testing.T) {
	nw := newNetwork(t, "chain", 4)
	pkt, _, err := sealed.Build(nil, sealed.Small, sealed.Chain, nw.route, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	_, got := nw.forward(t, pkt, func(hop int, d []byte) []byte {
		return append(bytes.Clone(d), byte('0'+hop))
	})
	if string(got) != "x123" {
		t.Fatalf("exit read %q, want x123", got)
	}
}

// TestLowOrderList: X25519 of every point ParsePublicKey refuses as low
// order is zero (crypto/ecdh refuses it), so the list is right.
func TestLowOrderList(t *testing.T) {
	k, err := ecdh.X25519().GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	} {
		u := mustHex(h)
		p, err := ecdh.X25519().NewPublicKey(u[:])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.ECDH(p); err == nil {
			t.Errorf("%s is not of low order", h)
		}
		if _, err := sealed.ParsePublicKey(u[:]); !errors.Is(err, sealed.ErrMalformed) {
			t.Errorf("ParsePublicKey(%s): %v", h, err)
		}
	}
	pub := k.PublicKey().Bytes()
	if got, err := sealed.ParsePublicKey(pub); err != nil || !bytes.Equal(got[:], pub) {
		t.Errorf("ParsePublicKey of a real key: %v", err)
	}
	if _, err := sealed.ParsePublicKey(pub[:31]); !errors.Is(err, sealed.ErrMalformed) {
		t.Errorf("ParsePublicKey of 31 bytes: %v", err)
	}
}

// TestOpenPGPNodeKey: the X25519 key taken from a generated OpenPGP key's
// cv25519 subkey is the subkey's: X25519(D) equals the subkey's point, and a
// packet built to the public key is processed with the private key.
func TestOpenPGPNodeKey(t *testing.T) {
	e, err := sealed.GenerateOpenPGPKey(nil, "node 1 sealed", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	k, err := sealed.OpenPGPPrivateKey(e)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sealed.OpenPGPPublicKey(e)
	if err != nil {
		t.Fatal(err)
	}
	if k.PublicKey() != pub {
		t.Fatal("the private key's public key is not the subkey's point")
	}
	// Independently of the package: X25519(D, 9) with crypto/ecdh.
	ek, err := ecdh.X25519().NewPrivateKey(k.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ek.PublicKey().Bytes(), pub[:]) {
		t.Fatal("X25519(D) is not the subkey's point")
	}
	pkt, _, err := sealed.Build(nil, sealed.Small, sealed.Relay, []sealed.Hop{{Key: pub}}, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	var r sealed.Result
	if err := sealed.Process(k, pkt, noReplay, &r); err != nil {
		t.Fatal(err)
	}
	if d, err := r.Data(pkt); err != nil || string(d) != "hello" {
		t.Fatalf("read %q, %v", d, err)
	}
	// The public half alone gives the same key.
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	pe, err := openpgp.ReadEntity(packet.NewReader(&buf))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := sealed.OpenPGPPublicKey(pe); err != nil || got != pub {
		t.Fatalf("public key from the serialized public key: %v", err)
	}
	if _, err := sealed.OpenPGPPrivateKey(pe); !errors.Is(err, sealed.ErrMalformed) {
		t.Errorf("private key of a public key: %v", err)
	}
	// Refusals: no entity; an entity with two cv25519 subkeys.
	if _, err := sealed.OpenPGPPrivateKey(nil); !errors.Is(err, sealed.ErrMalformed) {
		t.Errorf("nil entity: %v", err)
	}
	if err := e.AddEncryptionSubkey(&packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519}); err != nil {
		t.Fatal(err)
	}
	if _, err := sealed.OpenPGPPublicKey(e); !errors.Is(err, sealed.ErrMalformed) {
		t.Errorf("two cv25519 subkeys: %v", err)
	}
}

// TestOpenPGPWrongPoint: a subkey whose point is not X25519 of its secret
// is refused.
func TestOpenPGPWrongPoint(t *testing.T) {
	e, err := sealed.GenerateOpenPGPKey(nil, "n", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sealed.CorruptOpenPGPSecret(e)
	if _, err := sealed.OpenPGPPrivateKey(e); !errors.Is(err, sealed.ErrMalformed) {
		t.Errorf("corrupted secret: %v", err)
	}
}

// TestX25519MatchesStdlib: the package's X25519 (circl) gives crypto/ecdh's
// results: public keys, and secrets a packet's hop derives (a hop that
// computed another secret would fail the MAC).
func TestX25519MatchesStdlib(t *testing.T) {
	rnd := newDetRand("stdlib")
	for range 50 {
		k, err := sealed.GenerateKey(rnd)
		if err != nil {
			t.Fatal(err)
		}
		ek, err := ecdh.X25519().NewPrivateKey(k.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		pub := k.PublicKey()
		if !bytes.Equal(ek.PublicKey().Bytes(), pub[:]) {
			t.Fatal("public key differs from crypto/ecdh's")
		}
		other, err := ecdh.X25519().GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ek.ECDH(other.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		got, err := sealed.SharedSecret(k, other.PublicKey().Bytes())
		if err != nil || !bytes.Equal(got[:], want) {
			t.Fatalf("shared secret differs from crypto/ecdh's (%v)", err)
		}
	}
}

// TestWipe: after Wipe a key, a hop's result and a client's state no
// longer work, and a generated key pair's entity holds no secret.
func TestWipe(t *testing.T) {
	nw := newNetwork(t, "wipe", 2)
	pkt, sent, err := sealed.Build(nil, sealed.Small, sealed.Relay, nw.route, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	var r sealed.Result
	if err := sealed.Process(nw.keys[0], pkt, noReplay, &r); err != nil {
		t.Fatal(err)
	}
	r.Wipe()
	r.Wipe()
	if err := r.WrapReply(make([]byte, sealed.Small.Size())); err == nil {
		t.Error("WrapReply after Wipe")
	}
	nw.keys[1].Wipe()
	if !bytes.Equal(nw.keys[1].Bytes(), make([]byte, 32)) {
		t.Error("key not zeroed")
	}
	if err := sealed.Process(nw.keys[1], pkt, noReplay, &r); err == nil {
		t.Error("a wiped key processed a packet")
	}
	sent.Wipe()
	if _, err := sent.OpenReply(make([]byte, sealed.Small.Size())); !errors.Is(err, sealed.ErrAuth) {
		t.Errorf("OpenReply after Wipe: %v", err)
	}

	e, k, err := sealed.GenerateOpenPGPKeyPair(nil, "node", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if e.PrivateKey != nil {
		t.Error("the entity kept its primary private key")
	}
	for _, sk := range e.Subkeys {
		if sk.PrivateKey != nil {
			t.Error("the entity kept a subkey's private key")
		}
	}
	pub, err := sealed.OpenPGPPublicKey(e)
	if err != nil || pub != k.PublicKey() {
		t.Fatalf("public key of the wiped entity: %v", err)
	}
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), k.Bytes()) {
		t.Error("the serialized entity holds the X25519 secret")
	}
}

// TestReplayLeavesPacket: a packet the replay check refuses is left as it
// was, so that the node can answer it from the first copy's answer.
func TestReplayLeavesPacket(t *testing.T) {
	nw := newNetwork(t, "leave", 2)
	pkt, _, err := sealed.Build(nil, sealed.Small, sealed.Chain, nw.route, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	in := bytes.Clone(pkt)
	dup := errors.New("duplicate")
	var r sealed.Result
	err = sealed.Process(nw.keys[0], pkt, sealed.ReplayFunc(func([]byte) error { return dup }), &r)
	if !errors.Is(err, dup) {
		t.Fatalf("Process: %v, want the replay check's error", err)
	}
	if !bytes.Equal(pkt, in) {
		t.Fatal("a refused packet was changed")
	}
}
