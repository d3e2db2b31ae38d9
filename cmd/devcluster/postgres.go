package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// postgres is the cluster's private PostgreSQL: its own data directory and
// port, never the machine's default cluster. PostgreSQL refuses to run as
// root, so when devcluster is root it runs every PostgreSQL program as the
// postgres user that Debian's package creates.
type postgres struct {
	s        settings
	cred     *syscall.Credential // nil: run as ourselves
	uid, gid int
	root     string // owned by the PostgreSQL user: data/ and postgres.log
	data     string
}

func newPostgres(s settings) (*postgres, error) {
	if _, err := os.Stat(filepath.Join(s.PGBin, "postgres")); err != nil {
		return nil, fmt.Errorf("PostgreSQL 15 is not installed at %s: `make cluster` installs it (apt-get install postgresql), or set CLUSTER_PG_BIN to its bin folder", s.PGBin)
	}
	p := &postgres{s: s, uid: os.Getuid(), gid: os.Getgid()}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("PostgreSQL cannot run as root and there is no postgres user (Debian's postgresql package creates it): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.uid, p.gid = uid, gid
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	p.data = s.PGData
	if p.data == "" {
		p.data = filepath.Join(s.Dir, "postgres", "data")
		// The postgres user must be able to reach its data directory. A
		// checkout under a folder that only root may enter (mode 0700)
		// cannot hold it, so the data goes to PostgreSQL's own home.
		if p.cred != nil && !reachable(filepath.Dir(p.data), p.uid, p.gid) {
			sum := sha256.Sum256([]byte(s.Dir))
			p.data = filepath.Join("/var/lib/postgresql/durable-comfy", hex.EncodeToString(sum[:6]), "data")
			logf("the postgres user cannot enter %s; keeping PostgreSQL's data in %s instead", s.Dir, p.data)
		}
	}
	p.root = filepath.Dir(p.data)
	return p, nil
}

// reachable reports whether uid/gid may traverse every existing ancestor of
// dir (those devcluster creates get mode 0755).
func reachable(dir string, uid, gid int) bool {
	for d := dir; ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil {
			st := fi.Sys().(*syscall.Stat_t)
			mode := fi.Mode().Perm()
			var ok bool
			switch {
			case int(st.Uid) == uid:
				ok = mode&0o100 != 0
			case int(st.Gid) == gid:
				ok = mode&0o010 != 0
			default:
				ok = mode&0o001 != 0
			}
			if !ok {
				return false
			}
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

func (p *postgres) logPath() string { return filepath.Join(p.root, "postgres.log") }

// cmd runs one of PostgreSQL's programs as the PostgreSQL user.
func (p *postgres) cmd(program string, args ...string) *exec.Cmd {
	c := exec.Command(filepath.Join(p.s.PGBin, program), args...)
	c.Dir = p.root
	c.Env = append(os.Environ(), "PGPASSWORD="+pgPassword, "LC_ALL=C.UTF-8")
	if p.cred != nil {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
	return c
}

func (p *postgres) run(program string, args ...string) error {
	out, err := p.cmd(program, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", program, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ensureInit creates the data directory the first time: a superuser role
// "temporal" with a password, password authentication on the loopback
// interface, and an include of devcluster.conf, rewritten at every start.
func (p *postgres) ensureInit() error {
	if _, err := os.Stat(filepath.Join(p.data, "PG_VERSION")); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p.root), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(p.root, 0o700); err != nil {
		return err
	}
	if err := os.Chown(p.root, p.uid, p.gid); err != nil {
		return err
	}
	pw := filepath.Join(p.root, "pwfile")
	if err := p.writeOwned(pw, pgPassword+"\n", 0o600); err != nil {
		return err
	}
	defer os.Remove(pw)
	logf("initdb %s", p.data)
	if err := p.run("initdb", "-D", p.data, "-U", pgUser, "--pwfile", pw, "-E", "UTF8", "--locale", "C.UTF-8",
		"--auth-host", "scram-sha-256", "--auth-local", "peer"); err != nil {
		return err
	}
	conf := filepath.Join(p.data, "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "\n# Written by durable-comfy's devcluster; its settings are in devcluster.conf.\ninclude_if_exists = 'devcluster.conf'\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeConf writes the settings that follow devcluster's flags.
func (p *postgres) writeConf() error {
	conf := fmt.Sprintf(`# Rewritten by devcluster at every start.
listen_addresses = '%s'
port = %d
# TCP only: a socket path under a deep checkout can exceed the 107-byte limit.
unix_socket_directories = ''
# Each Temporal service keeps its own pools (20 + 10 connections per store).
max_connections = 200
log_min_messages = warning
log_line_prefix = '%%m [%%p] '
`, p.s.Host, p.s.PGPort)
	return p.writeOwned(filepath.Join(p.data, "devcluster.conf"), conf, 0o600)
}

func (p *postgres) writeOwned(path, content string, mode os.FileMode) error {
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		return err
	}
	return os.Chown(path, p.uid, p.gid)
}

func (p *postgres) running() bool {
	if _, err := os.Stat(filepath.Join(p.data, "PG_VERSION")); err != nil {
		return false
	}
	return p.cmd("pg_ctl", "status", "-D", p.data).Run() == nil
}

func (p *postgres) start() error {
	if p.running() {
		logf("PostgreSQL already running on %s", p.s.pgAddr())
		return nil
	}
	if err := p.ensureInit(); err != nil {
		return err
	}
	if err := p.writeConf(); err != nil {
		return err
	}
	if err := p.run("pg_ctl", "start", "-w", "-t", "60", "-D", p.data, "-l", p.logPath()); err != nil {
		return fmt.Errorf("%w\n%s", err, tail(p.logPath(), 20))
	}
	logf("PostgreSQL started on %s (data %s)", p.s.pgAddr(), p.data)
	return nil
}

func (p *postgres) stop() error {
	if !p.running() {
		return nil
	}
	if err := p.run("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", p.data); err != nil {
		return err
	}
	logf("PostgreSQL stopped")
	return nil
}

// databaseExists asks PostgreSQL through psql.
func (p *postgres) databaseExists(name string) (bool, error) {
	out, err := p.cmd("psql", "-h", p.s.Host, "-p", strconv.Itoa(p.s.PGPort), "-U", pgUser, "-d", "postgres",
		"-tAc", "SELECT 1 FROM pg_database WHERE datname = '"+name+"'").CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("psql: %w\n%s", err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)) == "1", nil
}

// ensureSchemas creates the two databases and applies the schemas shipped
// in the server module with the server's own temporal-sql-tool:
// setup-schema once on a new database, then update-schema at every start,
// which is a no-op when the schema is current and migrates it after an
// upgrade of the pinned server.
func (p *postgres) ensureSchemas(sqlTool string) error {
	for _, db := range []struct{ name, schema string }{
		{defaultDB, "postgresql/v12/temporal"},
		{visDB, "postgresql/v12/visibility"},
	} {
		base := []string{"--plugin", "postgres12", "--endpoint", p.s.Host, "--port", strconv.Itoa(p.s.PGPort),
			"--user", pgUser, "--password", pgPassword, "--database", db.name}
		tool := func(args ...string) error {
			out, err := exec.Command(sqlTool, append(base, args...)...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("temporal-sql-tool %s (database %s): %w\n%s", args[0], db.name, err, bytes.TrimSpace(out))
			}
			return nil
		}
		exists, err := p.databaseExists(db.name)
		if err != nil {
			return err
		}
		if !exists {
			logf("creating database %s and its schema", db.name)
			if err := tool("create-database"); err != nil {
				return err
			}
			if err := tool("setup-schema", "--version", "0.0"); err != nil {
				return err
			}
		}
		if err := tool("update-schema", "--schema-name", db.schema); err != nil {
			return err
		}
	}
	return nil
}
