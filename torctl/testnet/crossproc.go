package testnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The shared network is shared by every test binary of one `go test` run:
// the first test binary that asks for it starts a daemon (itself, re-executed
// with envDaemon set, in its own session) that starts the network, writes its
// addresses to a state file and owns every tor. The others find the state file
// and use the same tors. All of it lives in one private directory per
// `go test` process (ShareDir):
//
//	start.lock   exclusive while a user starts the daemon or the daemon stops
//	users.lock   every test binary using the network holds a shared lock
//	daemon.lock  the daemon holds an exclusive lock for as long as it runs
//	state.json   the network's addresses, or the error that stopped it
//	daemon.log   the daemon's progress (and, live, on the go command's stderr)
//
// Locks are flock(2) locks: the kernel drops them when a process exits, also
// when it is killed, so a dead test binary never keeps the network alive and
// a dead daemon is never mistaken for a live one. The daemon stops the network
// once no test binary holds users.lock and the `go test` process it watches
// has exited (or, when it watches no go command, after sharedIdleLimit
// without users). If the daemon itself is killed, its tors exit within
// seconds: it holds their TAKEOWNERSHIP control connections.

// EnvShareDir names the environment variable that, when set, gives the
// directory in which test binaries share one network. Empty means a
// directory named after the process that runs the test binaries (the go
// command), so that one `go test ./...` shares one network.
const EnvShareDir = "GHOSTCOMM_TESTNET_SHARE_DIR"

// envDaemon marks the re-executed test binary that runs the shared network.
const envDaemon = "GHOSTCOMM_TESTNET_DAEMON"

// envWatch gives the daemon the process ("pid:starttime") whose end it waits
// for: the go command.
const envWatch = "GHOSTCOMM_TESTNET_WATCH"

// ErrUnsafeShareDir is returned when the share directory exists but is not a
// directory of this user with mode 0700 (or is a symbolic link): another user
// could then read the network's cookies or plant a state file.
var ErrUnsafeShareDir = errors.New("testnet: unsafe share directory")

const (
	stateFile  = "state.json"
	logFile    = "daemon.log"
	startLock  = "start.lock"
	usersLock  = "users.lock"
	daemonLock = "daemon.lock"

	stateVersion = 1
	// sharedPoll is how often the daemon checks for users and the watched
	// process, and how often a user polls for the state file.
	sharedPoll = 250 * time.Millisecond
	// sharedIdleLimit is how long the daemon keeps the network without
	// users when it does not watch a go command (a test binary run by hand)
	// or the go command seems to hang.
	sharedIdleLimit   = 20 * time.Second
	sharedIdleLimitGo = 10 * time.Minute
	// progressEvery is how often a test binary waiting for the network
	// prints where the start is.
	progressEvery = 5 * time.Second
)

type sharedState struct {
	Version   int       `json:"version"`
	DaemonPID int       `json:"daemon_pid"`
	Error     string    `json:"error,omitempty"`
	Net       *netState `json:"net,omitempty"`
}

type netState struct {
	Dir         string        `json:"dir"`
	TorPath     string        `json:"tor_path"`
	GencertPath string        `json:"gencert_path"`
	Empty       string        `json:"empty"`
	GeoIP       string        `json:"geoip"`
	ResolvConf  string        `json:"resolv_conf"`
	Bandwidths  string        `json:"bandwidths"`
	AuthLines   []string      `json:"auth_lines"`
	AuthAddrs   []string      `json:"auth_addrs"`
	Bootstrap   time.Duration `json:"bootstrap"`
	Tors        []torState    `json:"tors"`
	Clients     []string      `json:"clients"`
	Torrcs      []string      `json:"torrcs"`
}

type torState struct {
	Name        string `json:"name"`
	Role        role   `json:"role"`
	ControlAddr string `json:"control"`
	SocksAddr   string `json:"socks,omitempty"`
	DataDir     string `json:"data_dir"`
	TorrcPath   string `json:"torrc"`
	CookiePath  string `json:"cookie"`
	PID         int    `json:"pid"`
	DirPort     int    `json:"dir_port,omitempty"`
	ControlPort int    `json:"control_port"`
	SocksPort   int    `json:"socks_port,omitempty"`
}

