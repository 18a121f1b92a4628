// Package soak sends many messages through a ghostcomm network while faults
// are injected and the lock-cycle rotates, records the outcome of every
// message, and writes the reliability report (docs/RELIABILITY.md) with a
// plot of latency over time.
//
// It is its own module, like bench, so that the library's go.mod does not
// carry the plotting library. Run the soak on the fake Tor with
//
//	cd soak && go run ./cmd/soak
//
// Every message ends in exactly one outcome: verified (an answer that
// Result.Verified vouches for), unverified (an answer that is not), error (a
// typed error, classified with ghostcomm.ActionFor and, when it is a
// *ghostcomm.HopError, the hop it names; an error that names no hop but
// failed to reach an onion or got a cycle that had ended is the client's
// fetch of the cycle and names the Primary), or lost (neither an answer nor
// such an error by the message's deadline: an error at the deadline that
// names who did not answer, a hop or the Primary, is an error). Faults are
// recorded as windows (kind, node, start, end); an error is explained by a
// fault when the message overlaps that fault's window and the error names
// the faulted node.
package soak

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// Outcome is how a message ended.
type Outcome uint8

const (
	Verified   Outcome = iota // answered, and Result.Verified
	Unverified                // answered, but not verified
	Failed                    // a typed error before the deadline
	Lost                      // neither before the deadline
)

func (o Outcome) String() string {
	return [...]string{"verified", "unverified", "error", "lost"}[o]
}

// Record is one message.
type Record struct {
	Start, End time.Duration // since the run began
	Outcome    Outcome
	Class      string // ActionFor(err), for errors and lost messages
	Sentinel   string // the package sentinel the error matches
	Hop        int    // HopError.Hop, 0 if none
	Onion      string // HopError.Onion, "" if none
	Err        string
}

// FaultKind is a kind of injected fault.
type FaultKind string

const (
	Sever     FaultKind = "sever"     // tortest.Network.Sever: every open stream to a node is closed
	Partition FaultKind = "partition" // Partition … Heal: new dials to a node fail
	Stall     FaultKind = "stall"     // dials to a node hang (SetDialLatency) until their timeout
	SigStop   FaultKind = "sigstop"   // the tor hosting a node is stopped (SIGSTOP) and resumed (SIGCONT)
	Circuits  FaultKind = "circuits"  // every circuit of a tor is closed (CLOSECIRCUIT), severing its streams
	RelayKill FaultKind = "relaykill" // a relay of the network is killed (SIGKILL) and restarted on the same data directory
	ClientTor FaultKind = "clienttor" // the clients' tor is restarted (SIGTERM, started again on the same SocksPort)
)

// AllNodes as a Fault's Node stands for every node, of whatever cycle (also
// those created during the fault), and the Primary: a fault of the network
// rather than of one node (a relay killed, a tor's circuits closed).
const AllNodes = "*"

// Fault is one injected fault against one node. An error is attributed to
// it when the message overlaps [Start, End+Config.Settle] and names Node
// (any node or the Primary if Node is AllNodes).
type Fault struct {
	Kind       FaultKind
	Node       string // service id of the faulted node
	Start, End time.Duration
}

// Config configures Run. Zero fields take the defaults in brackets.
type Config struct {
	Messages int           // messages to send [200000]
	Senders  int           // concurrent senders [32]
	Clients  int           // clients the senders share, round robin [4]
	Nodes    int           // nodes per cycle [3]
	Period   time.Duration // lock-cycle period [20 s]
	Rotate   time.Duration // mean interval of extra Primary.Rotate calls [7 s]; negative: none
	Faults   bool          // inject faults
	// FaultGap is the mean quiet time between two faults [1 s].
	FaultGap time.Duration
	// FaultHold is the mean time a partition, stall or stopped tor lasts
	// [1.25 s].
	FaultHold time.Duration
	// Deadline is each message's deadline [20 s].
	Deadline time.Duration
	// DialTimeout is the nodes' and clients' dial timeout [2 s].
	DialTimeout time.Duration
	// Settle is how long after a fault window's end its errors still count
	// as inside it [3 s]: a stalled dial ends at its DialTimeout.
	Settle time.Duration
	Seed   uint64 // fault schedule seed [1]
	// MinRotations and MinFaults make the senders go on past Messages
	// until the run has seen that many rotations and faults (tests use them
	// so that a fast machine cannot finish before the first fault).
	MinRotations, MinFaults int
	// Env is the network to run on. Nil: a new in-process fake Tor
	// (tortest) with the faults Sever, Partition and Stall.
	Env *Env
	// Progress, if set, is called about once a second.
	Progress func(sent, done int)
}

