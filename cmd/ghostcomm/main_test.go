package main

import (
	"bufio"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ghostcomm/ghostcomm/torctl/testnet"
)

// TestMain makes the test binary also the ghostcomm command: testscript puts
// a copy named ghostcomm first on PATH, for the scripts and for
// TestEndToEnd. testnet.Wrap gives TestEndToEnd the private Tor network the
// test binaries of this run share.
func TestMain(m *testing.M) {
	testscript.Main(testnet.Wrap(m), map[string]func(){"ghostcomm": main})
}

// TestScripts runs testdata/script/*.txtar: usage, -h, and bad input of
// every kind, each with its documented exit code. They start no tor.
func TestScripts(t *testing.T) {
	t.Parallel() // beside the end-to-end tests, which wait on tor
	badControl := refusingControlPort(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(e *testscript.Env) error {
			e.Setenv("BADCONTROL", badControl)
			e.Setenv("GHOSTCOMM_INVITE", "")
			e.Setenv("STATE_DIRECTORY", "")
			return nil
		},
		Condition: func(cond string) (bool, error) {
			if cond == "root" {
				return os.Geteuid() == 0, nil
			}
			return false, errors.New("unknown condition " + cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits": cmdExits,
		},
	})
}

// cmdExits runs a command and checks its exit code:
//
//	exits CODE PROGRAM [ARGS...]
//
// Its stdout and stderr are kept for the stdout and stderr commands.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad code %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("exits: %v", err)
	}
	if got != want {
		ts.Fatalf("exit code %d, want %d", got, want)
	}
}

// refusingControlPort is a tor control port that offers password
// authentication and refuses every password, as a tor with
// HashedControlPassword does when given the wrong one.
func refusingControlPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					switch f := strings.Fields(line); {
					case len(f) == 0:
					case f[0] == "PROTOCOLINFO":
						c.Write([]byte("250-PROTOCOLINFO 1\r\n250-AUTH METHODS=HASHEDPASSWORD\r\n250-VERSION Tor=\"0.4.9.8\"\r\n250 OK\r\n"))
					case f[0] == "AUTHENTICATE":
						c.Write([]byte("515 Authentication failed: Password did not match HashedControlPassword value from configuration\r\n"))
						return
					default:
						c.Write([]byte("514 Authentication required.\r\n"))
						return
					}
				}
			})
		}
	})
	return ln.Addr().String()
}
