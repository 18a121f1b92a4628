package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// The history file keeps the key figures of each run, one tab-separated
// line per run after a header line, so that the report can show them side
// by side and a regression shows.
var historyHeader = []string{
	"date", "commit", "load (1 min) before / after",
	"whole hop 1 KiB ÷ floor", "whole hop 64 KiB ÷ floor", "whole hop 1 MiB ÷ floor",
	"build 3 hops 1 MiB ÷ floor", "build 5 hops 1 MiB ÷ floor",
	"allocs per hop, ghostcomm / floor", "network ÷ crypto-only bound (64 senders)", "network p99 ÷ p50",
	"lightning-onion ÷ whole hop 1 KiB",
}

// historyShown is how many runs the report shows, the newest last.
const historyShown = 10

// readHistory reads the history file; a missing file is an empty history.
func readHistory(path string) ([][]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rows [][]string
	for i, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		f := strings.Split(line, "\t")
		if i == 0 {
			if f[0] != historyHeader[0] {
				return nil, fmt.Errorf("%s: first line is not the header", path)
			}
			continue
		}
		if len(f) != len(historyHeader) {
			return nil, fmt.Errorf("%s:%d: %d fields, want %d", path, i+1, len(f), len(historyHeader))
		}
		rows = append(rows, f)
	}
	return rows, nil
}

func writeHistory(path string, rows [][]string) error {
	var b strings.Builder
	b.WriteString(strings.Join(historyHeader, "\t") + "\n")
	for _, r := range rows {
		b.WriteString(strings.Join(r, "\t") + "\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// historyRow is this run's line of the history.
func historyRow(m machine, r results) []string {
	first := func(load string) string {
		if f := strings.Fields(load); len(f) > 0 {
			return f[0]
		}
		return "—"
	}
	ratio := func(g, f, unit string) string { return fmtRatio(r.get(g, unit) / r.get(f, unit)) }
	commit := m.commit
	if commit == "" {
		commit = "—"
	}
	net := r["Network/senders=64/network"]
	return []string{
		m.date.Format("2006-01-02 15:04"), commit, first(m.loadBefore) + " / " + first(m.loadAfter),
		ratio("Hop/ghostcomm/1KiB", "Hop/floor/1KiB", "ns/op"),
		ratio("Hop/ghostcomm/64KiB", "Hop/floor/64KiB", "ns/op"),
		ratio("Hop/ghostcomm/1MiB", "Hop/floor/1MiB", "ns/op"),
		ratio("Build/ghostcomm/hops=3/1MiB", "Build/floor/hops=3/1MiB", "ns/op"),
		ratio("Build/ghostcomm/hops=5/1MiB", "Build/floor/hops=5/1MiB", "ns/op"),
		fmtNum(r.get("Hop/ghostcomm/1KiB", "allocs/op"), 0) + " / " + fmtNum(r.get("Hop/floor/1KiB", "allocs/op"), 0),
		fmtPct(r.get("Network/senders=64/network", "msg/s") / r.get("Network/senders=64/crypto-only", "msg/s")),
		fmtRatio(medianRatio(net["p99-ms"], net["p50-ms"])),
		ratio("Hop/sphinx", "Hop/ghostcomm/1KiB", "ns/op"),
	}
}

// renderHistory is the Markdown table of the last historyShown runs.
func renderHistory(rows [][]string) string {
	if len(rows) == 0 {
		return "No earlier runs recorded.\n"
	}
	var b strings.Builder
	b.WriteString("| " + strings.Join(historyHeader, " | ") + " |\n")
	b.WriteString(strings.Repeat("|---", len(historyHeader)) + "|\n")
	for _, r := range rows[max(0, len(rows)-historyShown):] {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}
