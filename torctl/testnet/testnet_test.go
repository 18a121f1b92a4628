package testnet

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

var testFiles = commonFiles{geoIP: "/x/geoip", resolvConf: "/x/resolv.conf", bandwidths: "/x/bw"}

var testAuthorities = []string{
	authorityLine("gcauth0", 5001, 5002, strings.Repeat("A", 40), strings.Repeat("B", 40)),
	authorityLine("gcauth1", 5011, 5012, strings.Repeat("C", 40), strings.Repeat("D", 40)),
	authorityLine("gcauth2", 5021, 5022, strings.Repeat("E", 40), strings.Repeat("F", 40)),
}

var testAuthAddrs = []string{"127.0.0.1:5002", "127.0.0.1:5012", "127.0.0.1:5022"}

// TestRenderedTorrcsAreSafe checks, without tor, that the torrc of every role
// passes CheckTorrc and carries the options of tor-testnet.md.
func TestRenderedTorrcsAreSafe(t *testing.T) {
	for _, r := range []role{roleAuthority, roleRelay, roleClient} {
		t.Run(r.String(), func(t *testing.T) {
			s := torrcSpec{role: r, nick: "gcx", dataDir: "/x/d", controlPort: 1, orPort: 2, dirPort: 3, socksPort: 4,
				ownerPID: 42, authorities: testAuthorities}
			text := renderTorrc(s, testFiles)
			if err := CheckTorrc(text, testAuthAddrs); err != nil {
				t.Fatalf("CheckTorrc: %v\n%s", err, text)
			}
			want := []string{"TestingTorNetwork 1", "UseDefaultFallbackDirs 0", "ControlPort 127.0.0.1:1",
				"CookieAuthentication 1", "LearnCircuitBuildTimeout 0", "__OwningControllerProcess 42",
				"TestingDirAuthVoteHSDir *", "GeoIPFile /x/geoip", "PathsNeededToBuildCircuits 0.67"}
			switch r {
			case roleClient:
				want = append(want, "SocksPort 127.0.0.1:4 ExtendedErrors", "FetchDirInfoEarly 1", "FetchDirInfoExtraEarly 1")
			case roleAuthority:
				want = append(want, "V3BandwidthsFile /x/bw", "AuthoritativeDirectory 1", "ExitRelay 0", "ExitPolicy reject *:*")
			case roleRelay:
				want = append(want, "ORPort 127.0.0.1:2", "DirPort 127.0.0.1:3", "ExitRelay 0", "SocksPort 0")
			}
			lines := map[string]bool{}
			for _, l := range strings.Split(text, "\n") {
				lines[l] = true
			}
			for _, w := range want {
				if !lines[w] {
					t.Errorf("torrc lacks %q:\n%s", w, text)
				}
			}
			if r != roleAuthority && strings.Contains(text, "AuthoritativeDirectory") {
				t.Errorf("a %s is an authority:\n%s", r, text)
			}
		})
	}
}

