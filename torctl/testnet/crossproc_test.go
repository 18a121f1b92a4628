package testnet

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestShareDirRefusesUnsafe: a share directory that another user could have
// prepared (wrong mode, a symbolic link, not a directory) is refused before
// any lock or state file in it is used.
func TestShareDirRefusesUnsafe(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	target := filepath.Join(base, "target")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{open, link, file} {
		if err := checkShareDir(dir); !errors.Is(err, ErrUnsafeShareDir) {
			t.Errorf("checkShareDir(%s) = %v, want ErrUnsafeShareDir", dir, err)
		}
		if _, _, err := attachShared(dir, io.Discard, slog.New(slog.DiscardHandler)); !errors.Is(err, ErrUnsafeShareDir) {
			t.Errorf("attachShared(%s) = %v, want ErrUnsafeShareDir", dir, err)
		}
	}
	if _, err := os.Stat(filepath.Join(target, startLock)); err == nil {
		t.Errorf("a lock file was created through the symbolic link")
	}
	fresh := filepath.Join(base, "fresh")
	if err := checkShareDir(fresh); err != nil {
		t.Fatalf("checkShareDir(new dir) = %v", err)
	}
	if st, err := os.Stat(fresh); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("new share dir: %v, %v", st.Mode(), err)
	}
}

// TestReadStateRefusesBadFiles: a state file that is not this version's JSON,
// or that names nothing, is not used.
func TestReadStateRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	for _, text := range []string{"", "{", `{"version":2,"error":"x"}`, `{"version":1}`, `[]`} {
		if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if s, err := readState(dir); err == nil {
			t.Errorf("readState(%q) = %+v, want an error", text, s)
		}
	}
	if _, err := attach(&netState{AuthAddrs: []string{"127.0.0.1:1"}}, slog.New(slog.DiscardHandler)); err == nil {
		t.Errorf("attach accepted a state with one authority and no clients")
	}
}

// TestSharedDaemonLifecycle runs the daemon without tor: it starts, reports
// its failure to every test binary that asks (without starting again), and
// exits, removing the share directory, once no binary uses it and the
// process it watches has exited.
func TestSharedDaemonLifecycle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "share")
	t.Setenv(EnvTorPath, filepath.Join(t.TempDir(), "no-such-tor"))
	watched := exec.Command("sleep", "600")
	if err := watched.Start(); err != nil {
		t.Skipf("no sleep command: %v", err)
	}
	defer func() { watched.Process.Kill(); watched.Wait() }()
	old := watchPID
	watchPID = func() int { return watched.Process.Pid }
	defer func() { watchPID = old }()

	var progress strings.Builder
	_, users, err := attachShared(dir, &progress, slog.New(slog.DiscardHandler))
	if err == nil {
		users.Close()
		t.Fatal("attachShared succeeded without tor")
	}
	if !errors.Is(err, ErrTorNotInstalled) && !strings.Contains(err.Error(), ErrTorNotInstalled.Error()) {
		t.Fatalf("attachShared: %v, want the daemon's ErrTorNotInstalled", err)
	}
	m := regexp.MustCompile(`daemon pid (\d+)`).FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("error does not name the daemon: %v", err)
	}
	pid, _ := strconv.Atoi(m[1])
	t.Logf("first attach: %v\nprogress:\n%s", err, progress.String())

	// A second user gets the same error from the same daemon.
	_, _, err2 := attachShared(dir, io.Discard, slog.New(slog.DiscardHandler))
	if err2 == nil || !strings.Contains(err2.Error(), fmt.Sprintf("daemon pid %d", pid)) {
		t.Fatalf("second attach: %v, want the error of daemon %d", err2, pid)
	}
	if !alive(pid) {
		t.Fatalf("daemon %d exited while the watched process lives", pid)
	}

	// The watched process ends and nobody holds users.lock: the daemon
	// stops. Liveness bound, not a speed assertion.
	watched.Process.Kill()
	watched.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		log := tailFile(filepath.Join(dir, logFile), logTailLines)
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("daemon %d still runs 30 s after its watched process ended; its log:\n%s", pid, log)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("share directory left behind: %v", err)
	}
}

