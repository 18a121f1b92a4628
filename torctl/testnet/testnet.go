// Package testnet starts and stops a private Tor network on 127.0.0.1 for
// tests: three directory authorities, three non-exit relays and one or more
// client tors, each with a ControlPort and a SocksPort, that host onion
// services and dial them.
//
// The network follows the recipe measured in the project's tor-testnet notes:
// keys made with tor-gencert, a V3BandwidthsFile that weighs every relay the
// same, ten-second voting, no exit relays. Every torrc it writes sets
// "TestingTorNetwork 1" and "UseDefaultFallbackDirs 0", names only the
// network's own 127.0.0.1 authorities, and is checked with CheckTorrc before
// tor reads it; every tor runs as
// "tor --defaults-torrc <empty file> -f <torrc>", so neither the system torrc
// nor the public Tor network is ever involved.
//
// Each tor is a child process. Close stops them by PID. Two further safety
// nets stop them if the process that started them dies without calling Close:
// the network holds a control connection to each tor on which it sent
// TAKEOWNERSHIP (tor exits about a second after that connection closes), and
// each torrc sets __OwningControllerProcess to the PID of this process.
//
// Tests of any package share one network per `go test` run, across test
// binaries, with Shared and Main.
package testnet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cretz/bine/control"
)

// ErrTorNotInstalled is returned by Start when the tor or tor-gencert binary
// cannot be found. .ci/install-tor.sh installs both.
var ErrTorNotInstalled = errors.New("testnet: tor or tor-gencert is not installed (run .ci/install-tor.sh)")

// ErrClosed is returned by the methods of a closed Network.
var ErrClosed = errors.New("testnet: network closed")

const (
	numAuthorities = 3
	numRelays      = 3

	// stopGrace is how long a tor gets to exit after SIGTERM before it is
	// killed.
	stopGrace = 10 * time.Second
	// pollInterval is the interval of the control-port and bootstrap polls.
	pollInterval = 200 * time.Millisecond
	// controlStepTimeout bounds every control-port command of the harness.
	controlStepTimeout = 10 * time.Second
	// logTailLines is how many lines of a notice.log an error quotes.
	logTailLines = 25
)

// Config configures Start. The zero value is a usable configuration.
type Config struct {
	// Dir is the directory that holds every tor's data directory and
	// torrc. Empty means a new temporary directory, which Close removes; a
	// Dir given here is left in place.
	Dir string

	// TorPath is the tor binary. Empty means "tor" on PATH (or
	// /usr/sbin/tor). tor-gencert is looked for beside it, then on PATH.
	TorPath string

	// Clients is the number of client tors (ControlPort and SocksPort) that
	// Start starts and waits for. Zero means 1.
	Clients int

	// Logger receives progress messages. Nil discards them.
	Logger *slog.Logger

	// Relays is the number of relays (besides the 3 authorities). Zero
	// means 3; at most 16.
	Relays int

	// VotingInterval is the authorities' V3AuthVotingInterval after the
	// first consensus (which comes after 10 s). Zero means 10 s. On a test
	// network tor makes an onion service time period (the span of a
	// descriptor's blinded key) 24 voting intervals long: 4 minutes at 10
	// s, an hour at 150 s. It must be whole seconds from 10 s to 1 hour.
	VotingInterval time.Duration
}

// Tor is one tor process of the network. Its fields are read-only.
type Tor struct {
	// Name is the tor's name in the network ("client0", "auth1", or the
	// name given to AddTor); its data directory is <network dir>/<Name>.
	Name string
	// ControlAddr is the "127.0.0.1:port" of its ControlPort.
	ControlAddr string
	// SocksAddr is the "127.0.0.1:port" of its SocksPort (with
	// ExtendedErrors), empty for authorities and relays.
	SocksAddr string
	// DataDir is its DataDirectory.
	DataDir string
	// TorrcPath is the torrc it was started with.
	TorrcPath string
	// PID is its process ID, 0 if it was prepared but not started.
	PID int
	// CookiePath is its control_auth_cookie (CookieAuthentication 1).
	CookiePath string

	role        role
	nick        string
	orPort      int
	dirPort     int
	controlPort int
	socksPort   int
	fingerprint string
	v3ident     string
	extra       []string

	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has been waited for
	waitErr  error         // valid after exited is closed
	ownerMu  sync.Mutex    // guards owner and ownerRaw against a concurrent stop
	owner    *control.Conn // control connection that sent TAKEOWNERSHIP
	ownerRaw net.Conn
	stopOnce sync.Once
	stopErr  error
}