// Env is a network a soak runs on.
type Env struct {
	// Name names the network in the report ("fake Tor").
	Name string
	// Controller creates the Primary's and the nodes' onions.
	Controller ghostcomm.TorController
	// NodeDialer is the Primary's and nodes' Dialer; ClientDialer the
	// clients'.
	NodeDialer, ClientDialer ghostcomm.Dialer
	// Faults are the faults the soak injects, one at a time, chosen at
	// random, or in turn if InTurn.
	Faults []Injector
	InTurn bool
	// FixedHold holds every fault exactly Config.FaultHold (else a random
	// time between half and one and a half of it).
	FixedHold bool
}

// Target is what a fault may hit.
type Target struct {
	// Nodes are the current cycle's nodes.
	Nodes []ghostcomm.NodeInfo
	// Live are the service ids of every node still running: the current
	// cycle's and those of replaced cycles in their grace window.
	Live []string
	// Primary is the Primary's service id.
	Primary string
}

// Injector injects one kind of fault.
type Injector struct {
	Kind FaultKind
	// Inject injects the fault against t, keeps it for hold (or less if ctx
	// ends), undoes it, and returns the service ids of the nodes (or the
	// Primary) it hit: an error is explained by the fault only if it names
	// one of them.
	Inject func(ctx context.Context, t Target, pick func(n int) int, hold time.Duration) []string
}

