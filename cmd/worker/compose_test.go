package main

// There is no Docker engine where the tests run, so these tests load
// docker-compose.temporal.yml the way Docker Compose does (compose-go:
// interpolation, profiles, normalisation) and check it against the code:
// the worker's variables, the addresses and ports between services, the
// search attributes, the start order and the image pins.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/kelseyhightower/envconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	temporalenv "go.temporal.io/sdk/contrib/envconfig"
	"go.uber.org/zap"
	"sigs.k8s.io/yaml"

	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
	"github.com/durable-comfy/durable-comfy/devserver"
	"github.com/durable-comfy/durable-comfy/internal/logging"
	"github.com/durable-comfy/durable-comfy/wakeup"
	"github.com/durable-comfy/durable-comfy/workflows"
)

const (
	repoRoot    = "../.."
	composeFile = "docker-compose.temporal.yml"
	simEnvFile  = "deploy/compose/sim.env"
)

// loadCompose loads the compose file with env as the whole environment
// (nothing from the shell running the tests) and the given profiles.
func loadCompose(t *testing.T, env map[string]string, profiles ...string) *types.Project {
	t.Helper()
	var list []string
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(repoRoot, composeFile)},
		cli.WithWorkingDirectory(repoRoot), cli.WithEnv(list), cli.WithProfiles(profiles))
	require.NoError(t, err)
	p, err := opts.LoadProject(context.Background())
	require.NoError(t, err, "docker compose would refuse %s", composeFile)
	return p
}

// loadSimCompose loads the file as the documented trial does:
// --env-file deploy/compose/sim.env, whose COMPOSE_PROFILES picks the profile.
func loadSimCompose(t *testing.T) (*types.Project, map[string]string) {
	t.Helper()
	env, err := dotenv.Read(filepath.Join(repoRoot, simEnvFile))
	require.NoError(t, err)
	require.NotEmpty(t, env["COMPOSE_PROFILES"], "%s selects the sim profile", simEnvFile)
	return loadCompose(t, env, strings.Split(env["COMPOSE_PROFILES"], ",")...), env
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		// Services of other profiles (the starter's "tools") are loaded too.
		s, ok = p.DisabledServices[name]
	}
	require.True(t, ok, "service %q in %s", name, composeFile)
	return s
}

// envOf is a service's environment with every value resolved.
func envOf(s types.ServiceConfig) map[string]string {
	env := make(map[string]string, len(s.Environment))
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return env
}

// configVariables are the COMFY_* names the worker reads, as envconfig
// derives them from the config struct.
func configVariables(t *testing.T) map[string]bool {
	t.Helper()
	var cfg config
	var b bytes.Buffer
	require.NoError(t, envconfig.Usagef(envPrefix, &cfg, &b, "{{range .}}{{usage_key .}}\n{{end}}"))
	names := map[string]bool{}
	for _, n := range strings.Fields(b.String()) {
		names[n] = true
	}
	require.Contains(t, names, "COMFY_API_KEY")
	return names
}

// temporalVariables are the TEMPORAL_* names that Temporal's envconfig
// (go.temporal.io/sdk/contrib/envconfig, which the worker and the starter
// use) reads.
var temporalVariables = map[string]bool{
	"TEMPORAL_ADDRESS": true, "TEMPORAL_NAMESPACE": true, "TEMPORAL_API_KEY": true,
	"TEMPORAL_CLIENT_AUTHORITY": true, "TEMPORAL_TLS": true,
	"TEMPORAL_TLS_CLIENT_CERT_PATH": true, "TEMPORAL_TLS_CLIENT_CERT_DATA": true,
	"TEMPORAL_TLS_CLIENT_KEY_PATH": true, "TEMPORAL_TLS_CLIENT_KEY_DATA": true,
	"TEMPORAL_TLS_SERVER_CA_CERT_PATH": true, "TEMPORAL_TLS_SERVER_CA_CERT_DATA": true,
	"TEMPORAL_TLS_SERVER_NAME": true, "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION": true,
	"TEMPORAL_CODEC_ENDPOINT": true, "TEMPORAL_CODEC_AUTH": true,
	"TEMPORAL_PROFILE": true, "TEMPORAL_CONFIG_FILE": true,
}