// NoticeLogTail returns the last lines of the tor's notice.log (and of what
// it printed before its log was set up), for error messages.
func (t *Tor) NoticeLogTail() string {
	var b strings.Builder
	if s := tailFile(filepath.Join(t.DataDir, "stdout.log"), 8); s != "" {
		fmt.Fprintf(&b, "--- %s stdout ---\n%s", t.Name, s)
	}
	if s := tailFile(filepath.Join(t.DataDir, "notice.log"), logTailLines); s != "" {
		fmt.Fprintf(&b, "--- %s notice.log ---\n%s", t.Name, s)
	}
	return b.String()
}

// Network is a running private Tor network. Its methods are safe for
// concurrent use. Close stops every tor it started.
type Network struct {
	log         *slog.Logger
	dir         string
	removeDir   bool
	torPath     string
	gencertPath string
	empty       string // empty file for --defaults-torrc
	files       commonFiles
	authLines   []string
	authAddrs   []string
	voting      int // V3AuthVotingInterval in seconds, 0 for the default
	bootstrap   time.Duration
	pid         int

	mu      sync.Mutex
	closed  bool
	tors    []*Tor   // started and not stopped, every role
	clients []*Tor   // the clients Start started
	torrcs  []string // every torrc written
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// lookTor returns the paths of tor and tor-gencert.
func lookTor(torPath string) (tor, gencert string, err error) {
	if torPath == "" {
		if p, err := exec.LookPath("tor"); err == nil {
			torPath = p
		} else if st, err := os.Stat("/usr/sbin/tor"); err == nil && !st.IsDir() {
			torPath = "/usr/sbin/tor"
		} else {
			return "", "", ErrTorNotInstalled
		}
	} else if _, err := os.Stat(torPath); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrTorNotInstalled, err)
	}
	gencert = filepath.Join(filepath.Dir(torPath), "tor-gencert")
	if _, err := os.Stat(gencert); err != nil {
		if gencert, err = exec.LookPath("tor-gencert"); err != nil {
			return "", "", ErrTorNotInstalled
		}
	}
	return torPath, gencert, nil
}

// Available reports whether Start can find tor and tor-gencert: nil, or an
// error matching ErrTorNotInstalled.
func Available(torPath string) error {
	_, _, err := lookTor(torPath)
	return err
}

// safePath refuses paths that a torrc value cannot hold unquoted.
func safePath(p string) error {
	if strings.ContainsAny(p, " \t\r\n\"'\\#%\x00") {
		return fmt.Errorf("testnet: path %q has characters a torrc cannot hold unquoted", p)
	}
	return nil
}

// Start starts a private Tor network and waits, under ctx, until every
// client tor has bootstrapped (GETINFO status/bootstrap-phase reports
// PROGRESS=100). All tors start at once. On failure it stops every tor it
// started and returns an error quoting the end of the relevant notice.log.
func Start(ctx context.Context, cfg Config) (*Network, error) {
	return start(ctx, cfg, true)
}

