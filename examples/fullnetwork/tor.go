package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl"
	"github.com/ghostcomm/ghostcomm/torctl/testnet"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// torSetup is the Tor a demo runs on: a controller for the Primary's and
// nodes' onions, the dialer the nodes use, and the dialer the client uses
// (on a real network, possibly another tor process).
type torSetup struct {
	controller    ghostcomm.TorController
	serviceDialer ghostcomm.Dialer
	clientDialer  ghostcomm.Dialer
	close         func() error
	pids          []int // tor processes this program started, if any
}

type torOptions struct {
	control, socks, torrc, datadir string
	logger                         *slog.Logger
	out                            io.Writer
}

var torStarters = map[string]func(context.Context, torOptions) (*torSetup, error){
	"fake":    startFake,
	"testnet": startTestnet,
	"system":  startSystem,
	"launch":  startLaunch,
}

func torModes() []string {
	return []string{"fake", "testnet", "system", "launch"}
}

func startTor(ctx context.Context, mode string, o torOptions) (*torSetup, error) {
	start, ok := torStarters[mode]
	if !ok {
		return nil, fmt.Errorf("unknown -tor mode %q (one of %v)", mode, torModes())
	}
	return start(ctx, o)
}

// startFake runs the network on the in-process fake Tor: real loopback TCP
// connections, well-formed v3 onion addresses, no tor process.
func startFake(ctx context.Context, o torOptions) (*torSetup, error) {
	n := tortest.NewNetwork(tortest.Config{Logger: o.logger})
	return &torSetup{
		controller:    n.Controller(),
		serviceDialer: n.Dialer(),
		clientDialer:  n.Dialer(),
		close:         n.Close,
	}, nil
}

// startTestnet starts a private Tor network on 127.0.0.1 (3 directory
// authorities, 3 relays, 2 client tors; no exit, no route to the public Tor
// network) and runs the demo on real onion services: the Primary's and
// nodes' onions spread over both client tors, the client on the second.
func startTestnet(ctx context.Context, o torOptions) (_ *torSetup, err error) {
	if err := testnet.Available(""); err != nil {
		return nil, err
	}
	start := time.Now()
	n, err := testnet.Start(ctx, testnet.Config{Clients: 2, Logger: o.logger})
	if err != nil {
		return nil, err
	}
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(append(errs, n.Close())...)
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	fmt.Fprintf(o.out, "Private Tor network up in %v (3 authorities, 3 relays, 2 client tors on 127.0.0.1)\n", time.Since(start).Round(time.Millisecond))
	cs := n.Clients()
	var ctrls []ghostcomm.TorController
	for _, c := range cs {
		ctrl, err := torctl.Connect(ctx, torctl.ConnectConfig{Addr: c.ControlAddr, CookiePath: c.CookiePath, Logger: o.logger})
		if err != nil {
			return nil, err
		}
		closers = append(closers, ctrl.Close)
		ctrls = append(ctrls, ctrl)
	}
	serviceDialer, err := torctl.NewDialer(cs[0].SocksAddr, torctl.DialerConfig{Logger: o.logger})
	if err != nil {
		return nil, err
	}
	clientDialer, err := torctl.NewDialer(cs[1].SocksAddr, torctl.DialerConfig{Logger: o.logger})
	if err != nil {
		return nil, err
	}
	return &torSetup{
		controller:    torctl.Spread(ctrls...),
		serviceDialer: serviceDialer,
		clientDialer:  clientDialer,
		close:         closeAll,
		pids:          n.PIDs(),
	}, nil
}

// startSystem uses a tor that is already running: its ControlPort (cookie or
// password-less authentication) and its SocksPort. On a machine connected to
// the Internet that is the public Tor network. Nothing in this repository's
// tests runs this mode.
func startSystem(ctx context.Context, o torOptions) (*torSetup, error) {
	ctrl, err := torctl.Connect(ctx, torctl.ConnectConfig{Addr: o.control, Logger: o.logger})
	if err != nil {
		return nil, err
	}
	d, err := torctl.NewDialer(o.socks, torctl.DialerConfig{Logger: o.logger})
	if err != nil {
		ctrl.Close()
		return nil, err
	}
	return &torSetup{controller: ctrl, serviceDialer: d, clientDialer: d, close: ctrl.Close}, nil
}

// startLaunch starts a tor binary with the torrc and data directory given
// (-torrc, -datadir); it exits with this program. The torrc decides which Tor
// network it joins. Nothing in this repository's tests runs this mode.
func startLaunch(ctx context.Context, o torOptions) (*torSetup, error) {
	if o.torrc == "" || o.datadir == "" {
		return nil, errors.New("-tor=launch needs -torrc and -datadir")
	}
	ctrl, err := torctl.Launch(ctx, torctl.LaunchConfig{TorrcFile: o.torrc, DataDir: o.datadir, Logger: o.logger})
	if err != nil {
		return nil, err
	}
	if err := ctrl.WaitBootstrap(ctx); err != nil {
		ctrl.Close()
		return nil, err
	}
	socks, err := ctrl.SOCKSAddr(ctx)
	if err != nil {
		ctrl.Close()
		return nil, err
	}
	d, err := torctl.NewDialer(socks, torctl.DialerConfig{Logger: o.logger})
	if err != nil {
		ctrl.Close()
		return nil, err
	}
	return &torSetup{controller: ctrl, serviceDialer: d, clientDialer: d, close: ctrl.Close}, nil
}