// cloudCredentialVariables are read by the cloud SDKs' default credential
// chains, which the object store uses.
var cloudCredentialVariables = map[string]bool{
	"AWS_ACCESS_KEY_ID": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_SESSION_TOKEN": true,
	"AWS_REGION": true, "AWS_PROFILE": true, "GOOGLE_APPLICATION_CREDENTIALS": true,
	"AZURE_STORAGE_ACCOUNT": true, "AZURE_STORAGE_KEY": true,
}

func TestComposeWorkerVariablesAreConfig(t *testing.T) {
	known := configVariables(t)
	for _, load := range []func() *types.Project{
		func() *types.Project { return loadCompose(t, nil) },
		func() *types.Project { p, _ := loadSimCompose(t); return p },
	} {
		p := load()
		for _, name := range sortedNames(envOf(service(t, p, "worker"))) {
			switch {
			case strings.HasPrefix(name, envPrefix+"_"):
				assert.True(t, known[name], "%s gives the worker %s, which is not a field of the worker's config struct (cmd/worker/main.go, envconfig prefix %s): the worker would ignore it", composeFile, name, envPrefix)
			case strings.HasPrefix(name, "TEMPORAL_"):
				assert.True(t, temporalVariables[name], "%s gives the worker %s, which Temporal's envconfig does not read", composeFile, name)
			default:
				assert.True(t, cloudCredentialVariables[name], "%s gives the worker %s, which nothing in the worker reads", composeFile, name)
			}
		}
		// The starter reads TEMPORAL_*, TEMPORAL_UI_URL and COMFY_TASK_QUEUE only.
		for _, name := range sortedNames(envOf(service(t, p, "starter"))) {
			assert.True(t, temporalVariables[name] || name == "TEMPORAL_UI_URL" || name == "COMFY_TASK_QUEUE",
				"%s gives the starter %s, which it does not read", composeFile, name)
		}
	}
}