// start is Start; with bootstrap false it returns as soon as it owns every
// tor, without waiting for the clients to bootstrap.
func start(ctx context.Context, cfg Config, bootstrap bool) (_ *Network, err error) {
	torPath, gencert, err := lookTor(cfg.TorPath)
	if err != nil {
		return nil, err
	}
	if cfg.Clients < 0 {
		return nil, fmt.Errorf("testnet: Clients %d < 0", cfg.Clients)
	}
	if cfg.Clients == 0 {
		cfg.Clients = 1
	}
	if cfg.Relays == 0 {
		cfg.Relays = numRelays
	}
	if cfg.Relays < 1 || cfg.Relays > 16 {
		return nil, fmt.Errorf("testnet: Relays %d: want 1 to 16", cfg.Relays)
	}
	if v := cfg.VotingInterval; v != 0 && (v < 10*time.Second || v > time.Hour || v%time.Second != 0) {
		return nil, fmt.Errorf("testnet: VotingInterval %v: want whole seconds from 10s to 1h", v)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Network{
		log:         log,
		torPath:     torPath,
		gencertPath: gencert,
		pid:         os.Getpid(),
		voting:      int(cfg.VotingInterval / time.Second),
	}
	if cfg.Dir == "" {
		if n.dir, err = os.MkdirTemp("", "ghostcomm-testnet-"); err != nil {
			return nil, fmt.Errorf("testnet: %w", err)
		}
		n.removeDir = true
	} else {
		if n.dir, err = filepath.Abs(cfg.Dir); err != nil {
			return nil, fmt.Errorf("testnet: %w", err)
		}
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			return nil, fmt.Errorf("testnet: %w", err)
		}
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Close())
		}
	}()
	if err := safePath(n.dir); err != nil {
		return nil, err
	}
	if err := n.writeCommonFiles(); err != nil {
		return nil, err
	}

	var all []*Tor
	for i := range numAuthorities {
		all = append(all, n.newTor(fmt.Sprintf("auth%d", i), roleAuthority))
	}
	for i := range cfg.Relays {
		all = append(all, n.newTor(fmt.Sprintf("relay%d", i), roleRelay))
	}
	for i := range cfg.Clients {
		t := n.newTor(fmt.Sprintf("client%d", i), roleClient)
		all = append(all, t)
		n.clients = append(n.clients, t)
	}
	for _, t := range all {
		if err := os.MkdirAll(filepath.Join(t.DataDir, "keys"), 0o700); err != nil {
			return nil, fmt.Errorf("testnet: %w", err)
		}
	}

	// Reserve every port now, so that no two tors get the same one; the
	// listeners are closed just before the tors start.
	release, err := n.reservePorts(all)
	if err != nil {
		return nil, err
	}
	defer release()

	begin := time.Now()
	if err := n.makeKeys(ctx, all[:numAuthorities+cfg.Relays]); err != nil {
		return nil, err
	}
	for _, t := range all[:numAuthorities] {
		n.authLines = append(n.authLines, authorityLine(t.nick, t.orPort, t.dirPort, t.v3ident, t.fingerprint))
		n.authAddrs = append(n.authAddrs, fmt.Sprintf("127.0.0.1:%d", t.dirPort))
	}
	if err := n.writeBandwidths(all[:numAuthorities+cfg.Relays]); err != nil {
		return nil, err
	}
	for _, t := range all {
		if err := n.writeTorrc(t); err != nil {
			return nil, err
		}
	}
	n.log.Info("testnet: keys and torrcs ready", "dir", n.dir, "took", time.Since(begin))

	release()
	launched := time.Now()
	for _, t := range all {
		if err := n.launch(t); err != nil {
			return nil, err
		}
	}
	if err := n.waitAll(ctx, all, bootstrap); err != nil {
		return nil, err
	}
	n.bootstrap = time.Since(launched)
	n.log.Info("testnet: bootstrapped", "clients", cfg.Clients, "took", n.bootstrap)
	return n, nil
}

func (n *Network) newTor(name string, r role) *Tor {
	dataDir := filepath.Join(n.dir, name)
	return &Tor{
		Name:       name,
		DataDir:    dataDir,
		TorrcPath:  filepath.Join(dataDir, "torrc"),
		CookiePath: filepath.Join(dataDir, "control_auth_cookie"),
		role:       r,
		nick:       "gc" + strings.NewReplacer("-", "", "_", "").Replace(name),
	}
}

func (n *Network) writeCommonFiles() error {
	n.empty = filepath.Join(n.dir, "torrc-defaults-empty")
	n.files = commonFiles{
		geoIP:      filepath.Join(n.dir, "geoip-empty"),
		resolvConf: filepath.Join(n.dir, "resolv.conf"),
		bandwidths: filepath.Join(n.dir, "bandwidths"),
	}
	for path, content := range map[string]string{
		n.empty:            "",
		n.files.geoIP:      "",
		n.files.resolvConf: "nameserver 127.0.0.1\n",
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return fmt.Errorf("testnet: %w", err)
		}
	}
	return nil
}

