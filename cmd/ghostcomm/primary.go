package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ghostcomm/ghostcomm"
)

// envStateDir is where systemd's StateDirectory= puts the state directory.
const envStateDir = "STATE_DIRECTORY"

// firstCycleRetry is the pause before a Primary with remote nodes tries
// again to form its first lock-cycle.
const firstCycleRetry = 5 * time.Second

// Files of a state directory besides ghostcomm.IdentityFile: the invite
// (without client authorization), and one invite per client.
const (
	inviteFile = "invite"
	invitesDir = "invites"
)

func (e *env) primary(ctx context.Context, args []string) error {
	fs := e.newFlags("primary", "ghostcomm primary -state DIR [-tor system|launch|testnet] [flags]")
	state := fs.String("state", "", "state directory: keys and invites (default $"+envStateDir+")")
	var tf torFlags
	tf.register(fs, true)
	nodes := fs.Int("nodes", ghostcomm.DefaultNodes, "nodes per lock-cycle that the Primary runs itself, 1..255 (0..255 with -remote)")
	remote := fs.Bool("remote", false, "also take remote nodes: those enrolled with \"ghostcomm nodes\" (re-read while running)")
	minNodes := fs.Int("min-nodes", 1, "the fewest nodes a lock-cycle forms with; else the current one is extended and the rotation retried")
	remoteWait := fs.Duration("remote-wait", ghostcomm.DefaultRemoteWait, "with -remote: how long a new lock-cycle waits for remote nodes' descriptors")
	period := fs.Duration("period", ghostcomm.DefaultPeriod, "how long a lock-cycle is handed out")
	publishAhead := fs.Duration("publish-ahead", 0, "how long before a lock-cycle ends its successor is formed (0: a quarter of -period, at most 1m); remote nodes submit descriptors in the first half of it")
	grace := fs.Duration("grace", ghostcomm.DefaultGrace, "how long a replaced cycle's nodes keep serving")
	clientAuth := fs.Int("client-auth", 0, "admit only clients holding a key: make keys until there are at least N (see \"ghostcomm client\")")
	metrics := fs.String("metrics", "", "serve Prometheus metrics on this 127.0.0.1 address (host:port); off when empty")
	protocol := fs.String("protocol", string(ghostcomm.ProtocolLayered), "message protocol the lock-cycles speak: layered or sealed (fixed-size packets; remote nodes follow)")
	form := fs.String("form", "", "with -protocol sealed: chain (every hop processes; the default) or relay (only the exit does)")
	var lf logFlags
	lf.register(fs)
	if err := e.parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("primary: unexpected argument %q", fs.Arg(0))
	}
	*state = stateDir(*state)
	switch {
	case *state == "":
		return usageErrorf("primary: -state DIR is required")
	case *remote && (*nodes < 0 || *nodes > 255):
		return usageErrorf("-nodes must be 0..255")
	case !*remote && (*nodes < 1 || *nodes > 255):
		return usageErrorf("-nodes must be 1..255 (0 with -remote)")
	case *minNodes < 1 || *minNodes > 255:
		return usageErrorf("-min-nodes must be 1..255")
	case *remoteWait <= 0:
		return usageErrorf("-remote-wait must be positive")
	case *period <= 0:
		return usageErrorf("-period must be positive")
	case *publishAhead < 0 || (*publishAhead > 0 && *publishAhead >= *period):
		return usageErrorf("-publish-ahead must be shorter than -period")
	case *grace < 0:
		return usageErrorf("-grace must not be negative")
	case *clientAuth < 0:
		return usageErrorf("-client-auth must not be negative")
	case *protocol != string(ghostcomm.ProtocolLayered) && *protocol != string(ghostcomm.ProtocolSealed):
		return usageErrorf("-protocol must be layered or sealed")
	case *form != "" && *protocol != string(ghostcomm.ProtocolSealed):
		return usageErrorf("-form needs -protocol sealed")
	case *form != "" && *form != string(ghostcomm.FormChain) && *form != string(ghostcomm.FormRelay):
		return usageErrorf("-form must be chain or relay")
	}
	logger, err := lf.logger(e.stderr, false)
	if err != nil {
		return err
	}
	var metricsLn net.Listener
	if *metrics != "" {
		if metricsLn, err = listenMetrics(*metrics); err != nil {
			return err
		}
		defer metricsLn.Close()
	}

	id, created, err := ghostcomm.LoadOrCreateIdentity(*state, nil)
	if err != nil {
		return &usageError{fmt.Errorf("state directory: %w", err)}
	}
	if created {
		logger.Info("created a new identity", "path", filepath.Join(*state, ghostcomm.IdentityFile))
	}
	for k := 1; len(id.Clients) < *clientAuth; k++ {
		name := fmt.Sprintf("client-%d", k)
		if _, ok := id.Invite(name, 0); ok {
			continue
		}
		if _, err := id.AddClient(name, nil); err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
		logger.Info("added a client key", "name", name)
	}

	var src *ghostcomm.RemoteSource
	var applyNodes func() error
	if *remote {
		if src, err = ghostcomm.NewRemoteSource(ghostcomm.RemoteSourceConfig{Wait: *remoteWait, Logger: logger}); err != nil {
			return usageErrorf("%v", err)
		}
		applyNodes = nodeApplier(*state, src, logger)
		if err := applyNodes(); err != nil {
			return &usageError{fmt.Errorf("state directory: %w", err)}
		}
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	progress := newProgress(e.stderr)
	tor, err := tf.start(ctx, logger, progress)
	if err != nil {
		return interrupted(ctx, progress, err)
	}
	defer tor.close()

	cfg := ghostcomm.PrimaryConfig{Nodes: *nodes, MinNodes: *minNodes, Period: *period, PublishAhead: *publishAhead, Grace: *grace, Logger: logger,
		Protocol: ghostcomm.Protocol(*protocol), Sealed: ghostcomm.SealedConfig{Form: ghostcomm.SealedForm(*form)}}
	if *grace == 0 {
		cfg.Grace = -1 // the flag's zero means none; the library's means the default
	}
	if src != nil {
		cfg.Sources = []ghostcomm.NodeSource{src}
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go pollNodes(pctx, applyNodes, logger)
	}
	id.Apply(&cfg)
	if src != nil {
		progress.update("publishing the Primary's onion and %d nodes, and waiting up to %v for remote nodes", *nodes, *remoteWait)
	} else {
		progress.update("publishing the Primary's onion and %d nodes", *nodes)
	}
	start := time.Now()
	p, err := ghostcomm.NewPrimary(ctx, tor.ctrl, tor.dialer, cfg)
	// With remote nodes, the first cycle forms once enough have joined:
	// until then, try again.
	for src != nil && errors.Is(err, ghostcomm.ErrTooFewNodes) && ctx.Err() == nil {
		hint := ""
		if list, _ := readNodeList(*state); len(list) == 0 {
			hint = " (no node is enrolled: ghostcomm nodes -state " + *state + " add NAME KEY)"
		}
		progress.line("the first lock-cycle did not form (%v)%s; trying again in %v", oneLine(err.Error()), hint, firstCycleRetry)
		select {
		case <-ctx.Done():
			continue
		case <-time.After(firstCycleRetry):
		}
		p, err = ghostcomm.NewPrimary(ctx, tor.ctrl, tor.dialer, cfg)
	}
	progress.done()
	if err != nil {
		return interrupted(ctx, progress, fmt.Errorf("starting the Primary: %w", err))
	}
	defer p.Close()
	progress.line("published in %v: %s.onion", time.Since(start).Round(100*time.Millisecond), p.Onion().ServiceID)
	if src != nil {
		progress.line("first lock-cycle: %d nodes (%d remote)", len(p.Cycle().Nodes), len(p.Cycle().Nodes)-*nodes)
	}

	if err := e.writeInvites(*state, id, p); err != nil {
		return err
	}
	if metricsLn != nil {
		srv := serveMetrics(metricsLn, p, logger)
		defer srv.Close()
		progress.line("metrics on http://%s/metrics", metricsLn.Addr())
	}

	<-ctx.Done()
	stop() // a second signal ends the process at once
	progress.line("stopping: removing onions")
	err = errors.Join(p.Close(), tor.close())
	if err != nil {
		return fmt.Errorf("stopping: %w", err)
	}
	return nil
}

