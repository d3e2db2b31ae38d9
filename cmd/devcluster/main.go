// Command devcluster runs a production-shaped Temporal cluster on this
// machine without Docker, for the cluster integration test and for trying
// durable-comfy against something closer to a real deployment than the
// single-shard SQLite dev server:
//
//   - PostgreSQL 15 from Debian's packages, on a private data directory and
//     port, running as the postgres user;
//   - the Temporal server (go.temporal.io/server, pinned in
//     tools/temporal-server) with 4 history shards, the postgres12 plugin
//     for the default store and for SQL advanced visibility, its schema
//     applied by the server's own temporal-sql-tool;
//   - the "default" namespace and our search attributes;
//   - the Temporal Web UI (tools/temporal-ui) pointed at the frontend.
//
// Each part is a daemon of its own with a pid file and a log under the state
// folder (.data/cluster by default). `make cluster` and `make cluster-stop`
// call `devcluster start` and `devcluster stop`; both are idempotent.
// restart-server stops and starts the Temporal server alone, keeping
// PostgreSQL, as the integration test does in the middle of a batch.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const usageText = `Usage: devcluster [flags] COMMAND

Commands:
  start            start PostgreSQL, the Temporal server and the Web UI (no-op for parts already running)
  stop             stop the Web UI, the Temporal server and PostgreSQL (no-op when stopped)
  status           print each part's state and address; exit 3 unless all are running
  restart-server   stop and start the Temporal server only (PostgreSQL keeps running);
                   with -kill the server gets SIGKILL instead of a graceful stop
  env              print TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE for the cluster, for eval

The settings of the last start are kept in <dir>/cluster.json and used by
stop, status, restart-server and env, so those need only -dir.

Flags (each also read from the environment variable in brackets):
`

func main() {
	var s settings
	fs := flag.NewFlagSet("devcluster", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	s.register(fs)
	kill := fs.Bool("kill", false, "restart-server: SIGKILL the server (a crash) instead of SIGTERM")
	// Flags may come before or after the command.
	_ = fs.Parse(os.Args[1:])
	command := fs.Arg(0)
	if fs.NArg() > 1 {
		_ = fs.Parse(fs.Args()[1:])
		if fs.NArg() > 0 {
			command = ""
		}
	}
	if command == "" {
		fs.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := newCluster(s, command)
	if err != nil {
		fmt.Fprintln(os.Stderr, "devcluster:", err)
		os.Exit(2)
	}
	switch cmd := command; cmd {
	case "start":
		err = c.start(ctx)
	case "stop":
		err = c.stop()
	case "status":
		if !c.status(os.Stdout) {
			os.Exit(3)
		}
	case "restart-server":
		err = c.restartServer(ctx, *kill)
	case "env":
		fmt.Printf("TEMPORAL_ADDRESS=%s\nTEMPORAL_NAMESPACE=%s\n", c.s.frontendAddr(), c.s.Namespace)
	default:
		err = fmt.Errorf("unknown command %q (run devcluster -h)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "devcluster:", err)
		if errors.Is(err, context.Canceled) {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

// logf prints one progress line, timestamped like the server's own logs.
func logf(format string, args ...any) {
	fmt.Printf("%s devcluster: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}