// reservePorts gives each tor the ports it needs, from listeners on
// 127.0.0.1:0 that stay open until release is called.
func (n *Network) reservePorts(tors []*Tor) (release func(), err error) {
	var ls []net.Listener
	var once sync.Once
	release = func() {
		once.Do(func() {
			for _, l := range ls {
				l.Close()
			}
		})
	}
	port := func() (int, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("testnet: reserving a port: %w", err)
		}
		ls = append(ls, l)
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	for _, t := range tors {
		if t.controlPort, err = port(); err != nil {
			release()
			return nil, err
		}
		t.ControlAddr = fmt.Sprintf("127.0.0.1:%d", t.controlPort)
		if t.role == roleClient {
			if t.socksPort, err = port(); err != nil {
				release()
				return nil, err
			}
			t.SocksAddr = fmt.Sprintf("127.0.0.1:%d", t.socksPort)
			continue
		}
		if t.orPort, err = port(); err != nil {
			release()
			return nil, err
		}
		if t.dirPort, err = port(); err != nil {
			release()
			return nil, err
		}
	}
	return release, nil
}

// makeKeys creates the authorities' v3 keys and reads every relay's identity
// fingerprint, all tors in parallel.
func (n *Network) makeKeys(ctx context.Context, tors []*Tor) error {
	errs := make([]error, len(tors))
	var wg sync.WaitGroup
	for i, t := range tors {
		wg.Go(func() {
			if t.role == roleAuthority {
				if errs[i] = n.genCert(ctx, t); errs[i] != nil {
					return
				}
			}
			errs[i] = n.listFingerprint(ctx, t)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (n *Network) genCert(ctx context.Context, t *Tor) error {
	keys := filepath.Join(t.DataDir, "keys")
	cmd := exec.CommandContext(ctx, n.gencertPath,
		"--create-identity-key", "--passphrase-fd", "0", "-m", "12",
		"-a", fmt.Sprintf("127.0.0.1:%d", t.dirPort),
		"-i", filepath.Join(keys, "authority_identity_key"),
		"-s", filepath.Join(keys, "authority_signing_key"),
		"-c", filepath.Join(keys, "authority_certificate"))
	cmd.Dir = t.DataDir
	cmd.Stdin = strings.NewReader("\n") // empty passphrase
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testnet: tor-gencert for %s: %w\n%s", t.Name, err, out)
	}
	cert, err := os.ReadFile(filepath.Join(keys, "authority_certificate"))
	if err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(cert))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "fingerprint" && isHexFingerprint(f[1]) {
			t.v3ident = f[1]
			return nil
		}
	}
	return fmt.Errorf("testnet: no fingerprint line in %s's authority certificate", t.Name)
}

// listFingerprint makes the relay's identity keys with
// "tor --list-fingerprint" and a torrc whose only DirAuthority is a
// placeholder on 127.0.0.1:1, then reads its fingerprint file.
func (n *Network) listFingerprint(ctx context.Context, t *Tor) error {
	spec := n.spec(t)
	spec.role = roleRelay
	spec.authorities = []string{strings.TrimPrefix(placeholderAuthority, "DirAuthority ")}
	spec.ownerPID = 0
	text := renderTorrc(spec, n.files)
	path := filepath.Join(t.DataDir, "torrc.fingerprint")
	if err := n.saveTorrc(path, text, []string{"127.0.0.1:1"}); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, n.torPath, "--defaults-torrc", n.empty, "-f", path, "--list-fingerprint")
	cmd.Dir = t.DataDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testnet: tor --list-fingerprint for %s: %w\n%s", t.Name, err, tailString(string(out), logTailLines))
	}
	fp, err := os.ReadFile(filepath.Join(t.DataDir, "fingerprint"))
	if err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	f := strings.Fields(string(fp))
	if len(f) != 2 || !isHexFingerprint(f[1]) {
		return fmt.Errorf("testnet: %s: bad fingerprint file %q", t.Name, fp)
	}
	t.fingerprint = f[1]
	return nil
}

