package torsite_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cretz/bine/control"
	"golang.org/x/net/proxy"

	"github.com/ghostcomm/ghostcomm/torctl/testnet"
)

// Exit codes documented in create_torsite.sh --help.
const (
	exitOK      = 0
	exitUsage   = 2
	exitDep     = 3
	exitPerm    = 4
	exitPort    = 5
	exitTaken   = 6
	exitInvalid = 7
	exitReload  = 8
	exitTimeout = 9
)

// Bounds of the end-to-end steps (retries stop there; none of them is an
// assertion on speed).
const (
	scriptTimeout   = 3 * time.Minute // one run of the script
	hostnameTimeout = 120             // seconds, the script's --timeout
	fetchDeadline   = 3 * time.Minute // retrying a fetch while the descriptor propagates
	goneDeadline    = 4 * time.Minute // retrying until the removed onion stops answering
	attemptTimeout  = 30 * time.Second
	goneAttempt     = 15 * time.Second // one attempt at the removed onion
	retryPause      = 500 * time.Millisecond
)

// The test binary doubles as the tor reload command (see reloadTorHelper).
const (
	helperEnv      = "GHOSTCOMM_TORSITE_HELPER"
	helperTorrcEnv = "GHOSTCOMM_TORSITE_TORRC"
	helperBaseEnv  = "GHOSTCOMM_TORSITE_BASE_TORRC"
	helperPIDEnv   = "GHOSTCOMM_TORSITE_TOR_PID"
)

var onionRE = regexp.MustCompile(`^[a-z2-7]{56}\.onion$`)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "reload-tor" {
		os.Exit(reloadTorHelper())
	}
	testnet.Main(m)
}

// reloadTorHelper is the tor reload command the end-to-end test gives the
// script: it checks that the edited torrc still pins tor to the private
// network and differs from the harness's torrc only by HiddenService lines
// and comments, then sends SIGHUP to the tor. A torrc that fails the check
// is never loaded.
func reloadTorHelper() int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "reload-tor helper: "+format+"\n", args...)
		return 1
	}
	text, err := os.ReadFile(os.Getenv(helperTorrcEnv))
	if err != nil {
		return fail("%v", err)
	}
	base, err := os.ReadFile(os.Getenv(helperBaseEnv))
	if err != nil {
		return fail("%v", err)
	}
	if err := testnet.CheckTorrc(string(text), nil); err != nil {
		return fail("refusing to reload: %v", err)
	}
	if got, want := withoutServiceLines(string(text)), withoutServiceLines(string(base)); got != want {
		return fail("refusing to reload: the torrc changed beyond HiddenService lines:\n%s\nwant:\n%s", got, want)
	}
	for _, l := range strings.Split(string(text), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "HiddenServicePort" && (len(f) != 3 || !strings.HasPrefix(f[2], "127.0.0.1:")) {
			return fail("refusing to reload: %q does not target 127.0.0.1", l)
		}
	}
	pid, err := strconv.Atoi(os.Getenv(helperPIDEnv))
	if err != nil || pid <= 0 {
		return fail("bad %s %q", helperPIDEnv, os.Getenv(helperPIDEnv))
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fail("SIGHUP %d: %v", pid, err)
	}
	return 0
}

