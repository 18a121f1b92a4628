package main

import (
	"bytes"
	"testing"
)

// TestProgress: one line updated in place on a terminal, plain lines
// elsewhere.
func TestProgress(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b) // not a terminal
	p.update("tor: bootstrapped %d%%", 50)
	p.update("tor: bootstrapped %d%%", 100)
	p.done()
	p.line("published")
	if got, want := b.String(), "tor: bootstrapped 50%\ntor: bootstrapped 100%\npublished\n"; got != want {
		t.Errorf("in a log: %q, want %q", got, want)
	}

	b.Reset()
	p = &progress{w: &b, tty: true}
	p.update("tor: bootstrapped %d%%", 50)
	p.update("tor: bootstrapped %d%%", 100)
	p.line("published")
	if got, want := b.String(), "\r\033[Ktor: bootstrapped 50%\r\033[Ktor: bootstrapped 100%\npublished\n"; got != want {
		t.Errorf("on a terminal: %q, want %q", got, want)
	}
}