func isHexFingerprint(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func (n *Network) writeBandwidths(tors []*Tor) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", time.Now().Unix())
	for _, t := range tors {
		fmt.Fprintf(&b, "node_id=$%s bw=1000\n", t.fingerprint)
	}
	if err := os.WriteFile(n.files.bandwidths, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	return nil
}

func (n *Network) spec(t *Tor) torrcSpec {
	return torrcSpec{
		role:           t.role,
		nick:           t.nick,
		dataDir:        t.DataDir,
		controlPort:    t.controlPort,
		orPort:         t.orPort,
		dirPort:        t.dirPort,
		socksPort:      t.socksPort,
		ownerPID:       n.pid,
		authorities:    n.authLines,
		extra:          t.extra,
		votingInterval: n.voting,
	}
}

// writeTorrc writes t's torrc after checking it.
func (n *Network) writeTorrc(t *Tor) error {
	return n.saveTorrc(t.TorrcPath, renderTorrc(n.spec(t), n.files), n.authAddrs)
}

// saveTorrc checks a torrc and writes it; it records every path written, for
// the tests.
func (n *Network) saveTorrc(path, text string, authAddrs []string) error {
	if err := CheckTorrc(text, authAddrs); err != nil {
		return fmt.Errorf("testnet: refusing to write %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	n.mu.Lock()
	n.torrcs = append(n.torrcs, path)
	n.mu.Unlock()
	return nil
}

// launch starts t's tor process after checking its torrc once more, as read
// back from disk.
func (n *Network) launch(t *Tor) error {
	text, err := os.ReadFile(t.TorrcPath)
	if err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	if err := CheckTorrc(string(text), n.authAddrs); err != nil {
		return fmt.Errorf("testnet: refusing to start %s: %w", t.Name, err)
	}
	stdout, err := os.OpenFile(filepath.Join(t.DataDir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	cmd := exec.Command(n.torPath, "--defaults-torrc", n.empty, "-f", t.TorrcPath)
	cmd.Dir = t.DataDir
	cmd.Stdout = stdout
	cmd.Stderr = stdout
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		stdout.Close()
		return ErrClosed
	}
	if err := cmd.Start(); err != nil {
		n.mu.Unlock()
		stdout.Close()
		return fmt.Errorf("testnet: starting %s: %w", t.Name, err)
	}
	t.cmd = cmd
	t.PID = cmd.Process.Pid
	t.exited = make(chan struct{})
	n.tors = append(n.tors, t)
	n.mu.Unlock()
	go func() {
		t.waitErr = cmd.Wait()
		stdout.Close()
		close(t.exited)
	}()
	n.log.Debug("testnet: started tor", "name", t.Name, "pid", t.PID, "control", t.ControlAddr, "socks", t.SocksAddr)
	return nil
}

// waitAll connects to every tor's control port (sending TAKEOWNERSHIP) and
// waits for every client to bootstrap. The first failure cancels the rest.
func (n *Network) waitAll(ctx context.Context, tors []*Tor, bootstrap bool) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		once  sync.Once
		first error
		wg    sync.WaitGroup
	)
	for _, t := range tors {
		wg.Go(func() {
			err := n.own(ctx, t)
			if err == nil && bootstrap && t.role == roleClient {
				err = n.waitBootstrap(ctx, t)
			}
			if err != nil {
				// Only the first failure is reported: the others are
				// usually this cancellation.
				once.Do(func() { first = err; cancel(err) })
			}
		})
	}
	wg.Wait()
	return first
}

// failure builds the error for t, quoting its logs.
func (n *Network) failure(t *Tor, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	select {
	case <-t.exited:
		msg += fmt.Sprintf(" (tor exited: %v)", t.waitErr)
	default:
	}
	if tail := t.NoticeLogTail(); tail != "" {
		msg += "\n" + tail
	}
	return fmt.Errorf("testnet: %s: %s", t.Name, msg)
}

// own connects to t's control port, authenticates with its cookie and sends
// TAKEOWNERSHIP, retrying until the port answers, ctx ends or tor exits.
func (n *Network) own(ctx context.Context, t *Tor) error {
	var last error
	for {
		conn, raw, err := n.dialControl(ctx, t)
		if err == nil {
			if err = conn.TakeOwnership(); err == nil {
				raw.SetDeadline(time.Time{})
				t.ownerMu.Lock()
				t.owner, t.ownerRaw = conn, raw
				t.ownerMu.Unlock()
				return nil
			}
			raw.Close()
		}
		last = err
		select {
		case <-ctx.Done():
			return n.failure(t, "control port %s: %v (last error: %v)", t.ControlAddr, context.Cause(ctx), last)
		case <-t.exited:
			return n.failure(t, "control port %s: %v", t.ControlAddr, last)
		case <-time.After(pollInterval):
		}
	}
}

func (n *Network) dialControl(ctx context.Context, t *Tor) (*control.Conn, net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, controlStepTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(dctx, "tcp", t.ControlAddr)
	if err != nil {
		return nil, nil, err
	}
	raw.SetDeadline(time.Now().Add(controlStepTimeout))
	conn := control.NewConn(textproto.NewConn(raw))
	if err := conn.Authenticate(""); err != nil {
		raw.Close()
		return nil, nil, err
	}
	return conn, raw, nil
}

// waitBootstrap polls GETINFO status/bootstrap-phase on t's owner connection
// until PROGRESS=100.
func (n *Network) waitBootstrap(ctx context.Context, t *Tor) error {
	phase := ""
	for {
		t.ownerRaw.SetDeadline(time.Now().Add(controlStepTimeout))
		kv, err := t.owner.GetInfo("status/bootstrap-phase")
		t.ownerRaw.SetDeadline(time.Time{})
		if err != nil {
			return n.failure(t, "GETINFO status/bootstrap-phase: %v", err)
		}
		if len(kv) == 1 {
			prev := bootstrapProgress(phase)
			phase = kv[0].Val
			p := bootstrapProgress(phase)
			if p != prev {
				n.log.Info("testnet: bootstrap", "tor", t.Name, "progress", p, "summary", bootstrapSummary(phase))
			}
			if p == 100 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return n.failure(t, "not bootstrapped: %v; last phase: %s", context.Cause(ctx), phase)
		case <-t.exited:
			return n.failure(t, "not bootstrapped; last phase: %s", phase)
		case <-time.After(pollInterval):
		}
	}
}

// bootstrapProgress returns the PROGRESS=<n> of a bootstrap phase, -1 if
// there is none.
func bootstrapProgress(phase string) int {
	for _, f := range strings.Fields(phase) {
		if v, ok := strings.CutPrefix(f, "PROGRESS="); ok {
			if p, err := strconv.Atoi(v); err == nil {
				return p
			}
		}
	}
	return -1
}

// bootstrapSummary returns the SUMMARY="..." of a bootstrap phase, empty if
// there is none.
func bootstrapSummary(phase string) string {
	_, v, ok := strings.Cut(phase, "SUMMARY=\"")
	if !ok {
		return ""
	}
	v, _, _ = strings.Cut(v, "\"")
	return v
}

// stop stops t's process: SIGTERM by PID, then SIGKILL after stopGrace. It
// then closes the owner control connection. Safe to call more than once.
func (t *Tor) stop() error {
	if t.cmd == nil {
		return nil
	}
	t.stopOnce.Do(func() {
		select {
		case <-t.exited:
		default:
			if err := t.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
				t.stopErr = fmt.Errorf("testnet: SIGTERM %s (pid %d): %w", t.Name, t.PID, err)
			}
			select {
			case <-t.exited:
			case <-time.After(stopGrace):
				if err := t.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
					t.stopErr = errors.Join(t.stopErr, fmt.Errorf("testnet: SIGKILL %s (pid %d): %w", t.Name, t.PID, err))
				}
				<-t.exited
			}
		}
		t.ownerMu.Lock()
		if t.ownerRaw != nil {
			t.ownerRaw.Close()
		}
		t.ownerMu.Unlock()
	})
	return t.stopErr
}

