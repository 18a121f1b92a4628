package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
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
		"Hop/ghostcomm/1KiB":  {"ns/op": {140, 120, 130}, "allocs/op": {50, 50, 50}},
		"Hop/floor/1KiB":      {"ns/op": {100}, "allocs/op": {25}},
		"Hop/ghostcomm/1MiB":  {"ns/op": {110}, "allocs/op": {51}},
		"Hop/floor/1MiB":      {"ns/op": {100}},
		"Hop/sphinx":          {"ns/op": {330}},
		"Peel/ghostcomm/1MiB": {"ns/op": {1e6}},
	}
	ts := targets(r, nil)
	want := map[string]string{
		"peel one layer, 1 KiB: ghostcomm ÷ floor":                         "**met**",
		"whole hop, 1 KiB: ghostcomm ÷ floor":                              "**not met**",
		"whole hop, 1 MiB: ghostcomm ÷ floor":                              "**met**",
		"whole hop, 64 KiB: ghostcomm ÷ floor":                             "not measured",
		"allocations per hop (whole hop, 1 KiB): ghostcomm ÷ floor":        "**met**",
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
			if (v == "**not met**") != (tg.why != "") {
				t.Errorf("%s: %s with reason %q", tg.what, v, tg.why)
			}
		}
	}
	if seen != len(want) {
		t.Fatalf("found %d of %d targets", seen, len(want))
	}

	// Lightning-onion not reached: the reason weighs the hop's X25519
	// operations, when Parts measured them, against the room 2.3× leaves.
	r["Hop/sphinx"] = map[string][]float64{"ns/op": {240}}
	r["Parts/x25519-circl"] = map[string][]float64{"ns/op": {25}}
	r["Parts/x25519-keygen-circl"] = map[string][]float64{"ns/op": {17}}
	for _, tg := range targets(r, nil) {
		if tg.what != "whole hop, 1 KiB: lightning-onion ProcessOnionPacket ÷ ghostcomm" {
			continue
		}
		for _, want := range []string{"the floor itself reaches 2.40×", "take 92 ns", "would be 2.61×", "a hop has 12 ns for everything else", "the floor spends 8 ns on it and ghostcomm 38 ns"} {
			if tg.met || !strings.Contains(tg.why, want) {
				t.Errorf("lightning-onion target %+v: reason lacks %q", tg, want)
			}
		}
	}
}

// TestSealedTargets: issue 14's targets read the sealed benchmarks and
// compare in the right direction.
func TestSealedTargets(t *testing.T) {
	r := results{
		"Hop/sealed/2KiB":             {"ns/op": {30}},
		"Hop/ghostcomm/1KiB":          {"ns/op": {100}},
		"Hop/sphinx":                  {"ns/op": {150}},
		"Hop/sealed/32KiB":            {"ns/op": {50}},
		"Hop/ghostcomm/sealed32KiB":   {"ns/op": {100}},
		"Build/sealed/hops=5/2KiB":    {"ns/op": {90}},
		"Build/ghostcomm/hops=5/1KiB": {"ns/op": {100}},
		"Build/sphinx/hops=5":         {"ns/op": {300}},
	}
	want := map[string]string{
		"sealed relaying hop, 2 KiB ÷ today's hop, 1 KiB":                         "**met**",
		"sealed relaying hop, 2 KiB: lightning-onion ProcessOnionPacket ÷ sealed": "**not met**",
		"sealed relaying hop, 32 KiB ÷ today's hop on the same data (31995 B)":    "**not met**",
		"sealed build, 5 hops, 2 KiB ÷ today's 5-hop build, 1 KiB":                "**met**",
		"sealed build, 5 hops, 2 KiB: lightning-onion NewOnionPacket ÷ sealed":    "**met**",
	}
	seen := 0
	for _, tg := range targets(r, nil) {
		if v, ok := want[tg.what]; ok {
			seen++
			if got := verdict(tg); got != v {
				t.Errorf("%s: %s, want %s (%s)", tg.what, got, v, tg.measured)
			}
		}
	}
	if seen != len(want) {
		t.Fatalf("found %d of %d sealed targets", seen, len(want))
	}
}

func TestAllocationTarget(t *testing.T) {
	r := results{
		"Hop/ghostcomm/1KiB": {"allocs/op": {79}},
		"Hop/floor/1KiB":     {"allocs/op": {39}},
	}
	for _, tg := range targets(r, nil) {
		if tg.what == "allocations per hop (whole hop, 1 KiB): ghostcomm ÷ floor" {
			if verdict(tg) != "**not met**" {
				t.Fatalf("79 allocations against 39: %s", verdict(tg))
			}
			return
		}
	}
	t.Fatal("no allocation target")
}

