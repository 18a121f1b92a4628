package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ghostcomm/ghostcomm/torctl/testnet"
)

// torTest is the test of the root module that measures ghostcomm over the
// private Tor network (torctl/overhead_test.go).
const torTest = "^TestIntegrationTorOverhead$"

// torRun is one run of torTest: when, on what, and the figures it logged.
type torRun struct {
	date, commit, loadBefore, loadAfter, command string
	figures                                      []string
	// other is the run made right after (or before) this one with
	// loopback's acknowledgements the other way; noOther says why there
	// is none.
	other   *torRun
	noOther string
}

// torAcks picks a run's loopback mode out of its figures.
var torAcks = regexp.MustCompile(`loopback TCP acknowledgements: (immediate|delayed|unknown)`)

// acks is the run's loopback mode: "immediate", "delayed", or "unknown"
// (also for a run that did not log it).
func (tr *torRun) acks() string {
	for _, f := range tr.figures {
		if m := torAcks.FindStringSubmatch(f); m != nil {
			return m[1]
		}
	}
	return "unknown"
}

// runTors runs torTest as the machine is and then, with flip, again with
// loopback's delayed acknowledgements switched the other way
// (testnet.SetLoopbackQuickAck; root and ip needed), putting the routes
// back afterwards. The run with immediate acknowledgements, if any, is the
// one returned, the other hangs from it.
func runTors(commit string, w io.Writer, flip bool) (*torRun, error) {
	first, err := runTor(commit, w)
	if err != nil || !flip {
		return first, err
	}
	was, err := testnet.LoopbackQuickAck()
	switch {
	case err != nil:
		first.noOther = err.Error()
		return first, nil
	case os.Geteuid() != 0:
		first.noOther = "switching loopback's acknowledgements needs root"
		return first, nil
	}
	fmt.Fprintf(os.Stderr, "report: tor: loopback quickack %v for a second run, put back afterwards\n", !was)
	restore, err := testnet.SetLoopbackQuickAck(!was)
	if err != nil {
		return nil, err
	}
	// An interrupt during the second run puts the routes back first.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sig:
			if err := restore(); err != nil {
				fmt.Fprintf(os.Stderr, "report: tor: %v\n", err)
			}
			os.Exit(1)
		case <-done:
		}
	}()
	second, err := runTor(commit, w)
	signal.Stop(sig)
	close(done)
	if rerr := restore(); rerr != nil {
		return nil, errors.Join(err, rerr)
	}
	if err != nil {
		return nil, err
	}
	if second.acks() == "immediate" {
		first, second = second, first
	}
	first.other = second
	return first, nil
}

// runTor runs torTest in the root module, with the tor tests required and
// the figures logged to a temporary file, and returns the run.
func runTor(commit string, w io.Writer) (*torRun, error) {
	f, err := os.CreateTemp("", "ghostcomm-tor-figures-*.txt")
	if err != nil {
		return nil, err
	}
	path := f.Name()
	f.Close()
	defer os.Remove(path)
	args := []string{"test", "-run", torTest, "-count", "1", "-v", "-timeout", "15m", "./torctl", "-overhead.rounds=60", "-overhead.msgs=300", "-overhead.extras"}
	tr := &torRun{date: time.Now().UTC().Format("2006-01-02 15:04 MST"), commit: commit,
		command: "cd .. && GHOSTCOMM_TOR_TESTS=required GHOSTCOMM_FIGURES=figures.txt go " + strings.Join(args, " ")}
	cmd := exec.Command("go", args...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GHOSTCOMM_TOR_TESTS=required", "GHOSTCOMM_FIGURES="+path)
	cmd.Stdout, cmd.Stderr = w, w
	tr.loadBefore = loadAvg()
	fmt.Fprintf(os.Stderr, "report: tor: %s\n", tr.command)
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	tr.loadAfter = loadAvg()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			tr.figures = append(tr.figures, l)
		}
	}
	if len(tr.figures) == 0 {
		return nil, fmt.Errorf("go %s logged no figure", strings.Join(args, " "))
	}
	return tr, nil
}

