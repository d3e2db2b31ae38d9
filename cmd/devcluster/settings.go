package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// settings is what a cluster is started with. start writes them to
// <dir>/cluster.json; the other commands read them back from there.
type settings struct {
	Dir       string `json:"dir"`
	BinDir    string `json:"bin_dir"`
	PGBin     string `json:"pg_bin"`
	Host      string `json:"host"`
	PGPort    int    `json:"pg_port"`
	Frontend  int    `json:"frontend_port"`
	UIPort    int    `json:"ui_port"`
	Namespace string `json:"namespace"`
	// Shards is fixed when the database is created: Temporal cannot
	// change the number of history shards of an existing cluster.
	Shards int `json:"history_shards"`
	// PGData is where PostgreSQL keeps its data (normally <dir>/postgres/data).
	PGData string `json:"pg_data"`
}

// The PostgreSQL role and password of the cluster. They are fixed because
// the server only listens on the loopback interface of this machine; a
// real deployment takes them from its secret store.
const (
	pgUser     = "temporal"
	pgPassword = "temporal"
	defaultDB  = "temporal"
	visDB      = "temporal_visibility"
)

func (s *settings) register(fs *flag.FlagSet) {
	str := func(p *string, name, env, def, usage string) {
		if v, ok := os.LookupEnv(env); ok {
			def = v
		}
		fs.StringVar(p, name, def, fmt.Sprintf("%s [%s]", usage, env))
	}
	num := func(p *int, name, env string, def int, usage string) {
		if v, ok := os.LookupEnv(env); ok {
			if n, err := strconv.Atoi(v); err == nil {
				def = n
			}
		}
		fs.IntVar(p, name, def, fmt.Sprintf("%s [%s]", usage, env))
	}
	str(&s.Dir, "dir", "CLUSTER_DIR", ".data/cluster", "state folder: config, logs, pid files and PostgreSQL's data")
	str(&s.BinDir, "bin", "CLUSTER_BIN", "bin", "folder holding temporal-server, temporal-sql-tool and temporal-ui (make cluster-tools builds them)")
	str(&s.PGBin, "pg-bin", "CLUSTER_PG_BIN", "/usr/lib/postgresql/15/bin", "folder of PostgreSQL's initdb, pg_ctl and postgres")
	str(&s.Namespace, "namespace", "CLUSTER_NAMESPACE", "default", "namespace to create")
	num(&s.PGPort, "pg-port", "CLUSTER_PG_PORT", 55432, "PostgreSQL port (loopback only)")
	num(&s.Frontend, "frontend-port", "CLUSTER_FRONTEND_PORT", 7433, "Temporal frontend gRPC port; the other server ports follow it (see cluster.json)")
	num(&s.UIPort, "ui-port", "CLUSTER_UI_PORT", 8433, "Web UI port (0: no UI)")
	num(&s.Shards, "history-shards", "CLUSTER_HISTORY_SHARDS", 4, "history shards (fixed once the database exists)")
	s.Host = "127.0.0.1"
}

func (s settings) path() string { return filepath.Join(s.Dir, "cluster.json") }

// resolve makes the paths absolute, so the daemons do not depend on the
// directory devcluster was started from.
func (s *settings) resolve() error {
	var err error
	if s.Dir, err = filepath.Abs(s.Dir); err != nil {
		return err
	}
	if s.BinDir, err = filepath.Abs(s.BinDir); err != nil {
		return err
	}
	if s.Shards < 1 {
		return errors.New("-history-shards must be at least 1")
	}
	for name, p := range map[string]int{"-pg-port": s.PGPort, "-frontend-port": s.Frontend} {
		if p < 1 || p > 65535-200 {
			return fmt.Errorf("%s %d is out of range", name, p)
		}
	}
	return nil
}

// loadSettings returns the settings of the last start in dir, if any.
func loadSettings(dir string) (settings, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if errors.Is(err, os.ErrNotExist) {
		return settings{}, false, nil
	}
	if err != nil {
		return settings{}, false, err
	}
	var s settings
	if err := json.Unmarshal(b, &s); err != nil {
		return settings{}, false, fmt.Errorf("%s: %w", filepath.Join(dir, "cluster.json"), err)
	}
	return s, true, nil
}

func (s settings) save() error {
	b, err := json.MarshalIndent(struct {
		settings
		FrontendAddr string `json:"frontend_address"`
		UIURL        string `json:"ui_url,omitempty"`
		PGAddr       string `json:"pg_address"`
	}{s, s.frontendAddr(), s.uiURL(), s.pgAddr()}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(s.path(), append(b, '\n'), 0o644)
}

// Ports of the server's services, derived from the frontend's so one
// setting moves them all.
func (s settings) frontendAddr() string { return fmt.Sprintf("%s:%d", s.Host, s.Frontend) }
func (s settings) historyPort() int     { return s.Frontend + 1 }
func (s settings) matchingPort() int    { return s.Frontend + 2 }
func (s settings) workerPort() int      { return s.Frontend + 3 }
func (s settings) httpPort() int        { return s.Frontend + 10 }
func (s settings) metricsAddr() string  { return fmt.Sprintf("%s:%d", s.Host, s.Frontend+20) }

// membershipPort of service i (frontend 0, history 1, matching 2, worker 3).
func (s settings) membershipPort(i int) int { return s.Frontend + 100 + i }

func (s settings) pgAddr() string { return fmt.Sprintf("%s:%d", s.Host, s.PGPort) }

func (s settings) uiURL() string {
	if s.UIPort == 0 {
		return ""
	}
	return fmt.Sprintf("http://%s:%d", s.Host, s.UIPort)
}
