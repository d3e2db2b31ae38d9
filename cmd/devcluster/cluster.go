package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// cluster is the three parts in the order they depend on each other:
// PostgreSQL, the Temporal server, the Web UI.
type cluster struct {
	s  settings
	pg *postgres
}

// newCluster takes the flags for start and, for every other command, the
// settings recorded by the last start in the same -dir.
func newCluster(flags settings, command string) (*cluster, error) {
	if err := flags.resolve(); err != nil {
		return nil, err
	}
	s := flags
	stored, ok, err := loadSettings(flags.Dir)
	if err != nil {
		return nil, err
	}
	if ok {
		if command == "start" && stored.Shards != flags.Shards {
			return nil, fmt.Errorf("the cluster in %s was created with %d history shards; Temporal cannot change that (remove the folder to start afresh with %d)", flags.Dir, stored.Shards, flags.Shards)
		}
		if command != "start" {
			s = stored
		}
		s.PGData = stored.PGData
	}
	return &cluster{s: s}, nil
}

func (c *cluster) postgres() (*postgres, error) {
	if c.pg == nil {
		pg, err := newPostgres(c.s)
		if err != nil {
			return nil, err
		}
		c.pg = pg
		c.s.PGData = pg.data
	}
	return c.pg, nil
}

func (c *cluster) start(ctx context.Context) error {
	began := time.Now()
	if err := os.MkdirAll(c.s.Dir, 0o755); err != nil {
		return err
	}
	sqlTool := filepath.Join(c.s.BinDir, "temporal-sql-tool")
	if _, err := os.Stat(sqlTool); err != nil {
		return fmt.Errorf("%s is missing: run `make cluster-tools`", sqlTool)
	}
	pg, err := c.postgres()
	if err != nil {
		return err
	}
	if err := pg.start(); err != nil {
		return err
	}
	if err := c.s.save(); err != nil {
		return err
	}
	if err := pg.ensureSchemas(sqlTool); err != nil {
		return err
	}
	if err := c.startServer(ctx); err != nil {
		return err
	}
	if err := c.ensureNamespace(ctx); err != nil {
		return err
	}
	if err := c.startUI(ctx); err != nil {
		return err
	}
	logf("cluster ready in %s", time.Since(began).Round(10*time.Millisecond))
	c.status(os.Stdout)
	return nil
}

func (c *cluster) stop() error {
	if err := c.ui().stop(syscall.SIGTERM, 10*time.Second); err != nil {
		return err
	}
	if err := c.stopServer(syscall.SIGTERM); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(c.s.PGBin, "postgres")); err != nil {
		return nil // never installed, so never started
	}
	pg, err := c.postgres()
	if err != nil {
		return err
	}
	return pg.stop()
}

func (c *cluster) stopServer(sig syscall.Signal) error {
	srv := c.server()
	pid, ok := srv.running()
	if !ok {
		return nil
	}
	began := time.Now()
	if err := srv.stop(sig, 60*time.Second); err != nil {
		return err
	}
	logf("Temporal server (pid %d) stopped by %s in %s", pid, sig, time.Since(began).Round(10*time.Millisecond))
	return nil
}

// restartServer stops the Temporal server and starts it again on the same
// database, as a rolling restart (or, with kill, a crash) does.
func (c *cluster) restartServer(ctx context.Context, kill bool) error {
	pg, err := c.postgres()
	if err != nil {
		return err
	}
	if !pg.running() {
		return fmt.Errorf("PostgreSQL is not running: start the cluster with `make cluster`")
	}
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	began := time.Now()
	if err := c.stopServer(sig); err != nil {
		return err
	}
	if err := c.startServer(ctx); err != nil {
		return err
	}
	logf("Temporal server restarted in %s", time.Since(began).Round(10*time.Millisecond))
	return nil
}

// status prints one line per part and reports whether all are up.
func (c *cluster) status(w io.Writer) bool {
	all := true
	line := func(name string, up bool, detail string) {
		state := "running"
		if !up {
			state, all = "stopped", false
		}
		fmt.Fprintf(w, "  %-16s %-8s %s\n", name, state, detail)
	}
	pgUp := false
	if pg, err := c.postgres(); err == nil {
		pgUp = pg.running()
	}
	line("postgresql", pgUp, fmt.Sprintf("%s  user %s  databases %s, %s  data %s", c.s.pgAddr(), pgUser, defaultDB, visDB, c.s.PGData))
	_, srvUp := c.server().running()
	line("temporal-server", srvUp, fmt.Sprintf("frontend %s  namespace %s  %d history shards  metrics http://%s/metrics  log %s",
		c.s.frontendAddr(), c.s.Namespace, c.s.Shards, c.s.metricsAddr(), c.server().logFile))
	if _, err := os.Stat(c.ui().binary); c.s.UIPort != 0 && err == nil {
		_, uiUp := c.ui().running()
		line("temporal-ui", uiUp, c.s.uiURL())
	}
	return all
}
