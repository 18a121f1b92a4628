package layer

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fernet/fernet-go"
)

var b64 = base64.URLEncoding // fernet-go's token encoding

// fernet is k as a fernet-go key: fernet-go is the reference the tests
// compare with, not a dependency of the library.
func (k *Key) fernet() *fernet.Key { return (*fernet.Key)(k) }

// Raw tokens are standard Fernet tokens: fernet-go opens ours once they are
// base64-encoded, and ours open its own.
func TestFernetInterop(t *testing.T) {
	var k Key
	rand.Read(k[:])
	for _, n := range []int{0, 1, 15, 16, 17, 1000} {
		msg := bytes.Repeat([]byte{7}, n)
		raw, err := FernetSeal(nil, &k, 12345, msg)
		if err != nil {
			t.Fatal(err)
		}
		if got := fernet.VerifyAndDecrypt(b64.AppendEncode(nil, raw), 0, []*fernet.Key{k.fernet()}); !bytes.Equal(got, msg) {
			t.Fatalf("fernet-go cannot open our %d-byte token", n)
		}
		tok, err := fernet.EncryptAndSignAtTime(msg, k.fernet(), time.Unix(12345, 0))
		if err != nil {
			t.Fatal(err)
		}
		rb, err := b64.AppendDecode(nil, tok)
		if err != nil {
			t.Fatal(err)
		}
		got, ts, err := FernetOpen(&k, rb)
		if err != nil || !bytes.Equal(got, msg) || ts != 12345 {
			t.Fatalf("cannot open fernet-go's %d-byte token: %v", n, err)
		}
	}
}

// fernetSpecDir is the directory of the fernet-go module, which ships the
// Fernet spec's test vectors (verify.json, invalid.json, generate.json).
func fernetSpecDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/fernet/fernet-go").Output()
	if err != nil {
		t.Fatalf("locating fernet-go: %v", err)
	}
	return strings.TrimSpace(string(out))
}

type specVector struct {
	Token  string `json:"token"`
	Now    string `json:"now"`
	TTL    int    `json:"ttl_sec"`
	Src    string `json:"src"`
	Secret string `json:"secret"`
	Desc   string `json:"desc"`
}

func readSpec(t *testing.T, name string) []specVector {
	b, err := os.ReadFile(filepath.Join(fernetSpecDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	var vs []specVector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	return vs
}

// TestFernetSpecVectors opens the Fernet spec's valid tokens and refuses its
// invalid ones. The spec's time-to-live cases are not FernetOpen's business
// (ghostcomm compares the authenticated timestamp with its cycle), so for
// those only the timestamp is checked.
func TestFernetSpecVectors(t *testing.T) {
	key := func(s string) *Key {
		k, err := fernet.DecodeKey(s)
		if err != nil {
			t.Fatal(err)
		}
		return (*Key)(k)
	}
	for _, v := range readSpec(t, "verify.json") {
		raw, err := base64.URLEncoding.DecodeString(v.Token)
		if err != nil {
			t.Fatal(err)
		}
		msg, ts, err := FernetOpen(key(v.Secret), raw)
		now, _ := time.Parse(time.RFC3339, v.Now)
		if err != nil || string(msg) != v.Src || now.Sub(time.Unix(ts, 0)) > time.Duration(max(v.TTL, 60))*time.Second {
			t.Errorf("verify vector: %q, %v", msg, err)
		}
	}
	for _, v := range readSpec(t, "invalid.json") {
		raw, err := base64.URLEncoding.DecodeString(v.Token)
		if err != nil {
			continue // "invalid base64": refused before any token exists
		}
		_, ts, err := FernetOpen(key(v.Secret), raw)
		if strings.Contains(v.Desc, "TS") || strings.Contains(v.Desc, "TTL") {
			// A valid token made at an unacceptable time: the time is what
			// the caller must refuse.
			now, _ := time.Parse(time.RFC3339, v.Now)
			if err == nil && now.Sub(time.Unix(ts, 0)).Abs() <= time.Duration(v.TTL)*time.Second {
				t.Errorf("%s: timestamp %d would pass", v.Desc, ts)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: token opened", v.Desc)
		} else if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupportedVersion) {
			t.Errorf("%s: untyped error %v", v.Desc, err)
		}
	}
}

func FuzzFernetOpen(f *testing.F) {
	var k Key
	tok, _ := FernetSeal(nil, &k, 1, []byte("seed"))
	f.Add(tok)
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, _, err := FernetOpen(&k, b)
		ref := fernet.VerifyAndDecrypt(b64.AppendEncode(nil, b), 0, []*fernet.Key{k.fernet()})
		if (err == nil) != (ref != nil) || (err == nil && !bytes.Equal(msg, ref)) {
			t.Fatalf("FernetOpen (%v) and fernet-go disagree", err)
		}
	})
}

