package testnet

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// EnvTorTests is the environment variable that decides what tests do when
// tor is not installed: "required" makes Shared fail the test, "off" makes
// Shared skip even when tor is installed, anything else skips only when tor
// is missing (or under -short).
const EnvTorTests = "GHOSTCOMM_TOR_TESTS"

// EnvTorPath names the environment variable that, when set, gives the tor
// binary the shared network uses instead of "tor" on PATH.
const EnvTorPath = "GHOSTCOMM_TOR"

// EnvVerbose names the environment variable that, when set to a non-empty
// value, makes a test binary log what it does on the shared network (the
// tors it adds) to stderr. The daemon that runs the shared network always
// logs its progress (see Shared).
const EnvVerbose = "GHOSTCOMM_TESTNET_VERBOSE"

// SharedClients is the number of client tors of the shared network: tests
// host a service on one and dial it from the other.
const SharedClients = 2

// SharedStartTimeout bounds the start of the shared network. Bootstrap takes
// 10–37 s on a 2-core machine; the margin is for loaded CI machines.
const SharedStartTimeout = 4 * time.Minute

var shared struct {
	mu      sync.Mutex
	main    bool // Main is running the tests
	started bool
	closed  bool
	net     *Network
	users   *os.File // users.lock, held while this process uses the network
	err     error
}

// Required reports whether EnvTorTests is "required".
func Required() bool { return os.Getenv(EnvTorTests) == "required" }

// SkipUnlessAvailable skips tb, or fails it when EnvTorTests is "required",
// if tor cannot be used: tor is not installed (or EnvTorPath names no
// file), EnvTorTests is "off", or the tests run with -short (unless
// EnvTorTests is "required").
func SkipUnlessAvailable(tb testing.TB) {
	tb.Helper()
	reason := ""
	switch {
	case os.Getenv(EnvTorTests) == "off":
		reason = EnvTorTests + "=off"
	case testing.Short() && !Required():
		reason = "-short: the private Tor network takes 10–30 s to start"
	default:
		if err := Available(os.Getenv(EnvTorPath)); err != nil {
			reason = err.Error()
		}
	}
	if reason == "" {
		return
	}
	if Required() {
		tb.Fatalf("tor tests are required (%s=required) but cannot run: %s", EnvTorTests, reason)
	}
	tb.Skipf("skipping test that needs tor: %s (set %s=required to make this a failure)", reason, EnvTorTests)
}

// Shared returns the private Tor network shared by every test of this test
// binary and by every other test binary of the same `go test` run (see
// ShareDir): the first one to ask starts it, in a daemon process that stops
// it once no test binary uses it and the go command has exited. It has
// SharedClients client tors. While a test binary waits for the network, it
// prints progress to its standard error every 5 s, and the daemon prints
// bootstrap progress to the go command's standard error when that is a pipe
// or a terminal.
//
// Tests must not Close the network or stop its clients; they stop what they
// add themselves. Tors added with AddTor or PrepareTor belong to the test
// binary that added them, as with a network of its own.
//
// The test binary must call Main (or Wrap) from TestMain, which detaches from the
// network (and stops the tors it added) when the tests end; Shared fails the
// test otherwise. When tor cannot be used, Shared skips the test (see
// SkipUnlessAvailable). When the network fails to start, every test that asks
// for it fails with the same error.
func Shared(tb testing.TB) *Network {
	tb.Helper()
	SkipUnlessAvailable(tb)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		tb.Fatalf("testnet.Shared needs testnet.Main: add func TestMain(m *testing.M) { testnet.Main(m) }")
	}
	if shared.closed {
		tb.Fatalf("testnet.Shared called after the tests ended")
	}
	if !shared.started {
		shared.started = true
		log := slog.New(slog.DiscardHandler)
		if os.Getenv(EnvVerbose) != "" {
			log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		begin := time.Now()
		shared.net, shared.users, shared.err = attachShared(ShareDir(), os.Stderr, log)
		if shared.err == nil {
			tb.Logf("testnet: shared private Tor network (bootstrapped in %v) ready after %v; share directory %s",
				shared.net.BootstrapTime().Round(time.Millisecond), time.Since(begin).Round(time.Millisecond), ShareDir())
		}
	}
	if shared.err != nil {
		tb.Fatalf("starting the shared private Tor network: %v", shared.err)
	}
	return shared.net
}

// Main runs the tests of m and then detaches from the shared network, if
// this test binary used it, before the test binary exits; call it from
// TestMain:
//
//	func TestMain(m *testing.M) { testnet.Main(m) }
//
// A failure to stop the tors this binary added fails the run. Unless the
// command line sets -test.parallel, Main lets up to Parallel tests that call
// t.Parallel run at once (go test's default is GOMAXPROCS): tests on the
// private network spend their time waiting on tor, not computing. Main is also
// where the shared network's daemon runs: Shared starts it as this test
// binary, re-executed. If a test panics or the test binary is killed, the
// kernel drops its lock on the network, and the daemon stops the network
// when no other test binary uses it; if the daemon is killed, each tor exits
// on its own within seconds, because the control connection on which the
// daemon sent TAKEOWNERSHIP closes with it (and __OwningControllerProcess
// names it).
func Main(m *testing.M) {
	os.Exit(Wrap(m).Run())
}

// TestingM is what Wrap wraps and returns: a *testing.M, or what a TestMain
// helper such as go-internal's testscript.Main takes.
type TestingM interface{ Run() int }

// Wrap returns m with Main's work around its Run, for a TestMain that hands
// m to another helper:
//
//	func TestMain(m *testing.M) { testscript.Main(testnet.Wrap(m), commands) }
func Wrap(m TestingM) TestingM { return wrapped{m} }

type wrapped struct{ m TestingM }

func (w wrapped) Run() int {
	if dir := os.Getenv(envDaemon); dir != "" {
		return runDaemon(dir)
	}
	return runMain(w.m)
}

// Parallel is how many parallel tests Main and Wrap let run at once when
// the command line does not say (-test.parallel).
const Parallel = 6

// raiseParallel sets -test.parallel to at least n unless the command line
// set it.
func raiseParallel(n int) {
	f := flag.Lookup("test.parallel")
	if f == nil {
		return // not a test binary
	}
	if !flag.Parsed() {
		flag.Parse()
	}
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if cur, err := strconv.Atoi(f.Value.String()); set || (err == nil && cur >= n) {
		return
	}
	flag.Set("test.parallel", strconv.Itoa(n))
}

func runMain(m TestingM) (code int) {
	raiseParallel(Parallel)
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()
	defer func() {
		if err := stopShared(); err != nil {
			fmt.Fprintf(os.Stderr, "testnet: stopping the shared network: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}()
	return m.Run()
}

// stopShared stops the tors this process added to the shared network and
// releases its lock on it; later Shared calls fail.
func stopShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.closed = true
	if shared.net == nil {
		return nil
	}
	err := shared.net.Close()
	shared.net = nil
	if shared.users != nil {
		shared.users.Close()
		shared.users = nil
	}
	if shared.err == nil {
		shared.err = errors.New("testnet: shared network stopped")
	}
	return err
}