// Clients returns the client tors that Start started, in order.
func (n *Network) Clients() []*Tor {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Tor(nil), n.clients...)
}

// PIDs returns the process IDs of every tor of the network that runs now
// (authorities, relays and clients), so that callers can check that Close
// left none behind.
func (n *Network) PIDs() []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	var pids []int
	for _, t := range n.tors {
		if t.PID != 0 {
			pids = append(pids, t.PID)
		}
	}
	return pids
}

// Dir returns the directory holding the network's files.
func (n *Network) Dir() string { return n.dir }

// BootstrapTime returns how long it took from starting the tor processes
// until every client tor reported PROGRESS=100.
func (n *Network) BootstrapTime() time.Duration { return n.bootstrap }

// CheckTorrc checks the torrc at path with CheckTorrc against this network's
// authorities. Tests that edit a torrc call it before reloading tor.
func (n *Network) CheckTorrc(path string) error {
	text, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	return CheckTorrc(string(text), n.authAddrs)
}

// newClient prepares (directory, ports, torrc) one more client tor.
func (n *Network) newClient(name string, extraTorrc []string) (*Tor, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("testnet: bad tor name %q (want %s)", name, nameRE)
	}
	for _, l := range extraTorrc {
		if err := checkExtraLine(l); err != nil {
			return nil, err
		}
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, ErrClosed
	}
	for _, t := range n.tors {
		if t.Name == name {
			n.mu.Unlock()
			return nil, fmt.Errorf("testnet: a tor named %q is running", name)
		}
	}
	n.mu.Unlock()

	t := n.newTor(name, roleClient)
	t.extra = append([]string(nil), extraTorrc...)
	if err := os.MkdirAll(t.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	release, err := n.reservePorts([]*Tor{t})
	if err != nil {
		return nil, err
	}
	release()
	if err := n.writeTorrc(t); err != nil {
		return nil, err
	}
	return t, nil
}

