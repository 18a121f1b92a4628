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
