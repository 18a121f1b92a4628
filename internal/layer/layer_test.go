package layer

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/ecdh"
	"github.com/ProtonMail/go-crypto/openpgp/eddsa"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	pgp "github.com/ProtonMail/gopenpgp/v2/crypto"
)

var (
	keysOnce sync.Once
	keys     []*KeyPair
)

// testKeys returns n key pairs, generated once per test binary.
func testKeys(t testing.TB, n int) []*KeyPair {
	t.Helper()
	keysOnce.Do(func() {
		for range 9 {
			kp, err := GenerateKeyPair("test")
			if err != nil {
				panic(err)
			}
			keys = append(keys, kp)
		}
	})
	return keys[:n]
}

func pubs(kps []*KeyPair) []*PublicKey {
	out := make([]*PublicKey, len(kps))
	for i, k := range kps {
		out[i] = &k.PublicKey
	}
	return out
}

func TestSealOpen(t *testing.T) {
	kp := testKeys(t, 1)[0]
	for _, size := range []int{0, 1, 15, 16, 17, 1000, 1 << 16} {
		msg := make([]byte, size)
		rand.Read(msg)
		k, _ := NewKey(rand.Reader)
		box, err := Seal(nil, kp.Enc, &k, 1700000000, msg, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(box), PKESKSize+FernetOverhead+(size/16+1)*16; got != want {
			t.Fatalf("size %d: box of %d bytes, want %d", size, got, want)
		}
		o, err := Open(kp.Dec, box)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !bytes.Equal(o.Msg, msg) || o.Key != k || o.TS != 1700000000 || len(o.Tag) != 32 {
			t.Fatalf("size %d: opened box differs", size)
		}
	}
}

func TestOpenWithWrongKey(t *testing.T) {
	kps := testKeys(t, 2)
	k, _ := NewKey(rand.Reader)
	box, err := Seal(nil, kps[0].Enc, &k, 0, []byte("for 0"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(kps[1].Dec, box); !errors.Is(err, ErrAuth) {
		t.Fatalf("got %v, want ErrAuth", err)
	}
}

func TestRecipientHidden(t *testing.T) {
	kp := testKeys(t, 1)[0]
	k, _ := NewKey(rand.Reader)
	box, _ := Seal(nil, kp.Enc, &k, 0, []byte("x"), rand.Reader)
	if !bytes.Equal(box[3:11], make([]byte, 8)) {
		t.Fatalf("PKESK key ID %x is not the hidden (zero) ID", box[3:11])
	}
}

func TestEveryByteFlipRejected(t *testing.T) {
	kp := testKeys(t, 1)[0]
	k, _ := NewKey(rand.Reader)
	box, _ := Seal(nil, kp.Enc, &k, 0, []byte("sixteen bytes!!!and more"), rand.Reader)
	for i := range box {
		for bit := range 8 {
			mut := bytes.Clone(box)
			mut[i] ^= 1 << bit
			_, err := Open(kp.Dec, mut)
			if err == nil {
				t.Fatalf("byte %d bit %d flipped: box opened", i, bit)
			}
			if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("byte %d bit %d flipped: untyped error %v", i, bit, err)
			}
		}
	}
}

func TestTruncatedAndExtendedRejected(t *testing.T) {
	kp := testKeys(t, 1)[0]
	k, _ := NewKey(rand.Reader)
	box, _ := Seal(nil, kp.Enc, &k, 0, []byte("x"), rand.Reader)
	for n := 0; n < len(box); n++ {
		if _, err := Open(kp.Dec, box[:n]); err == nil {
			t.Fatalf("box truncated to %d bytes opened", n)
		}
	}
	for _, extra := range [][]byte{{0}, make([]byte, 16), make([]byte, 32)} {
		if _, err := Open(kp.Dec, append(bytes.Clone(box), extra...)); err == nil {
			t.Fatalf("box with %d bytes appended opened", len(extra))
		}
	}
}

func TestOnionRoute(t *testing.T) {
	for _, n := range []int{1, 2, 3, 8} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			kps := testKeys(t, n)
			next := make([]byte, n-1)
			for i := range next {
				next[i] = byte(10 + i)
			}
			o, err := Build(pubs(kps), next, 42, 5, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			cur := o.Layer
			for i := range n {
				p, err := Peel(kps[i].Dec, cur)
				if err != nil {
					t.Fatalf("hop %d: %v", i+1, err)
				}
				if p.Key != o.Keys[i] || p.TS != 42 {
					t.Fatalf("hop %d: wrong key or timestamp", i+1)
				}
				if i < n-1 {
					if p.Next != int(next[i]) || p.Inner == nil {
						t.Fatalf("hop %d: next %d, want %d", i+1, p.Next, next[i])
					}
					// No other hop's key opens this layer.
					for j := range n {
						if j != i {
							if _, err := Peel(kps[j].Dec, cur); !errors.Is(err, ErrAuth) {
								t.Fatalf("hop %d's layer opened by key %d: %v", i+1, j, err)
							}
						}
					}
					cur = p.Inner
				} else if p.Next != -1 || len(p.Msg) != 1+5 {
					t.Fatalf("last hop: next %d, %d bytes", p.Next, len(p.Msg))
				}
			}
		})
	}
}