// AddTor starts one more client tor (ControlPort and SocksPort) named name,
// with extraTorrc appended to its torrc, and waits under ctx until it has
// bootstrapped. Extra lines may configure onion services (HiddenServiceDir,
// HiddenServicePort...) but not options that choose the network
// (DirAuthority, TestingTorNetwork, FallbackDir, Bridge, %include...) or
// that the harness owns (DataDirectory, ControlPort, SocksPort...): those
// return an error matching ErrUnsafeTorrc. A name may be reused after
// StopTor; the data directory is then kept. On failure the tor is stopped.
func (n *Network) AddTor(ctx context.Context, name string, extraTorrc []string) (*Tor, error) {
	t, err := n.newClient(name, extraTorrc)
	if err != nil {
		return nil, err
	}
	if err := n.launch(t); err != nil {
		return nil, err
	}
	err = n.own(ctx, t)
	if err == nil {
		err = n.waitBootstrap(ctx, t)
	}
	if err != nil {
		return nil, errors.Join(err, n.StopTor(t))
	}
	return t, nil
}

// PrepareTor writes the data directory and torrc of one more client tor of
// the network without starting it (PID stays 0), for tests that start tor
// themselves, such as torctl.Launch; they must also stop it. Its ports are
// free when PrepareTor returns but not reserved. extraTorrc is checked as in
// AddTor.
func (n *Network) PrepareTor(name string, extraTorrc []string) (*Tor, error) {
	return n.newClient(name, extraTorrc)
}

// StopTor stops a tor of the network (SIGTERM by PID, SIGKILL after 10 s)
// and waits for it to exit. Stopping a tor that is not running returns nil.
func (n *Network) StopTor(t *Tor) error {
	n.mu.Lock()
	for i, x := range n.tors {
		if x == t {
			n.tors = append(n.tors[:i:i], n.tors[i+1:]...)
			break
		}
	}
	n.mu.Unlock()
	return t.stop()
}

// Relays returns the relays (neither authorities nor clients) of the
// network that run now, in the order Start started them.
func (n *Network) Relays() []*Tor {
	n.mu.Lock()
	defer n.mu.Unlock()
	var relays []*Tor
	for _, t := range n.tors {
		if t.role == roleRelay {
			relays = append(relays, t)
		}
	}
	return relays
}

// Restartable reports whether Restart can restart t: this process started
// it (a tor of a network shared by another test binary is not).
func (t *Tor) Restartable() bool { return t.cmd != nil }

