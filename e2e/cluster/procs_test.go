//go:build cluster

package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
)

// clusterInfo is the part of devcluster's cluster.json the test needs.
type clusterInfo struct {
	Dir          string `json:"dir"`
	BinDir       string `json:"bin_dir"`
	FrontendAddr string `json:"frontend_address"`
	Namespace    string `json:"namespace"`
	Shards       int    `json:"history_shards"`
}

// loadCluster reads the settings of the cluster `make cluster` started in
// CLUSTER_DIR (default: the repository's .data/cluster).
func loadCluster(t *testing.T) clusterInfo {
	t.Helper()
	dir := os.Getenv("CLUSTER_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", ".data", "cluster")
	}
	b, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if err != nil {
		t.Fatalf("no cluster state in %s (%v): start the cluster with `make cluster` (or set CLUSTER_DIR)", dir, err)
	}
	var c clusterInfo
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s/cluster.json: %v", dir, err)
	}
	if bin := os.Getenv("CLUSTER_BIN"); bin != "" {
		c.BinDir = bin
	}
	return c
}

// proc is a child process of the test with its output in a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProc(t *testing.T, name, logDir, binary string, env []string, args ...string) *proc {
	t.Helper()
	if _, err := os.Stat(binary); err != nil {
		t.Fatalf("%s is missing: run `make build`", binary)
	}
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop() })
	return p
}

// kill is the crash: SIGKILL, no chance to finish or report anything.
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop asks the process to end and kills it after a grace period.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.kill()
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// baseEnv is what every child process gets: no TEMPORAL_* or COMFY_*
// variables of the caller's shell, so only the test configures them.
func baseEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "TEMPORAL_") || strings.HasPrefix(kv, "COMFY_") || strings.HasPrefix(kv, "COMFYSIM_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitHTTP waits until url answers 200.
func waitHTTP(t *testing.T, p *proc, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			t.Fatalf("%s exited during start-up; see %s", p.name, p.log)
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not answer %s; see %s", p.name, url, p.log)
}

func simCounters(t *testing.T, base string) comfytest.Counters {
	t.Helper()
	resp, err := http.Get(base + "/admin/counters")
	if err != nil {
		t.Fatalf("simulator counters: %v", err)
	}
	defer resp.Body.Close()
	var c comfytest.Counters
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatalf("simulator counters: %v", err)
	}
	return c
}

// devcluster runs a devcluster command against the test's cluster.
func devcluster(ctx context.Context, c clusterInfo, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "devcluster"), append([]string{"-dir", c.Dir}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("devcluster %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