// export describes n for the state file.
func (n *Network) export() *netState {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := &netState{
		Dir: n.dir, TorPath: n.torPath, GencertPath: n.gencertPath, Empty: n.empty,
		GeoIP: n.files.geoIP, ResolvConf: n.files.resolvConf, Bandwidths: n.files.bandwidths,
		AuthLines: n.authLines, AuthAddrs: n.authAddrs, Bootstrap: n.bootstrap,
		Torrcs: n.torrcs,
	}
	for _, t := range n.tors {
		s.Tors = append(s.Tors, torState{
			Name: t.Name, Role: t.role, ControlAddr: t.ControlAddr, SocksAddr: t.SocksAddr,
			DataDir: t.DataDir, TorrcPath: t.TorrcPath, CookiePath: t.CookiePath, PID: t.PID,
			DirPort: t.dirPort, ControlPort: t.controlPort, SocksPort: t.socksPort,
		})
	}
	for _, c := range n.clients {
		s.Clients = append(s.Clients, c.Name)
	}
	return s
}

// attach returns a Network that uses the tors of s without owning them:
// Close and StopTor never stop them. Tors added with AddTor or PrepareTor
// belong to this process and live in a directory of its own, which Close
// removes.
func attach(s *netState, log *slog.Logger) (*Network, error) {
	if len(s.AuthAddrs) != numAuthorities || len(s.Clients) < SharedClients {
		return nil, fmt.Errorf("testnet: shared state names %d authorities and %d clients", len(s.AuthAddrs), len(s.Clients))
	}
	dir, err := os.MkdirTemp("", "ghostcomm-testnet-attached-")
	if err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	if err := safePath(dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	n := &Network{
		log: log, dir: dir, removeDir: true,
		torPath: s.TorPath, gencertPath: s.GencertPath, empty: s.Empty,
		files:     commonFiles{geoIP: s.GeoIP, resolvConf: s.ResolvConf, bandwidths: s.Bandwidths},
		authLines: s.AuthLines, authAddrs: s.AuthAddrs, bootstrap: s.Bootstrap,
		pid: os.Getpid(), torrcs: s.Torrcs,
	}
	byName := map[string]*Tor{}
	for _, ts := range s.Tors {
		t := &Tor{
			Name: ts.Name, role: ts.Role, ControlAddr: ts.ControlAddr, SocksAddr: ts.SocksAddr,
			DataDir: ts.DataDir, TorrcPath: ts.TorrcPath, CookiePath: ts.CookiePath, PID: ts.PID,
			dirPort: ts.DirPort, controlPort: ts.ControlPort, socksPort: ts.SocksPort,
		}
		n.tors = append(n.tors, t)
		byName[t.Name] = t
	}
	for _, name := range s.Clients {
		t := byName[name]
		if t == nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("testnet: shared state names client %q but no such tor", name)
		}
		n.clients = append(n.clients, t)
	}
	return n, nil
}

// ShareDir returns the directory in which the test binaries of this run
// share their network: EnvShareDir, or a directory in os.TempDir named after
// the parent process (the go command) and its start time.
func ShareDir() string {
	if d := os.Getenv(EnvShareDir); d != "" {
		return d
	}
	ppid := os.Getppid()
	return filepath.Join(os.TempDir(), fmt.Sprintf("ghostcomm-testnet-shared-%d-%s", ppid, procStart(ppid)))
}

// procStart returns the start time of a process (field 22 of
// /proc/pid/stat), or "0" where there is no /proc.
func procStart(pid int) string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "0"
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "0"
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "0"
	}
	return f[19]
}

// checkShareDir creates dir with mode 0700, or checks that the existing dir
// is a real directory of this user with mode 0700.
func checkShareDir(dir string) error {
	if err := safePath(dir); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("testnet: %w", err)
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%w: %s is not a directory (%v)", ErrUnsafeShareDir, dir, st.Mode())
	}
	if st.Mode().Perm() != 0o700 {
		return fmt.Errorf("%w: %s has mode %v, want 0700", ErrUnsafeShareDir, dir, st.Mode().Perm())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Getuid() {
		return fmt.Errorf("%w: %s belongs to uid %d, not %d", ErrUnsafeShareDir, dir, sys.Uid, os.Getuid())
	}
	return nil
}

// lockPath opens (creating) the lock file dir/name and flocks it with how.
// With LOCK_NB in how, a held lock returns an error matching
// syscall.EWOULDBLOCK.
func lockPath(dir, name string, how int) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// sameFile reports whether f is still the file at path: the daemon removes
// the share directory when it stops, and a lock on a removed file guards
// nothing.
func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Lstat(path)
	return err == nil && os.SameFile(a, b)
}

