// Command fullnetwork assembles a whole ghostcomm network in one process — a
// Primary, its nodes and a client — sends one message through the chain and
// prints what happened at each hop and the verified result.
//
//	go run ./examples/fullnetwork                 # on the in-process fake Tor
//	go run ./examples/fullnetwork -hops 5 -msg "hello"
//	go run ./examples/fullnetwork -protocol sealed              # sealed mode, chain form
//	go run ./examples/fullnetwork -protocol sealed -form relay  # only the exit processes
//	go run ./examples/fullnetwork -hops 3 -remote 2   # 2 of the 3 nodes join as remote nodes
//	go run ./examples/fullnetwork -tor=testnet    # a private Tor network on 127.0.0.1
//	go run ./examples/fullnetwork -tor=system     # a running tor: ControlPort 9051, SocksPort 9050
//	go run ./examples/fullnetwork -tor=launch -torrc FILE -datadir DIR
//
// -tor=testnet needs tor and tor-gencert installed (.ci/install-tor.sh) and
// starts seven tor processes that reach nothing but each other; they are all
// stopped when the program ends. -tor=system and -tor=launch use whatever
// Tor network the tor is configured for, normally the public one.
//
// -remote N runs N of the nodes as remote nodes, as operators on other
// machines would (ghostcomm.RemoteNode, here in the same process and on the
// same tor): each has its own identity key, enrolled with the Primary under
// an operator label of its own, makes its own key pair and onion, and joins
// the lock-cycle through the Primary's onion with a signed descriptor. The
// Primary never holds their private keys.
//
// It exits 0 when the result matches what the client computed for the route,
// 1 when it does not, and 2 on any other failure.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ghostcomm/ghostcomm"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fullnetwork", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hops := fs.Int("hops", 3, "number of nodes in the lock-cycle, all used as hops (1..255)")
	remote := fs.Int("remote", 0, "how many of the -hops nodes join as remote nodes (0..hops)")
	msg := fs.String("msg", "hello from ghostcomm", "the message to send")
	mode := fs.String("tor", "fake", "Tor underneath: "+strings.Join(torModes(), ", "))
	control := fs.String("control", "127.0.0.1:9051", "control port, for -tor=system")
	socks := fs.String("socks", "127.0.0.1:9050", "SOCKS port, for -tor=system")
	torrc := fs.String("torrc", "", "torrc for -tor=launch (required there)")
	datadir := fs.String("datadir", "", "tor data directory for -tor=launch (required there)")
	timeout := fs.Duration("timeout", 0, "overall time limit (default: 30s on the fake Tor, 5m on a real one)")
	verbose := fs.Bool("v", false, "log what the library does")
	protocol := fs.String("protocol", "layered", "message protocol: layered or sealed")
	form := fs.String("form", "", "sealed-mode form: chain (the default: every hop processes) or relay (only the exit does)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fullnetwork: unexpected argument %q (the message goes in -msg)\n", fs.Arg(0))
		return 2
	}
	if *hops < 1 || *hops > 255 {
		fmt.Fprintln(stderr, "fullnetwork: -hops must be 1..255")
		return 2
	}
	netCfg := netConfig{hops: *hops, remote: *remote, protocol: ghostcomm.Protocol(*protocol)}
	if *form != "" {
		if netCfg.protocol != ghostcomm.ProtocolSealed {
			fmt.Fprintln(stderr, "fullnetwork: -form needs -protocol sealed")
			return 2
		}
		netCfg.sealed.Form = ghostcomm.SealedForm(*form)
	}
	if netCfg.protocol != ghostcomm.ProtocolLayered && netCfg.protocol != ghostcomm.ProtocolSealed ||
		netCfg.sealed.Form != "" && netCfg.sealed.Form != ghostcomm.FormChain && netCfg.sealed.Form != ghostcomm.FormRelay {
		fmt.Fprintln(stderr, "fullnetwork: -protocol must be layered or sealed, -form chain or relay")
		return 2
	}
	if *remote < 0 || *remote > *hops {
		fmt.Fprintln(stderr, "fullnetwork: -remote must be 0..hops")
		return 2
	}
	if *timeout == 0 {
		*timeout = 30 * time.Second
		if *mode != "fake" {
			*timeout = 5 * time.Minute
		}
	}
	var logger *slog.Logger
	if *verbose {
		logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	// Ctrl-C ends the demo through the same path as an error, so that every
	// onion is removed and every tor this program started is stopped.
	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(sigCtx, *timeout)
	defer cancel()

	fmt.Fprintf(stdout, "Starting Tor (%s)...\n", *mode)
	tor, err := startTor(ctx, *mode, torOptions{control: *control, socks: *socks, torrc: *torrc, datadir: *datadir, logger: logger, out: stdout})
	if err != nil {
		fmt.Fprintf(stderr, "fullnetwork: %v\n", err)
		return 2
	}
	defer func() {
		if err := tor.close(); err != nil {
			fmt.Fprintf(stderr, "fullnetwork: stopping Tor: %v\n", err)
		}
	}()
	if err := demo(ctx, tor, netCfg, []byte(*msg), logger, stdout); err != nil {
		fmt.Fprintf(stderr, "fullnetwork: %v\n", err)
		if errors.Is(err, ghostcomm.ErrVerify) {
			return 1
		}
		return 2
	}
	return 0
}

