package testnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
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
// value, makes the shared network log its progress to stderr.
const EnvVerbose = "GHOSTCOMM_TESTNET_VERBOSE"

// SharedClients is the number of client tors of the shared network: tests
// host a service on one and dial it from the other.
const SharedClients = 2

// SharedStartTimeout bounds the start of the shared network. Bootstrap takes
// 10–31 s on a 2-core machine; the margin is for loaded CI machines.
const SharedStartTimeout = 4 * time.Minute

var shared struct {
	mu      sync.Mutex
	main    bool // Main is running the tests
	started bool
	closed  bool
	net     *Network
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
// binary, starting it on first use (SharedClients client tors). Tests must
// not Close it or stop its clients; they stop what they add themselves.
//
// The test binary must call Main from TestMain, which stops the network when
// the tests end; Shared fails the test otherwise. When tor cannot be used,
// Shared skips the test (see SkipUnlessAvailable). When the network fails to
// start, every test that asks for it fails with the same error.
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
		ctx, cancel := context.WithTimeout(context.Background(), SharedStartTimeout)
		cfg := Config{Clients: SharedClients, TorPath: os.Getenv(EnvTorPath)}
		if os.Getenv(EnvVerbose) != "" {
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		shared.net, shared.err = Start(ctx, cfg)
		cancel()
		if shared.err == nil {
			tb.Logf("testnet: shared private Tor network bootstrapped in %v (%s)", shared.net.BootstrapTime().Round(time.Millisecond), shared.net.Dir())
		}
	}
	if shared.err != nil {
		tb.Fatalf("starting the shared private Tor network: %v", shared.err)
	}
	return shared.net
}

// Main runs the tests of m and then stops the shared network, if one was
// started, before the test binary exits; call it from TestMain:
//
//	func TestMain(m *testing.M) { testnet.Main(m) }
//
// A failure to stop the network fails the run. If a test panics or the test
// binary is killed, Main does not get to stop the network; each tor then
// exits on its own within seconds, because the control connection on which
// the network sent TAKEOWNERSHIP closes with the process
// (and __OwningControllerProcess names this process).
func Main(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) (code int) {
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

// stopShared stops the shared network; later Shared calls fail.
func stopShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.closed = true
	if shared.net == nil {
		return nil
	}
	err := shared.net.Close()
	shared.net = nil
	if shared.err == nil {
		shared.err = errors.New("testnet: shared network stopped")
	}
	return err
}
