package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl"
	"github.com/ghostcomm/ghostcomm/torctl/testnet"
)

// envControlPassword names the environment variable with tor's control
// password, for a ControlPort with HashedControlPassword (a flag would show
// it to every user of the machine in the process list).
const envControlPassword = "GHOSTCOMM_CONTROL_PASSWORD"

// torFlags choose the tor a command uses.
type torFlags struct {
	mode, control, socks, cookie, torrc, datadir string
}

func (t *torFlags) register(fs *flag.FlagSet, primary bool) {
	if primary {
		fs.StringVar(&t.mode, "tor", "system", "which tor: system (a running tor's -control and -socks), launch (start tor with -torrc and -datadir), testnet (a private Tor network on 127.0.0.1, to try things out)")
		fs.StringVar(&t.torrc, "torrc", "", "torrc of the tor to start, for -tor launch")
		fs.StringVar(&t.datadir, "datadir", "", "DataDirectory of the tor to start, for -tor launch")
	}
	fs.StringVar(&t.control, "control", torctl.DefaultControlAddr, "tor's ControlPort, host:port or unix:/path (password from $"+envControlPassword+")")
	fs.StringVar(&t.cookie, "cookie", "", "tor's control_auth_cookie file, if not where tor says")
	fs.StringVar(&t.socks, "socks", "127.0.0.1:9050", "tor's SocksPort (with ExtendedErrors)")
}

// torSetup is a running tor: the controller for the Primary's onions, the
// dialer through its SocksPort, and what to close.
type torSetup struct {
	ctrl   *torctl.Controller
	dialer *torctl.Dialer
	close  func() error
}

func (t *torFlags) connect(ctx context.Context, logger *slog.Logger) (*torctl.Controller, error) {
	ctrl, err := torctl.Connect(ctx, torctl.ConnectConfig{
		Addr: t.control, Password: os.Getenv(envControlPassword), CookiePath: t.cookie, Logger: logger,
	})
	if err != nil {
		return nil, err // names the control port
	}
	return ctrl, nil
}

// start starts or connects to the tor of t.mode for a Primary.
func (t *torFlags) start(ctx context.Context, logger *slog.Logger, progress *progress) (*torSetup, error) {
	switch t.mode {
	case "system":
		ctrl, err := t.connect(ctx, logger)
		if err != nil {
			return nil, err
		}
		d, err := torctl.NewDialer(t.socks, torctl.DialerConfig{Logger: logger})
		if err != nil {
			ctrl.Close()
			return nil, usageErrorf("-socks: %v", err)
		}
		return &torSetup{ctrl: ctrl, dialer: d, close: ctrl.Close}, nil
	case "launch":
		ctrl, err := torctl.Launch(ctx, torctl.LaunchConfig{TorrcFile: t.torrc, DataDir: t.datadir, Logger: logger})
		var ce *torctl.ConfigError
		if errors.As(err, &ce) {
			return nil, usageErrorf("-tor launch needs -torrc and -datadir: %v", err)
		}
		if err != nil {
			return nil, fmt.Errorf("starting tor: %w", err)
		}
		s, err := finishLaunch(ctx, ctrl, logger, progress)
		if err != nil {
			ctrl.Close()
			return nil, err
		}
		return s, nil
	case "testnet":
		return startTestnet(ctx, logger, progress)
	}
	return nil, usageErrorf("-tor must be system, launch or testnet, not %q", t.mode)
}

func finishLaunch(ctx context.Context, ctrl *torctl.Controller, logger *slog.Logger, progress *progress) (*torSetup, error) {
	if err := waitBootstrap(ctx, ctrl, progress, "tor"); err != nil {
		return nil, err
	}
	socks, err := ctrl.SOCKSAddr(ctx)
	if err != nil {
		return nil, fmt.Errorf("tor's SocksPort: %w", err)
	}
	d, err := torctl.NewDialer(socks, torctl.DialerConfig{Logger: logger})
	if err != nil {
		return nil, err
	}
	return &torSetup{ctrl: ctrl, dialer: d, close: ctrl.Close}, nil
}

// waitBootstrap shows tor's bootstrap progress until it reaches 100%.
func waitBootstrap(ctx context.Context, ctrl *torctl.Controller, progress *progress, name string) error {
	last := -1
	for {
		p, err := ctrl.BootstrapProgress(ctx)
		if err != nil {
			return fmt.Errorf("%s bootstrap: %w", name, err)
		}
		if p != last {
			progress.update("%s: bootstrapped %d%%", name, p)
			last = p
		}
		if p >= 100 {
			progress.done()
			return nil
		}
		select {
		case <-ctx.Done():
			progress.done()
			return fmt.Errorf("%s bootstrap: %w", name, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// startTestnet starts a private Tor network on 127.0.0.1 (3 authorities, 3
// relays, 2 client tors; no exit, nothing outside 127.0.0.1): the Primary
// runs on the first client tor, and the second is for senders, whose
// addresses it prints.
func startTestnet(ctx context.Context, logger *slog.Logger, progress *progress) (*torSetup, error) {
	if err := testnet.Available(""); err != nil {
		return nil, err
	}
	progress.update("testnet: starting a private Tor network on 127.0.0.1 (7 tors)")
	start := time.Now()
	n, err := testnet.Start(ctx, testnet.Config{Clients: 2, Logger: logger})
	progress.done()
	if err != nil {
		return nil, err
	}
	cs := n.Clients()
	progress.line("testnet: up in %v; send through the second client tor: -socks %s -control %s -cookie %s",
		time.Since(start).Round(time.Second), cs[1].SocksAddr, cs[1].ControlAddr, cs[1].CookiePath)
	ctrl, err := torctl.Connect(ctx, torctl.ConnectConfig{Addr: cs[0].ControlAddr, CookiePath: cs[0].CookiePath, Logger: logger})
	if err != nil {
		n.Close()
		return nil, err
	}
	d, err := torctl.NewDialer(cs[0].SocksAddr, torctl.DialerConfig{Logger: logger})
	if err != nil {
		ctrl.Close()
		n.Close()
		return nil, err
	}
	return &torSetup{ctrl: ctrl, dialer: d, close: func() error { return errors.Join(ctrl.Close(), n.Close()) }}, nil
}

// progress shows what a person waits for on stderr: on a terminal one line
// that updates in place, elsewhere (a log) plain lines.
type progress struct {
	w    io.Writer
	tty  bool
	open bool // a line is being updated in place
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

// update replaces the current progress line (on a terminal) or prints one.
func (p *progress) update(format string, args ...any) {
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K"+format, args...)
		p.open = true
		return
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}

// done ends the line being updated.
func (p *progress) done() {
	if p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
}

// line prints one line of its own.
func (p *progress) line(format string, args ...any) {
	p.done()
	fmt.Fprintf(p.w, format+"\n", args...)
}

var _ ghostcomm.ClientAuthorizer = (*torctl.Controller)(nil)
