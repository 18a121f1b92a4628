package torctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cretz/bine/control"
)

// LaunchConfig configures Launch. TorrcFile and DataDir are required.
type LaunchConfig struct {
	// TorPath is the tor binary. Empty means "tor" on PATH.
	TorPath string

	// TorrcFile is the torrc tor runs with (-f). Required: with no torrc,
	// tor's built-in defaults join the public Tor network, so Launch
	// refuses to start without one. The system torrc is never read (tor
	// gets an empty --defaults-torrc).
	TorrcFile string

	// DataDir is tor's DataDirectory, created (mode 0700) if missing; it
	// overrides any DataDirectory in TorrcFile. Required.
	DataDir string

	// CommandTimeout bounds each control-port command. Zero means
	// DefaultCommandTimeout.
	CommandTimeout time.Duration

	// Logger receives debug messages. Nil discards them.
	Logger *slog.Logger
}

// launchStopGrace is how long a launched tor gets to exit after SIGTERM
// before it is killed.
const launchStopGrace = 10 * time.Second

// Files Launch writes in DataDir.
const (
	launchDefaultsFile = "ghostcomm-torrc-defaults"
	launchPortFile     = "ghostcomm-controlport"
)

// Launch starts tor as
//
//	tor --defaults-torrc <empty file> -f <TorrcFile> --DataDirectory <DataDir>
//	    --ControlPort 127.0.0.1:auto --ControlPortWriteToFile <file>
//	    --CookieAuthentication 1 --RunAsDaemon 0 --__OwningControllerProcess <our pid>
//
// connects to its control port and sends TAKEOWNERSHIP, so that tor exits
// when the Controller's connection closes, even if this process dies. The
// torrc decides everything else, the SocksPort included (see
// Controller.SOCKSAddr). ctx bounds the start, not tor's lifetime: Close
// stops tor. Launch does not wait for tor to bootstrap (see WaitBootstrap).
//
// An empty TorrcFile or DataDir returns a *ConfigError and starts nothing.
func Launch(ctx context.Context, cfg LaunchConfig) (*Controller, error) {
	if strings.TrimSpace(cfg.TorrcFile) == "" {
		return nil, &ConfigError{"LaunchConfig.TorrcFile", "required: without a torrc, tor joins the public Tor network"}
	}
	if strings.TrimSpace(cfg.DataDir) == "" {
		return nil, &ConfigError{"LaunchConfig.DataDir", "required"}
	}
	if cfg.CommandTimeout < 0 {
		return nil, &ConfigError{"LaunchConfig.CommandTimeout", "negative"}
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	torrc, err := filepath.Abs(cfg.TorrcFile)
	if err != nil {
		return nil, &ConfigError{"LaunchConfig.TorrcFile", err.Error()}
	}
	if st, err := os.Stat(torrc); err != nil || !st.Mode().IsRegular() {
		return nil, &ConfigError{"LaunchConfig.TorrcFile", fmt.Sprintf("%s is not a readable file", torrc)}
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, &ConfigError{"LaunchConfig.DataDir", err.Error()}
	}
	torPath := cfg.TorPath
	if torPath == "" {
		if torPath, err = exec.LookPath("tor"); err != nil {
			return nil, fmt.Errorf("torctl: tor binary: %w", err)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("torctl: %w", err)
	}
	if err := os.Chmod(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("torctl: %w", err)
	}
	defaults := filepath.Join(dataDir, launchDefaultsFile)
	if err := os.WriteFile(defaults, nil, 0o600); err != nil {
		return nil, fmt.Errorf("torctl: %w", err)
	}
	portFile := filepath.Join(dataDir, launchPortFile)
	if err := os.Remove(portFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("torctl: %w", err)
	}

	p := &process{out: &tailBuffer{max: 16 << 10}}
	p.cmd = exec.Command(torPath,
		"--defaults-torrc", defaults,
		"-f", torrc,
		"--DataDirectory", dataDir,
		"--ControlPort", "127.0.0.1:auto",
		"--ControlPortWriteToFile", portFile,
		"--CookieAuthentication", "1",
		"--RunAsDaemon", "0",
		"--__OwningControllerProcess", strconv.Itoa(os.Getpid()))
	p.cmd.Dir = dataDir
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.start(); err != nil {
		return nil, fmt.Errorf("torctl: starting tor: %w", err)
	}
	log.Debug("torctl: launched tor", "pid", p.cmd.Process.Pid, "torrc", torrc)

	addr, err := p.waitPortFile(ctx, portFile)
	if err == nil {
		var c *Controller
		c, err = Connect(ctx, ConnectConfig{
			Addr:           addr,
			CookiePath:     filepath.Join(dataDir, "control_auth_cookie"),
			CommandTimeout: cfg.CommandTimeout,
			Logger:         cfg.Logger,
		})
		if err == nil {
			err = c.exec(ctx, func(conn *control.Conn) error { return conn.TakeOwnership() }, nil)
			if err == nil {
				c.proc = p
				return c, nil
			}
			err = errors.Join(fmt.Errorf("torctl: TAKEOWNERSHIP: %w", err), c.Close())
		}
	}
	return nil, errors.Join(err, p.stop(), p.outputError())
}

// process is a tor that Launch started.
type process struct {
	cmd      *exec.Cmd
	out      *tailBuffer
	exited   chan struct{} // closed once the process has been waited for
	waitErr  error         // valid once exited is closed
	stopOnce sync.Once
	stopErr  error
}

func (p *process) start() error {
	if err := p.cmd.Start(); err != nil {
		return err
	}
	p.exited = make(chan struct{})
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	return nil
}

// waitPortFile waits for tor to write its control port address.
func (p *process) waitPortFile(ctx context.Context, path string) (string, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(path); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(l), "PORT="); ok && strings.HasSuffix(string(b), "\n") {
					return v, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("torctl: waiting for tor's control port: %w", ctx.Err())
		case <-p.exited:
			return "", fmt.Errorf("torctl: tor exited before opening its control port: %v", p.waitErr)
		case <-tick.C:
		}
	}
}

// outputError returns what tor printed, as an error, or nil.
func (p *process) outputError() error {
	if s := strings.TrimSpace(p.out.String()); s != "" {
		return fmt.Errorf("tor output (end):\n%s", s)
	}
	return nil
}

// stop sends SIGTERM to the process (by PID), kills it after
// launchStopGrace, and waits for it. Safe to call more than once.
func (p *process) stop() error {
	p.stopOnce.Do(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			p.stopErr = fmt.Errorf("torctl: SIGTERM tor (pid %d): %w", p.cmd.Process.Pid, err)
		}
		select {
		case <-p.exited:
		case <-time.After(launchStopGrace):
			if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				p.stopErr = errors.Join(p.stopErr, fmt.Errorf("torctl: SIGKILL tor (pid %d): %w", p.cmd.Process.Pid, err))
			}
			<-p.exited
		}
	})
	return p.stopErr
}

// PID returns the process ID of the tor that Launch started, 0 for a
// Controller from Connect.
func (c *Controller) PID() int {
	if c.proc == nil {
		return 0
	}
	return c.proc.cmd.Process.Pid
}

// tailBuffer is an io.Writer that keeps the last max bytes written.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