func TestOverheadPerLayer(t *testing.T) {
	kps := testKeys(t, 9)
	for pad := range 40 {
		prev := 0
		for n := 1; n <= 9; n++ {
			o, err := Build(pubs(kps[:n]), make([]byte, n-1), 0, pad, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if n > 1 && len(o.Layer)-prev != Overhead {
				t.Fatalf("pad %d: hop %d added %d bytes, want %d", pad, n, len(o.Layer)-prev, Overhead)
			}
			prev = len(o.Layer)
		}
	}
}

func TestBuildRejectsBadRoutes(t *testing.T) {
	kps := testKeys(t, 2)
	for _, tc := range []struct {
		hops []*PublicKey
		next []byte
		pad  int
	}{
		{nil, nil, 0},
		{pubs(kps), nil, 0},
		{pubs(kps), []byte{1, 2}, 0},
		{pubs(kps), []byte{ExitHop}, 0},
		{pubs(kps[:1]), nil, -1},
	} {
		if _, err := Build(tc.hops, tc.next, 0, tc.pad, rand.Reader); err == nil {
			t.Errorf("Build(%d hops, next %v, pad %d) succeeded", len(tc.hops), tc.next, tc.pad)
		}
	}
}

func TestDeriveDistinct(t *testing.T) {
	k, _ := NewKey(rand.Reader)
	r, e := k.Derive(PurposeReply), k.Derive(PurposeError)
	if r == e || r == k || e == k {
		t.Fatal("derived keys collide")
	}
	if k.Derive(PurposeReply) != r {
		t.Fatal("derivation is not deterministic")
	}
}

func TestParsePublicKeyRejects(t *testing.T) {
	kp := testKeys(t, 1)[0]
	for name, b := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("not a key"),
		"truncated": kp.Raw[:len(kp.Raw)/2],
		"two keys":  append(bytes.Clone(kp.Raw), testKeys(t, 2)[1].Raw...),
		"too large": make([]byte, MaxPublicKeySize+1),
	} {
		if _, err := ParsePublicKey(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}

func TestWipe(t *testing.T) {
	kp, err := GenerateKeyPair("wipe")
	if err != nil {
		t.Fatal(err)
	}
	k, _ := NewKey(rand.Reader)
	box, _ := Seal(nil, kp.Enc, &k, 0, []byte("x"), rand.Reader)
	kp.Wipe()
	if _, err := Open(kp.Dec, box); !errors.Is(err, ErrAuth) {
		t.Fatalf("wiped key still opens: %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	kp := testKeys(f, 1)[0]
	k, _ := NewKey(rand.Reader)
	box, _ := Seal(nil, kp.Enc, &k, 0, []byte("seed"), rand.Reader)
	f.Add(box)
	f.Add(box[:PKESKSize])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := Open(kp.Dec, b)
		if err == nil {
			// Only a box that really is Seal's output for this key opens;
			// opening it again must give the same plaintext.
			o2, err := Open(kp.Dec, b)
			if err != nil || !bytes.Equal(o.Msg, o2.Msg) {
				t.Fatal("open is not deterministic")
			}
			return
		}
		if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedVersion) {
			t.Fatalf("untyped error %v", err)
		}
	})
}

func FuzzPeel(f *testing.F) {
	kps := testKeys(f, 2)
	o, _ := Build(pubs(kps), []byte{1}, 0, 3, rand.Reader)
	f.Add(o.Layer)
	p, _ := Peel(kps[0].Dec, o.Layer)
	f.Add(p.Inner)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, kp := range kps {
			p, err := Peel(kp.Dec, b)
			if err != nil {
				if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedVersion) {
					t.Fatalf("untyped error %v", err)
				}
				continue
			}
			if p.Next < -1 || p.Next >= MaxNodes || (p.Next >= 0) != (p.Inner != nil) {
				t.Fatalf("inconsistent peel: next %d, inner %d bytes", p.Next, len(p.Inner))
			}
		}
	})
}

