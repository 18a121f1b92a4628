package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHelpAndBadArgs(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-h"}, &out, &errOut); code != 0 || !strings.Contains(errOut.String(), "-messages") {
		t.Errorf("-h: exit %d, usage:\n%s", code, &errOut)
	}
	for _, args := range [][]string{{"-messages", "0"}, {"-senders", "-1"}, {"-nodes", "256"}, {"-fault-gap", "0s"}, {"extra"}, {"-nosuchflag"}} {
		errOut.Reset()
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, &errOut)
		}
	}
}

// TestWritesSection runs a tiny soak twice into the same report: the
// report keeps its header, other sections, and one copy of this section.
func TestWritesSection(t *testing.T) {
	dir := t.TempDir()
	report := filepath.Join(dir, "docs", "RELIABILITY.md")
	os.MkdirAll(filepath.Dir(report), 0o755)
	if err := os.WriteFile(report, []byte("# Mine\n\n<!-- soak:other begin -->\nkept\n<!-- soak:other end -->\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	plot := filepath.Join(dir, "docs", "p.png")
	for range 2 {
		var out, errOut bytes.Buffer
		code := run([]string{"-messages", "200", "-senders", "4", "-clients", "2", "-fault-gap", "200ms", "-rotate", "500ms", "-period", "10s", "-out", report, "-plot", plot}, &out, &errOut)
		if code != 0 {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, &out, &errOut)
		}
		if !strings.HasPrefix(out.String(), "200 messages in ") {
			t.Errorf("summary line: %q", out.String())
		}
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	if !strings.HasPrefix(doc, "# Mine\n") || !strings.Contains(doc, "kept\n") || strings.Count(doc, "<!-- soak:faketor begin -->") != 1 || !strings.Contains(doc, "](p.png)") || !strings.Contains(doc, "| messages | 200 |") {
		t.Errorf("report:\n%s", doc)
	}
	if _, err := os.Stat(plot); err != nil {
		t.Error(err)
	}
}
