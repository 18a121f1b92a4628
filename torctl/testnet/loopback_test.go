package testnet

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

const ipLocal = `local 127.0.0.0/8 dev lo proto kernel scope host src 127.0.0.1 
local 127.0.0.1 dev lo proto kernel scope host src 127.0.0.1 quickack 1 
broadcast 127.255.255.255 dev lo proto kernel scope link src 127.0.0.1 
local 192.0.2.2 dev eth0 proto kernel scope host src 192.0.2.2 
`

func TestParseLoopbackRoutes(t *testing.T) {
	rs, err := parseLoopbackRoutes([]byte(ipLocal))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].fields[1] != "127.0.0.0/8" || rs[1].fields[1] != "127.0.0.1" {
		t.Fatalf("routes %v, want 127.0.0.0/8 then 127.0.0.1", rs)
	}
	if rs[0].quickAck || !rs[1].quickAck {
		t.Fatalf("quickack %v %v, want false true", rs[0].quickAck, rs[1].quickAck)
	}
	// The most specific route decides, whichever order ip prints them in.
	lines := strings.Split(ipLocal, "\n")
	rs, err = parseLoopbackRoutes([]byte(lines[1] + "\n" + lines[0]))
	if err != nil || len(rs) != 2 || rs[1].fields[1] != "127.0.0.1" {
		t.Fatalf("reversed: %v, %v", rs, err)
	}
	for _, bad := range []string{"", "broadcast 127.255.255.255 dev lo\n", "local 127.0.0.1 dev lo quickack\n"} {
		if _, err := parseLoopbackRoutes([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestRouteWithQuickAck(t *testing.T) {
	r := route{fields: strings.Fields("local 127.0.0.1 dev lo proto kernel scope host src 127.0.0.1 quickack 1")}
	if got, want := r.with(false), strings.Fields("local 127.0.0.1 dev lo proto kernel scope host src 127.0.0.1"); !slices.Equal(got, want) {
		t.Errorf("off: %v, want %v", got, want)
	}
	if got, want := r.with(true), r.fields; !slices.Equal(got, want) {
		t.Errorf("on: %v, want %v", got, want)
	}
}

// TestSetLoopbackQuickAck flips the machine's loopback routes and puts them
// back; it needs root and ip. Either setting only changes when loopback
// connections acknowledge, never whether they work.
func TestSetLoopbackQuickAck(t *testing.T) {
	was, err := LoopbackQuickAck()
	if errors.Is(err, ErrNoIP) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Skip("changing a route needs root")
	}
	restore, err := SetLoopbackQuickAck(!was)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := restore(); err != nil {
			t.Fatal(err)
		}
		if now, err := LoopbackQuickAck(); err != nil || now != was {
			t.Fatalf("after restore: quickack %v, %v; want %v", now, err, was)
		}
	}()
	if now, err := LoopbackQuickAck(); err != nil || now != !was {
		t.Fatalf("quickack %v, %v; want %v", now, err, !was)
	}
}

func FuzzParseLoopbackRoutes(f *testing.F) {
	f.Add([]byte(ipLocal))
	f.Add([]byte("local 127.0.0.1 quickack"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := parseLoopbackRoutes(b)
		if err != nil {
			return
		}
		for _, r := range rs {
			if w := r.with(true); len(w) < 2 || w[0] != "local" || w[len(w)-1] != "1" {
				t.Fatalf("with(true) = %v", w)
			}
		}
	})
}
