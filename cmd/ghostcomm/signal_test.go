package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSignalWhileStarting: SIGTERM while the Primary waits for tor's
// control port ends it at once, cleanly, with exit code 0.
func TestSignalWhileStarting(t *testing.T) {
	bin, err := exec.LookPath("ghostcomm")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	cmd := exec.Command(bin, "primary", "-state", filepath.Join(t.TempDir(), "st"), "-control", ln.Addr().String())
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
	}()
	select {
	case c := <-accepted: // the Primary is connecting to tor
		defer c.Close()
	case err := <-done:
		t.Fatalf("ghostcomm primary ended: %v\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("ghostcomm primary never connected to the control port")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20 s after SIGTERM\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "interrupted while starting") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}
