package testnet

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// EnvFigures names the environment variable that, when set, gives a file to
// which Figure appends each figure, so that a CI log can show what the tests
// measured without running them verbosely.
const EnvFigures = "GHOSTCOMM_FIGURES"

var figuresMu sync.Mutex

// Figure logs a measurement made by a test that runs on the private network
// (bootstrap time, publication time, round trips): with tb.Logf, and, when
// EnvFigures names a file, as a line appended to it.
func Figure(tb testing.TB, format string, args ...any) {
	tb.Helper()
	line := fmt.Sprintf(format, args...)
	tb.Logf("figure: %s", line)
	path := os.Getenv(EnvFigures)
	if path == "" {
		return
	}
	figuresMu.Lock()
	defer figuresMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		tb.Logf("figure: cannot append to %s: %v", path, err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s: %s\n", tb.Name(), line)
}