type genVector struct {
	Token  string `json:"token"`
	Now    string `json:"now"`
	IV     []byte `json:"-"`
	IVInts []int  `json:"iv"`
	Src    string `json:"src"`
	Secret string `json:"secret"`
}

// TestFernetSealSpecVectors makes the Fernet spec's generate.json tokens
// from their key, time, IV and plaintext, byte for byte, with the IV given
// both directly and as the randomness source.
func TestFernetSealSpecVectors(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(fernetSpecDir(t), "generate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vs []genVector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		t.Fatal("no generate vectors")
	}
	for _, v := range vs {
		k, err := fernet.DecodeKey(v.Secret)
		if err != nil {
			t.Fatal(err)
		}
		now, err := time.Parse(time.RFC3339, v.Now)
		if err != nil {
			t.Fatal(err)
		}
		if len(v.IVInts) != 16 {
			t.Fatalf("IV of %d bytes", len(v.IVInts))
		}
		var iv [16]byte
		for i, x := range v.IVInts {
			iv[i] = byte(x)
		}
		want, err := base64.URLEncoding.DecodeString(v.Token)
		if err != nil {
			t.Fatal(err)
		}
		if got := fernetSeal(nil, (*Key)(k), now.Unix(), &iv, []byte(v.Src)); !bytes.Equal(got, want) {
			t.Errorf("fernetSeal(%q) = %x, spec says %x", v.Src, got, want)
		}
		got, err := FernetSealRand([]byte("prefix"), (*Key)(k), now.Unix(), []byte(v.Src), bytes.NewReader(iv[:]))
		if err != nil || !bytes.Equal(got, append([]byte("prefix"), want...)) {
			t.Errorf("FernetSealRand(%q) = %x, %v; spec says %x", v.Src, got, err, want)
		}
	}
}

// ivOf returns the IV of a raw token.
func ivOf(tok []byte) *[16]byte { return (*[16]byte)(tok[9:25]) }