func TestComposeAddressesLineUp(t *testing.T) {
	p := loadCompose(t, nil)
	temporal := envOf(service(t, p, "temporal"))
	frontend := net.JoinHostPort("temporal", temporal["FRONTEND_GRPC_PORT"])
	assert.Contains(t, publishedTargets(service(t, p, "temporal")), temporal["FRONTEND_GRPC_PORT"], "the frontend port is published")

	worker, starter, setup := envOf(service(t, p, "worker")), envOf(service(t, p, "starter")), envOf(service(t, p, "temporal-setup"))
	for name, env := range map[string]map[string]string{"worker": worker, "starter": starter} {
		// As the SDK reads it, not as we would parse it.
		opts, err := temporalenv.LoadClientOptions(temporalenv.LoadClientOptionsRequest{DisableFile: true, EnvLookup: mapEnv(env)})
		require.NoError(t, err, name)
		assert.Equal(t, frontend, opts.HostPort, "%s dials the temporal service's frontend", name)
		assert.Equal(t, setup["NAMESPACE"], opts.Namespace, "%s uses the namespace temporal-setup creates", name)
	}
	assert.Equal(t, frontend, setup["TEMPORAL_ADDRESS"], "temporal-setup talks to the frontend")
	assert.Equal(t, frontend, envOf(service(t, p, "temporal-ui"))["TEMPORAL_ADDRESS"], "the UI points at the frontend")
	assert.Equal(t, worker["COMFY_TASK_QUEUE"], starter["COMFY_TASK_QUEUE"], "the starter starts work on the queue the workers poll")

	t.Run("persistence", func(t *testing.T) {
		pg, schema := envOf(service(t, p, "postgres")), envOf(service(t, p, "temporal-schema"))
		assert.Equal(t, "postgres12", temporal["DB"])
		assert.Equal(t, temporal["DB"], schema["SQL_PLUGIN"])
		assert.Equal(t, "postgres", temporal["POSTGRES_SEEDS"], "the server's database is the postgres service")
		assert.Equal(t, temporal["POSTGRES_SEEDS"], schema["SQL_HOST"])
		assert.Equal(t, "5432", temporal["DB_PORT"])
		assert.Equal(t, temporal["DB_PORT"], schema["SQL_PORT"])
		assert.Equal(t, pg["POSTGRES_USER"], temporal["POSTGRES_USER"])
		assert.Equal(t, pg["POSTGRES_USER"], schema["SQL_USER"])
		assert.Equal(t, pg["POSTGRES_PASSWORD"], temporal["POSTGRES_PWD"])
		assert.Equal(t, pg["POSTGRES_PASSWORD"], schema["SQL_PASSWORD"])
		assert.Equal(t, schema["DBNAME"], temporal["DBNAME"], "the server uses the database the schema job sets up")
		assert.Equal(t, schema["VISIBILITY_DBNAME"], temporal["VISIBILITY_DBNAME"])
		assert.Equal(t, "false", temporal["ENABLE_ES"], "visibility on PostgreSQL (SQL visibility)")
		assert.Equal(t, "4", temporal["NUM_HISTORY_SHARDS"])
	})

	t.Run("object store", func(t *testing.T) {
		store, bucket := envOf(service(t, p, "s3")), envOf(service(t, p, "s3-bucket"))
		u, err := url.Parse(worker["COMFY_OUTPUT_URL"])
		require.NoError(t, err)
		assert.Equal(t, "s3", u.Scheme)
		assert.Equal(t, bucket["BUCKET"], u.Host, "the worker writes to the bucket s3-bucket creates")
		q := u.Query()
		assert.Equal(t, bucket["S3_ENDPOINT"], q.Get("endpoint"))
		endpoint, err := url.Parse(q.Get("endpoint"))
		require.NoError(t, err)
		assert.Equal(t, "s3", endpoint.Hostname(), "the endpoint names the s3 service")
		assert.Equal(t, strings.TrimPrefix(store["VGW_PORT"], ":"), endpoint.Port(), "the endpoint's port is the store's")
		assert.Equal(t, "true", q.Get("use_path_style"), "an S3-compatible store by service name needs path-style requests")
		assert.Equal(t, bucket["AWS_REGION"], q.Get("region"))
		for _, env := range []map[string]string{worker, bucket} {
			assert.Equal(t, store["ROOT_ACCESS_KEY_ID"], env["AWS_ACCESS_KEY_ID"])
			assert.Equal(t, store["ROOT_SECRET_ACCESS_KEY"], env["AWS_SECRET_ACCESS_KEY"])
		}
	})

	t.Run("webhooks", func(t *testing.T) {
		cfg := loadConfig(t, worker)
		_, port, err := net.SplitHostPort(cfg.WebhookListen)
		require.NoError(t, err)
		assert.Contains(t, service(t, p, "worker").Expose, port, "the worker exposes its webhook port")
		assert.Contains(t, dockerfileExposed(t), port, "the image exposes the webhook port")
		assert.Empty(t, cfg.WebhookURL, "webhooks are off unless a public URL is given")
	})
}

func TestComposeSimProfileDrivesTheWorker(t *testing.T) {
	p, _ := loadSimCompose(t)
	sim := envOf(service(t, p, "comfysim"))
	worker := envOf(service(t, p, "worker"))
	cfg := loadConfig(t, worker)
	require.NoError(t, cfg.validate(), "the trial's worker configuration is valid")

	api, err := url.Parse(cfg.APIURL)
	require.NoError(t, err)
	_, simPort, err := net.SplitHostPort(sim["COMFYSIM_ADDR"])
	require.NoError(t, err)
	assert.Equal(t, net.JoinHostPort("comfysim", simPort), api.Host, "the worker calls the simulator")
	assert.Equal(t, "/api", api.Path)
	assert.Equal(t, comfytest.DefaultAPIKey, cfg.APIKey, "the simulator accepts the worker's key")
	assert.Equal(t, "http://"+api.Host, sim["COMFYSIM_PUBLIC_URL"], "output file URLs the simulator signs reach it from the workers")

	// The simulator calls the workers back through the service name, which
	// resolves to every replica; any replica can take any webhook.
	hook, err := url.Parse(cfg.WebhookURL)
	require.NoError(t, err)
	_, listenPort, err := net.SplitHostPort(cfg.WebhookListen)
	require.NoError(t, err)
	assert.Equal(t, net.JoinHostPort("worker", listenPort), hook.Host)
	_, err = wakeup.New(cfg.WebhookURL, cfg.WebhookSecret, logging.Slog(zap.NewNop()))
	assert.NoError(t, err, "the worker accepts the trial's webhook settings")

	assert.Equal(t, types.ServiceConditionStarted, service(t, p, "worker").DependsOn["comfysim"].Condition)

	// Without the profile the simulator is off and the worker still starts.
	p = loadCompose(t, nil)
	assert.NotContains(t, p.Services, "comfysim")
	assert.Contains(t, p.DisabledServices, "comfysim")
}