func TestHistory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.tsv")
	rows, err := readHistory(path)
	if err != nil || rows != nil {
		t.Fatalf("missing history: %v, %v", rows, err)
	}
	r := parse(sample)
	r["Hop/ghostcomm/1KiB"] = map[string][]float64{"ns/op": {120}, "allocs/op": {50}}
	r["Hop/floor/1KiB"] = map[string][]float64{"ns/op": {100}, "allocs/op": {25}}
	m := machine{date: time.Date(2026, 12, 1, 1, 2, 0, 0, time.UTC), commit: "abc", loadBefore: "1.5 2 3", loadAfter: "2.5 1 1"}
	row := historyRow(m, r)
	want := map[string]string{"date": "2026-12-01 01:02", "whole hop 1 KiB ÷ floor": "1.20×", "allocs per hop, ghostcomm / floor": "50 / 25",
		"load (1 min) before / after": "1.5 / 2.5", "whole hop 1 MiB ÷ floor": "—", "network p99 ÷ p50": "1.66×"}
	for i, h := range historyHeader {
		if w, ok := want[h]; ok && row[i] != w {
			t.Errorf("%s: %q, want %q", h, row[i], w)
		}
	}
	var all [][]string
	for range historyShown + 2 {
		all = append(all, row)
	}
	all[len(all)-1] = slices.Clone(row)
	all[len(all)-1][1] = "newest"
	if err := writeHistory(path, all); err != nil {
		t.Fatal(err)
	}
	back, err := readHistory(path)
	if err != nil || !slices.EqualFunc(back, all, slices.Equal) {
		t.Fatalf("history read back differs: %v", err)
	}
	md := renderHistory(back)
	if n := strings.Count(md, "\n"); n != historyShown+2 {
		t.Fatalf("history table of %d lines, want header, rule and %d runs", n, historyShown)
	}
	if !strings.Contains(md, "| newest |") {
		t.Fatal("newest run not shown")
	}
	if err := os.WriteFile(path, []byte("date\tx\n1\t2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readHistory(path); err == nil {
		t.Fatal("a history line with the wrong number of fields was accepted")
	}
}

func TestTorFiguresRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tor.txt")
	if tr, err := readTor(path); err != nil || tr != nil {
		t.Fatalf("missing file: %v, %v", tr, err)
	}
	const prefix = "TestIntegrationTorOverhead/3_hops: "
	in := &torRun{date: "2026-12-01 01:40 UTC", commit: "abc1234", loadBefore: "1.0 2.0 3.0", loadAfter: "1.5 2.0 3.0", command: "go test",
		figures: []string{
			prefix + "3-hop round trip (1024 B, warm) ÷ sum of the three one-hop echoes of the legs' frames on the chain's own streams: 1.24× (median 160ms vs 50ms + 30ms + 48ms = 128ms; median of the per-round ratios 1.30×; frames, request/answer: hop 1 2228/339 B, hop 2 1108/339 B, hop 3 1012/339 B; 60 rounds)",
			prefix + "3-hop round trip (1024 B, warm) ÷ sum of the three one-hop pings on the chain's own streams: 1.60× (median 160ms vs 20ms + 40ms + 40ms = 100ms; median of the per-round ratios 1.50×; the hops' own compute: median 687µs a message; 60 rounds)",
			prefix + "3-hop round trip (32 B, warm) ÷ sum of the three one-hop echoes of the legs' frames on the chain's own streams: 1.05× (median 130ms vs 124ms)",
		}}
	if err := writeTor(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := readTor(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.date != in.date || out.commit != in.commit || out.loadBefore != in.loadBefore || out.loadAfter != in.loadAfter ||
		out.command != in.command || !slices.Equal(out.figures, in.figures) {
		t.Fatalf("read back %+v, wrote %+v", out, in)
	}
	tg, ok := torTarget(out)
	if !ok || tg.met || !strings.HasPrefix(tg.measured, "1.24×") || !strings.Contains(tg.measured, "per-round ratios: 1.30×") ||
		!strings.Contains(tg.why, "the sum of the echoes on its own streams by 32ms") || !strings.Contains(tg.why, "is 687µs") {
		t.Fatalf("target %+v, %v: want 1.24× against the echoes, the per-round ratio, not met, with a reason", tg, ok)
	}
	// The figure against the pings (the denominator of earlier runs: empty
	// frames, not the message's) is not the target.
	if _, ok := torTarget(&torRun{figures: in.figures[1:2]}); ok {
		t.Fatal("a target from the pings' figure")
	}
	// With the leg-by-leg figure, the reason says which legs agree with
	// their echo and which do not, from the figure's numbers; the pings'
	// leg-by-leg figure does not count.
	legs := prefix + "3-hop round trip (1024 B, warm), leg by leg, the chain's leg vs the echo on the stream it took: hop 1 95.593ms vs 95.857ms, hop 2 53.803ms vs 13.061ms, hop 3 16.505ms vs 48.871ms (medians)"
	pingLegs := prefix + "3-hop round trip (1024 B, warm), leg by leg, the chain's leg vs the ping on the stream it took: hop 1 95.593ms vs 5ms, hop 2 53.803ms vs 5ms, hop 3 16.505ms vs 5ms (medians)"
	tg, _ = torTarget(&torRun{figures: append(slices.Clone(in.figures), legs)})
	for _, want := range []string{"hop 2 53.8ms vs 13.1ms", "within 3ms of each other on leg 1 (-300µs)", "slower than the echo on the same stream by more than a hop's compute and framing could make on leg 2 (+41ms)",
		"faster than the echo on the same stream on leg 3 (-32ms)", "tens of milliseconds apart"} {
		if !strings.Contains(tg.why, want) {
			t.Fatalf("reason %q lacks %q", tg.why, want)
		}
	}
	// With the raw chain, the reason gives what tor itself made of it.
	chain := prefix + "3-hop round trip (1024 B, warm) ÷ a raw chain of three echo servers on the same tors (2 KiB each way, each answering once the next has, in the same rounds): 1.10× (160ms vs 145.5ms; the raw chain ÷ the sum of the pings on the chain's own streams: 1.14×)"
	one := "TestIntegrationTorOverhead/throughput: 1 hop (1024 B, warm), one stream: the message's leg (round trip less the hop's HopEvent.Total) ÷ the echo of its frames on the same stream, in the same rounds: 0.95× (medians 86.706ms vs 90.964ms; ÷ the ping on the same stream: 1.20×, 70ms; 20 rounds)"
	tg, _ = torTarget(&torRun{figures: append(slices.Clone(in.figures), chain, one)})
	if !strings.Contains(tg.why, "145.5ms, 1.14× the sum of the same pings, and the round trip is 1.10× that raw chain") ||
		!strings.Contains(tg.why, "the echo of its frames on the same stream: 0.95× (86.706ms vs 90.964ms)") {
		t.Fatalf("reason %q lacks the raw chain or the one-hop figure", tg.why)
	}
	met := &torRun{figures: slices.Clone(in.figures[1:])} // no 1 KiB echo figure: no target
	if _, ok := torTarget(met); ok {
		t.Fatal("a target from a run without the 1 KiB echo figure")
	}
	met.figures[1] = strings.Replace(met.figures[1], "32 B", "1024 B", 1)
	if tg, ok := torTarget(met); !ok || !tg.met || strings.Contains(tg.measured, "leg by leg") {
		t.Fatalf("1.05× should meet ≤ 1.15×: %+v", tg)
	}
	if tg, _ := torTarget(&torRun{figures: append(slices.Clone(met.figures), pingLegs)}); !tg.met || strings.Contains(tg.measured, "leg by leg") {
		t.Fatalf("met, with only the pings' legs apart: %+v", tg)
	}
	// Met, but with legs apart from their echoes: the cell says so.
	if tg, _ := torTarget(&torRun{figures: append(slices.Clone(met.figures), legs)}); !tg.met || !strings.Contains(tg.measured, "leg by leg the chain and the echoes") {
		t.Fatalf("met with legs apart: %+v", tg)
	}
	var b strings.Builder
	renderTor(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, path, out)
	if !strings.Contains(b.String(), "abc1234") || !strings.Contains(b.String(), "- 3-hop round trip (32 B") {
		t.Fatalf("rendered:\n%s", b.String())
	}

	// Two runs, one with loopback's acknowledgements immediate and one
	// with them delayed: both are written and read back, the target is the
	// immediate run's and gives the other's ratio and raw chains beside it.
	const acksPrefix = "TestIntegrationTorOverhead: loopback TCP acknowledgements: "
	chainAt := func(r string) string {
		return prefix + "3-hop round trip (1024 B, warm) ÷ a raw chain of three echo servers on the same tors (2 KiB each way, each answering once the next has, in the same rounds): 1.00× (60ms vs 60ms; the raw chain ÷ the sum of the pings on the chain's own streams: " + r + "×)"
	}
	quick := &torRun{date: "2026-12-01 11:40 UTC", commit: "def5678", loadBefore: "1", loadAfter: "2", command: "go test",
		figures: []string{acksPrefix + "immediate (the route to 127.0.0.1 has quickack 1)",
			prefix + "3-hop round trip (1024 B, warm) ÷ sum of the three one-hop echoes of the legs' frames on the chain's own streams: 1.02× (median 60ms vs 20ms + 20ms + 18.8ms = 58.8ms; median of the per-round ratios 1.01×; 60 rounds)",
			chainAt("1.10")},
		other: &torRun{date: "2026-12-01 11:30 UTC", commit: "def5678", loadBefore: "3", loadAfter: "4", command: "go test",
			figures: append([]string{acksPrefix + "delayed (the kernel's default: up to 40 ms)"}, append(slices.Clone(in.figures), chainAt("1.72"))...)}}
	if err := writeTor(path, quick); err != nil {
		t.Fatal(err)
	}
	out, err = readTor(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.other == nil || out.acks() != "immediate" || out.other.acks() != "delayed" || !slices.Equal(out.figures, quick.figures) ||
		!slices.Equal(out.other.figures, quick.other.figures) || out.other.date != quick.other.date || out.other.loadAfter != "4" {
		t.Fatalf("read back %+v (other %+v), wrote %+v", out, out.other, quick)
	}
	tg, ok = torTarget(out)
	for _, want := range []string{"loopback's TCP acknowledgements immediate", "with loopback's acknowledgements delayed, in a run of the same command right beside it: 1.24×",
		"tor's own raw chain there 1.72× the sum of its pings, against 1.10× here"} {
		if !ok || !tg.met || !strings.HasPrefix(tg.measured, "1.02×") || !strings.Contains(tg.measured, want) {
			t.Fatalf("target %+v: want met at 1.02× and %q", tg, want)
		}
	}
	b.Reset()
	renderTor(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, path, out)
	for _, want := range []string{"| loopback's TCP acknowledgements | immediate |", "### The same test with loopback's TCP acknowledgements delayed", "| loopback's TCP acknowledgements | delayed |", "- 3-hop round trip (32 B"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("rendered lacks %q:\n%s", want, b.String())
		}
	}
	// A file with a third run, or a second "# other run", is refused
	// rather than read as something it is not.
	b2, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append(b2, "# other run\n# date: x\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readTor(path); err == nil {
		t.Fatal("a file with three runs read without error")
	}
	// Without a second run, the section says why.
	out.other, out.noOther = nil, "switching loopback's acknowledgements needs root"
	if err := writeTor(path, out); err != nil {
		t.Fatal(err)
	}
	if out, err = readTor(path); err != nil || out.noOther != "switching loopback's acknowledgements needs root" {
		t.Fatalf("no other run read back as %+v, %v", out, err)
	}
	b.Reset()
	renderTor(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, path, out)
	if !strings.Contains(b.String(), "No second run with loopback's acknowledgements switched the other way: switching loopback's acknowledgements needs root.") {
		t.Fatalf("rendered:\n%s", b.String())
	}
}

// The hand-written sections of the report replaced are kept, markers
// included, and a broken marker stops the report instead of losing text.
func TestKeptSections(t *testing.T) {
	a := keptBegin + "\n## Remote nodes\n\nfigures\n" + keptEnd
	b := keptBegin + "\nmore\n" + keptEnd
	got, err := keptSections("# Performance\n\n" + a + "\n\n## All benchmarks\n\n" + b + "\n")
	if err != nil || got != a+"\n\n"+b+"\n\n" {
		t.Fatalf("kept %q, %v", got, err)
	}
	if got, err := keptSections("# Performance\n"); err != nil || got != "" {
		t.Fatalf("no section: %q, %v", got, err)
	}
	for _, bad := range []string{keptBegin + "\nno end", "no begin\n" + keptEnd, keptBegin + keptBegin + keptEnd} {
		if _, err := keptSections(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	// render puts them before "All benchmarks".
	doc := render(options{kept: a + "\n\n"}, machine{}, nil, results{}, results{}, nil, nil)
	if i, j := strings.Index(doc, a), strings.Index(doc, "## All benchmarks"); i < 0 || j < i {
		t.Fatalf("kept section at %d, All benchmarks at %d", i, j)
	}
}

// The hand-written sections of docs/PERFORMANCE.md are well marked, so
// that the next report keeps them.
func TestPerformanceDocKeptSections(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "PERFORMANCE.md"))
	if err != nil {
		t.Skip(err)
	}
	kept, err := keptSections(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(kept, "## Remote nodes") || !strings.Contains(kept, "TestRemote255") {
		t.Fatalf("docs/PERFORMANCE.md keeps no remote-nodes section:\n%s", kept)
	}
}

// p99 ÷ p50 is taken within each run, then medianed: not the median p99
// over the median p50, which may come from different runs.
func TestTailRatioPerRun(t *testing.T) {
	net := map[string][]float64{"msg/s": {100, 100, 100}, "p99-ms": {30, 100, 45}, "p50-ms": {10, 50, 30}}
	r := results{"Network/senders=64/network": net, "Network/senders=64/crypto-only": {"msg/s": {100, 100, 100}}}
	// Ratios of each run: 3, 2, 1.5; the ratio of the medians would be 45 / 30 = 1.5.
	for _, tg := range targets(r, nil) {
		if tg.what == "same benchmark: p99 ÷ p50 round trip" {
			if !strings.HasPrefix(tg.measured, "2.00×") || verdict(tg) != "**not met**" {
				t.Fatalf("measured %q, %s", tg.measured, verdict(tg))
			}
			return
		}
	}
	t.Fatal("no p99 ÷ p50 target")
}

func TestTailRatioPerRunInHistory(t *testing.T) {
	r := results{"Network/senders=64/network": {"p99-ms": {30, 100, 45}, "p50-ms": {10, 50, 30}}}
	row := historyRow(machine{date: time.Now()}, r)
	i := slices.Index(historyHeader, "network p99 ÷ p50")
	if row[i] != "2.00×" {
		t.Fatalf("history p99 ÷ p50 %q, want 2.00×", row[i])
	}
}

// The socket floor's tail is taken as ghostcomm's is, within each run then
// medianed, and the tail target says whether the floor itself meets it.
func TestSocketFloorTail(t *testing.T) {
	for _, c := range []struct {
		floorP99, floorP50 []float64
		measured, why      string
	}{
		// Ratios of each run: 3, 2, 1.5 (median 2); the ratio of the medians would be 1.5.
		{[]float64{30, 100, 45}, []float64{10, 50, 30}, "; socket floor 2.00× in the same runs", "alone give a tail over the target"},
		// Ratios of each run: 1.2, 1.3, 3 (median 1.3); the ratio of the medians would be 39 / 20 = 1.95.
		{[]float64{12, 39, 60}, []float64{10, 30, 20}, "; socket floor 1.30× in the same runs", "the floor meets the target"},
	} {
		r := results{
			"Network/senders=64/network":      {"msg/s": {100, 100, 100}, "p99-ms": {30, 100, 45}, "p50-ms": {10, 50, 30}},
			"Network/senders=64/crypto-only":  {"msg/s": {100, 100, 100}},
			"Network/senders=64/socket-floor": {"p99-ms": c.floorP99, "p50-ms": c.floorP50},
		}
		tg := findTarget(t, r, "same benchmark: p99 ÷ p50 round trip")
		if !strings.HasSuffix(tg.measured, c.measured) || !strings.Contains(tg.why, c.why) {
			t.Errorf("measured %q, why %q; want %q and %q", tg.measured, tg.why, c.measured, c.why)
		}
	}
	// Without a socket floor in the run, the target says nothing of it.
	r := results{"Network/senders=64/network": {"p99-ms": {30}, "p50-ms": {10}}}
	for _, x := range targets(r, nil) {
		if x.what == "same benchmark: p99 ÷ p50 round trip" && (strings.Contains(x.measured, "floor") || strings.Contains(x.why, "floor")) {
			t.Errorf("no floor was run, but: %q / %q", x.measured, x.why)
		}
	}
}

// A figure that rounds to its goal without reaching it says so with one
// decimal more: 84.94% of a ≥ 85% goal is not "85%", not met.
func TestPctAgainstGoal(t *testing.T) {
	for _, c := range []struct {
		v    float64
		want string
	}{{0.8494, "84.9%"}, {0.85, "85%"}, {0.8551, "86%"}, {0.8449, "84%"}, {0.83, "83%"}} {
		if got := fmtPctAgainst(c.v, 0.85); got != c.want {
			t.Errorf("fmtPctAgainst(%v, 0.85) = %q; want %q", c.v, got, c.want)
		}
	}
}

// A run with the network through a Client of bounded MaxInFlight shows its
// tail beside the default's, in the target and the network table, and says
// whether it meets the target; the verdict stays the default's.
func TestBoundedTail(t *testing.T) {
	for _, c := range []struct {
		p99, p50 []float64
		measured string
		why      string
	}{
		// Ratios of each run: 1.3, 1.2, 1.5 (median 1.3).
		{[]float64{13, 12, 30}, []float64{10, 10, 20}, "; with ClientConfig.MaxInFlight 16, 1.30× (medians 13.0 vs 10.0 ms) at 90% of the unbounded client's msg/s", "which meets the target; the verdict is the default configuration's"},
		// Ratios of each run: 1.6, 1.5, 1.7 (median 1.6).
		{[]float64{16, 15, 34}, []float64{10, 10, 20}, "; with ClientConfig.MaxInFlight 16, 1.60× (medians 16.0 vs 10.0 ms) at 90% of the unbounded client's msg/s", "closer to the target but not at it"},
	} {
		r := results{
			"Network/senders=64/network":             {"msg/s": {100, 100, 100}, "p99-ms": {30, 100, 45}, "p50-ms": {10, 50, 30}},
			"Network/senders=64/crypto-only":         {"msg/s": {100, 100, 100}},
			"Network/senders=64/network-inflight=16": {"msg/s": {90, 90, 90}, "p99-ms": c.p99, "p50-ms": c.p50},
		}
		tg := findTarget(t, r, "same benchmark: p99 ÷ p50 round trip")
		if tg.met || !strings.HasSuffix(tg.measured, c.measured) || !strings.Contains(tg.why, c.why) {
			t.Errorf("met %v, measured %q, why %q; want not met, %q and %q", tg.met, tg.measured, tg.why, c.measured, c.why)
		}
		var b strings.Builder
		fmt.Fprint(&b, render(options{}, machine{}, nil, r, nil, nil, nil))
		if !strings.Contains(b.String(), "| 64, `MaxInFlight` 16 | 90 |") {
			t.Errorf("no MaxInFlight row in the network table")
		}
	}
	// Without the bounded benchmark, nothing is said of it.
	r := results{"Network/senders=64/network": {"p99-ms": {30}, "p50-ms": {10}}}
	for _, x := range targets(r, nil) {
		if strings.Contains(x.measured, "MaxInFlight") || strings.Contains(x.why, "MaxInFlight") {
			t.Errorf("no bounded run, but: %q / %q", x.measured, x.why)
		}
	}
	if strings.Contains(render(options{}, machine{}, nil, r, nil, nil, nil), "`MaxInFlight` ") {
		t.Error("no bounded run, but a table row")
	}
}

// The network's throughput target shows the socket floor's share of the
// same bound, and says when the floor alone misses the target.
func TestNetworkSocketFloorShare(t *testing.T) {
	for _, c := range []struct {
		floor         []float64
		measured, why string
		alone         bool
	}{
		{[]float64{77, 78, 76}, "; socket floor 77% of the bound in the same runs", "reached 77% of the bound in the same runs, and ghostcomm 91% of the socket floor", true},
		{[]float64{90, 90, 90}, "; socket floor 90% of the bound in the same runs", "reached 90% of the bound in the same runs, and ghostcomm 78% of the socket floor", false},
	} {
		r := results{
			"Network/senders=64/network":      {"msg/s": {70, 70, 70}},
			"Network/senders=64/crypto-only":  {"msg/s": {100, 100, 100}},
			"Network/senders=64/socket-floor": {"msg/s": c.floor},
		}
		tg := findTarget(t, r, "in-process network")
		if tg.met || !strings.HasSuffix(tg.measured, c.measured) || !strings.Contains(tg.why, c.why) ||
			strings.Contains(tg.why, "alone cost more than the target leaves") != c.alone {
			t.Errorf("met %v, measured %q, why %q", tg.met, tg.measured, tg.why)
		}
	}
}

// findTarget returns the target of r whose description starts with what.
func findTarget(t *testing.T, r results, what string) target {
	t.Helper()
	for _, x := range targets(r, nil) {
		if strings.HasPrefix(x.what, what) {
			return x
		}
	}
	t.Fatalf("no target %q", what)
	return target{}
}