// TestFernetSealMatchesFernetGo: for every plaintext length around the
// block boundaries (and a large one), the token fernet-go makes is exactly
// the one our sealer makes with fernet-go's IV, fernet-go opens ours, and
// ours opens fernet-go's.
func TestFernetSealMatchesFernetGo(t *testing.T) {
	var k Key
	rand.Read(k[:])
	lens := []int{1 << 20, 1<<16 + 3}
	for n := range 70 {
		lens = append(lens, n)
	}
	for _, n := range lens {
		msg := make([]byte, n)
		rand.Read(msg)
		ts := int64(n) * 1e6
		ref, err := fernet.EncryptAndSignAtTime(msg, k.fernet(), time.Unix(ts, 0))
		if err != nil {
			t.Fatal(err)
		}
		rawRef, err := b64.AppendDecode(nil, ref)
		if err != nil {
			t.Fatal(err)
		}
		if got := fernetSeal(nil, &k, ts, ivOf(rawRef), msg); !bytes.Equal(got, rawRef) {
			t.Fatalf("%d bytes: our token differs from fernet-go's with the same IV", n)
		}
		ours, err := FernetSeal(nil, &k, ts, msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(ours) != fernetSize(n) {
			t.Fatalf("%d bytes: token of %d bytes, want %d", n, len(ours), fernetSize(n))
		}
		if got := fernet.VerifyAndDecrypt(b64.AppendEncode(nil, ours), 0, []*fernet.Key{k.fernet()}); !bytes.Equal(got, msg) {
			t.Fatalf("%d bytes: fernet-go does not open our token", n)
		}
		if got, gts, err := FernetOpen(&k, rawRef); err != nil || !bytes.Equal(got, msg) || gts != ts {
			t.Fatalf("%d bytes: we do not open fernet-go's token: %v", n, err)
		}
	}
}

// Two tokens of the same plaintext under the same key differ: each seal
// draws a fresh IV.
func TestFernetSealFreshIV(t *testing.T) {
	var k Key
	a, _ := FernetSeal(nil, &k, 1, []byte("same"))
	b, _ := FernetSeal(nil, &k, 1, []byte("same"))
	if bytes.Equal(a[9:25], b[9:25]) {
		t.Fatal("two seals used the same IV")
	}
	if _, err := FernetSealRand(nil, &k, 1, nil, bytes.NewReader(make([]byte, 15))); err == nil {
		t.Fatal("sealed with a short IV")
	}
}

// sealOverlapping seals msg placed at offset off of dst's spare capacity
// (dst has prefix bytes before it) and returns the token.
func sealOverlapping(k *Key, ts int64, iv *[16]byte, msg []byte, prefix, off int) []byte {
	buf := make([]byte, prefix+off+len(msg)+FernetOverhead+16)
	m := buf[prefix+off : prefix+off+len(msg)]
	copy(m, msg)
	return fernetSeal(buf[:prefix], k, ts, iv, m)[prefix:]
}

// A plaintext that lies in dst's spare capacity, where the token's
// plaintext goes (in place) or anywhere else, gives the same token as one
// that does not.
func TestFernetSealOverlapping(t *testing.T) {
	var k Key
	var iv [16]byte
	rand.Read(k[:])
	rand.Read(iv[:])
	for _, n := range []int{0, 1, 15, 16, 17, 100, 4096} {
		msg := make([]byte, n)
		rand.Read(msg)
		want := fernetSeal(nil, &k, 7, &iv, msg)
		for _, off := range []int{0, 1, 8, 24, FernetHeader, FernetHeader + 1, FernetHeader + 16, FernetHeader + 40} {
			if got := sealOverlapping(&k, 7, &iv, msg, 3, off); !bytes.Equal(got, want) {
				t.Fatalf("%d bytes at offset %d: token differs", n, off)
			}
		}
	}
}

func FuzzFernetSeal(f *testing.F) {
	f.Add([]byte("seed"), int64(1), uint8(FernetHeader))
	f.Add([]byte{}, int64(-1), uint8(0))
	f.Add(bytes.Repeat([]byte{16}, 16), int64(1<<40), uint8(3))
	var k Key
	rand.Read(k[:])
	f.Fuzz(func(t *testing.T, msg []byte, ts int64, off uint8) {
		ref, err := fernet.EncryptAndSignAtTime(msg, k.fernet(), time.Unix(ts, 0))
		if err != nil {
			t.Fatal(err)
		}
		rawRef, err := b64.AppendDecode(nil, ref)
		if err != nil {
			t.Fatal(err)
		}
		got := sealOverlapping(&k, ts, ivOf(rawRef), msg, 1, int(off))
		if !bytes.Equal(got, rawRef) {
			t.Fatalf("our token and fernet-go's differ (IV %x)", *ivOf(rawRef))
		}
		if p := fernet.VerifyAndDecrypt(b64.AppendEncode(nil, got), 0, []*fernet.Key{k.fernet()}); !bytes.Equal(p, msg) {
			t.Fatal("fernet-go does not open our token")
		}
		if p, pts, err := FernetOpen(&k, got); err != nil || !bytes.Equal(p, msg) || pts != ts {
			t.Fatalf("FernetOpen: %v", err)
		}
	})
}
