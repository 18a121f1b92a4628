// Command soak runs the soak of package soak on the fake Tor, or with -tor
// testnet on a private Tor network on 127.0.0.1, and writes its section of
// docs/RELIABILITY.md and the plot beside it.
//
// Usage, from the soak directory:
//
//	go run ./cmd/soak [-messages 200000] [-senders 32] [-out ../docs/RELIABILITY.md]
//	go run ./cmd/soak -tor testnet [-messages 20000] [-records FILE]
//
// With -tor testnet it starts the tors itself and stops every one of them
// when it ends, also on Ctrl-C or SIGTERM.
//
// It prints one summary line on stdout. Exit status: 0 when no message was
// lost or unverified and every error is explained by a fault, 1 when the
// run shows otherwise (the report is written all the same), 2 for a usage
// error, 3 when the run could not be made or the report not written.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/ghostcomm/ghostcomm/soak"
	"github.com/ghostcomm/ghostcomm/torctl/testnet"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg soak.Config
	fs.IntVar(&cfg.Messages, "messages", 200000, "messages to send")
	fs.IntVar(&cfg.Senders, "senders", 32, "concurrent senders")
	fs.IntVar(&cfg.Clients, "clients", 4, "clients the senders share")
	fs.IntVar(&cfg.Nodes, "nodes", 3, "nodes per lock-cycle")
	fs.DurationVar(&cfg.Period, "period", 30*time.Second, "lock-cycle period")
	fs.DurationVar(&cfg.Rotate, "rotate", 6*time.Second, "mean interval of extra Primary.Rotate calls (negative: none)")
	fs.DurationVar(&cfg.FaultGap, "fault-gap", 2*time.Second, "mean quiet time between faults")
	fs.DurationVar(&cfg.Deadline, "deadline", 20*time.Second, "each message's deadline")
	fs.DurationVar(&cfg.FaultHold, "fault-hold", 1250*time.Millisecond, "mean time a partition, stall or stopped tor lasts")
	fs.DurationVar(&cfg.DialTimeout, "dial-timeout", 2*time.Second, "nodes' and clients' dial timeout")
	fs.DurationVar(&cfg.Settle, "settle", 3*time.Second, "how long after a fault's end its errors still count as inside its window")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of the fault and rotation schedule")
	fs.IntVar(&cfg.MinRotations, "min-rotations", 0, "go on past -messages until the run has seen this many rotations")
	fs.IntVar(&cfg.MinFaults, "min-faults", 0, "go on past -messages until the run has injected this many faults")
	torMode := fs.String("tor", "fake", "network: fake (in process) or testnet (a private Tor network on 127.0.0.1; needs tor)")
	nodeTors := fs.Int("node-tors", 3, "with -tor testnet: tors hosting the nodes' onions")
	voting := fs.Duration("voting-interval", 150*time.Second, "with -tor testnet: the authorities' V3AuthVotingInterval (tor makes an onion service time period 24 of them long)")
	relays := fs.Int("relays", 6, "with -tor testnet: relays of the network (besides 3 authorities)")
	nofaults := fs.Bool("nofaults", false, "inject no faults")
	records := fs.String("records", "", "file to write every message that was not verified to, one JSON object a line; empty: none")
	out := fs.String("out", filepath.Join("..", "docs", "RELIABILITY.md"), "report to write (its fake-Tor section); empty: none")
	plotPath := fs.String("plot", filepath.Join("..", "docs", "reliability-faketor.png"), "plot to write (.png or .svg); empty: none")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: soak [flags]\n\nRuns the soak on the in-process fake Tor (faults: sever, partition, stalled\ndials) or, with -tor testnet, on a private Tor network on 127.0.0.1 (faults, in\nturn: SIGSTOP of a node's tor, closed circuits, the clients' tor restarted,\na relay killed and restarted): messages from concurrent senders,\nfaults and rotations; writes the report section and the plot. Exit 0: nothing lost, unverified or unexplained;\n1: the run shows otherwise; 2: usage; 3: the run or the report failed.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	section, title := "faketor", "Fake Tor (in process)"
	switch *torMode {
	case "fake":
	case "testnet":
		section, title = "testnet", "Private Tor network (torctl/testnet, real tor on 127.0.0.1)"
		for name, v := range map[string]string{
			"messages": "20000", "senders": "32", "clients": "4", "period": "30s", "rotate": "-1s",
			"fault-gap": "15s", "fault-hold": "20s", "deadline": "60s", "dial-timeout": "20s", "settle": "30s",
			"min-rotations": "10", "min-faults": "8",
			"plot": filepath.Join("..", "docs", "reliability-testnet.png"),
		} {
			if !set[name] {
				fs.Set(name, v)
			}
		}
	default:
		fmt.Fprintf(stderr, "soak: -tor %q: want fake or testnet\n", *torMode)
		return 2
	}
	if fs.NArg() > 0 || *nodeTors < 1 || cfg.Messages <= 0 || cfg.Senders <= 0 || cfg.Clients <= 0 || cfg.Nodes < 1 || cfg.Nodes > 255 || cfg.Period <= 0 || cfg.FaultGap <= 0 || cfg.Deadline <= 0 {
		fmt.Fprintln(stderr, "soak: bad arguments (see -h)")
		return 2
	}
	cfg.Faults = !*nofaults
	cfg.Progress = func(sent, done int) {
		fmt.Fprintf(stderr, "\rsoak: %d/%d messages done", done, cfg.Messages)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *torMode == "testnet" {
		fmt.Fprintln(stderr, "soak: starting a private Tor network on 127.0.0.1")
		sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		env, closeAll, err := soak.TestnetEnv(sctx, testnet.Config{Relays: *relays, VotingInterval: *voting}, *nodeTors, cfg.Nodes)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "soak: %s\n", strings.ReplaceAll(err.Error(), "\n", " | "))
			return 3
		}
		defer func() {
			if err := closeAll(); err != nil {
				fmt.Fprintf(stderr, "soak: stopping tor: %v\n", err)
			}
		}()
		cfg.Env = env
	}
	res, err := soak.Run(ctx, cfg)
	fmt.Fprintln(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "soak: %v\n", err)
		return 3
	}
	s := res.Summarize()
	if *records != "" {
		if err := writeRecords(*records, res); err != nil {
			fmt.Fprintf(stderr, "soak: %v\n", err)
			return 3
		}
	}
	fmt.Fprintf(stdout, "%d messages in %v: %d verified, %d errors (%d unexplained), %d lost, %d unverified; %d rotations, faults %v\n",
		s.Total, res.Elapsed.Round(time.Millisecond), s.Verified, s.Errors, s.Unexplained, s.Lost, s.Unverified, len(res.Rotations), s.FaultCount)
	link := ""
	if *plotPath != "" {
		if err := res.Plot(*plotPath, fmt.Sprintf("ghostcomm soak, %s: %d messages", title, s.Total)); err != nil {
			fmt.Fprintf(stderr, "soak: plot: %v\n", err)
			return 3
		}
		if *out != "" {
			if rel, err := filepath.Rel(filepath.Dir(*out), *plotPath); err == nil {
				link = filepath.ToSlash(rel)
			}
		}
	}
	if *out != "" {
		var b bytes.Buffer
		command := "cd soak && go run ./cmd/soak " + strings.Join(args, " ")
		res.WriteMarkdown(&b, title, strings.TrimSpace(command), machine(), link)
		if err := writeSection(*out, section, b.String()); err != nil {
			fmt.Fprintf(stderr, "soak: %v\n", err)
			return 3
		}
	}
	if err := s.Check(); err != nil {
		fmt.Fprintln(stderr, strings.ReplaceAll(err.Error(), "\n", " | "))
		return 1
	}
	return 0
}