// FakeEnv returns the fake-Tor environment of tn with the faults Sever,
// Partition and Stall.
func FakeEnv(tn *tortest.Network) *Env {
	var stalled atomic.Value // service id whose dials stall, "" for none
	stalled.Store("")
	tn.SetDialLatency(func(addr string) time.Duration {
		if id := stalled.Load().(string); id != "" && strings.HasPrefix(addr, id) {
			return time.Hour
		}
		return 0
	})
	wait := func(ctx context.Context, d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	return &Env{
		Name:       "fake Tor",
		Controller: tn.Controller(), NodeDialer: tn.Dialer(), ClientDialer: tn.Dialer(),
		Faults: []Injector{
			{Sever, func(ctx context.Context, t Target, pick func(int) int, hold time.Duration) []string {
				id := t.Nodes[pick(len(t.Nodes))].Onion.ServiceID
				tn.Sever(id)
				return []string{id}
			}},
			{Partition, func(ctx context.Context, t Target, pick func(int) int, hold time.Duration) []string {
				id := t.Nodes[pick(len(t.Nodes))].Onion.ServiceID
				tn.Partition(id)
				wait(ctx, hold)
				tn.Heal(id)
				return []string{id}
			}},
			{Stall, func(ctx context.Context, t Target, pick func(int) int, hold time.Duration) []string {
				id := t.Nodes[pick(len(t.Nodes))].Onion.ServiceID
				stalled.Store(id)
				wait(ctx, hold)
				stalled.Store("")
				return []string{id}
			}},
		},
	}
}

func (c *Config) defaults() {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.Messages, 200000)
	def(&c.Senders, 32)
	def(&c.Clients, 4)
	def(&c.Nodes, 3)
	if c.Period == 0 {
		c.Period = 20 * time.Second
	}
	if c.Rotate == 0 {
		c.Rotate = 7 * time.Second
	}
	if c.FaultGap == 0 {
		c.FaultGap = time.Second
	}
	if c.Deadline == 0 {
		c.Deadline = 20 * time.Second
	}
	if c.FaultHold == 0 {
		c.FaultHold = 1250 * time.Millisecond
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 2 * time.Second
	}
	if c.Settle == 0 {
		c.Settle = 3 * time.Second
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
}

// Result is what Run recorded.
type Result struct {
	Config    Config
	Records   []Record
	Faults    []Fault
	Rotations []time.Duration // when a new cycle was handed out
	Elapsed   time.Duration
	Stats     ghostcomm.PrimaryStats
}

// Run runs the soak on an in-process fake Tor network.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	env := cfg.Env
	if env == nil {
		tn := tortest.NewNetwork(tortest.Config{})
		defer tn.Close()
		env = FakeEnv(tn)
		cfg.Env = env
	}
	node := ghostcomm.NodeConfig{DialTimeout: cfg.DialTimeout, HopTimeout: cfg.Deadline / 2}
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer pcancel()
	p, err := ghostcomm.NewPrimary(pctx, env.Controller, env.NodeDialer, ghostcomm.PrimaryConfig{
		Nodes: cfg.Nodes, Period: cfg.Period, Grace: cfg.Period, Node: node,
	})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	var clients []*ghostcomm.Client
	for range cfg.Clients {
		c, err := ghostcomm.NewClient(env.ClientDialer, p.Invite(nil), ghostcomm.ClientConfig{DialTimeout: cfg.DialTimeout, Timeout: cfg.Deadline})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		clients = append(clients, c)
	}

	begin := time.Now()
	since := func() time.Duration { return time.Since(begin) }
	res := &Result{Config: cfg, Records: make([]Record, 0, cfg.Messages)}
	var recMu sync.Mutex // guards res.Records
	var seenRotations, seenFaults atomic.Int64
	var mu sync.Mutex // guards res.Faults and res.Rotations

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var bg sync.WaitGroup
	// Rotations: watch the cycle id, whatever replaced it.
	bg.Go(func() {
		cur := p.Cycle().ID
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
			}
			if id := p.Cycle().ID; id != cur {
				cur = id
				mu.Lock()
				res.Rotations = append(res.Rotations, since())
				seenRotations.Add(1)
				mu.Unlock()
			}
		}
	})
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x50a4))
	var rngMu sync.Mutex
	jitter := func(mean time.Duration) time.Duration {
		rngMu.Lock()
		defer rngMu.Unlock()
		return mean/2 + time.Duration(rng.Int64N(int64(mean)))
	}
	sleep := func(d time.Duration) bool {
		select {
		case <-runCtx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	if cfg.Rotate > 0 {
		bg.Go(func() {
			for sleep(jitter(cfg.Rotate)) {
				rctx, cancel := context.WithTimeout(runCtx, 30*time.Second)
				p.Rotate(rctx)
				cancel()
			}
		})
	}
	if cfg.Faults && len(env.Faults) > 0 {
		pick := func(n int) int {
			rngMu.Lock()
			defer rngMu.Unlock()
			return rng.IntN(n)
		}
		bg.Go(func() {
			for turn := 0; sleep(jitter(cfg.FaultGap)); turn++ {
				inj := env.Faults[turn%len(env.Faults)]
				if !env.InTurn {
					inj = env.Faults[pick(len(env.Faults))]
				}
				target := Target{Nodes: p.Cycle().Nodes, Primary: p.Onion().ServiceID}
				for _, o := range p.Onions() {
					target.Live = append(target.Live, o.ServiceID)
				}
				start := since()
				hold := jitter(cfg.FaultHold)
				if env.FixedHold {
					hold = cfg.FaultHold
				}
				ids := inj.Inject(runCtx, target, pick, hold)
				end := since()
				mu.Lock()
				for _, id := range ids {
					res.Faults = append(res.Faults, Fault{Kind: inj.Kind, Node: id, Start: start, End: end})
				}
				seenFaults.Add(1)
				mu.Unlock()
			}
		})
	}
	var next, done atomic.Int64
	if cfg.Progress != nil {
		bg.Go(func() {
			for sleep(time.Second) {
				cfg.Progress(int(next.Load()), int(done.Load()))
			}
		})
	}
	primary := p.Onion().Addr()
	var senders sync.WaitGroup
	for s := range cfg.Senders {
		c := clients[s%len(clients)]
		senders.Go(func() {
			for {
				i := next.Add(1) - 1
				enough := seenRotations.Load() >= int64(cfg.MinRotations) && seenFaults.Load() >= int64(cfg.MinFaults)
				if i >= int64(cfg.Messages) && enough || ctx.Err() != nil {
					return
				}
				r := send(ctx, c, i, cfg.Deadline, since, primary)
				recMu.Lock()
				res.Records = append(res.Records, r)
				recMu.Unlock()
				done.Add(1)
			}
		})
	}
	senders.Wait()
	res.Elapsed = since()
	stop()
	bg.Wait()
	res.Stats = p.Stats()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

// send sends message i and records it. primary is the Primary's address: an
// error that names no hop but failed to reach an onion, or got a cycle that
// had ended, is the client's fetch of the cycle, the only dial it makes
// that is not to a hop, and is recorded as naming the Primary (hop 0).
func send(ctx context.Context, c *ghostcomm.Client, i int64, deadline time.Duration, since func() time.Duration, primary string) Record {
	mctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	r := Record{Start: since()}
	msg := binary.BigEndian.AppendUint64([]byte("soak message "), uint64(i))
	out, err := c.Send(mctx, msg)
	r.End = since()
	switch {
	case err == nil && out.Verified:
		r.Outcome = Verified
	case err == nil:
		r.Outcome = Unverified
	default:
		r.Outcome = Failed
		r.Err = err.Error()
		r.Class = ghostcomm.ActionFor(err).String()
		r.Sentinel = Sentinel(err)
		var he *ghostcomm.HopError
		if errors.As(err, &he) {
			r.Hop, r.Onion = he.Hop, he.Onion
		} else if errors.Is(err, ghostcomm.ErrOnionUnreachable) || errors.Is(err, ghostcomm.ErrOnionNotFound) || errors.Is(err, ghostcomm.ErrStaleCycle) {
			// The fetch of the cycle: the Primary could not be reached
			// (also when the deadline came first: the error says so, as
			// a HopError does for a hop), or handed out a cycle that had
			// ended (its next one late).
			r.Onion = primary
		} else if errors.Is(err, context.DeadlineExceeded) || r.End-r.Start >= deadline {
			// The deadline passed with neither an answer nor a hop or
			// the Primary to blame: the message is lost.
			r.Outcome = Lost
		}
	}
	return r
}

var sentinels = []struct {
	name string
	err  error
}{
	{"ErrHopUnreachable", ghostcomm.ErrHopUnreachable},
	{"ErrHopTimeout", ghostcomm.ErrHopTimeout},
	{"ErrOnionNotFound", ghostcomm.ErrOnionNotFound},
	{"ErrOnionUnreachable", ghostcomm.ErrOnionUnreachable},
	{"ErrStaleCycle", ghostcomm.ErrStaleCycle},
	{"ErrReplay", ghostcomm.ErrReplay},
	{"ErrBusy", ghostcomm.ErrBusy},
	{"ErrBudget", ghostcomm.ErrBudget},
	{"ErrRejected", ghostcomm.ErrRejected},
	{"ErrAuth", ghostcomm.ErrAuth},
	{"ErrVerify", ghostcomm.ErrVerify},
	{"ErrProcessing", ghostcomm.ErrProcessing},
	{"ErrMalformed", ghostcomm.ErrMalformed},
	{"ErrClosed", ghostcomm.ErrClosed},
	{"ErrFrameTooLarge", ghostcomm.ErrFrameTooLarge},
	{"ErrBadSignature", ghostcomm.ErrBadSignature},
	{"ErrWrongPrimary", ghostcomm.ErrWrongPrimary},
	{"context.DeadlineExceeded", context.DeadlineExceeded},
	{"context.Canceled", context.Canceled},
}

// Sentinel names the first package sentinel (or context error) err matches,
// "other" if none.
func Sentinel(err error) string {
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return "other"
}

// Explained reports whether r's error is explained by a fault: r overlaps
// the fault's window (extended by settle) and names the faulted node.
//
// Of several such faults it returns the one that started last: faults
// follow each other, and an error is caused by the latest fault that hit
// the node it names.
func (r Record) Explained(faults []Fault, settle time.Duration) (Fault, bool) {
	var best Fault
	found := false
	for _, f := range faults {
		if r.Start <= f.End+settle && r.End >= f.Start && r.Onion != "" && (f.Node == AllNodes || strings.HasPrefix(r.Onion, f.Node)) {
			if !found || f.Start > best.Start {
				best, found = f, true
			}
		}
	}
	return best, found
}

// InFault reports the first fault whose window (extended by settle) r
// overlaps.
func (r Record) InFault(faults []Fault, settle time.Duration) (Fault, bool) {
	for _, f := range faults {
		if r.Start <= f.End+settle && r.End >= f.Start {
			return f, true
		}
	}
	return Fault{}, false
}

// String describes a record for error messages.
func (r Record) String() string {
	return fmt.Sprintf("[%v–%v] %s %s %s hop %d %s: %s", r.Start.Round(time.Millisecond), r.End.Round(time.Millisecond), r.Outcome, r.Class, r.Sentinel, r.Hop, r.Onion, r.Err)
}
