package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/durable-comfy/durable-comfy/workflows"
)

//go:embed server.yaml.tmpl
var serverConfigTemplate string

//go:embed dynamicconfig.yaml
var dynamicConfig string

// retention of closed workflows in the namespace devcluster creates.
const retention = 72 * time.Hour

func (c *cluster) serverDir() string { return filepath.Join(c.s.Dir, "temporal") }

func (c *cluster) server() daemon {
	dir := c.serverDir()
	return daemon{
		name:   "temporal-server",
		binary: filepath.Join(c.s.BinDir, "temporal-server"),
		// No authorizer: the frontend listens on loopback only. A real
		// deployment configures mTLS or an authorizer and claim mapper.
		args:    []string{"--config-file", filepath.Join(dir, "config.yaml"), "--allow-no-auth", "start"},
		dir:     dir,
		pidFile: filepath.Join(dir, "server.pid"),
		logFile: filepath.Join(dir, "server.log"),
	}
}

// writeServerConfig renders the server's YAML and dynamic config.
func (c *cluster) writeServerConfig() error {
	dir := c.serverDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dc := filepath.Join(dir, "dynamicconfig.yaml")
	if err := os.WriteFile(dc, []byte(dynamicConfig), 0o644); err != nil {
		return err
	}
	tmpl, err := template.New("server").Option("missingkey=error").Parse(serverConfigTemplate)
	if err != nil {
		return err
	}
	s := c.s
	var b strings.Builder
	if err := tmpl.Execute(&b, map[string]any{
		"Shards": s.Shards, "DefaultDB": defaultDB, "VisDB": visDB,
		"PGAddr": s.pgAddr(), "PGUser": pgUser, "PGPassword": pgPassword,
		"Host": s.Host, "MetricsAddr": s.metricsAddr(), "FrontendAddr": s.frontendAddr(),
		"Frontend": s.Frontend, "HTTPPort": s.httpPort(), "HistoryPort": s.historyPort(),
		"MatchingPort": s.matchingPort(), "WorkerPort": s.workerPort(),
		"MembershipFrontend": s.membershipPort(0), "MembershipHistory": s.membershipPort(1),
		"MembershipMatching": s.membershipPort(2), "MembershipWorker": s.membershipPort(3),
		"DynamicConfig": dc,
	}); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(b.String()), 0o600)
}

// startServer starts the server unless it runs, and waits for its frontend.
func (c *cluster) startServer(ctx context.Context) error {
	srv := c.server()
	if pid, ok := srv.running(); ok {
		logf("Temporal server already running (pid %d) on %s", pid, c.s.frontendAddr())
		return nil
	}
	if err := c.writeServerConfig(); err != nil {
		return err
	}
	began := time.Now()
	pid, err := srv.start()
	if err != nil {
		return err
	}
	logf("Temporal server starting (pid %d), log %s", pid, srv.logFile)
	if err := c.waitFrontend(ctx, srv, 3*time.Minute); err != nil {
		return err
	}
	logf("Temporal frontend serving on %s after %s", c.s.frontendAddr(), time.Since(began).Round(10*time.Millisecond))
	return nil
}

// waitFrontend waits until the frontend answers a health check, failing
// early when the server process exits.
func (c *cluster) waitFrontend(ctx context.Context, srv daemon, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		if _, ok := srv.running(); !ok {
			return fmt.Errorf("the Temporal server exited during start-up; end of %s:\n%s", srv.logFile, tail(srv.logFile, 30))
		}
		err := func() error {
			tc, err := c.dial(ctx, "temporal-system")
			if err != nil {
				return err
			}
			defer tc.Close()
			hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
			defer hcancel()
			_, err = tc.CheckHealth(hctx, &client.CheckHealthRequest{})
			return err
		}()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the Temporal frontend on %s did not become healthy within %s: %v; see %s", c.s.frontendAddr(), limit, err, srv.logFile)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (c *cluster) dial(ctx context.Context, namespace string) (client.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return client.DialContext(dctx, client.Options{HostPort: c.s.frontendAddr(), Namespace: namespace, Logger: silentLogger{}})
}

// ensureNamespace registers the namespace and our search attributes when
// missing, then waits until both are usable: the frontend and history
// services see a new namespace only after their namespace cache refreshes.
func (c *cluster) ensureNamespace(ctx context.Context) error {
	tc, err := c.dial(ctx, c.s.Namespace)
	if err != nil {
		return err
	}
	defer tc.Close()
	ws := tc.WorkflowService()
	_, err = ws.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: c.s.Namespace})
	var notFound *serviceerror.NamespaceNotFound
	if errors.As(err, &notFound) {
		_, err = ws.RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
			Namespace:                        c.s.Namespace,
			Description:                      "created by durable-comfy's devcluster",
			WorkflowExecutionRetentionPeriod: durationpb.New(retention),
		})
		var exists *serviceerror.NamespaceAlreadyExists
		if errors.As(err, &exists) {
			err = nil
		}
		if err == nil {
			logf("namespace %q registered (retention %s)", c.s.Namespace, retention)
		}
	}
	if err != nil {
		return fmt.Errorf("namespace %q: %w", c.s.Namespace, err)
	}

	want := workflows.SearchAttributes()
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	probe := fmt.Sprintf("%s = 'devcluster-probe'", names[0])
	deadline := time.Now().Add(time.Minute)
	for {
		err := c.searchAttributesUsable(ctx, tc, want, probe)
		if err == nil {
			logf("search attributes registered in %q: %s", c.s.Namespace, strings.Join(names, ", "))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("search attributes in namespace %q: %w", c.s.Namespace, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// searchAttributesUsable adds the missing attributes and then runs a list
// query that uses one, which fails until the namespace and its attributes
// have reached the frontend's caches.
func (c *cluster) searchAttributesUsable(ctx context.Context, tc client.Client, want map[string]enums.IndexedValueType, probe string) error {
	have, err := tc.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: c.s.Namespace})
	if err != nil {
		return err
	}
	missing := map[string]enums.IndexedValueType{}
	for name, typ := range want {
		got, ok := have.GetCustomAttributes()[name]
		switch {
		case !ok:
			missing[name] = typ
		case got != typ:
			return fmt.Errorf("search attribute %s exists with type %s, want %s", name, got, typ)
		}
	}
	if len(missing) > 0 {
		_, err = tc.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: c.s.Namespace, SearchAttributes: missing})
		var exists *serviceerror.AlreadyExists
		if err != nil && !errors.As(err, &exists) {
			return err
		}
		return errors.New("just added; checking again")
	}
	_, err = tc.WorkflowService().ListWorkflowExecutions(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: c.s.Namespace, PageSize: 1, Query: probe})
	return err
}

// silentLogger keeps the SDK's connection retries out of devcluster's output.
type silentLogger struct{}

func (silentLogger) Debug(string, ...any) {}
func (silentLogger) Info(string, ...any)  {}
func (silentLogger) Warn(string, ...any)  {}
func (silentLogger) Error(string, ...any) {}
