package main

import (
	"errors"
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

// TestMakeRunStopsOnSIGTERM: a SIGTERM to `make run` reaches the bot, which
// drains and exits, freeing its port, instead of running on reparented.
func TestMakeRunStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the bot through make")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("make not found (%v): the Makefile is the front door", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dataDir := t.TempDir()
	var out lockedBuffer
	cmd := exec.Command("make", "-C", "../..", "run", "DATA_DIR="+dataDir, "LISTEN="+addr, "BIN="+filepath.Join(t.TempDir(), "incidentbot"))
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so that a failing test can still clean up
	// whatever make left behind; the test signals make alone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })

	deadline := time.Now().Add(10 * time.Minute) // a cold build on two cores, beside other packages' tests
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("make run exited before serving: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("make run: nothing listening on %s\n%s", addr, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(dataDir, "incidentbot.lock"))
	if err != nil {
		t.Fatal(err)
	}
	bot, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("lock file %q: %v", b, err)
	}

	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("make did not exit after SIGTERM\n%s", out.String())
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if err := syscall.Kill(bot, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bot (pid %d) is still running after SIGTERM to make\n%s", bot, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port %s still taken after make run stopped: %v", addr, err)
	}
	ln.Close()
	if !strings.Contains(out.String(), "shutting down") {
		t.Errorf("the bot did not drain on SIGTERM:\n%s", out.String())
	}
}