// writeInvites prints the invites on stdout and stores them in the state
// directory: the Primary's invite in <state>/invite when it admits anyone,
// else one per client in <state>/invites/<name>. Invites of removed clients
// are deleted.
func (e *env) writeInvites(state string, id *ghostcomm.Identity, p *ghostcomm.Primary) error {
	dir := filepath.Join(state, invitesDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	keep := map[string]bool{}
	if len(id.Clients) == 0 {
		path := filepath.Join(state, inviteFile)
		inv := p.Invite(nil).String()
		if err := writeFileAtomic(path, []byte(inv+"\n")); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, inv)
		fmt.Fprintf(e.stderr, "invite stored in %s\n", path)
	} else {
		os.Remove(filepath.Join(state, inviteFile)) // it would no longer work
		for _, c := range id.Clients {
			inv := p.Invite(&c.Private).String()
			if err := writeFileAtomic(filepath.Join(dir, c.Name), []byte(inv+"\n")); err != nil {
				return err
			}
			keep[c.Name] = true
			fmt.Fprintf(e.stdout, "%s %s\n", c.Name, inv)
		}
		fmt.Fprintf(e.stderr, "invites stored in %s%c<name>\n", dir, filepath.Separator)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, ent := range ents {
		if !keep[ent.Name()] {
			os.Remove(filepath.Join(dir, ent.Name()))
		}
	}
	return nil
}

// writeFileAtomic writes b to path, mode 0600, through a temporary file
// renamed over it.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// interrupted returns nil when a signal ended the start (everything started
// is stopped by the caller's defers: a stop asked for, exit 0), else err.
func interrupted(ctx context.Context, progress *progress, err error) error {
	if ctx.Err() != nil {
		progress.line("interrupted while starting: stopped")
		return nil
	}
	return err
}
