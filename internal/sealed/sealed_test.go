package sealed_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/ghostcomm/ghostcomm/internal/sealed"
)

var classes = []sealed.Class{sealed.Small, sealed.Large}
var modes = []sealed.Mode{sealed.Relay, sealed.Chain}

// TestFixedSize: for every class, mode and route length 1..8, the packet,
// every hop's output and the reply are exactly the class's size, and the
// data and the answer arrive intact.
func TestFixedSize(t *testing.T) {
	for _, c := range classes {
		for _, m := range modes {
			for n := 1; n <= sealed.MaxHops; n++ {
				t.Run(fmt.Sprintf("class=%d/mode=%d/hops=%d", c, m, n), func(t *testing.T) {
					nw := newNetwork(t, "size", n)
					data := bytes.Repeat([]byte{byte(n)}, c.Capacity()-n)
					pkt, sent, err := sealed.Build(newDetRand("size"), c, m, nw.route, data)
					if err != nil {
						t.Fatal(err)
					}
					if len(pkt) != c.Size() {
						t.Fatalf("packet of %d bytes", len(pkt))
					}
					rs, got := nw.forward(t, pkt, nil)
					if len(pkt) != c.Size() {
						t.Fatalf("exit's packet of %d bytes", len(pkt))
					}
					if !bytes.Equal(got, data) {
						t.Fatal("exit read other data")
					}
					reply := make([]byte, c.Size())
					body := bytes.Repeat([]byte{0xa5}, c.ReplyCapacity())
					if err := rs[n-1].Answer(reply, body); err != nil {
						t.Fatal(err)
					}
					back(t, rs, n, reply)
					if len(reply) != c.Size() {
						t.Fatalf("reply of %d bytes", len(reply))
					}
					rep, err := sent.OpenReply(reply)
					if err != nil {
						t.Fatal(err)
					}
					if rep.Depth != n || rep.Type != sealed.Answer || !bytes.Equal(rep.Body, body) {
						t.Fatalf("reply depth %d type %d, body equal %v", rep.Depth, rep.Type, bytes.Equal(rep.Body, body))
					}
				})
			}
		}
	}
}
