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
	if err := appendFigure(tb.Name(), line); err != nil {
		tb.Logf("figure: %v", err)
	}
}

// FigureAfterTests is Figure for a TestMain, after m.Run: for figures that
// tests running in parallel collected. It prints the line on stdout and
// appends it, under name, to the EnvFigures file.
func FigureAfterTests(name, format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	fmt.Printf("%s: figure: %s\n", name, line)
	if err := appendFigure(name, line); err != nil {
		fmt.Printf("%s: figure: %v\n", name, err)
	}
}

func appendFigure(name, line string) error {
	path := os.Getenv(EnvFigures)
	if path == "" {
		return nil
	}
	figuresMu.Lock()
	defer figuresMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("cannot append to %s: %w", path, err)
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s: %s\n", name, line)
	return err
}
