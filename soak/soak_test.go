package soak

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestShortSoak runs a short soak with faults and fast rotations: every
// message must end verified or with an error that names the faulted node
// inside that fault's window; none lost, none unverified. Counts only, never
// timings.
func TestShortSoak(t *testing.T) {
	n := 5000
	if testing.Short() {
		n = 600
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{
		Messages: n, Senders: 16, Clients: 3,
		Period: 10 * time.Second, Rotate: time.Second,
		Faults: true, FaultGap: 150 * time.Millisecond, FaultHold: 400 * time.Millisecond, Seed: 7,
		MinRotations: 2, MinFaults: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Summarize()
	t.Logf("%d messages: %d verified, %d errors (%d unexplained), %d lost, %d unverified; faults %v; %d rotations; %v",
		s.Total, s.Verified, s.Errors, s.Unexplained, s.Lost, s.Unverified, s.FaultCount, len(res.Rotations), res.Elapsed)
	for _, r := range s.ErrorRows {
		t.Logf("  %s %s %s names faulted node: %v: %d", r.Window, r.Class, r.Sentinel, r.NamesFaulted, r.Count)
	}
	if s.Total < n || s.Verified+s.Unverified+s.Errors+s.Lost != s.Total {
		t.Fatalf("%d records for at least %d messages (%d+%d+%d+%d)", s.Total, n, s.Verified, s.Unverified, s.Errors, s.Lost)
	}
	if len(res.Faults) < 3 || len(res.Rotations) < 2 {
		t.Errorf("the run saw %d faults and %d rotations, want at least 3 and 2", len(res.Faults), len(res.Rotations))
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
}

// TestCheckCatches: the check that the soak relies on fails for a lost
// message, an unverified answer, an error outside every fault window and an
// error inside one that names another node.
func TestCheckCatches(t *testing.T) {
	faults := []Fault{{Kind: Partition, Node: "aaaa", Start: 10 * time.Second, End: 11 * time.Second}}
	ok := Record{Start: time.Second, End: 2 * time.Second, Outcome: Verified}
	named := Record{Start: 10 * time.Second, End: 12 * time.Second, Outcome: Failed, Hop: 2, Onion: "aaaa.onion:80", Class: "refetch"}
	for name, bad := range map[string]Record{
		"lost":          {Start: time.Second, End: 21 * time.Second, Outcome: Lost},
		"unverified":    {Start: time.Second, End: 2 * time.Second, Outcome: Unverified},
		"outside":       {Start: time.Second, End: 2 * time.Second, Outcome: Failed, Hop: 1, Onion: "aaaa.onion:80"},
		"other node":    {Start: 10 * time.Second, End: 11 * time.Second, Outcome: Failed, Hop: 1, Onion: "bbbb.onion:80"},
		"no hop inside": {Start: 10 * time.Second, End: 11 * time.Second, Outcome: Failed},
	} {
		res := &Result{Records: []Record{ok, named, bad}, Faults: faults}
		if err := res.Summarize().Check(); err == nil {
			t.Errorf("%s: Check passed", name)
		}
	}
	res := &Result{Records: []Record{ok, named}, Faults: faults}
	if err := res.Summarize().Check(); err != nil {
		t.Errorf("a verified message and an explained error: %v", err)
	}
	// An error is put in the window of the latest fault that hit its node,
	// not of an earlier fault whose window it also overlaps.
	res.Faults = []Fault{{Kind: Sever, Node: "aaaa", Start: 9 * time.Second, End: 9 * time.Second}, faults[0]}
	res.Config.Settle = 3 * time.Second
	if w := res.Window(named); w != string(Partition) {
		t.Errorf("window of an error after a sever and a partition of its node: %s, want partition", w)
	}
}

// TestReportAndPlot writes the report and the plot of a tiny run.
func TestReportAndPlot(t *testing.T) {
	res := &Result{
		Config: Config{Messages: 3, Senders: 1, Clients: 1, Nodes: 3, Period: time.Second, Rotate: time.Second, Deadline: time.Second, FaultGap: time.Second},
		Records: []Record{
			{Start: 0, End: 5 * time.Millisecond, Outcome: Verified},
			{Start: time.Second, End: 1100 * time.Millisecond, Outcome: Failed, Hop: 1, Onion: "aaaa.onion:80", Class: "refetch", Sentinel: "ErrHopUnreachable"},
			{Start: 6 * time.Second, End: 6*time.Second + 7*time.Millisecond, Outcome: Verified},
		},
		Faults:    []Fault{{Kind: Partition, Node: "aaaa", Start: 900 * time.Millisecond, End: 1200 * time.Millisecond}},
		Rotations: []time.Duration{4500 * time.Millisecond},
		Elapsed:   7 * time.Second,
	}
	var b bytes.Buffer
	res.WriteMarkdown(&b, "title", "cmd", "machine", "plot.png")
	md := b.String()
	for _, want := range []string{"| messages | 3 |", "| verified answers | 2 |", "| partition | refetch | ErrHopUnreachable | yes | 1 |", "| ≤5 s after a rotation | 1 | 0 | 7.0 ms", "![latency over time](plot.png)", "| all: ≤5s after a rotation | 1 | 7.0 ms | 7.0 ms | 7.0 ms | 1.40 |", "| all: the rest | 1 | 5.0 ms | 5.0 ms | 5.0 ms | 1.00 |",
		"| outside fault windows: ≤5s after a rotation | 1 | 7.0 ms | 7.0 ms | 7.0 ms | 1.40 |", "| outside fault windows: the rest | 1 | 5.0 ms | 5.0 ms | 5.0 ms | 1.00 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	path := filepath.Join(t.TempDir(), "plot.png")
	if err := res.Plot(path, "test"); err != nil {
		t.Fatal(err)
	}
	png, err := os.ReadFile(path)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("plot: %d bytes, %v", len(png), err)
	}
}

// TestAllNodesFault: a fault of the whole network explains an error naming
// any node or the Primary inside its window, but not one that names
// nothing, nor one outside the window.
func TestAllNodesFault(t *testing.T) {
	faults := []Fault{{Kind: RelayKill, Node: AllNodes, Start: 10 * time.Second, End: 11 * time.Second}}
	in := Record{Start: 10 * time.Second, End: 12 * time.Second, Outcome: Failed, Hop: 1, Onion: "bbbb.onion:80"}
	if _, ok := in.Explained(faults, time.Second); !ok {
		t.Errorf("%v not explained by a fault of every node", in)
	}
	for name, r := range map[string]Record{
		"names nothing": {Start: 10 * time.Second, End: 12 * time.Second, Outcome: Failed},
		"after":         {Start: 13 * time.Second, End: 14 * time.Second, Outcome: Failed, Hop: 1, Onion: "bbbb.onion:80"},
	} {
		if _, ok := r.Explained(faults, time.Second); ok {
			t.Errorf("%s: %v explained", name, r)
		}
	}
}
