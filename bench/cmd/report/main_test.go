package main

import (
	"math"
	"testing"
)

const sample = `goos: linux
BenchmarkPeel/ghostcomm/1KiB-2   	   9751	     63010 ns/op	  16.25 MB/s	   13008 B/op	      69 allocs/op
BenchmarkPeel/ghostcomm/1KiB-2   	   9699	     61000 ns/op	  16.79 MB/s	   13008 B/op	      69 allocs/op
BenchmarkPeel/ghostcomm/1KiB-2   	   9758	     70000 ns/op	  14.63 MB/s	   13008 B/op	      69 allocs/op
BenchmarkNetwork/senders=64/network-2 	 2000	 600000 ns/op	 1647 msg/s	 35.33 p50-ms	 58.58 p99-ms	 100 B/op	 10 allocs/op
BenchmarkPeel/ghostcomm/1MiB     	    232	   2550234 ns/op
--- FAIL: not a result line
PASS
`

func TestParseAndMedian(t *testing.T) {
	r := parse(sample)
	if got := r.get("Peel/ghostcomm/1KiB", "ns/op"); got != 63010 {
		t.Fatalf("median ns/op %v, want 63010", got)
	}
	if got := len(r["Peel/ghostcomm/1KiB"]["allocs/op"]); got != 3 {
		t.Fatalf("%d allocs samples, want 3", got)
	}
	if got := r.get("Network/senders=64/network", "p99-ms"); got != 58.58 {
		t.Fatalf("p99 %v", got)
	}
	// -cpu 1 lines carry no -N suffix.
	if got := r.get("Peel/ghostcomm/1MiB", "ns/op"); got != 2550234 {
		t.Fatalf("1MiB %v", got)
	}
	if !math.IsNaN(r.get("Peel/floor/1KiB", "ns/op")) {
		t.Fatal("a benchmark that did not run has a value")
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Fatalf("median of an even count %v", m)
	}
}

func TestTargetsFromResults(t *testing.T) {
	r := results{
		"Peel/ghostcomm/1KiB": {"ns/op": {120}},
		"Peel/floor/1KiB":     {"ns/op": {100}},
		"Hop/ghostcomm/1KiB":  {"ns/op": {140}},
		"Hop/floor/1KiB":      {"ns/op": {100}},
		"Hop/sphinx":          {"ns/op": {300}},
		"Peel/ghostcomm/1MiB": {"ns/op": {1e6}},
	}
	ts := targets(r, nil)
	want := map[string]string{
		"peel one layer, 1 KiB: ghostcomm ÷ floor":                         "**met**",
		"whole hop, 1 KiB: ghostcomm ÷ floor":                              "**not met**",
		"whole hop, 1 KiB: lightning-onion ProcessOnionPacket ÷ ghostcomm": "**met**",
		"build 5 hops, 1 KiB: ghostcomm ÷ floor":                           "not measured",
		"peel 1 MiB, throughput per core":                                  "**met**",
	}
	seen := 0
	for _, tg := range ts {
		if v, ok := want[tg.what]; ok {
			seen++
			if got := verdict(tg); got != v {
				t.Errorf("%s: %s, want %s (%s)", tg.what, got, v, tg.measured)
			}
		}
	}
	if seen != len(want) {
		t.Fatalf("found %d of %d targets", seen, len(want))
	}
}
