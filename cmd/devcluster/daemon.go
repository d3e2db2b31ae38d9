package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// daemon is one long-running process of the cluster that devcluster starts
// in a session of its own and finds again through its pid file.
type daemon struct {
	name    string
	binary  string // absolute path; also how a pid is recognised as ours
	args    []string
	dir     string // working directory
	pidFile string
	logFile string
}

// running returns the daemon's pid when its pid file names a live process
// of its binary. A stale pid file (the process ended, or the pid was
// reused by another program) reads as not running.
func (d daemon) running() (int, bool) {
	b, err := os.ReadFile(d.pidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if !alive(pid) {
		return 0, false
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || strings.TrimSuffix(exe, " (deleted)") != d.binary {
		return 0, false
	}
	return pid, true
}

// alive reports whether pid is a process that has not exited. A zombie
// (exited, not yet reaped by its parent) counts as exited.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// start launches the daemon detached from devcluster (own session, output
// appended to its log) and records its pid.
func (d daemon) start() (int, error) {
	if _, err := os.Stat(d.binary); err != nil {
		return 0, fmt.Errorf("%s is missing: run `make cluster-tools`", d.binary)
	}
	logf, err := os.OpenFile(d.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n==== %s devcluster: starting %s\n", time.Now().UTC().Format(time.RFC3339), d.name)
	cmd := exec.Command(d.binary, d.args...)
	cmd.Dir = d.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", d.name, err)
	}
	pid := cmd.Process.Pid
	if err := os.WriteFile(d.pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return 0, err
	}
	// Reap it if it exits while devcluster still runs (a failed start);
	// after devcluster exits, init adopts it.
	go func() { _ = cmd.Wait() }()
	return pid, nil
}

// stop sends sig and waits up to grace for the daemon to exit, then kills
// it. It is a no-op when the daemon is not running.
func (d daemon) stop(sig syscall.Signal, grace time.Duration) error {
	pid, ok := d.running()
	if !ok {
		_ = os.Remove(d.pidFile)
		return nil
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s (pid %d): %w", d.name, pid, err)
	}
	if !waitExit(pid, grace) {
		logf("%s (pid %d) did not stop within %s; killing it", d.name, pid, grace)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if !waitExit(pid, 10*time.Second) {
			return fmt.Errorf("%s (pid %d) survived SIGKILL", d.name, pid)
		}
	}
	_ = os.Remove(d.pidFile)
	return nil
}

func waitExit(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return !alive(pid)
}

// tail returns the last n lines of a log, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