func FuzzParsePublicKey(f *testing.F) {
	f.Add(testKeys(f, 1)[0].Raw)
	f.Add([]byte{0x99, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		pk, err := ParsePublicKey(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if pk.Enc == nil || !bytes.Equal(pk.Raw, b) {
			t.Fatal("parsed key without encryption key or raw bytes")
		}
	})
}

func BenchmarkBuild(b *testing.B) {
	kps := testKeys(b, 8)
	for _, n := range []int{1, 3, 5, 8} {
		b.Run(fmt.Sprintf("%dhops", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Build(pubs(kps[:n]), make([]byte, n-1), 0, 0, rand.Reader); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPeel(b *testing.B) {
	kps := testKeys(b, 3)
	o, _ := Build(pubs(kps), []byte{1, 2}, 0, 0, rand.Reader)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Peel(kps[0].Dec, o.Layer); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSealOpen(b *testing.B) {
	kp := testKeys(b, 1)[0]
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		msg := make([]byte, size)
		k, _ := NewKey(rand.Reader)
		box, _ := Seal(nil, kp.Enc, &k, 0, msg, rand.Reader)
		b.Run(fmt.Sprintf("seal/%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Seal(nil, kp.Enc, &k, 0, msg, rand.Reader); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("open/%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Open(kp.Dec, box); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestWipeLeavesCallersKey(t *testing.T) {
	k, err := pgp.GenerateKey("caller", "", "x25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := NewKeyPair(k)
	if err != nil {
		t.Fatal(err)
	}
	kp.Wipe()
	// The caller's key still works: a second key pair from it opens boxes.
	again, err := NewKeyPair(k)
	if err != nil {
		t.Fatalf("caller's key after Wipe: %v", err)
	}
	key, _ := NewKey(rand.Reader)
	box, _ := Seal(nil, again.Enc, &key, 0, []byte("x"), rand.Reader)
	if _, err := Open(again.Dec, box); err != nil {
		t.Fatal(err)
	}
}

// secrets returns the private key material of a key pair's entity: the
// slices Wipe must zero.
func secrets(t *testing.T, kp *KeyPair) [][]byte {
	t.Helper()
	keys := kp.Priv.GetKeys()
	if len(keys) != 1 {
		t.Fatalf("%d keys in the ring", len(keys))
	}
	e := keys[0].GetEntity()
	pks := []*packet.PrivateKey{e.PrivateKey}
	for _, sk := range e.Subkeys {
		pks = append(pks, sk.PrivateKey)
	}
	var out [][]byte
	for _, pk := range pks {
		switch k := pk.PrivateKey.(type) {
		case *eddsa.PrivateKey:
			out = append(out, k.D)
		case *ecdh.PrivateKey:
			out = append(out, k.D)
		default:
			t.Fatalf("private key of type %T", k)
		}
	}
	return out
}

func allZero(b []byte) bool { return !slices.ContainsFunc(b, func(x byte) bool { return x != 0 }) }

func TestWipeZeroesKeyMaterial(t *testing.T) {
	caller, err := pgp.GenerateKey("caller", "", "x25519", 0)
	if err != nil {
		t.Fatal(err)
	}
	callerKP, err := wrapKey(caller) // the caller's own material, not a copy
	if err != nil {
		t.Fatal(err)
	}
	callerSecrets := secrets(t, callerKP)
	callerBefore := make([][]byte, len(callerSecrets))
	for i, s := range callerSecrets {
		callerBefore[i] = bytes.Clone(s)
	}
	generated, err := GenerateKeyPair("generated")
	if err != nil {
		t.Fatal(err)
	}
	copied, err := NewKeyPair(caller)
	if err != nil {
		t.Fatal(err)
	}
	for name, kp := range map[string]*KeyPair{"generated": generated, "copied": copied} {
		s := secrets(t, kp)
		if len(s) != 2 {
			t.Fatalf("%s: %d private keys, want a signing key and a decryption key", name, len(s))
		}
		for i := range s {
			if allZero(s[i]) {
				t.Fatalf("%s: private key %d is zero before Wipe", name, i)
			}
		}
		kp.Wipe()
		kp.Wipe() // idempotent
		for i := range s {
			if !allZero(s[i]) {
				t.Errorf("%s: private key %d not zeroed by Wipe", name, i)
			}
		}
		if kp.Dec != nil {
			t.Errorf("%s: decryption keys still referenced after Wipe", name)
		}
	}
	// The copy had material of its own: the caller's is intact.
	for i, s := range callerSecrets {
		if !bytes.Equal(s, callerBefore[i]) {
			t.Errorf("caller's private key %d changed by wiping the copy", i)
		}
	}
}

func TestOnionWipe(t *testing.T) {
	kps := testKeys(t, 3)
	o, err := Build(pubs(kps), []byte{1, 2}, 0, 0, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := o.Keys
	for i := range keys {
		if allZero(keys[i][:]) {
			t.Fatalf("layer key %d is zero", i)
		}
	}
	o.Wipe()
	for i := range keys {
		if !allZero(keys[i][:]) {
			t.Errorf("layer key %d not zeroed by Wipe", i)
		}
	}
	// A peeled layer still carries its key, for the hop to use.
	p, err := Build(pubs(kps[:1]), nil, 0, 0, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	peeled, err := Peel(kps[0].Dec, p.Layer)
	if err != nil {
		t.Fatal(err)
	}
	if peeled.Key != p.Keys[0] {
		t.Fatal("peeled key differs from the built one")
	}
}

// A data box resealed for the next hop from the buffer SealBuffer gives is
// the same box, byte for byte with the same randomness, as one sealed from
// a copy of the plaintext; when the plaintext is Open's (or a prefix of it)
// it is sealed where it lies, and for any other plaintext SealBuffer gives
// a buffer of its own.
func TestSealBuffer(t *testing.T) {
	kps := testKeys(t, 2)
	for _, size := range []int{1, 15, 16, 17, 1000, 1 << 16} {
		msg := make([]byte, size)
		rand.Read(msg)
		k, _ := NewKey(rand.Reader)
		box, err := Seal(nil, kps[0].Enc, &k, 5, msg, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name    string
			pick    func(o *Opened) []byte
			inPlace bool
		}{
			{"same", func(o *Opened) []byte { return o.Msg }, true},
			{"prefix", func(o *Opened) []byte { return o.Msg[:max(1, len(o.Msg)-5)] }, true},
			{"suffix", func(o *Opened) []byte { return o.Msg[len(o.Msg)/2:] }, size == 1},
			{"longer", func(o *Opened) []byte { return append(o.Msg, 1, 2, 3) }, false},
			{"copy", func(o *Opened) []byte { return slices.Clone(o.Msg) }, false},
		} {
			o, err := Open(kps[0].Dec, box)
			if err != nil {
				t.Fatal(err)
			}
			in := c.pick(o)
			want := slices.Clone(in)
			var k2 Key
			seed := [32]byte{byte(size)}
			ref, err := Seal(nil, kps[1].Enc, &k2, 6, want, mrand.NewChaCha8(seed))
			if err != nil {
				t.Fatal(err)
			}
			dst := o.SealBuffer(in)
			got, err := Seal(dst, kps[1].Enc, &k2, 6, in, mrand.NewChaCha8(seed))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, ref) {
				t.Fatalf("%d bytes, %s: resealed box differs from one sealed from a copy", size, c.name)
			}
			if inPlace := &got[PKESKSize+FernetHeader] == &in[0]; inPlace != c.inPlace {
				t.Fatalf("%d bytes, %s: sealed in place %v, want %v", size, c.name, inPlace, c.inPlace)
			}
			if cap(got) != len(got) && !c.inPlace {
				t.Fatalf("%d bytes, %s: buffer of %d bytes for a box of %d", size, c.name, cap(got), len(got))
			}
			o2, err := Open(kps[1].Dec, got)
			if err != nil || !bytes.Equal(o2.Msg, want) {
				t.Fatalf("%d bytes, %s: resealed box does not open: %v", size, c.name, err)
			}
		}
	}
	// A peeled layer's plaintext has no room around it.
	o, err := Build(pubs(kps[:1]), nil, 1, 10, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Peel(kps[0].Dec, o.Layer)
	if err != nil {
		t.Fatal(err)
	}
	if dst := p.SealBuffer(p.Msg); len(dst) != 0 || cap(dst) != PKESKSize+fernetSize(len(p.Msg)) {
		t.Fatalf("SealBuffer of a peeled layer: len %d cap %d", len(dst), cap(dst))
	}
}
