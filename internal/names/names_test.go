package names

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	for _, s := range []string{"a", "client-1", "node_2.acme", strings.Repeat("x", 64)} {
		if !Valid(s) {
			t.Errorf("Valid(%q) = false", s)
		}
	}
	for _, s := range []string{"", strings.Repeat("x", 65), "a b", "a:b", "a\tb", "a\nb", "é", "a/b", "\x1b[31m"} {
		if Valid(s) {
			t.Errorf("Valid(%q) = true", s)
		}
	}
}
