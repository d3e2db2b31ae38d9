package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

func (c *cluster) uiDir() string { return filepath.Join(c.s.Dir, "ui") }

// ui is the Temporal Web UI server (github.com/temporalio/ui-server, the
// same UI the dev server embeds) as a process of its own, as in a real
// deployment, talking gRPC to the frontend.
func (c *cluster) ui() daemon {
	dir := c.uiDir()
	return daemon{
		name:    "temporal-ui",
		binary:  filepath.Join(c.s.BinDir, "temporal-ui"),
		args:    []string{"--root", dir, "--config", ".", "--env", "devcluster", "start"},
		dir:     dir,
		pidFile: filepath.Join(dir, "ui.pid"),
		logFile: filepath.Join(dir, "ui.log"),
	}
}

func (c *cluster) writeUIConfig() error {
	if err := os.MkdirAll(c.uiDir(), 0o755); err != nil {
		return err
	}
	conf := fmt.Sprintf(`# Written by devcluster at every start.
temporalGrpcAddress: %s
host: %s
port: %d
enableUi: true
defaultNamespace: %s
# No internet here: no news feed, no version check.
disableNewsFetch: true
notifyOnNewVersion: false
refreshInterval: 1m
cors:
  cookieInsecure: true
auth:
  enabled: false
`, c.s.frontendAddr(), c.s.Host, c.s.UIPort, c.s.Namespace)
	return os.WriteFile(filepath.Join(c.uiDir(), "devcluster.yaml"), []byte(conf), 0o644)
}

func (c *cluster) startUI(ctx context.Context) error {
	if c.s.UIPort == 0 {
		return nil
	}
	ui := c.ui()
	if pid, ok := ui.running(); ok {
		logf("Web UI already running (pid %d) on %s", pid, c.s.uiURL())
		return nil
	}
	if _, err := os.Stat(ui.binary); err != nil {
		logf("no %s (build it with `make cluster-tools`); starting without the Web UI", ui.binary)
		return nil
	}
	if err := c.writeUIConfig(); err != nil {
		return err
	}
	if _, err := ui.start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if _, ok := ui.running(); !ok {
			return fmt.Errorf("the Web UI exited during start-up; end of %s:\n%s", ui.logFile, tail(ui.logFile, 20))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.s.uiURL()+"/api/v1/namespaces/"+c.s.Namespace, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				logf("Web UI serving on %s", c.s.uiURL())
				return nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the Web UI on %s did not answer: %v; see %s", c.s.uiURL(), err, ui.logFile)
		case <-time.After(300 * time.Millisecond):
		}
	}
}
