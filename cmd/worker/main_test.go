package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kelseyhightower/envconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/durable-comfy/durable-comfy/egress"
)

// loadConfig reads the configuration from env alone: COMFY_* variables of
// the environment the tests run in are cleared first.
func loadConfig(t *testing.T, env map[string]string) config {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, envPrefix+"_") {
			t.Setenv(name, "") // restored after the test
			require.NoError(t, os.Unsetenv(name))
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	var cfg config
	require.NoError(t, envconfig.Process(envPrefix, &cfg))
	return cfg
}

func TestDefaultsAreValid(t *testing.T) {
	cfg := loadConfig(t, map[string]string{"COMFY_API_KEY": "k"})
	assert.NoError(t, cfg.validate())
	assert.Empty(t, cfg.WebhookURL, "webhooks are off unless asked for")
	assert.Equal(t, ":8089", cfg.WebhookListen)
}

func TestWebhookSecretWithoutURLIsRejected(t *testing.T) {
	cfg := loadConfig(t, map[string]string{"COMFY_API_KEY": "k", "COMFY_WEBHOOK_SECRET": "0123456789abcdef0123"})
	assert.ErrorContains(t, cfg.validate(), "COMFY_WEBHOOK_URL is not")
}

func TestZeroDurationsAreRejected(t *testing.T) {
	cfg := loadConfig(t, map[string]string{"COMFY_API_KEY": "k", "COMFY_POLL_INTERVAL": "0s"})
	assert.ErrorContains(t, cfg.validate(), "COMFY_POLL_INTERVAL must be a positive duration")
}

func TestServeWebhooksServesTheURLPath(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	hits := 0
	stop, err := serveWebhooks(addr, "https://worker.example/comfy/webhook", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits++
		w.WriteHeader(http.StatusNoContent)
	}), zap.NewNop())
	require.NoError(t, err)
	defer stop()

	resp, err := http.Post("http://"+addr+"/comfy/webhook?cid=x", "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	resp, err = http.Post("http://"+addr+"/elsewhere", "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Equal(t, 1, hits)

	_, err = serveWebhooks(addr, "https://worker.example/comfy/webhook", http.NotFoundHandler(), zap.NewNop())
	assert.Error(t, err, "the address is taken")
}

func TestOutputURLAndDirTogetherAreRejected(t *testing.T) {
	cfg := loadConfig(t, map[string]string{"COMFY_API_KEY": "k", "COMFY_OUTPUT_URL": "s3://b/p", "COMFY_OUTPUT_DIR": "out"})
	assert.ErrorContains(t, cfg.validate(), "COMFY_OUTPUT_URL and COMFY_OUTPUT_DIR are both set")
}

func TestOpenStoreDefaultsToTheLocalOutDirectory(t *testing.T) {
	t.Chdir(t.TempDir())
	cfg := loadConfig(t, map[string]string{"COMFY_API_KEY": "k"})
	store, _, err := openStore(context.Background(), cfg)
	require.NoError(t, err)
	defer store.Close()
	wd, err := os.Getwd()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(wd, "out"), store.Dir())
	assert.DirExists(t, "out")
}

func TestOpenStoreNamesTheVariableAndHidesSecrets(t *testing.T) {
	// Nothing listens on port 9: the probe fails, naming the store without
	// its query, and the variable to fix.
	cfg := loadConfig(t, map[string]string{"COMFY_API_KEY": "k",
		"COMFY_OUTPUT_URL": "s3://media/out?region=us-east-1&endpoint=http://127.0.0.1:9&use_path_style=true"})
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIATESTKEY")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "hunter2-secret")
	t.Setenv("AWS_MAX_ATTEMPTS", "1")
	_, which, err := openStore(context.Background(), cfg)
	require.Error(t, err)
	assert.Equal(t, "COMFY_OUTPUT_URL", which)
	assert.Contains(t, err.Error(), "output store s3://media/out is not usable: write a probe object")
	assert.NotContains(t, err.Error(), "hunter2")
	assert.NotContains(t, err.Error(), "endpoint=")

	cfg = loadConfig(t, map[string]string{"COMFY_API_KEY": "k", "COMFY_OUTPUT_URL": "ftp://x/y"})
	_, which, err = openStore(context.Background(), cfg)
	assert.Equal(t, "COMFY_OUTPUT_URL", which)
	assert.ErrorContains(t, err, "unsupported scheme")
}

func TestSourcesAndDownloadsAreConfinedByDefault(t *testing.T) {
	cfg := loadConfig(t, map[string]string{"COMFY_API_KEY": "k"})
	assert.Empty(t, cfg.SourceDirs, "no path sources unless a directory is configured")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("x")) }))
	defer srv.Close()

	source, outputs, err := cfg.egressClients()
	require.NoError(t, err)
	_, err = source.Get(srv.URL)
	assert.True(t, egress.IsRefused(err), "a loopback source is refused: %v", err)
	_, err = outputs.Get(srv.URL)
	assert.True(t, egress.IsRefused(err), "and so is a loopback output not on the API host: %v", err)

	// The API host (here the test server, as the simulator in `make dev`)
	// is allowed for outputs; COMFY_SOURCE_URL_ALLOW allows a source host.
	cfg = loadConfig(t, map[string]string{"COMFY_API_KEY": "k", "COMFY_API_URL": srv.URL + "/api", "COMFY_SOURCE_URL_ALLOW": strings.TrimPrefix(srv.URL, "http://")})
	source, outputs, err = cfg.egressClients()
	require.NoError(t, err)
	for _, c := range []*http.Client{source, outputs} {
		resp, err := c.Get(srv.URL + "/file")
		require.NoError(t, err)
		resp.Body.Close()
	}

	cfg = loadConfig(t, map[string]string{"COMFY_API_KEY": "k", "COMFY_SOURCE_URL_ALLOW": "https://data.example.com/"})
	_, _, err = cfg.egressClients()
	assert.ErrorContains(t, err, "COMFY_SOURCE_URL_ALLOW")
}