// netConfig is the network the demo assembles.
type netConfig struct {
	hops     int
	remote   int                // how many of the hops are remote nodes
	protocol ghostcomm.Protocol // "" or layered: the layered protocol
	sealed   ghostcomm.SealedConfig
}

func demo(ctx context.Context, tor *torSetup, nc netConfig, msg []byte, logger *slog.Logger, out io.Writer) error {
	hops, remote := nc.hops, nc.remote
	var mu sync.Mutex
	var events []ghostcomm.HopEvent
	start := time.Now()
	nodeCfg := ghostcomm.NodeConfig{
		// On a real Tor, an onion not published within this is replaced.
		PublishTimeout: 45 * time.Second,
		Observer: func(ev ghostcomm.HopEvent) {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		},
	}
	cfg := ghostcomm.PrimaryConfig{Nodes: hops - remote, Protocol: nc.protocol, Sealed: nc.sealed, Logger: logger, Node: nodeCfg}
	if remote > 0 {
		stop, err := startRemote(tor, remote, nodeCfg, logger, &cfg)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Fprintf(out, "Remote    %d nodes, each with its own identity key, enrolled; they join through the Primary's onion\n", remote)
	}
	primary, err := ghostcomm.NewPrimary(ctx, tor.controller, tor.serviceDialer, cfg)
	if err != nil {
		return fmt.Errorf("starting the primary: %w", err)
	}
	defer primary.Close()
	invite := primary.Invite(nil)
	cycle := primary.Cycle()
	fmt.Fprintf(out, "Primary   %s  (up in %v, %d nodes each on its own onion, %d of them remote)\n", primary.Onion().Addr(), time.Since(start).Round(time.Millisecond), hops, remote)
	fmt.Fprintf(out, "Invite    %s\n", invite)
	fmt.Fprintf(out, "Cycle     %x  valid %s .. %s\n", cycle.ID[:6], cycle.NotBefore.UTC().Format(time.TimeOnly), cycle.NotAfter.UTC().Format(time.TimeOnly))
	relay := cycle.Protocol == ghostcomm.ProtocolSealed && cycle.Sealed.Form == ghostcomm.FormRelay
	if cycle.Protocol == ghostcomm.ProtocolSealed {
		fmt.Fprintf(out, "Protocol  sealed, %s form: packets and replies of a fixed size (largest class %d bytes), routes of at most %d hops\n\n",
			cycle.Sealed.Form, cycle.Sealed.MaxPacket, ghostcomm.MaxSealedHops)
	} else {
		fmt.Fprintf(out, "Protocol  layered\n\n")
	}

	client, err := ghostcomm.NewClient(tor.clientDialer, invite, ghostcomm.ClientConfig{Logger: logger})
	if err != nil {
		return err
	}
	defer client.Close()
	t0 := time.Now()
	if _, err := client.Fetch(ctx); err != nil {
		return fmt.Errorf("fetching the lock-cycle payload: %w", err)
	}
	fmt.Fprintf(out, "Client    fetched and verified the payload (signed by %s...) in %v\n", invite.Fingerprint.String()[:16], time.Since(t0).Round(time.Millisecond))
	fmt.Fprintf(out, "Client    sends %q through %d hops\n\n", msg, min(hops, routeMax(cycle)))

	res, err := client.Send(ctx, msg)
	if err != nil && !errors.Is(err, ghostcomm.ErrVerify) {
		return fmt.Errorf("sending: %w", err)
	}
	mu.Lock()
	evs := append([]ghostcomm.HopEvent(nil), events...)
	mu.Unlock()
	sort.Slice(evs, func(i, j int) bool { return evs[i].Start.Before(evs[j].Start) })
	pos := map[string]int{}
	for i, n := range res.Route {
		pos[n.Onion.ServiceID] = i + 1
	}
	local := map[string]bool{}
	for _, o := range primary.Onions() {
		local[o.ServiceID] = true
	}
	for _, ev := range evs {
		kind := "remote"
		if local[ev.Onion.ServiceID] {
			kind = "local"
		}
		fmt.Fprintf(out, "hop %d  %s  (%s)\n", pos[ev.Onion.ServiceID], ev.Onion.Addr(), kind)
		fmt.Fprintf(out, "       %s: %d bytes in, %d bytes out; peel, process and seal %v; answered after %v\n",
			ev.Processor, ev.InSize, ev.OutSize, ev.Process.Round(time.Microsecond), ev.Total.Round(time.Microsecond))
	}
	// In relay form only the exit processes the data.
	processed := res.Route
	if relay {
		processed = res.Route[len(res.Route)-1:]
	}
	want, _ := ghostcomm.Expected(processed, msg)
	fmt.Fprintf(out, "\nResult    %s\n", printable(res.Data))
	fmt.Fprintf(out, "Expected  %s\n", printable(want))
	fmt.Fprintf(out, "Round trip %v\n", res.RoundTrip.Round(time.Microsecond))
	if err != nil || !res.Verified {
		fmt.Fprintln(out, "Verified  NO: the result is not what the route's processing gives")
		if err == nil {
			err = fmt.Errorf("%w: result not verified", ghostcomm.ErrVerify)
		}
		return err
	}
	if relay {
		fmt.Fprintln(out, "Verified  yes: the exit processed the data, and only this client could read the answer")
	} else {
		fmt.Fprintln(out, "Verified  yes: the data passed every hop, in order, and only this client could read the answer")
	}
	printStats(out, primary.Stats())
	return nil
}

