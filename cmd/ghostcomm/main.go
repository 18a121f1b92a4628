// Command ghostcomm runs a ghostcomm network and sends messages through one.
//
// Usage:
//
//	ghostcomm primary -state DIR [-tor system|launch|testnet] [flags]
//	ghostcomm send [-invite INVITE | -invite-file FILE] [--json] [MESSAGE]
//	ghostcomm fetch [-invite INVITE | -invite-file FILE] [--json]
//	ghostcomm client -state DIR add NAME | remove NAME | list
//	ghostcomm node -state DIR [-invite INVITE | -invite-file FILE] [-tor system|launch] [flags]
//	ghostcomm nodes -state DIR [-operator LABEL] add NAME KEY | remove NAME | list | invite
//
// "ghostcomm primary" runs a Primary: its keys live in the state directory
// (created with mode 0700 on first run, refused when group or others may read
// it), so its invite stays the same across restarts. It prints the invite on
// stdout, one line (with client authorization, one "NAME INVITE" line per
// client), stores it in the state directory, and serves until SIGINT or
// SIGTERM, when it removes its onion services and stops the tor it started.
//
// "ghostcomm send" sends one message, from its argument or from stdin (any
// bytes, at most 1 MiB), and writes the answer to stdout as it is, or as JSON
// with --json. "ghostcomm fetch" shows the network's current lock-cycle.
// Both take the invite from -invite, -invite-file or $GHOSTCOMM_INVITE, and
// reach tor's SocksPort (-socks, 127.0.0.1:9050); an invite with a client
// authorization key also needs tor's ControlPort (-control, 127.0.0.1:9051),
// to give tor the key.
//
// "ghostcomm client" adds, removes or lists the clients authorized to reach a
// Primary; a running Primary applies the change when it is restarted.
//
// "ghostcomm node" runs a remote node on a machine of its own, with its own
// tor: its identity key lives in its state directory ("ghostcomm node -id"
// prints it); for every lock-cycle of the Primary named by its invite it
// makes a fresh key pair and onion, submits a descriptor signed by its
// identity, serves the cycle and retires it. "ghostcomm nodes" enrolls and
// revokes node identities in a Primary's state directory (the file
// "nodes"), which a Primary started with -remote re-reads while it runs,
// and prints the invite to give node operators.
//
// Errors are one line on stderr, starting with "ghostcomm:". Exit codes:
//
//	0  success
//	1  the answer differs from what the route's processing should give (send)
//	2  usage: a bad flag, argument, invite, message or state directory
//	3  retry: a hop or the Primary was busy, slow or unreachable for now
//	4  refetch: the lock-cycle ended or a hop is gone; running again fetches the new one
//	5  permanent: anything else (tor refused, the wrong Primary, interrupted...)
//
// Codes 3, 4 and 5 follow ghostcomm.ActionFor. A Primary or node stopped by
// a signal exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/ghostcomm/ghostcomm"
)

// Exit codes, by class of error.
const (
	exitOK        = 0
	exitVerify    = 1
	exitUsage     = 2
	exitRetry     = 3
	exitRefetch   = 4
	exitPermanent = 5
)

const usage = `Usage:
	ghostcomm primary -state DIR [-tor system|launch|testnet] [flags]
	ghostcomm send [-invite INVITE | -invite-file FILE] [--json] [MESSAGE]
	ghostcomm fetch [-invite INVITE | -invite-file FILE] [--json]
	ghostcomm client -state DIR add NAME | remove NAME | list
	ghostcomm node -state DIR [-invite INVITE | -invite-file FILE] [-tor system|launch] [flags]
	ghostcomm nodes -state DIR [-operator LABEL] add NAME KEY | remove NAME | list | invite

Run "ghostcomm COMMAND -h" for a command's flags.

Exit codes: 0 success, 1 answer failed verification, 2 usage,
3 retry later, 4 refetch (run again), 5 permanent failure.
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// env is what a command reads and writes.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "primary":
		err = e.primary(ctx, args[1:])
	case "send":
		err = e.send(ctx, args[1:])
	case "fetch":
		err = e.fetch(ctx, args[1:])
	case "client":
		err = e.client(args[1:])
	case "node":
		err = e.node(ctx, args[1:])
	case "nodes":
		err = e.nodes(args[1:])
	default:
		err = usageErrorf("unknown command %q (primary, send, fetch, client, node or nodes)", args[0])
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil && !errors.Is(err, errReported) {
		// The library's errors say "ghostcomm: " themselves; say it once.
		fmt.Fprintf(stderr, "ghostcomm: %s\n", strings.TrimPrefix(oneLine(err.Error()), "ghostcomm: "))
	}
	return exitCode(err)
}

// errReported is an error already shown to the user (the flag package
// prints its own); only its exit code is left to give.
var errReported = errors.New("reported")

// usageError is a mistake in how the command was called or in what it was
// given: exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue), errors.Is(err, ghostcomm.ErrBadInvite):
		return exitUsage
	case errors.Is(err, ghostcomm.ErrVerify):
		return exitVerify
	}
	switch ghostcomm.ActionFor(err) {
	case ghostcomm.ActionRetry:
		return exitRetry
	case ghostcomm.ActionRefetch:
		return exitRefetch
	}
	return exitPermanent
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// newFlags returns a flag set that prints its usage to stderr and lets the
// caller report parse errors.
func (e *env) newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args; -h prints the usage on stdout and returns flag.ErrHelp.
func (e *env) parse(fs *flag.FlagSet, args []string) error {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(e.stdout)
			fs.Usage()
			return flag.ErrHelp
		}
	}
	if err := fs.Parse(args); err != nil {
		return &usageError{errReported} // the flag package said why
	}
	return nil
}

// logFlags are the logging flags of every command.
type logFlags struct {
	format  string
	verbose bool
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log", "text", "log format on stderr: text or json")
	fs.BoolVar(&l.verbose, "v", false, "log debug records too")
}

func (l *logFlags) logger(w io.Writer, quiet bool) (*slog.Logger, error) {
	level := slog.LevelInfo
	if quiet {
		level = slog.LevelWarn
	}
	if l.verbose {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErrorf("-log must be text or json, not %q", l.format)
}

// stateDir returns the -state flag's value, or else the first directory of
// $STATE_DIRECTORY (systemd lists several, separated by colons).
func stateDir(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	dir, _, _ := strings.Cut(os.Getenv(envStateDir), ":")
	return dir
}