// daemonAlive reports whether a daemon holds dir's daemon.lock.
func daemonAlive(dir string) bool {
	f, err := lockPath(dir, daemonLock, syscall.LOCK_SH|syscall.LOCK_NB)
	if err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	f.Close()
	return false
}

func readState(dir string) (*sharedState, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, err
	}
	var s sharedState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("testnet: %s: %w", stateFile, err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("testnet: %s: version %d, want %d", stateFile, s.Version, stateVersion)
	}
	if s.Error == "" && s.Net == nil {
		return nil, fmt.Errorf("testnet: %s names neither a network nor an error", stateFile)
	}
	return &s, nil
}

func writeState(dir string, s *sharedState) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, stateFile))
}

// attachShared finds the network of dir, starting its daemon if none runs,
// and returns it; it holds users.lock (in *users) for the rest of the
// process's life. progress receives a line every progressEvery while it
// waits.
func attachShared(dir string, progress io.Writer, log *slog.Logger) (_ *Network, users *os.File, err error) {
	if err := checkShareDir(dir); err != nil {
		return nil, nil, err
	}
	var start *os.File
	for {
		if start, err = lockPath(dir, startLock, syscall.LOCK_EX); err != nil {
			return nil, nil, fmt.Errorf("testnet: locking %s: %w", startLock, err)
		}
		if sameFile(start, filepath.Join(dir, startLock)) {
			break
		}
		// The daemon removed the directory while we waited: start over.
		start.Close()
		if err := checkShareDir(dir); err != nil {
			return nil, nil, err
		}
	}
	defer start.Close()
	held, err := lockPath(dir, usersLock, syscall.LOCK_SH)
	if err != nil {
		return nil, nil, fmt.Errorf("testnet: locking %s: %w", usersLock, err)
	}
	defer func() {
		if err != nil {
			held.Close()
		}
	}()
	st, serr := readState(dir)
	if serr != nil || !daemonAlive(dir) {
		if st, err = spawnDaemon(dir, progress); err != nil {
			return nil, nil, err
		}
	}
	if st.Error != "" {
		return nil, nil, fmt.Errorf("testnet: the shared network (daemon pid %d, %s) failed: %s", st.DaemonPID, dir, st.Error)
	}
	n, err := attach(st.Net, log)
	if err != nil {
		return nil, nil, err
	}
	return n, held, nil
}

// watchPID returns the process whose end, once no test binary uses the
// network, stops the daemon: the go command that runs this test binary.
// Tests replace it.
var watchPID = os.Getppid

// spawnDaemon starts this executable as the daemon of dir and waits for its
// state file, printing progress.
func spawnDaemon(dir string, progress io.Writer) (*sharedState, error) {
	os.Remove(filepath.Join(dir, stateFile))
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, logFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	defer logf.Close()
	ppid := watchPID()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envDaemon+"="+dir, fmt.Sprintf("%s=%d:%s", envWatch, ppid, procStart(ppid)))
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testnet: starting the shared network's daemon: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	begin := time.Now()
	fmt.Fprintf(progress, "testnet: starting the shared private Tor network (daemon pid %d, %s)\n", cmd.Process.Pid, dir)
	tick := time.NewTicker(sharedPoll)
	defer tick.Stop()
	lastPrint := begin
	for {
		if st, err := readState(dir); err == nil {
			what := "ready"
			if st.Error != "" {
				what = "failed"
			}
			fmt.Fprintf(progress, "testnet: shared network %s after %v\n", what, time.Since(begin).Round(time.Millisecond))
			return st, nil
		}
		select {
		case <-exited:
			if st, err := readState(dir); err == nil {
				return st, nil
			}
			return nil, fmt.Errorf("testnet: the shared network's daemon exited before the network was up:\n%s", tailFile(filepath.Join(dir, logFile), logTailLines))
		case <-tick.C:
		}
		if time.Since(begin) > SharedStartTimeout+30*time.Second {
			cmd.Process.Kill()
			<-exited
			return nil, fmt.Errorf("testnet: the shared network was not up after %v:\n%s", time.Since(begin).Round(time.Second), tailFile(filepath.Join(dir, logFile), logTailLines))
		}
		if time.Since(lastPrint) >= progressEvery {
			lastPrint = time.Now()
			fmt.Fprintf(progress, "testnet: waiting %v for the shared network (daemon pid %d): %s\n", time.Since(begin).Round(time.Second), cmd.Process.Pid, strings.TrimSpace(tailFile(filepath.Join(dir, logFile), 1)))
		}
	}
}

