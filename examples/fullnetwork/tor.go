package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/ghostcomm/ghostcomm"
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
}

type torOptions struct {
	control, socks, torrc, datadir string
	logger                         *slog.Logger
	out                            io.Writer
}

var torStarters = map[string]func(context.Context, torOptions) (*torSetup, error){
	"fake": startFake,
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