// routeMax is the longest route the cycle's protocol carries.
func routeMax(c *ghostcomm.Cycle) int {
	if c.Protocol == ghostcomm.ProtocolSealed {
		return ghostcomm.MaxSealedHops
	}
	return len(c.Nodes)
}

// startRemote starts n remote nodes for the Primary that cfg configures:
// it gives cfg a key and an onion key (so that the invite is known before
// the Primary starts), a RemoteSource with the nodes' identities enrolled,
// each under an operator label of its own, and MinNodes of every node.
// stop closes the nodes.
func startRemote(tor *torSetup, n int, nodeCfg ghostcomm.NodeConfig, logger *slog.Logger, cfg *ghostcomm.PrimaryConfig) (stop func(), err error) {
	dir, err := os.MkdirTemp("", "fullnetwork-") // mode 0700
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir) // the keys are in memory from here on
	id, err := ghostcomm.CreateIdentity(dir, nil)
	if err != nil {
		return nil, err
	}
	id.Apply(cfg)
	invite, _ := id.Invite("", 0)
	src, err := ghostcomm.NewRemoteSource(ghostcomm.RemoteSourceConfig{Wait: time.Minute, Logger: logger})
	if err != nil {
		return nil, err
	}
	cfg.Sources = []ghostcomm.NodeSource{src}
	cfg.MinNodes = cfg.Nodes + n
	var nodes []*ghostcomm.RemoteNode
	stop = func() {
		for _, rn := range nodes {
			rn.Close()
		}
	}
	for i := range n {
		_, key, err := ed25519.GenerateKey(rand.Reader) // an operator's, kept on their machine
		if err != nil {
			stop()
			return nil, err
		}
		if err := src.Enroll(key.Public().(ed25519.PublicKey), fmt.Sprintf("operator-%d", i+1)); err != nil {
			stop()
			return nil, err
		}
		salt := make([]byte, 16)
		rand.Read(salt)
		nc := nodeCfg
		nc.Processor = ghostcomm.HashSpec([]string{"sha256", "sha3-256", "sha512"}[i%3], salt, 1, true)
		rn, err := ghostcomm.NewRemoteNode(tor.controller, tor.serviceDialer, ghostcomm.RemoteNodeConfig{
			Identity: key, Invite: invite, Node: nc, Retry: time.Second, Logger: logger,
		})
		if err != nil {
			stop()
			return nil, err
		}
		nodes = append(nodes, rn)
	}
	return stop, nil
}

// printStats prints the counters an operator watches.
func printStats(out io.Writer, s ghostcomm.PrimaryStats) {
	n := s.Nodes
	fmt.Fprintf(out, "\nPrimary   %d payloads answered, %d refused, %d streams open\n", s.Payloads, s.PayloadsRefused, s.Streams)
	fmt.Fprintf(out, "Nodes     %d accepted, %d failed, %d duplicates answered, %d refused (busy %d, replay %d, stale %d, auth %d, malformed %d, budget %d)\n",
		n.Accepted, n.Failed, n.Duplicates, n.Refused.Total(), n.Refused.Busy, n.Refused.Replay, n.Refused.Stale,
		n.Refused.Auth, n.Refused.Malformed, n.Refused.Budget)
	fmt.Fprintf(out, "          %d in flight, %d bytes held, %d streams in, %d out; %d dials (%d failed), %d resends\n",
		n.InFlight, n.BytesHeld, n.Streams, n.OutStreams, n.Dials, n.DialFailures, n.Resends)
}

func printable(b []byte) string {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return fmt.Sprintf("%x (%d bytes)", b, len(b))
		}
	}
	return fmt.Sprintf("%s (%d bytes)", b, len(b))
}