// withoutServiceLines drops comments, blank lines and HiddenService* lines.
func withoutServiceLines(torrc string) string {
	var b strings.Builder
	for _, l := range strings.Split(torrc, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") || strings.HasPrefix(t, "HiddenService") {
			continue
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// tools are the programs the tests need.
type tools struct{ bash, tor, nginx string }

// needTools skips the test when tor, nginx or bash is missing, or fails it
// when GHOSTCOMM_TOR_TESTS=required.
func needTools(t *testing.T) tools {
	t.Helper()
	if runtime.GOOS != "linux" {
		skipOrFail(t, "the torsite script targets Linux (needs ss, flock, GNU coreutils)")
	}
	var tl tools
	var missing []string
	for _, x := range []struct {
		name string
		dst  *string
	}{{"bash", &tl.bash}, {"tor", &tl.tor}, {"nginx", &tl.nginx}} {
		p, err := exec.LookPath(x.name)
		if err != nil {
			// nginx and tor live in /usr/sbin on Debian, which a user's PATH may lack.
			if _, serr := os.Stat("/usr/sbin/" + x.name); serr == nil {
				p, err = "/usr/sbin/"+x.name, nil
			}
		}
		if err != nil {
			missing = append(missing, x.name)
			continue
		}
		*x.dst = p
	}
	if len(missing) > 0 {
		skipOrFail(t, "not installed: "+strings.Join(missing, ", ")+" (.ci/install-nginx.sh installs nginx)")
	}
	return tl
}

func skipOrFail(t *testing.T, reason string) {
	t.Helper()
	if testnet.Required() {
		t.Fatalf("torsite tests are required (%s=required) but cannot run: %s", testnet.EnvTorTests, reason)
	}
	t.Skipf("skipping: %s (set %s=required to make this a failure)", reason, testnet.EnvTorTests)
}

// fixture is a set of files the script is pointed at, all under one
// temporary directory, plus a private nginx configuration.
type fixture struct {
	t                      *testing.T
	tl                     tools
	dir                    string
	torrc, dataDir         string
	avail, enabled, www    string
	nginxDir, nginxConf    string
	torReload, nginxReload string
	nginxTest              string
	extraEnv               []string
}

// newFixture lays out the files. torrc is the torrc to edit ("" writes a
// private-network torrc that tor only ever verifies, never runs).
func newFixture(t *testing.T, tl tools, torrc, dataDir string) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{
		t: t, tl: tl, dir: dir,
		torrc: torrc, dataDir: dataDir,
		avail:     filepath.Join(dir, "nginx", "sites-available"),
		enabled:   filepath.Join(dir, "nginx", "sites-enabled"),
		www:       filepath.Join(dir, "www"),
		nginxDir:  filepath.Join(dir, "nginx"),
		torReload: "true",
	}
	f.nginxConf = filepath.Join(f.nginxDir, "nginx.conf")
	for _, d := range []string{f.avail, f.enabled, filepath.Join(f.nginxDir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if f.torrc == "" {
		f.dataDir = filepath.Join(dir, "tordata")
		if err := os.Mkdir(f.dataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		f.torrc = filepath.Join(dir, "torrc")
		// Verified with tor --verify-config only; DisableNetwork and the
		// loopback placeholder authority keep it off any network anyway.
		text := "TestingTorNetwork 1\nUseDefaultFallbackDirs 0\nDisableNetwork 1\nSocksPort 0\n" +
			"DirAuthority placeholder orport=9 no-v2 v3ident=" + strings.Repeat("0", 40) + " 127.0.0.1:9 " + strings.Repeat("0", 40) + "\n" +
			"DataDirectory " + f.dataDir + "\n"
		if err := os.WriteFile(f.torrc, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		// Workers would run as nobody, who cannot enter t.TempDir() (0700).
		user = "user root;\n"
	}
	tmp := filepath.Join(f.nginxDir, "tmp")
	conf := user + "worker_processes 1;\ndaemon off;\nerror_log " + filepath.Join(f.nginxDir, "error.log") + " notice;\n" +
		"events { worker_connections 64; }\n" +
		"http {\n" +
		"\taccess_log off;\n" +
		"\tclient_body_temp_path " + tmp + "/body;\n\tproxy_temp_path " + tmp + "/proxy;\n" +
		"\tfastcgi_temp_path " + tmp + "/fastcgi;\n\tuwsgi_temp_path " + tmp + "/uwsgi;\n\tscgi_temp_path " + tmp + "/scgi;\n" +
		"\tinclude " + f.enabled + "/*;\n" +
		"}\n"
	if err := os.WriteFile(f.nginxConf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	f.nginxTest = shellJoin(f.nginxArgs("-t", "-q"))
	f.nginxReload = "true"
	return f
}

// nginxArgs is the nginx command line for the private nginx plus extra.
func (f *fixture) nginxArgs(extra ...string) []string {
	return append([]string{f.tl.nginx, "-p", f.nginxDir, "-e", filepath.Join(f.nginxDir, "error.log"), "-c", f.nginxConf}, extra...)
}

func (f *fixture) flags() []string {
	return []string{
		"--torrc", f.torrc, "--tor-data-dir", f.dataDir, "--tor-reload", f.torReload,
		"--nginx-available", f.avail, "--nginx-enabled", f.enabled,
		"--nginx-test", f.nginxTest, "--nginx-reload", f.nginxReload,
		"--www-dir", f.www, "--timeout", strconv.Itoa(hostnameTimeout),
	}
}

type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// last returns the last line of stdout.
func (r result) last() string {
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	return lines[len(lines)-1]
}

// run runs the script with the fixture's flags plus args.
func (f *fixture) run(args ...string) result {
	return f.runEnv(nil, append(f.flags(), args...)...)
}

// runEnv runs the script with env added to the environment.
func (f *fixture) runEnv(env []string, args ...string) result {
	f.t.Helper()
	return f.exec(env, append([]string{f.tl.bash, f.script()}, args...))
}

func (f *fixture) script() string {
	script, err := filepath.Abs("create_torsite.sh")
	if err != nil {
		f.t.Fatal(err)
	}
	return script
}

// exec runs argv (which runs the script) with env added to the environment.
func (f *fixture) exec(env, argv []string) result {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	args := argv[1:]
	cmd := exec.CommandContext(ctx, argv[0], args...)
	cmd.Env = append(append(os.Environ(), f.extraEnv...), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		f.t.Fatalf("running create_torsite.sh %q: %v\nstderr:\n%s", args, err, r.stderr)
	}
	return r
}

// expect fails the test unless r exited with code.
func expect(t *testing.T, what string, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s: exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", what, r.code, code, r.stdout, r.stderr)
	}
}

// snapshot records every file, directory and link under the roots.
func snapshot(t *testing.T, roots ...string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return nil
			}
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			switch {
			case d.Type()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				m[p] = "link " + target
			case d.IsDir():
				m[p] = "dir " + info.Mode().String()
			default:
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				m[p] = info.Mode().String() + " " + string(b)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func sameSnapshot(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, v := range before {
		if w, ok := after[p]; !ok {
			t.Errorf("%s: %s disappeared", what, p)
		} else if w != v {
			t.Errorf("%s: %s changed:\n--- before\n%s\n--- after\n%s", what, p, v, w)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: %s appeared", what, p)
		}
	}
}

// roots are the directories TestScriptFiles compares before and after: the
// whole fixture (no tor or nginx runs there).
func (f *fixture) roots() []string { return []string{f.dir} }

// scriptFiles are the files and directories the script may write: what the
// end-to-end test compares (tor's data directory and nginx's logs change on
// their own).
func (f *fixture) scriptFiles() []string {
	return []string{f.torrc, f.torrc + ".ghostcomm.bak", f.avail, f.enabled, f.www}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// fakeHostname makes DATADIR/NAME/hostname exist, as tor would write it, for
// tests that run the script without a tor.
func fakeHostname(t *testing.T, dataDir, name string) string {
	t.Helper()
	const b32 = "abcdefghijklmnopqrstuvwxyz234567"
	var raw [56]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		raw[i] = b32[int(raw[i])%len(b32)]
	}
	addr := string(raw[:]) + ".onion"
	d := filepath.Join(dataDir, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "hostname"), []byte(addr+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestScriptFiles runs the script against files of a test, without any tor
// process or nginx running: the edits, their idempotence, --dry-run,
// --remove, and the documented error exits.
func TestScriptFiles(t *testing.T) {
	tl := needTools(t)
	f := newFixture(t, tl, "", "")
	origTorrc, err := os.ReadFile(f.torrc)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	ps := strconv.Itoa(port)

	t.Run("help and unknown option", func(t *testing.T) {
		r := f.run("--help")
		expect(t, "--help", r, exitOK)
		for _, code := range []int{exitOK, exitUsage, exitDep, exitPerm, exitPort, exitTaken, exitInvalid, exitReload, exitTimeout} {
			if !regexp.MustCompile(`(?m)^  ` + strconv.Itoa(code) + `  `).MatchString(r.stdout) {
				t.Errorf("--help does not document exit code %d", code)
			}
		}
		expect(t, "unknown option", f.run("--no-such-option", "site", ps), exitUsage)
	})

	t.Run("dry run changes nothing", func(t *testing.T) {
		before := snapshot(t, f.roots()...)
		r := f.run("--dry-run", "site", ps)
		expect(t, "--dry-run", r, exitOK)
		if !strings.Contains(r.stdout, "HiddenServicePort 80 127.0.0.1:"+ps) || !strings.Contains(r.stdout, "listen 127.0.0.1:"+ps+";") {
			t.Errorf("--dry-run does not show the torrc and nginx changes:\n%s", r.stdout)
		}
		sameSnapshot(t, "--dry-run", before, snapshot(t, f.roots()...))
	})

	for _, c := range []struct{ what, name, port string }{
		{"upper case name", "Site", ps},
		{"name with a dot", "a.b", ps},
		{"name with a slash", "../x", ps},
		{"empty name", "", ps},
		{"name tor uses in its data directory", "keys", ps},
		{"port zero", "site", "0"},
		{"port too large", "site", "65536"},
		{"port not a number", "site", "80x"},
	} {
		t.Run("usage "+c.what, func(t *testing.T) {
			before := snapshot(t, f.roots()...)
			r := f.run(c.name, c.port)
			expect(t, c.what, r, exitUsage)
			sameSnapshot(t, c.what, before, snapshot(t, f.roots()...))
		})
	}

	t.Run("port in use", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		busy := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		before := snapshot(t, f.roots()...)
		r := f.run("site", busy)
		expect(t, "port in use", r, exitPort)
		sameSnapshot(t, "port in use", before, snapshot(t, f.roots()...))
	})

	t.Run("missing dependency", func(t *testing.T) {
		for _, dep := range []string{"tor", "nginx"} {
			bin := pathWithout(t, dep)
			before := snapshot(t, f.roots()...)
			r := f.runEnv([]string{"PATH=" + bin}, append(f.flags(), "site", ps)...)
			expect(t, "without "+dep, r, exitDep)
			if !strings.Contains(r.stderr, "'"+dep+"'") {
				t.Errorf("without %s: stderr does not name it:\n%s", dep, r.stderr)
			}
			sameSnapshot(t, "without "+dep, before, snapshot(t, f.roots()...))
		}
	})

	t.Run("invalid configuration is rolled back", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "defaults")
		if err := os.WriteFile(bad, []byte("NoSuchTorOption 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, f.roots()...)
		r := f.run("--tor-defaults", bad, "site", ps)
		expect(t, "tor rejects", r, exitInvalid)
		sameSnapshot(t, "tor rejects", before, snapshot(t, f.roots()...))

		r = f.run("--nginx-test", "false", "site", ps)
		expect(t, "nginx rejects", r, exitInvalid)
		sameSnapshot(t, "nginx rejects", before, snapshot(t, f.roots()...))
	})

	t.Run("no permission", func(t *testing.T) {
		var before map[string]string
		var r result
		if os.Geteuid() == 0 {
			setpriv, err := exec.LookPath("setpriv")
			if err != nil {
				t.Skip("running as root and setpriv (util-linux) is missing: cannot drop privileges")
			}
			// nobody may read the fixture (directories 0755, files 0644, owned by root) but write nothing.
			for _, d := range []string{filepath.Dir(f.dir), f.dir, f.dataDir} {
				if err := os.Chmod(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			defer os.Chmod(f.dataDir, 0o700)
			before = snapshot(t, f.roots()...)
			argv := append([]string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", f.tl.bash, f.script()}, f.flags()...)
			r = f.exec(nil, append(argv, "site", ps))
		} else {
			if err := os.Chmod(f.torrc, 0o444); err != nil {
				t.Fatal(err)
			}
			defer os.Chmod(f.torrc, 0o644)
			before = snapshot(t, f.roots()...)
			r = f.run("site", ps)
		}
		expect(t, "no permission", r, exitPerm)
		sameSnapshot(t, "no permission", before, snapshot(t, f.roots()...))
	})

	t.Run("remove what is not there", func(t *testing.T) {
		before := snapshot(t, f.roots()...)
		expect(t, "--remove unknown", f.run("--remove", "nosuchsite"), exitOK)
		sameSnapshot(t, "--remove unknown", before, snapshot(t, f.roots()...))
	})

	t.Run("timeout without tor", func(t *testing.T) {
		r := f.run("--timeout", "1", "lonely", strconv.Itoa(freePort(t)))
		expect(t, "no hostname", r, exitTimeout)
		expect(t, "remove lonely", f.run("--remove", "lonely", "--delete-root"), exitOK)
	})

	t.Run("reload failure", func(t *testing.T) {
		r := f.run("--nginx-reload", "false", "reloadfail", strconv.Itoa(freePort(t)))
		expect(t, "nginx reload fails", r, exitReload)
		expect(t, "remove reloadfail", f.run("--remove", "reloadfail", "--delete-root"), exitOK)
	})

	if t.Failed() {
		return
	}
	if got, _ := os.ReadFile(f.torrc); !bytes.Equal(got, origTorrc) {
		t.Fatalf("torrc not back to its original after the error cases:\n%s", got)
	}

	t.Run("create then again then remove", func(t *testing.T) {
		addr := fakeHostname(t, f.dataDir, "site")
		r := f.run("site", ps)
		expect(t, "create", r, exitOK)
		if r.last() != addr {
			t.Fatalf("last line of stdout = %q, want the address %q", r.last(), addr)
		}
		files := f.siteFiles("site")
		checkSiteFiles(t, f, "site", port, filepath.Join(f.www, "site"))
		if bak, err := os.ReadFile(f.torrc + ".ghostcomm.bak"); err != nil || !bytes.Equal(bak, origTorrc) {
			t.Errorf("backup %s.ghostcomm.bak = %q, %v; want the original torrc", f.torrc, bak, err)
		}

		before := snapshot(t, f.roots()...)
		r = f.run("site", ps)
		expect(t, "create again", r, exitOK)
		if r.last() != addr {
			t.Errorf("second run printed %q, want %q", r.last(), addr)
		}
		sameSnapshot(t, "second run", before, snapshot(t, f.roots()...))

		other := strconv.Itoa(freePort(t))
		expect(t, "same name, other port", f.run("site", other), exitTaken)
		expect(t, "same name, other root", f.run("site", ps, t.TempDir()), exitTaken)
		expect(t, "other name, same port", f.run("site2", ps), exitPort)
		sameSnapshot(t, "conflicts", before, snapshot(t, f.roots()...))

		r = f.run("--dry-run", "--remove", "site")
		expect(t, "--dry-run --remove", r, exitOK)
		sameSnapshot(t, "--dry-run --remove", before, snapshot(t, f.roots()...))

		expect(t, "--remove", f.run("--remove", "site", "--delete-root"), exitOK)
		if got, _ := os.ReadFile(f.torrc); !bytes.Equal(got, origTorrc) {
			t.Errorf("torrc after --remove differs from the original:\n%s", got)
		}
		for _, p := range append(files, filepath.Join(f.www, "site")) {
			if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s still exists after --remove --delete-root (err %v)", p, err)
			}
		}
		if _, err := os.Stat(filepath.Join(f.dataDir, "site", "hostname")); err != nil {
			t.Errorf("--remove deleted the onion keys directory: %v", err)
		}
	})
}

// pathWithout returns a directory of links to every program on PATH except
// the one named dep, to run the script as if dep were not installed.
func pathWithout(t *testing.T, dep string) string {
	t.Helper()
	bin := t.TempDir()
	dirs := append(filepath.SplitList(os.Getenv("PATH")), "/usr/sbin", "/usr/bin", "/sbin", "/bin")
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if e.Name() == dep || e.IsDir() {
				continue
			}
			dst := filepath.Join(bin, e.Name())
			if _, err := os.Lstat(dst); err == nil {
				continue
			}
			if err := os.Symlink(filepath.Join(d, e.Name()), dst); err != nil {
				t.Fatal(err)
			}
		}
	}
	return bin
}

// siteFiles are the files the script writes for name (besides the torrc).
func (f *fixture) siteFiles(name string) []string {
	return []string{
		filepath.Join(f.avail, "torsite-"+name+".conf"),
		filepath.Join(f.enabled, "torsite-"+name+".conf"),
		filepath.Join(f.www, name, "index.html"),
	}
}

// checkSiteFiles checks the torrc block and the nginx server block of name.
func checkSiteFiles(t *testing.T, f *fixture, name string, port int, root string) {
	t.Helper()
	torrc, err := os.ReadFile(f.torrc)
	if err != nil {
		t.Fatal(err)
	}
	block := fmt.Sprintf("# BEGIN ghostcomm-torsite %s\nHiddenServiceDir %s\nHiddenServicePort 80 127.0.0.1:%d\n# END ghostcomm-torsite %s\n",
		name, filepath.Join(f.dataDir, name), port, name)
	if !strings.Contains(string(torrc), block) {
		t.Errorf("torrc lacks the block\n%s\ngot:\n%s", block, torrc)
	}
	conf, err := os.ReadFile(filepath.Join(f.avail, "torsite-"+name+".conf"))
	if err != nil {
		t.Fatal(err)
	}
	listens := regexp.MustCompile(`(?m)^\s*listen\s+([^;]+);`).FindAllStringSubmatch(string(conf), -1)
	if len(listens) != 1 || listens[0][1] != "127.0.0.1:"+strconv.Itoa(port) {
		t.Errorf("nginx server block listens on %v, want only 127.0.0.1:%d:\n%s", listens, port, conf)
	}
	if !strings.Contains(string(conf), "\troot "+root+";\n") {
		t.Errorf("nginx server block does not serve %s:\n%s", root, conf)
	}
	link := filepath.Join(f.enabled, "torsite-"+name+".conf")
	if target, err := os.Readlink(link); err != nil || target != filepath.Join(f.avail, "torsite-"+name+".conf") {
		t.Errorf("%s -> %q, %v; want a link to the server block", link, target, err)
	}
}

// privateNginx is an nginx started by the test, stopped by PID.
type privateNginx struct {
	cmd  *exec.Cmd
	done chan error
}

func startNginx(t *testing.T, f *fixture) *privateNginx {
	t.Helper()
	pidFile := filepath.Join(f.nginxDir, "nginx.pid")
	args := f.nginxArgs("-g", "pid "+pidFile+";")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	n := &privateNginx{cmd: cmd, done: make(chan error, 1)}
	go func() { n.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // by PID: the master we started
		select {
		case <-n.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-n.done
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(f.nginxDir, "error.log")); err == nil {
				t.Logf("nginx error.log:\n%s", tail(string(b), 30))
			}
		}
	})
	// Ready once the master has written its PID file.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(pidFile); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(cmd.Process.Pid) {
			break
		}
		select {
		case err := <-n.done:
			n.done <- err
			b, _ := os.ReadFile(filepath.Join(f.nginxDir, "error.log"))
			t.Fatalf("nginx exited at start-up: %v\n%s", err, tail(string(b), 20))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("nginx wrote no PID file within 10 s")
		}
	}
	f.nginxReload = fmt.Sprintf("kill -HUP %d", cmd.Process.Pid)
	return n
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// fetch GETs http://addr/ through the SOCKS5 port socks. Each call uses new
// SOCKS credentials, so tor builds it fresh circuits (IsolateSOCKSAuth).
func fetch(ctx context.Context, socks, addr string) ([]byte, error) {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	d, err := proxy.SOCKS5("tcp", socks, &proxy.Auth{User: hex.EncodeToString(id[:]), Password: "x"}, proxy.Direct)
	if err != nil {
		return nil, err
	}
	cd, ok := d.(proxy.ContextDialer)
	if !ok {
		return nil, errors.New("SOCKS5 dialer without DialContext")
	}
	tr := &http.Transport{DialContext: cd.DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("HTTP %s", resp.Status)
	}
	return body, nil
}

// fetchUntil retries fetch until it succeeds or the deadline passes.
func fetchUntil(t *testing.T, socks, addr string, deadline time.Duration) (body []byte, attempts int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		attempts++
		actx, acancel := context.WithTimeout(ctx, attemptTimeout)
		body, err := fetch(actx, socks, addr)
		acancel()
		if err == nil {
			return body, attempts
		}
		last = err
		select {
		case <-ctx.Done():
		case <-time.After(retryPause):
		}
	}
	t.Fatalf("http://%s/ did not answer within %v (%d attempts); last error: %v", addr, deadline, attempts, last)
	return nil, attempts
}

// socksRefusal matches the error x/net/proxy returns when tor answers the
// SOCKS request with a failure code (0xF0-0xF7 with ExtendedErrors:
// descriptor not found, introduction failed, ...; or a generic one).
var socksRefusal = regexp.MustCompile(`unknown error (unknown code: 24[0-7]|general SOCKS server failure|host unreachable|TTL expired|connection refused)`)

// TestEndToEnd publishes a site through the script on a tor of the private
// network and a private nginx, fetches it through the onion from another
// tor, runs the script again, removes the site and checks the onion is gone.
func TestEndToEnd(t *testing.T) {
	tl := needTools(t)
	n := testnet.Shared(t)
	client := n.Clients()[0]

	ctx, cancel := context.WithTimeout(context.Background(), testnet.SharedStartTimeout)
	defer cancel()
	svc, err := n.AddTor(ctx, "torsite", nil)
	if err != nil {
		t.Fatalf("starting the service tor: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service tor log:\n%s", svc.NoticeLogTail())
		}
		if err := n.StopTor(svc); err != nil {
			t.Errorf("stopping the service tor: %v", err)
		}
	})
	base := filepath.Join(t.TempDir(), "torrc.harness")
	orig, err := os.ReadFile(svc.TorrcPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base, orig, 0o600); err != nil {
		t.Fatal(err)
	}

	f := newFixture(t, tl, svc.TorrcPath, svc.DataDir)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f.torReload = shellJoin([]string{exe})
	f.extraEnv = []string{
		helperEnv + "=reload-tor", helperTorrcEnv + "=" + svc.TorrcPath,
		helperBaseEnv + "=" + base, helperPIDEnv + "=" + strconv.Itoa(svc.PID),
	}
	startNginx(t, f)

	const name = "e2esite"
	port := freePort(t)
	ps := strconv.Itoa(port)

	before := snapshot(t, f.scriptFiles()...)
	r := f.run("--dry-run", name, ps)
	expect(t, "--dry-run", r, exitOK)
	sameSnapshot(t, "--dry-run", before, snapshot(t, f.scriptFiles()...))

	start := time.Now()
	r = f.run(name, ps)
	expect(t, "create", r, exitOK)
	addr := r.last()
	if !onionRE.MatchString(addr) {
		t.Fatalf("last line of stdout %q is not an onion address\nstderr:\n%s", addr, r.stderr)
	}
	toAddr := time.Since(start)
	checkSiteFiles(t, f, name, port, filepath.Join(f.www, name))

	index, err := os.ReadFile(filepath.Join(f.www, name, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	body, attempts := fetchUntil(t, client.SocksAddr, addr, fetchDeadline)
	toFetch := time.Since(start)
	if !bytes.Equal(body, index) {
		t.Fatalf("page through the onion differs from index.html:\n got %q\nwant %q", body, index)
	}
	testnet.Figure(t, "script start -> address printed %v; -> first successful fetch %v (%d attempts)",
		toAddr.Round(time.Millisecond), toFetch.Round(time.Millisecond), attempts)

	// A second run changes nothing and prints the same address.
	before = snapshot(t, f.scriptFiles()...)
	r = f.run(name, ps)
	expect(t, "second run", r, exitOK)
	if r.last() != addr {
		t.Errorf("second run printed %q, want %q", r.last(), addr)
	}
	sameSnapshot(t, "second run", before, snapshot(t, f.scriptFiles()...))
	testnet.Figure(t, "second (unchanged) run took %v", r.took.Round(time.Millisecond))

	// --remove: tor drops the service on reload; the onion stops answering.
	removed := time.Now()
	r = f.run("--remove", name, "--delete-root")
	expect(t, "--remove", r, exitOK)
	if got, _ := os.ReadFile(svc.TorrcPath); !bytes.Equal(got, orig) {
		t.Errorf("torrc after --remove differs from the harness's:\n%s", got)
	}
	// The service tor stops running the service (it drops its descriptor:
	// GETINFO hs/service/desc/id answers 552)...
	id := strings.TrimSuffix(addr, ".onion")
	gctx, gcancel := context.WithTimeout(context.Background(), goneDeadline)
	defer gcancel()
	for servesOnion(t, svc, id) {
		if gctx.Err() != nil {
			t.Fatalf("the service tor still runs %s %v after --remove", addr, goneDeadline)
		}
		time.Sleep(retryPause)
	}
	dropped := time.Since(removed)
	// ...and the onion no longer answers: tor refuses the stream, or it
	// gets nowhere within goneAttempt. (A client that had the descriptor
	// keeps trying the old introduction points for about a minute before
	// tor refuses with 0xF2.)
	actx, acancel := context.WithTimeout(gctx, goneAttempt)
	at := time.Now()
	body, err = fetch(actx, client.SocksAddr, addr)
	acancel()
	if err == nil {
		t.Fatalf("the removed onion still answered %v after --remove: %q", time.Since(removed).Round(time.Millisecond), body)
	}
	if !socksRefusal.MatchString(err.Error()) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fetch of the removed onion: %v, want a SOCKS refusal or no answer", err)
	}
	testnet.Figure(t, "service dropped %v after --remove started; a fetch then failed after %v: %v",
		dropped.Round(time.Millisecond), time.Since(at).Round(time.Millisecond), err)
}

// servesOnion asks tor, on a control connection of the test's own, whether
// it runs the onion service id (GETINFO hs/service/desc/id/<id>).
func servesOnion(t *testing.T, tor *testnet.Tor, id string) bool {
	t.Helper()
	raw, err := net.DialTimeout("tcp", tor.ControlAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	conn := control.NewConn(textproto.NewConn(raw))
	if err := conn.Authenticate(""); err != nil {
		t.Fatal(err)
	}
	_, err = conn.GetInfo("hs/service/desc/id/" + id)
	var te *textproto.Error
	if errors.As(err, &te) && (te.Code == 551 || te.Code == 552) { // not found, unknown
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// shellJoin quotes args for bash -c.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