// runDaemon is the shared network's daemon: it starts the network, writes
// the state file and stops the network when nobody uses it any more. It
// returns the process's exit code.
func runDaemon(dir string) int {
	os.Unsetenv(envDaemon)
	lock, err := lockPath(dir, daemonLock, syscall.LOCK_EX|syscall.LOCK_NB)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testnet daemon: %s: %v\n", daemonLock, err)
		return 1
	}
	defer lock.Close()
	watchPID, watchStart, _ := strings.Cut(os.Getenv(envWatch), ":")
	wpid, _ := strconv.Atoi(watchPID)
	watchGone := func() bool { return wpid <= 0 || procStart(wpid) != watchStart }
	idleLimit := sharedIdleLimit
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", wpid)); strings.TrimSpace(string(comm)) == "go" {
		idleLimit = sharedIdleLimitGo
	}
	var out io.Writer = os.Stderr
	if live := liveStderr(wpid); live != nil {
		defer live.Close()
		out = io.MultiWriter(os.Stderr, live)
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
			return slog.Attr{}
		}
		return a
	}})).With("shared_daemon", os.Getpid())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	ctx, cancel := context.WithTimeout(context.Background(), SharedStartTimeout)
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	n, err := Start(ctx, Config{Clients: SharedClients, TorPath: os.Getenv(EnvTorPath), Logger: log})
	cancel()
	st := &sharedState{Version: stateVersion, DaemonPID: os.Getpid()}
	if err != nil {
		st.Error = err.Error()
		log.Error("testnet: the shared network failed to start", "err", err)
	} else {
		st.Net = n.export()
		log.Info("testnet: shared network up", "bootstrap", n.BootstrapTime().Round(time.Millisecond), "dir", n.Dir())
	}
	code := 0
	if err := writeState(dir, st); err != nil {
		log.Error("testnet: writing the state file", "err", err)
		code = 1
	} else {
		waitUnused(dir, sigs, watchGone, idleLimit, log)
	}
	if n != nil {
		if err := n.Close(); err != nil {
			log.Error("testnet: stopping the shared network", "err", err)
			code = 1
		} else {
			log.Info("testnet: shared network stopped")
		}
	}
	return code
}

// waitUnused returns when a signal arrives, or when no test binary uses the
// network and the watched process is gone or no binary used it for
// idleLimit. It then removes the share directory under start.lock, so that a
// test binary arriving later starts a new daemon.
func waitUnused(dir string, sigs <-chan os.Signal, watchGone func() bool, idleLimit time.Duration, log *slog.Logger) {
	tick := time.NewTicker(sharedPoll)
	defer tick.Stop()
	lastUsed := time.Now()
	for {
		select {
		case s := <-sigs:
			log.Info("testnet: stopping the shared network", "signal", s)
			if start, err := lockPath(dir, startLock, syscall.LOCK_EX); err == nil {
				defer start.Close()
			}
			os.RemoveAll(dir)
			return
		case <-tick.C:
		}
		start, err := lockPath(dir, startLock, syscall.LOCK_EX|syscall.LOCK_NB)
		if err != nil {
			continue // a test binary is starting or attaching
		}
		users, err := lockPath(dir, usersLock, syscall.LOCK_EX|syscall.LOCK_NB)
		if err != nil {
			lastUsed = time.Now()
			start.Close()
			continue
		}
		if gone, idle := watchGone(), time.Since(lastUsed); gone || idle > idleLimit {
			log.Info("testnet: stopping the shared network: no test binary uses it", "go_command_exited", gone, "idle", idle.Round(time.Millisecond))
			os.RemoveAll(dir)
			users.Close()
			start.Close()
			return
		}
		users.Close()
		start.Close()
	}
}

// liveStderr opens the standard error of process pid (the go command) when
// it is a pipe or a terminal, so that the daemon's progress shows while go
// test buffers the test binaries' output. A regular file is not opened: the
// daemon's writes at its own offset would overwrite the go command's.
func liveStderr(pid int) *os.File {
	if pid <= 0 {
		return nil
	}
	path := fmt.Sprintf("/proc/%d/fd/2", pid)
	st, err := os.Stat(path)
	if err != nil || st.Mode()&(fs.ModeNamedPipe|fs.ModeCharDevice) == 0 {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil
	}
	return f
}
