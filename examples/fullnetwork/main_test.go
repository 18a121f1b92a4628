package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestFullNetworkOnFakeTor(t *testing.T) {
	for _, hops := range []int{1, 3, 8} {
		t.Run(fmt.Sprint(hops), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run([]string{"-hops", fmt.Sprint(hops), "-msg", "test message"}, &out, &errOut)
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, &out, &errOut)
			}
			s := out.String()
			if !strings.Contains(s, "Verified  yes") {
				t.Fatalf("no verified result:\n%s", s)
			}
			for i := 1; i <= hops; i++ {
				if !strings.Contains(s, fmt.Sprintf("hop %d  ", i)) {
					t.Fatalf("hop %d not printed:\n%s", i, s)
				}
			}
			if strings.Count(s, ".onion:80") < hops+1 {
				t.Fatalf("onion addresses missing:\n%s", s)
			}
		})
	}
}

func TestFullNetworkBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-hops", "0"}, {"-hops", "256"}, {"-tor", "nonsense"}, {"-nosuchflag"}} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