// The tor figures file: "# key: value" lines, then one figure per line.
// A run's other run follows it after a "# other run" line; "# no other
// run: why" says why there is none.
func writeTor(path string, tr *torRun) error {
	var b strings.Builder
	for r := tr; r != nil; r = r.other {
		if r != tr {
			b.WriteString("# other run\n")
		}
		fmt.Fprintf(&b, "# date: %s\n# commit: %s\n# load before: %s\n# load after: %s\n# command: %s\n",
			r.date, r.commit, r.loadBefore, r.loadAfter, r.command)
		if r.noOther != "" {
			fmt.Fprintf(&b, "# no other run: %s\n", r.noOther)
		}
		for _, f := range r.figures {
			b.WriteString(f + "\n")
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// readTor reads the tor figures file; a missing file is no run (nil).
func readTor(path string) (*torRun, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := &torRun{}
	r := tr
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "# other run" {
			if r.other != nil || r != tr {
				return nil, fmt.Errorf("%s: more than one other run", path)
			}
			r.other = &torRun{}
			r = r.other
			continue
		}
		fields := map[string]*string{"date": &r.date, "commit": &r.commit, "load before": &r.loadBefore,
			"load after": &r.loadAfter, "command": &r.command, "no other run": &r.noOther}
		if k, v, ok := strings.Cut(strings.TrimPrefix(l, "# "), ": "); ok && strings.HasPrefix(l, "# ") {
			if p := fields[k]; p != nil {
				*p = v
			}
			continue
		}
		if strings.TrimSpace(l) != "" {
			r.figures = append(r.figures, l)
		}
	}
	return tr, sc.Err()
}

var torRatio = regexp.MustCompile(`3-hop round trip \(1024 B, warm\) ÷ sum of the three one-hop echoes of the legs' frames on the chain's own streams: ([0-9.]+)×`)

// torParts picks the round trip, the sum of the echoes and the median of
// the per-round ratios out of the 1 KiB figure.
var torParts = regexp.MustCompile(`median (\S+) vs .* = (\S+); median of the per-round ratios ([0-9.]+)×`)

// torPings picks, out of the 1 KiB figure against the pings on the same
// streams, that ratio and the hops' own compute.
var torPings = regexp.MustCompile(`3-hop round trip \(1024 B, warm\) ÷ sum of the three one-hop pings on the chain's own streams: ([0-9.]+)× .*the hops' own compute: median (\S+) a message`)

// torLegs picks the leg-by-leg figure of the 1 KiB message: each leg of
// the chain and the echo on the stream that leg took.
var torLegs = regexp.MustCompile(`3-hop round trip \(1024 B, warm\), leg by leg, the chain's leg vs the echo[^:]*: hop 1 (\S+) vs (\S+), hop 2 (\S+) vs (\S+), hop 3 (\S+) vs (\S+) `)

// legsApart reports whether the leg-by-leg figure has a leg more than
// legAgree away from the echo on its stream.
func legsApart(figs []string) bool {
	for _, f := range figs {
		m := torLegs.FindStringSubmatch(f)
		if m == nil {
			continue
		}
		for i := range 3 {
			leg, e1 := time.ParseDuration(m[1+2*i])
			ping, e2 := time.ParseDuration(m[2+2*i])
			if e1 == nil && e2 == nil && (leg-ping).Abs() > legAgree {
				return true
			}
		}
		return false
	}
	return false
}

// torChain picks the 1 KiB message's round trip ÷ the raw chain of echo
// servers, and the raw chain ÷ the sum of the pings.
var torChain = regexp.MustCompile(`3-hop round trip \(1024 B, warm\) ÷ a raw chain of three echo servers[^:]*: ([0-9.]+)× \((\S+) vs (\S+); the raw chain ÷ the sum of the pings on the chain's own streams: ([0-9.]+)×\)`)

// torOneHop picks the one-hop figure: a message's leg ÷ the ping on the
// same stream.
var torOneHop = regexp.MustCompile(`1 hop \(1024 B, warm\), one stream: [^:]*: ([0-9.]+)× \(medians (\S+) vs (\S+);`)

// oneHopWhy gives the one-hop figure; "" without it.
func oneHopWhy(figs []string) string {
	for _, f := range figs {
		if m := torOneHop.FindStringSubmatch(f); m != nil {
			return fmt.Sprintf("with one hop, in the same run, a message's leg ÷ the echo of its frames on the same stream: %s× (%s vs %s)", m[1], m[2], m[3])
		}
	}
	return ""
}

// chainWhy says, from the raw-chain figure, what tor itself makes of a
// chain of round trips; "" without the figure.
func chainWhy(figs []string) string {
	for _, f := range figs {
		if m := torChain.FindStringSubmatch(f); m != nil {
			return fmt.Sprintf("tor's own chain, in the same rounds (three raw echo servers behind onions of the same tors, each answering once the next has, no ghostcomm): %s, %s× the sum of the same pings, and the round trip is %s× that raw chain", m[3], m[4], m[1])
		}
	}
	return ""
}

// legAgree is how close a leg of the chain and its echo must be to count
// as the same latency step: a hop's compute and framing are well below it.
const legAgree = 3 * time.Millisecond

// legsWhy says, from the leg-by-leg figure, how each leg of the chain
// compares with the echo on the same stream; "" without the figure.
func legsWhy(figs []string) string {
	for _, f := range figs {
		m := torLegs.FindStringSubmatch(f)
		if m == nil {
			continue
		}
		var parts, agree, slower, faster []string
		for i := range 3 {
			leg, e1 := time.ParseDuration(m[1+2*i])
			ping, e2 := time.ParseDuration(m[2+2*i])
			if e1 != nil || e2 != nil {
				return ""
			}
			d := leg - ping
			parts = append(parts, fmt.Sprintf("hop %d %v vs %v", i+1, leg.Round(100*time.Microsecond), ping.Round(100*time.Microsecond)))
			switch {
			case d.Abs() <= legAgree:
				agree = append(agree, fmt.Sprintf("%d (%s)", i+1, signed(d.Round(100*time.Microsecond))))
			case d > 0:
				slower = append(slower, fmt.Sprintf("%d (%s)", i+1, signed(d.Round(time.Millisecond))))
			default:
				faster = append(faster, fmt.Sprintf("%d (%s)", i+1, signed(d.Round(time.Millisecond))))
			}
		}
		why := "leg by leg, the chain's leg vs the echo on the stream it took: " + strings.Join(parts, ", ")
		if len(agree) > 0 {
			why += fmt.Sprintf("; within %v of each other on leg %s", legAgree, strings.Join(agree, ", "))
		}
		if len(slower) > 0 {
			why += fmt.Sprintf("; the message slower than the echo on the same stream by more than a hop's compute and framing could make on leg %s", strings.Join(slower, ", "))
		}
		if len(faster) > 0 {
			why += fmt.Sprintf("; the message faster than the echo on the same stream on leg %s", strings.Join(faster, ", "))
		}
		if len(slower)+len(faster) > 0 {
			why += ": on the same stream, in the same rounds, a message's frames and an echo of frames of the same sizes took times tens of milliseconds apart, steps of the private network's latency that a hop's compute and transport (about a millisecond, in-process network above) cannot make (tor waiting on loopback's delayed acknowledgements: see *Loopback's acknowledgements* below)"
		}
		return why
	}
	return ""
}

// signed is d with its sign.
func signed(d time.Duration) string {
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}

// torTarget is the real-Tor target of issue 13, from a run's figures and
// those of its other run.
func torTarget(tr *torRun) (target, bool) {
	t, ok := torTargetRun(tr)
	if !ok {
		return t, ok
	}
	if a := tr.acks(); a != "unknown" {
		t.measured = strings.Replace(t.measured, "run of ", "loopback's TCP acknowledgements "+a+"; run of ", 1)
	}
	if o := tr.other; o != nil {
		if ot, ok := torTargetRun(o); ok {
			v, _, _ := strings.Cut(ot.measured, ",")
			t.measured += fmt.Sprintf("; with loopback's acknowledgements %s, in a run of the same command right beside it: %s", o.acks(), v)
			rc, oc := rawChain(tr.figures), rawChain(o.figures)
			if rc != "" && oc != "" {
				t.measured += fmt.Sprintf(" (tor's own raw chain there %s× the sum of its pings, against %s× here)", oc, rc)
			}
		}
	}
	return t, true
}

// rawChain is the raw chain ÷ the sum of the pings on the chain's own
// streams, as the figure gives it; "" without it.
func rawChain(figs []string) string {
	for _, f := range figs {
		if m := torChain.FindStringSubmatch(f); m != nil {
			return m[4]
		}
	}
	return ""
}

// torTargetRun is the real-Tor target from one run's figures.
func torTargetRun(tr *torRun) (target, bool) {
	if tr == nil {
		return target{}, false
	}
	for _, f := range tr.figures {
		m := torRatio.FindStringSubmatch(f)
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return target{}, false
		}
		t := target{
			what: "private Tor network: 3-hop round trip, 1 KiB ÷ sum of the three one-hop echoes of the legs' frames on the chain's own streams", goal: "≤ 1.15×", issue: 13,
			measured: fmt.Sprintf("%s (run of %s, see *Real Tor* below)", fmtRatio(v), tr.date), met: v <= 1.15, known: true,
		}
		parts := torParts.FindStringSubmatch(f)
		if parts != nil {
			t.measured = fmt.Sprintf("%s, of the medians (median of the per-round ratios: %s×; run of %s, see *Real Tor* below)", fmtRatio(v), parts[3], tr.date)
		}
		if t.met && legsApart(tr.figures) {
			t.measured += "; but leg by leg the chain and the echoes on its own streams differ by more than a hop's compute and transport (see *Real Tor*): the verdict then rests on which latency steps of the private network the echoes and the messages landed on"
		}
		if !t.met {
			t.why = "see *Real Tor* below for the hops' own compute in the same rounds, against the difference between the round trip and the sum of the echoes"
			var comp time.Duration
			for _, f := range tr.figures {
				if m := torPings.FindStringSubmatch(f); m != nil {
					comp, _ = time.ParseDuration(m[2])
				}
			}
			if m := parts; m != nil && comp > 0 {
				trip, e1 := time.ParseDuration(m[1])
				sum, e2 := time.ParseDuration(m[2])
				if e1 == nil && e2 == nil {
					t.why = fmt.Sprintf("the round trip exceeds the sum of the echoes on its own streams by %v, of which the hops' own compute (peel, checks, sealing: HopEvent) is %v",
						(trip - sum).Round(time.Millisecond), comp.Round(time.Microsecond))
					if cw := chainWhy(tr.figures); cw != "" {
						t.why += ". " + cw
					}
					if ow := oneHopWhy(tr.figures); ow != "" {
						t.why += ". " + ow
					}
					if lw := legsWhy(tr.figures); lw != "" {
						t.why += ". " + lw
					} else {
						t.why += "; the rest is tor's transit of the message's frames against that of the echoes: see *Real Tor* below"
					}
				}
			}
		}
		return t, true
	}
	return target{}, false
}

func renderTor(w func(string, ...any), path string, tr *torRun) {
	w("## Real Tor (private network)\n\n")
	if tr == nil {
		w("No run yet: `cd bench && go run ./cmd/report -tor` runs `TestIntegrationTorOverhead` on the private Tor network (`torctl/testnet`) and records its figures in `bench/%s`.\n\n", filepath.Base(path))
		return
	}
	w("From `bench/%s`, written by the last `go run ./cmd/report -tor` (the benchmarks above may be from a later run without `-tor`).\n\n", filepath.Base(path))
	renderTorRun(w, tr)
	if o := tr.other; o != nil {
		w("\n### The same test with loopback's TCP acknowledgements %s\n\n", o.acks())
		renderTorRun(w, o)
	} else if tr.noOther != "" {
		w("\nNo second run with loopback's acknowledgements switched the other way: %s.\n", tr.noOther)
	}
	w("\n*Loopback's acknowledgements*: Linux delays a TCP acknowledgement by up to 40 ms when it has nothing to send back at once, and a sender with Nagle's algorithm on (tor's sockets: it sets no `TCP_NODELAY`) holds a small segment until its earlier ones are acknowledged. On loopback, where a segment otherwise arrives in microseconds, each such hold is a 40 ms step in tor's own relaying: with the kernel's default, echoes of the same frame take about 20 ms on one circuit and tens of milliseconds more, in steps of about 40, on another (the raw echoes of the run with delayed acknowledgements), and which legs of a chain and which probes land on a step decides the ratio to the sum of the echoes, as tor's own raw chain against the sum of its pings shows. With `quickack 1` on loopback's local routes the kernel acknowledges at once and the steps go. `-tor.flip` (on by default) therefore runs the test twice, as the machine is and with the routes switched the other way (`testnet.SetLoopbackQuickAck`: root and `ip` needed, the routes put back afterwards), and the target is judged on the run with immediate acknowledgements: what tor's relaying costs without the holds, against which ghostcomm's part shows; the run with delayed acknowledgements is given in full, and its ratio beside the target's.\n")
	w("\nThe private network is 3 directory authorities, 3 relays and 2 client tors on loopback (`torctl/testnet`); the nodes publish their onions on one tor and dial the next hop through it, the client dials hop 1 from the other. *The target's denominator*: the sum of the medians of three echoes on the chain's own streams, the very streams each message took, sent in every round right after the message: `Client.Echo` on the client's stream to hop 1, `Node.Echo` on hop 1's stream to hop 2 and on hop 2's to hop 3. An echo is a transport ping whose frame is as long as the message's frame on that leg, and whose pong is as long as the leg's answer (the test counts the bytes each leg's stream carried for the message); the next hop's transport reader answers it at once, with no handler: the stream's round trip through tor and both ends' transport for the message's cells, without ghostcomm's processing; it dials nothing (a test on the fake Tor checks that the dial counts do not move, and the bytes each way). Before each message, and before each set of three echoes or three pings, the streams stay idle for a moment (`-overhead.settle`, 300 ms), and echoes and pings take turns going first: on this network an exchange right after another on the same circuit often takes tens of milliseconds longer (a step of its latency: loopback's delayed acknowledgements, below), so without the pause whichever probe went second lost (in runs before the pause, the pings, always first, came out 1.3× to 1.6× below the messages on the same streams, the echoes after them about 1×). The figure against the pings (10-byte frames) on the same streams, the denominator of earlier runs, is shown beside the echoes'. The ratio is of medians over the rounds; the median of the per-round ratios is shown too. *Leg by leg*: in the same rounds, each leg of the chain as the hops saw it (the client's round trip less hop 1's `HopEvent.Total`; hop i's `Total` less its `Process` and hop i+1's `Total`: tor, and both ends' transport, for a message's frame), next to the echo (and, in the line after, the ping) on the stream that leg took: a difference of tens of milliseconds (a step of the private network's latency) rather than a millisecond is more than a hop's compute and transport take (the hops' own compute below; the in-process network above for the transport). *The hops' own compute*: per message, `HopEvent.Process` of the two hops that forward plus `HopEvent.Total` of the last. *Raw chain*: three echo servers behind onions of the service tor, each of which, as a node does, reads a whole 2 KiB message, sends it on to the next through the service tor and answers once the next has answered (the last answers at once), the first dialed from the client's tor, one round trip of it in every round: the chain's shape and tors with no ghostcomm in it, what tor itself makes of a chain of round trips against the sum of one-hop ones. *Pings on streams of their own*: the same pings, in the same rounds, on a stream per hop that the test dials from the same tor to the same onion (another circuit): what another circuit makes of the same leg. *Raw echo*: an echo server behind an onion of the same tor, dialed from the client's tor, with 10 B, with 2 KiB (a 1 KiB message's frame), and with 2 KiB from a server that, like a node, answers only once the whole message has arrived: what tor itself makes of a frame's size; on that last stream, in the same rounds, the same 2 KiB written in four writes, as a frame's header and parts would go out one by one on a SOCKS stream (which is no `*net.TCPConn`, so `net.Buffers` cannot gather them; the pool writes every frame of up to 64 KiB at once for this); *by size*: the same stream, from 32 B to 997 B around tor's 498-byte cell. *1 hop, one stream*: a 1-node Primary, 1 KiB messages one at a time, each followed by `Client.Echo` of its frames' sizes and `Client.Ping` on the stream it took; the message's leg is its round trip less the hop's `HopEvent.Total`. *Throughput*: the same 1-node Primary, 16 messages in flight on the client's one stream, against an echo server behind an onion of the same tor, dialed from the same client tor, with 16 messages of the same size in flight on one stream.\n\n")
}

// renderTorRun is a run's table of when and how, and its figures.
func renderTorRun(w func(string, ...any), tr *torRun) {
	w("| | |\n|---|---|\n| date | %s |\n| commit | %s |\n| load average (1, 5, 15 min) before / after | %s / %s |\n| loopback's TCP acknowledgements | %s |\n| command | `%s` |\n\n",
		tr.date, tr.commit, tr.loadBefore, tr.loadAfter, tr.acks(), tr.command)
	for _, f := range tr.figures {
		if _, fig, ok := strings.Cut(f, ": "); ok {
			f = fig
		}
		w("- %s\n", f)
	}
}