func TestCheckTorrcRejectsUnsafe(t *testing.T) {
	good := renderTorrc(torrcSpec{role: roleClient, dataDir: "/x/d", controlPort: 1, socksPort: 4, authorities: testAuthorities}, testFiles)
	if err := CheckTorrc(good, testAuthAddrs); err != nil {
		t.Fatalf("good torrc refused: %v", err)
	}
	drop := func(prefix string) string {
		var out []string
		for _, l := range strings.Split(good, "\n") {
			if !strings.HasPrefix(l, prefix) {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	cases := map[string]string{
		"no TestingTorNetwork":         drop("TestingTorNetwork"),
		"TestingTorNetwork 0 at end":   good + "TestingTorNetwork 0\n",
		"no UseDefaultFallbackDirs":    drop("UseDefaultFallbackDirs"),
		"UseDefaultFallbackDirs 1":     good + "usedefaultfallbackdirs 1\n",
		"no DirAuthority":              drop("DirAuthority"),
		"public DirAuthority":          good + "DirAuthority moria1 orport=9201 v3ident=D586D18309DED4CD6D57C18FDB97EFA96D330566 128.31.0.39:9231 1A25C6358DB91342AA51720A5038B72742732498\n",
		"unknown local DirAuthority":   good + "DirAuthority x orport=1 no-v2 v3ident=" + strings.Repeat("0", 40) + " 127.0.0.1:9999 " + strings.Repeat("0", 40) + "\n",
		"DirAuthority ipv6":            good + "DirAuthority x orport=1 ipv6=[2001:db8::1]:9001 v3ident=" + strings.Repeat("0", 40) + " 127.0.0.1:5002 " + strings.Repeat("0", 40) + "\n",
		"FallbackDir":                  good + "FallbackDir 1.2.3.4:80 orport=443 id=" + strings.Repeat("0", 40) + "\n",
		"AlternateDirAuthority":        good + "AlternateDirAuthority 1.2.3.4:80 " + strings.Repeat("0", 40) + "\n",
		"Bridge":                       good + "Bridge 1.2.3.4:443\n",
		"UseBridges 1":                 good + "UseBridges 1\n",
		"include":                      good + "%include /etc/tor/torrc\n",
		"plus prefix":                  good + "+DirAuthority x 127.0.0.1:5002 " + strings.Repeat("0", 40) + "\n",
		"line continuation":            good + "Nickname x \\\n",
		"empty":                        "",
		"case-insensitive TTN 0 later": good + "testingtornetwork 0\n",
	}
	for name, text := range cases {
		t.Run(name, func(t *testing.T) {
			if err := CheckTorrc(text, testAuthAddrs); !errors.Is(err, ErrUnsafeTorrc) {
				t.Fatalf("CheckTorrc = %v, want ErrUnsafeTorrc", err)
			}
		})
	}
}

func TestCheckExtraLine(t *testing.T) {
	for _, ok := range []string{"HiddenServiceDir /tmp/x", "HiddenServicePort 80 127.0.0.1:8080", "# comment", "", "Log info file /tmp/x"} {
		if err := checkExtraLine(ok); err != nil {
			t.Errorf("checkExtraLine(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"DirAuthority x 1.2.3.4:80 " + strings.Repeat("0", 40), "TestingTorNetwork 0",
		"usedefaultfallbackdirs 1", "FallbackDir 1.2.3.4:80", "%include /etc/tor/torrc", "Bridge 1.2.3.4:1",
		"HiddenServiceDir /x\nDirAuthority y", "  ControlPort 9051", "SocksPort 9050", "DataDirectory /", "Nickname x \\"} {
		if err := checkExtraLine(bad); !errors.Is(err, ErrUnsafeTorrc) {
			t.Errorf("checkExtraLine(%q) = %v, want ErrUnsafeTorrc", bad, err)
		}
	}
}

func TestBootstrapProgress(t *testing.T) {
	for in, want := range map[string]int{
		`NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"`:                             100,
		`NOTICE BOOTSTRAP PROGRESS=5 TAG=conn SUMMARY="Connecting to a relay"`:              5,
		`WARN BOOTSTRAP PROGRESS=10 TAG=conn_done SUMMARY="x" WARNING="y" REASON=z COUNT=1`: 10,
		``:                   -1,
		`PROGRESS=abc`:       -1,
		`NOTICE BOOTSTRAP x`: -1,
	} {
		if got := bootstrapProgress(in); got != want {
			t.Errorf("bootstrapProgress(%q) = %d, want %d", in, got, want)
		}
	}
	for in, want := range map[string]string{
		`NOTICE BOOTSTRAP PROGRESS=5 TAG=conn SUMMARY="Connecting to a relay"`:  "Connecting to a relay",
		`WARN BOOTSTRAP PROGRESS=10 SUMMARY="x y" WARNING="y" REASON=z COUNT=1`: "x y",
		`NOTICE BOOTSTRAP PROGRESS=5`:                                           "",
		`NOTICE BOOTSTRAP PROGRESS=5 SUMMARY="unterminated`:                     "unterminated",
	} {
		if got := bootstrapSummary(in); got != want {
			t.Errorf("bootstrapSummary(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	if _, err := Start(context.Background(), Config{TorPath: filepath.Join(t.TempDir(), "no-such-tor")}); !errors.Is(err, ErrTorNotInstalled) {
		t.Errorf("missing tor: %v, want ErrTorNotInstalled", err)
	}
	if Available("") != nil {
		t.Skip("tor not installed")
	}
	if _, err := Start(context.Background(), Config{Clients: -1}); err == nil {
		t.Error("Clients -1 accepted")
	}
	if _, err := Start(context.Background(), Config{Dir: filepath.Join(t.TempDir(), "with space")}); err == nil {
		t.Error("Dir with a space accepted")
	}
	for _, r := range []int{-1, 17} {
		if _, err := Start(context.Background(), Config{Relays: r}); err == nil {
			t.Errorf("Relays %d accepted", r)
		}
	}
	for _, v := range []time.Duration{time.Second, 9 * time.Second, 10500 * time.Millisecond, 2 * time.Hour, -time.Minute} {
		if _, err := Start(context.Background(), Config{VotingInterval: v}); err == nil {
			t.Errorf("VotingInterval %v accepted", v)
		}
	}
}

// TestVotingInterval: the authorities' torrc carries the configured
// V3AuthVotingInterval, 10 s by default; the first consensus still comes
// after 10 s.
func TestVotingInterval(t *testing.T) {
	for _, c := range []struct{ set, want int }{{0, 10}, {150, 150}} {
		text := renderTorrc(torrcSpec{role: roleAuthority, nick: "gcx", dataDir: "/x/d", controlPort: 1, orPort: 2, dirPort: 3,
			authorities: testAuthorities, votingInterval: c.set}, testFiles)
		if err := CheckTorrc(text, testAuthAddrs); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{fmt.Sprintf("\nV3AuthVotingInterval %d\n", c.want), "\nTestingV3AuthInitialVotingInterval 10\n"} {
			if !strings.Contains(text, want) {
				t.Errorf("votingInterval %d: torrc lacks %q", c.set, strings.TrimSpace(want))
			}
		}
	}
}

// TestSharedNetwork checks the running network: every torrc the package
// wrote is safe and names exactly the running authorities, the clients have
// working SOCKS and control ports, and AddTor/StopTor work.
func TestSharedNetwork(t *testing.T) {
	t.Parallel()
	n := Shared(t)
	t.Logf("bootstrap time: %v", n.BootstrapTime())

	tors := n.running()
	var authDirs []string
	roles := map[role]int{}
	for _, tor := range tors {
		roles[tor.role]++
		if tor.role == roleAuthority {
			authDirs = append(authDirs, fmt.Sprintf("127.0.0.1:%d", tor.dirPort))
		}
	}
	if roles[roleAuthority] != numAuthorities || roles[roleRelay] != numRelays || roles[roleClient] < SharedClients {
		t.Fatalf("running tors by role: %v", roles)
	}
	paths := n.torrcPaths()
	if len(paths) < len(tors)+numAuthorities+numRelays {
		t.Fatalf("only %d torrcs recorded for %d tors", len(paths), len(tors))
	}
	for _, p := range paths {
		text, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		allowed := authDirs
		if filepath.Base(p) == "torrc.fingerprint" {
			allowed = []string{"127.0.0.1:1"}
		}
		if err := CheckTorrc(string(text), allowed); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		if err := n.CheckTorrc(p); err != nil && filepath.Base(p) != "torrc.fingerprint" {
			t.Errorf("%s: %v", p, err)
		}
	}
	for _, c := range n.Clients() {
		if c.PID == 0 || c.SocksAddr == "" || c.ControlAddr == "" {
			t.Errorf("client %+v", c)
		}
		conn, err := net.DialTimeout("tcp", c.SocksAddr, 5*time.Second)
		if err != nil {
			t.Errorf("%s SocksPort: %v", c.Name, err)
		} else {
			conn.Close()
		}
		if _, err := os.Stat(c.CookiePath); err != nil {
			t.Errorf("%s cookie: %v", c.Name, err)
		}
	}

	if _, err := n.AddTor(context.Background(), "bad", []string{"DirAuthority x 1.2.3.4:80 " + strings.Repeat("0", 40)}); !errors.Is(err, ErrUnsafeTorrc) {
		t.Errorf("AddTor with a DirAuthority line: %v, want ErrUnsafeTorrc", err)
	}
	if _, err := n.AddTor(context.Background(), "client0", nil); err == nil {
		t.Errorf("AddTor with the name of a running tor succeeded")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	extra, err := n.AddTor(ctx, "extra", []string{"# a comment line", "HiddenServiceDir " + filepath.Join(n.Dir(), "extra-hs"), "HiddenServicePort 80 127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("AddTor bootstrap time: %v", time.Since(start))
	defer n.StopTor(extra)
	hostname, err := os.ReadFile(filepath.Join(n.Dir(), "extra-hs", "hostname"))
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(hostname)), ".onion") {
		t.Errorf("persistent onion hostname: %q, %v", hostname, err)
	}
	stopStart := time.Now()
	if err := n.StopTor(extra); err != nil {
		t.Fatal(err)
	}
	t.Logf("StopTor took %v", time.Since(stopStart).Round(time.Millisecond))
	if alive(extra.PID) {
		t.Errorf("tor %d still running after StopTor", extra.PID)
	}
	if err := n.StopTor(extra); err != nil {
		t.Errorf("second StopTor: %v", err)
	}
}

// alive reports whether pid is a running process (not a zombie).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestTorExitsWithOwner starts a network in a child process that then dies
// without calling Close (it kills itself with SIGKILL), and checks that every
// tor it started exits on its own.
func TestTorExitsWithOwner(t *testing.T) {
	if os.Getenv("GHOSTCOMM_TESTNET_ORPHAN_CHILD") == "1" {
		orphanChild()
		return
	}
	t.Parallel()
	SkipUnlessAvailable(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestTorExitsWithOwner$", "-test.v")
	cmd.Env = append(os.Environ(), "GHOSTCOMM_TESTNET_ORPHAN_CHILD=1", EnvTorTests+"=")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	var dir string
	sc := bufio.NewScanner(out)
	var transcript strings.Builder
	for sc.Scan() {
		l := sc.Text()
		transcript.WriteString(l + "\n")
		if v, ok := strings.CutPrefix(l, "ORPHAN-PID "); ok {
			pid, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			pids = append(pids, pid)
		}
		if v, ok := strings.CutPrefix(l, "ORPHAN-DIR "); ok {
			dir = v
		}
	}
	cmd.Wait()
	if dir != "" {
		defer os.RemoveAll(dir)
	}
	if len(pids) == 0 {
		t.Fatalf("the child started no tor:\n%s", transcript.String())
	}
	// Liveness bound, not a speed assertion: TAKEOWNERSHIP takes about 1.4 s,
	// __OwningControllerProcess about 15 s.
	deadline := time.Now().Add(60 * time.Second)
	start := time.Now()
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if alive(pid) {
			t.Errorf("tor %d outlived its owner by 60 s; killing it", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	t.Logf("%d orphaned tors exited %v after their owner died", len(pids), time.Since(start).Round(time.Millisecond))
}

// orphanChild starts a network without waiting for bootstrap, prints their PIDs and kills its own process.
func orphanChild() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	net, err := start(ctx, Config{}, false)
	if err != nil {
		fmt.Println("ORPHAN-ERROR", err)
		os.Exit(1)
	}
	fmt.Println("ORPHAN-DIR", net.dir)
	for _, tor := range net.running() {
		fmt.Println("ORPHAN-PID", tor.PID)
	}
	os.Stdout.Sync()
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
}

// TestSkipOrFailWithoutTor runs TestSharedNetwork in a child process whose
// tor binary does not exist: it must skip, and fail when tor tests are
// required.
func TestSkipOrFailWithoutTor(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode     string
		wantFail bool
		want     string
	}{
		{"", false, "--- SKIP: TestSharedNetwork"},
		{"required", true, "--- FAIL: TestSharedNetwork"},
	} {
		cmd := exec.Command(exe, "-test.run=^TestSharedNetwork$", "-test.v")
		cmd.Env = append(os.Environ(), EnvTorPath+"="+filepath.Join(t.TempDir(), "no-tor"), EnvTorTests+"="+tc.mode)
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != tc.wantFail || !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "not installed") {
			t.Errorf("%s=%q: exit error %v, output:\n%s", EnvTorTests, tc.mode, err, out)
		}
	}
}

func FuzzCheckTorrc(f *testing.F) {
	f.Add(renderTorrc(torrcSpec{role: roleClient, dataDir: "/x", controlPort: 1, socksPort: 2, authorities: testAuthorities}, testFiles))
	f.Add(renderTorrc(torrcSpec{role: roleAuthority, nick: "a", dataDir: "/x", authorities: testAuthorities}, testFiles))
	f.Add("TestingTorNetwork 1\nUseDefaultFallbackDirs 0\nDirAuthority x 127.0.0.1:5002 " + strings.Repeat("0", 40) + "\n")
	f.Add("%include /etc/tor\n")
	f.Fuzz(func(t *testing.T, torrc string) {
		err := CheckTorrc(torrc, testAuthAddrs)
		if err != nil && !errors.Is(err, ErrUnsafeTorrc) {
			t.Fatalf("error %v does not match ErrUnsafeTorrc", err)
		}
		if err == nil && !strings.Contains(strings.ToLower(torrc), "dirauthority") {
			t.Fatalf("accepted a torrc without DirAuthority: %q", torrc)
		}
	})
}

// Main lets Parallel tests run at once, unless the command line set
// -test.parallel (go test's default is GOMAXPROCS).
func TestMainRaisesParallel(t *testing.T) {
	f := flag.Lookup("test.parallel")
	set := false
	flag.Visit(func(g *flag.Flag) { set = set || g == f })
	if set {
		t.Skipf("-test.parallel=%s given on the command line", f.Value)
	}
	if n, err := strconv.Atoi(f.Value.String()); err != nil || n < Parallel {
		t.Fatalf("-test.parallel is %s, want at least %d", f.Value, Parallel)
	}
}

// TestStartFailureStopsEverything gives Start less time than a first
// consensus takes (10 s voting): it must fail, quote a notice.log, and leave
// no tor running.
func TestStartFailureStopsEverything(t *testing.T) {
	t.Parallel()
	SkipUnlessAvailable(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	n, err := Start(ctx, Config{Dir: dir})
	if err == nil {
		n.Close()
		t.Fatal("Start bootstrapped before the first consensus could exist")
	}
	t.Logf("Start failed as expected: %.300s", err)
	if strings.Contains(err.Error(), "not bootstrapped") && !strings.Contains(err.Error(), "notice.log ---") {
		t.Errorf("bootstrap failure without the notice.log tail: %v", err)
	}
	if pids := torsUsing(dir); len(pids) > 0 {
		t.Errorf("tors still running after a failed Start: %v", pids)
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("Start removed the caller's Dir: %v", err)
	}
}

// torsUsing returns the live processes whose command line mentions dir.
func torsUsing(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), dir) && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestRestart restarts a tor of the network (one this process added: the
// shared network's own tors belong to the process that started them) with
// SIGKILL: the old process is gone, the new one has another PID, the same
// ports and the same data directory (its onion service keeps its address),
// and it has bootstrapped again with its SocksPort open. Restart refuses tors this
// process did not start and signals other than SIGKILL and SIGTERM.
func TestRestart(t *testing.T) {
	n := Shared(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := n.Restart(ctx, &Tor{Name: "stranger"}, syscall.SIGKILL, 0); !errors.Is(err, ErrNotOwned) {
		t.Errorf("Restart of a tor the network did not start: %v, want ErrNotOwned", err)
	}
	if len(n.Relays()) != numRelays {
		t.Errorf("Relays: %d, want %d", len(n.Relays()), numRelays)
	}
	for _, r := range n.Relays() {
		if r.Restartable() {
			continue // a network this process started
		}
		if _, err := n.Restart(ctx, r, syscall.SIGKILL, 0); !errors.Is(err, ErrNotOwned) {
			t.Errorf("Restart of %s of a shared network: %v, want ErrNotOwned", r.Name, err)
		}
	}
	hs := filepath.Join(n.Dir(), "restart-hs")
	old, err := n.AddTor(ctx, "restart", []string{"HiddenServiceDir " + hs, "HiddenServicePort 80 127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { n.StopTor(old) }()
	if !old.Restartable() {
		t.Fatalf("a tor added by this process is not restartable")
	}
	if _, err := n.Restart(ctx, old, syscall.SIGSTOP, 0); err == nil || !alive(old.PID) {
		t.Errorf("Restart with SIGSTOP: %v (alive %v), want an error and the tor left running", err, alive(old.PID))
	}
	host, err := os.ReadFile(filepath.Join(hs, "hostname"))
	if err != nil {
		t.Fatal(err)
	}
	nt, err := n.Restart(ctx, old, syscall.SIGKILL, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer n.StopTor(nt)
	if alive(old.PID) {
		t.Errorf("the killed tor %d still runs", old.PID)
	}
	if nt.PID == old.PID || !alive(nt.PID) {
		t.Errorf("new pid %d (alive %v), old %d", nt.PID, alive(nt.PID), old.PID)
	}
	if nt.SocksAddr != old.SocksAddr || nt.ControlAddr != old.ControlAddr || nt.DataDir != old.DataDir {
		t.Errorf("restarted with other addresses: %+v, was %+v", nt, old)
	}
	if again, err := os.ReadFile(filepath.Join(hs, "hostname")); err != nil || string(again) != string(host) {
		t.Errorf("onion address after the restart %q (%v), was %q", again, err, host)
	}
	conn, err := net.DialTimeout("tcp", nt.SocksAddr, 5*time.Second)
	if err != nil {
		t.Fatalf("SocksPort after the restart: %v", err)
	}
	conn.Close()
	var found bool
	for _, pid := range n.PIDs() {
		found = found || pid == nt.PID
		if pid == old.PID {
			t.Errorf("PIDs still lists the killed tor %d", pid)
		}
	}
	if !found {
		t.Errorf("PIDs does not list the restarted tor %d", nt.PID)
	}
	if err := n.StopTor(nt); err != nil || alive(nt.PID) {
		t.Errorf("StopTor after a restart: %v, alive %v", err, alive(nt.PID))
	}
}