// TestSharedAcrossBinaries runs two more processes of this test binary that
// ask for the shared network of this one's share directory: they must get
// the very tors this process uses, not start their own.
func TestSharedAcrossBinaries(t *testing.T) {
	if os.Getenv("GHOSTCOMM_TESTNET_ATTACH_CHILD") == "1" {
		n := Shared(t)
		for _, c := range n.Clients() {
			fmt.Printf("ATTACHED %s %d %s %s\n", c.Name, c.PID, c.ControlAddr, c.SocksAddr)
		}
		return
	}
	n := Shared(t)
	var want []string
	for _, c := range n.Clients() {
		want = append(want, fmt.Sprintf("ATTACHED %s %d %s %s", c.Name, c.PID, c.ControlAddr, c.SocksAddr))
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	outs := make([][]string, 2)
	errs := make([]error, 2)
	for i := range outs {
		wg.Go(func() {
			cmd := exec.Command(exe, "-test.run=^TestSharedAcrossBinaries$", "-test.v")
			cmd.Env = append(os.Environ(), "GHOSTCOMM_TESTNET_ATTACH_CHILD=1", EnvShareDir+"="+ShareDir())
			out, err := cmd.CombinedOutput()
			errs[i] = err
			sc := bufio.NewScanner(strings.NewReader(string(out)))
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "ATTACHED ") {
					outs[i] = append(outs[i], sc.Text())
				}
			}
			if err != nil || len(outs[i]) == 0 {
				t.Logf("child %d output:\n%s", i, out)
			}
		})
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil {
			t.Errorf("child %d: %v", i, errs[i])
		}
		if strings.Join(outs[i], "\n") != strings.Join(want, "\n") {
			t.Errorf("child %d attached to\n%s\nwant\n%s", i, strings.Join(outs[i], "\n"), strings.Join(want, "\n"))
		}
	}
	for _, c := range n.Clients() {
		if !alive(c.PID) {
			t.Errorf("shared %s (pid %d) stopped when a child detached", c.Name, c.PID)
		}
	}
}

// FuzzReadState: any state file is refused with an error or gives a state
// that names a network or an error; attaching to a network state never
// panics, and cleans up after a refusal.
func FuzzReadState(f *testing.F) {
	f.Add([]byte(`{"version":1,"daemon_pid":1,"error":"x"}`))
	f.Add([]byte(`{"version":1,"daemon_pid":1,"net":{"auth_addrs":["a","b","c"],"clients":["client0","client1"],"tors":[{"name":"client0"}]}}`))
	f.Add([]byte(`{"version":1,"net":{"auth_addrs":["a","b","c"],"clients":["client0","client1"],"tors":[{"name":"client0"},{"name":"client1"}]}}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, stateFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := readState(dir)
		if err != nil {
			return
		}
		if s.Error == "" && s.Net == nil {
			t.Fatalf("state with neither a network nor an error: %s", b)
		}
		if s.Net == nil {
			return
		}
		n, err := attach(s.Net, slog.New(slog.DiscardHandler))
		if err != nil {
			return
		}
		if len(n.Clients()) < SharedClients {
			t.Fatalf("attached with %d clients", len(n.Clients()))
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestLiveStderr: the daemon writes its progress to the go command's
// standard error when that is a pipe, and leaves a regular file alone (its
// writes at their own offset would overwrite the go command's).
func TestLiveStderr(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	for _, tc := range []struct {
		name   string
		stderr *os.File
		live   bool
	}{{"pipe", w, true}, {"regular file", file, false}} {
		cmd := exec.Command("sleep", "30")
		cmd.Stderr = tc.stderr
		if err := cmd.Start(); err != nil {
			t.Skipf("no sleep command: %v", err)
		}
		f := liveStderr(cmd.Process.Pid)
		if (f != nil) != tc.live {
			t.Errorf("%s: liveStderr = %v, want live %v", tc.name, f, tc.live)
		}
		if f != nil {
			if _, err := f.WriteString("progress\n"); err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			f.Close()
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
	w.Close()
	got, _ := io.ReadAll(r)
	if string(got) != "progress\n" {
		t.Errorf("the pipe carried %q, want the progress line", got)
	}
	if liveStderr(0) != nil || liveStderr(-1) != nil {
		t.Errorf("liveStderr of no process returned a file")
	}
}
