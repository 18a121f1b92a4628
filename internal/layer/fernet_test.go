package layer

import (
	"bytes"
	"crypto/rand"
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