// machine describes the machine the run was made on.
func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = ", load average at the end " + strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return fmt.Sprintf("%s/%s, %d CPUs (%s), %s, %s%s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), model, runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 UTC"), load)
}

const header = `# Reliability

Measured, not promised: each section below is written by a soak run, which
sends many messages through a ghostcomm network while it injects faults and
rotates the lock-cycle, and records every message: verified answer, typed
error (its ghostcomm.ActionFor class and the hop it names), or lost (neither
before its deadline). See the soak module (soak/) for the definitions; its
tests run a short soak that fails on any lost or unverified message or any
error that no fault explains (counts, never timings).
`

// writeSection replaces the section named name of the report at path (or
// appends it, creating the report with its header if needed).
func writeSection(path, name, text string) error {
	begin, end := "<!-- soak:"+name+" begin -->\n", "<!-- soak:"+name+" end -->\n"
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	doc := string(old)
	if doc == "" {
		doc = header
	}
	section := begin + text + end
	if i := strings.Index(doc, begin); i >= 0 {
		j := strings.Index(doc[i:], end)
		if j < 0 {
			return fmt.Errorf("%s: %q without %q", path, strings.TrimSpace(begin), strings.TrimSpace(end))
		}
		doc = doc[:i] + section + doc[i+j+len(end):]
	} else {
		doc = strings.TrimRight(doc, "\n") + "\n\n" + section
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}

// writeRecords writes every record of res that is not a verified answer to
// path, one JSON object a line, with the window the report puts it in.
func writeRecords(path string, res *soak.Result) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, r := range res.Records {
		if r.Outcome == soak.Verified {
			continue
		}
		if err := enc.Encode(struct {
			soak.Record
			Outcome string
			Window  string
		}{r, r.Outcome.String(), res.Window(r)}); err != nil {
			return err
		}
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}
