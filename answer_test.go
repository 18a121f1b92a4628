package ghostcomm

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ghostcomm/ghostcomm/internal/layer"
	"github.com/ghostcomm/ghostcomm/internal/wire"
)

// The client opens only answers padded exactly as layer.SealAnswer pads
// them. A token that opens with one of the message's keys but carries
// another encoding is that hop's error, matching ErrMalformed.
func TestOpenReplyRefusesBadPadding(t *testing.T) {
	var hops []*layer.PublicKey
	for range 2 {
		kp, err := layer.GenerateKeyPair("hop")
		if err != nil {
			t.Fatal(err)
		}
		hops = append(hops, &kp.PublicKey)
	}
	o, err := layer.Build(hops, []byte{1}, 1700000000, 0, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	route := make([]NodeInfo, 2)
	c := &Client{}
	rk := o.Keys[1].Derive(layer.PurposeReply)
	ek := o.Keys[0].Derive(layer.PurposeError)
	seal := func(k *layer.Key, p []byte) []byte {
		tok, err := layer.FernetSeal(nil, k, 1700000000, p)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	pad := func(msg []byte, f func([]byte)) []byte {
		p, err := layer.PadAnswer(msg)
		if err != nil {
			t.Fatal(err)
		}
		f(p)
		return p
	}
	keep := func([]byte) {}

	// Well-formed answers open.
	result := []byte("the result")
	if out, err := c.openReply(o, route, seal(&rk, pad(result, keep))); err != nil || !bytes.Equal(out, result) {
		t.Fatalf("result: %q, %v", out, err)
	}
	report := []byte{byte(wire.ReportProcessing), 0}
	_, err = c.openReply(o, route, seal(&ek, pad(report, keep)))
	var he *HopError
	if !errors.As(err, &he) || he.Hop != 1 || !errors.Is(err, ErrProcessing) {
		t.Fatalf("report: %v", err)
	}

	bad := map[string]func(msg []byte) []byte{
		"unpadded": func(msg []byte) []byte { return msg },
		"nonzero padding": func(msg []byte) []byte {
			return pad(msg, func(p []byte) { p[len(p)-1] = 1 })
		},
		"length overruns": func(msg []byte) []byte {
			return pad(msg, func(p []byte) { binary.BigEndian.PutUint32(p, uint32(len(p))) })
		},
		"larger bucket": func(msg []byte) []byte {
			return append(pad(msg, keep), make([]byte, 1024)...)
		},
	}
	for name, f := range bad {
		for _, tc := range []struct {
			who string
			key *layer.Key
			msg []byte
			hop int
		}{{"result", &rk, result, 2}, {"report", &ek, report, 1}} {
			_, err := c.openReply(o, route, seal(tc.key, f(tc.msg)))
			var he *HopError
			if !errors.As(err, &he) || he.Hop != tc.hop || !errors.Is(err, ErrMalformed) {
				t.Errorf("%s with %s: got %v, want hop %d's ErrMalformed", tc.who, name, err, tc.hop)
			}
		}
	}
}

// With the default frame limit, the last hop answers results of up to 3 MiB:
// the padded reply of 3 MiB fits a frame, that of one byte more does not.
func TestDefaultFrameLimitHoldsThreeMiBResult(t *testing.T) {
	if got := layer.AnswerSize(3 << 20); got > DefaultMaxFrameSize {
		t.Fatalf("a 3 MiB result's reply is %d bytes, over the %d-byte frame limit", got, DefaultMaxFrameSize)
	}
	if got := layer.AnswerSize(3<<20 + 1); got <= DefaultMaxFrameSize {
		t.Fatalf("a result of 3 MiB + 1 has a reply of %d bytes, within the frame limit", got)
	}
}