func TestComposeSearchAttributesMatchWorkflows(t *testing.T) {
	p := loadCompose(t, nil)
	got := map[string]string{}
	for _, pair := range strings.Split(envOf(service(t, p, "temporal-setup"))["SEARCH_ATTRIBUTES"], ",") {
		name, typ, ok := strings.Cut(pair, "=")
		require.True(t, ok, "SEARCH_ATTRIBUTES takes NAME=Type pairs, got %q", pair)
		got[name] = typ
	}
	want := map[string]string{}
	for name, typ := range workflows.SearchAttributes() {
		want[name] = typ.String() // the CLI's --type spelling, e.g. Keyword
	}
	assert.Equal(t, want, got, "temporal-setup registers exactly workflows.SearchAttributes()")
	assert.Equal(t, "false", envOf(service(t, p, "worker"))["COMFY_REGISTER_SEARCH_ATTRIBUTES"],
		"the workers need no operator rights: temporal-setup registers the attributes")
}

func TestComposeDynamicConfigCarriesDevServerSettings(t *testing.T) {
	p := loadCompose(t, nil)
	temporal := service(t, p, "temporal")
	var source string
	for _, v := range temporal.Volumes {
		if v.Target == envOf(temporal)["DYNAMIC_CONFIG_FILE_PATH"] {
			source = v.Source
		}
	}
	require.NotEmpty(t, source, "DYNAMIC_CONFIG_FILE_PATH is a mounted file")
	data, err := os.ReadFile(source)
	require.NoError(t, err)
	var dc map[string][]struct {
		Value any `json:"value"`
	}
	require.NoError(t, yaml.Unmarshal(data, &dc))
	for _, s := range devserver.DynamicConfig {
		if assert.Len(t, dc[s.Key], 1, s.Key) {
			assert.Equal(t, s.Value, fmt.Sprint(dc[s.Key][0].Value), s.Key)
		}
	}
}

func TestComposeStartsInOrderAndScales(t *testing.T) {
	p, _ := loadSimCompose(t)
	for _, name := range sortedNames(p.Services) {
		s := p.Services[name]
		for dep, d := range s.DependsOn {
			target := service(t, p, dep)
			switch {
			case target.HealthCheck != nil && !target.HealthCheck.Disable:
				assert.Equal(t, types.ServiceConditionHealthy, d.Condition, "%s waits until %s is healthy", name, dep)
			case target.Restart == "":
				// Long-running services restart; the one-shot jobs do not.
				assert.Equal(t, types.ServiceConditionCompletedSuccessfully, d.Condition, "%s waits until job %s has succeeded", name, dep)
			default:
				assert.False(t, d.Required, "%s depends on %s, which has no health check: only as an optional dependency", name, dep)
			}
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				_, err := os.Stat(v.Source)
				assert.NoError(t, err, "%s mounts %s", name, v.Source)
			}
		}
		if len(s.Entrypoint) == 2 && s.Entrypoint[0] == "/bin/sh" {
			assert.FileExists(t, filepath.Join(repoRoot, "deploy/compose", strings.TrimPrefix(s.Entrypoint[1], "/deploy/")), name)
		}
	}
	worker := service(t, p, "worker")
	assert.Equal(t, types.ServiceConditionCompletedSuccessfully, worker.DependsOn["temporal-setup"].Condition, "the worker starts on a namespace with our search attributes")
	assert.Equal(t, types.ServiceConditionCompletedSuccessfully, worker.DependsOn["s3-bucket"].Condition, "the worker starts with its bucket there")
	assert.Equal(t, types.ServiceConditionCompletedSuccessfully, service(t, p, "temporal").DependsOn["temporal-schema"].Condition)
	assert.Empty(t, worker.ContainerName, "--scale worker=N needs generated container names")
	assert.Empty(t, worker.Ports, "--scale worker=N cannot share a host port")
}