// ErrNotOwned is returned by Restart for a tor that this process did not
// start (a tor of a network shared by another test binary).
var ErrNotOwned = errors.New("testnet: the tor was not started by this process")

// Restart stops t with sig (syscall.SIGKILL to crash it, SIGTERM for a clean
// exit; by PID), waits for it to exit and then for down (or until ctx
// ends), and starts it again with the same
// torrc, data directory and ports, so that it rejoins the network as the
// same relay (same keys) or client (same SocksPort and ControlPort). It
// waits under ctx until the new process answers on its ControlPort and, for
// a client, has bootstrapped. The returned Tor replaces t, also in Clients;
// t is not used again. If the new process fails to come up it is stopped.
func (n *Network) Restart(ctx context.Context, t *Tor, sig syscall.Signal, down time.Duration) (*Tor, error) {
	if sig != syscall.SIGKILL && sig != syscall.SIGTERM {
		return nil, fmt.Errorf("testnet: Restart with %v: want SIGKILL or SIGTERM", sig)
	}
	n.mu.Lock()
	owned := false
	for _, x := range n.tors {
		owned = owned || x == t
	}
	n.mu.Unlock()
	if t.cmd == nil || !owned {
		return nil, fmt.Errorf("%w: %s", ErrNotOwned, t.Name)
	}
	if err := t.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return nil, fmt.Errorf("testnet: %v %s (pid %d): %w", sig, t.Name, t.PID, err)
	}
	select {
	case <-t.exited:
	case <-time.After(stopGrace):
		// SIGTERM lets tor close its listeners for up to ShutdownWaitLength.
		t.cmd.Process.Kill()
		<-t.exited
	}
	t.stop() // closes the owner connection
	nt := &Tor{
		Name: t.Name, ControlAddr: t.ControlAddr, SocksAddr: t.SocksAddr, DataDir: t.DataDir,
		TorrcPath: t.TorrcPath, CookiePath: t.CookiePath,
		role: t.role, nick: t.nick, orPort: t.orPort, dirPort: t.dirPort, controlPort: t.controlPort,
		socksPort: t.socksPort, fingerprint: t.fingerprint, v3ident: t.v3ident, extra: t.extra,
	}
	n.mu.Lock()
	for i, x := range n.tors {
		if x == t {
			n.tors = append(n.tors[:i:i], n.tors[i+1:]...)
			break
		}
	}
	for i, x := range n.clients {
		if x == t {
			n.clients[i] = nt
		}
	}
	n.mu.Unlock()
	if down > 0 {
		t := time.NewTimer(down)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if err := n.launch(nt); err != nil {
		return nil, err
	}
	err := n.own(ctx, nt)
	if err == nil && nt.role == roleClient {
		err = n.waitBootstrap(ctx, nt)
	}
	if err != nil {
		return nil, errors.Join(err, n.StopTor(nt))
	}
	n.log.Info("testnet: restarted tor", "name", nt.Name, "signal", sig, "pid", nt.PID)
	return nt, nil
}

// Close stops every tor the network started, waits for them to exit, and
// removes the network's directory unless Config.Dir named it. It is
// idempotent.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	tors := n.tors
	n.tors = nil
	n.mu.Unlock()

	errs := make([]error, len(tors))
	var wg sync.WaitGroup
	for i, t := range tors {
		wg.Go(func() { errs[i] = t.stop() })
	}
	wg.Wait()
	err := errors.Join(errs...)
	if n.removeDir && n.dir != "" {
		if rerr := os.RemoveAll(n.dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("testnet: %w", rerr))
		}
	}
	return err
}

// torrcPaths returns every torrc the network wrote.
func (n *Network) torrcPaths() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.torrcs...)
}

// running returns the tors currently running.
func (n *Network) running() []*Tor {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Tor(nil), n.tors...)
}

// tailFile returns the last lines of a file, reading at most its last 16 KiB.
func tailFile(path string, lines int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 16 << 10
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - max
	if off < 0 {
		off = 0
	}
	buf := make([]byte, st.Size()-off)
	nr, _ := f.ReadAt(buf, off)
	return tailString(string(buf[:nr]), lines)
}

func tailString(s string, lines int) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n") + "\n"
}