var versionTag = regexp.MustCompile(`^v?[0-9]+(\.[0-9]+)*([.-][0-9A-Za-z.-]+)?$`)

func TestComposeAndDockerfileImagesArePinned(t *testing.T) {
	p, _ := loadSimCompose(t)
	all := types.Services{}
	for name, s := range p.Services {
		all[name] = s
	}
	for name, s := range p.DisabledServices {
		all[name] = s
	}
	var ours []string
	for _, name := range sortedNames(all) {
		s := all[name]
		if s.Build != nil {
			// Built from this repository's Dockerfile: one image for all.
			assert.Equal(t, "Dockerfile", s.Build.Dockerfile, name)
			ours = append(ours, s.Image)
			continue
		}
		assert.Regexp(t, versionTag, imageTag(s.Image), "%s: image %q is pinned by version", name, s.Image)
	}
	require.NotEmpty(t, ours)
	for _, img := range ours {
		assert.Equal(t, ours[0], img, "the worker, starter and simulator share one image")
	}
	assert.NotEqual(t, "latest", imageTag(ours[0]))

	froms := dockerfileFroms(t)
	require.Len(t, froms, 2, "a build stage and a runtime stage")
	for _, img := range froms {
		assert.NotContains(t, []string{"", "latest"}, imageTag(img), "Dockerfile base %q is pinned", img)
	}
	// The build stage's Go is the go.mod toolchain line.
	goImage := froms[0]
	require.True(t, strings.HasPrefix(goImage, "golang:"), goImage)
	mod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	require.NoError(t, err)
	goLine := regexp.MustCompile(`(?m)^go ([0-9]+\.[0-9]+)`).FindSubmatch(mod)
	require.NotNil(t, goLine)
	assert.True(t, strings.HasPrefix(imageTag(goImage), string(goLine[1])+"."), "Dockerfile GO_VERSION %s is Go %s like go.mod", imageTag(goImage), goLine[1])
}

// imageTag is the tag of an image reference ("" when it has none).
func imageTag(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i+1:]
	}
	return ""
}

// dockerfileFroms are the Dockerfile's FROM images, ARG defaults expanded.
func dockerfileFroms(t *testing.T) []string {
	t.Helper()
	args := map[string]string{}
	var froms []string
	for _, line := range dockerfileLines(t) {
		f := strings.Fields(line)
		switch strings.ToUpper(f[0]) {
		case "ARG":
			for _, a := range f[1:] {
				if k, v, ok := strings.Cut(a, "="); ok {
					args[k] = v
				}
			}
		case "FROM":
			img := f[1]
			for _, w := range f[1:] {
				if !strings.HasPrefix(w, "--") {
					img = w
					break
				}
			}
			froms = append(froms, os.Expand(img, func(k string) string { return args[k] }))
		}
	}
	return froms
}

func dockerfileExposed(t *testing.T) []string {
	t.Helper()
	var ports []string
	for _, line := range dockerfileLines(t) {
		if f := strings.Fields(line); strings.EqualFold(f[0], "EXPOSE") {
			for _, p := range f[1:] {
				ports = append(ports, strings.TrimSuffix(p, "/tcp"))
			}
		}
	}
	return ports
}

// dockerfileLines are the Dockerfile's instructions, comments dropped and
// continuation lines joined.
func dockerfileLines(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "Dockerfile"))
	require.NoError(t, err)
	defer f.Close()
	var lines []string
	var cur string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		lines = append(lines, cur+l)
		cur = ""
	}
	require.NoError(t, sc.Err())
	return lines
}

func publishedTargets(s types.ServiceConfig) []string {
	var out []string
	for _, p := range s.Ports {
		out = append(out, fmt.Sprint(p.Target))
	}
	return out
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// mapEnv is an environment for Temporal's envconfig.
type mapEnv map[string]string

func (m mapEnv) Environ() []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

func (m mapEnv) LookupEnv(k string) (string, bool) {
	v, ok := m[k]
	return v, ok
}
