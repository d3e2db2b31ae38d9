package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

func testSettings(t *testing.T) settings {
	s := settings{Dir: t.TempDir(), BinDir: "/nonexistent/bin", Host: "127.0.0.1", PGPort: 55432, Frontend: 7433,
		UIPort: 8433, Namespace: "default", Shards: 4}
	require.NoError(t, s.resolve())
	return s
}

func TestServerConfigUsesPostgresForBothStoresAndTheFlagsPorts(t *testing.T) {
	c := &cluster{s: testSettings(t)}
	require.NoError(t, c.writeServerConfig())
	b, err := os.ReadFile(filepath.Join(c.serverDir(), "config.yaml"))
	require.NoError(t, err)
	var cfg struct {
		Persistence struct {
			NumHistoryShards int    `json:"numHistoryShards"`
			DefaultStore     string `json:"defaultStore"`
			VisibilityStore  string `json:"visibilityStore"`
			Datastores       map[string]struct {
				SQL struct {
					PluginName, DatabaseName, ConnectAddr string
				} `json:"sql"`
			} `json:"datastores"`
		} `json:"persistence"`
		Services map[string]struct {
			RPC struct {
				GRPCPort       int `json:"grpcPort"`
				MembershipPort int `json:"membershipPort"`
			} `json:"rpc"`
		} `json:"services"`
		DynamicConfigClient struct {
			Filepath string `json:"filepath"`
		} `json:"dynamicConfigClient"`
	}
	require.NoError(t, yaml.Unmarshal(b, &cfg))
	p := cfg.Persistence
	assert.Equal(t, 4, p.NumHistoryShards)
	for store, db := range map[string]string{p.DefaultStore: "temporal", p.VisibilityStore: "temporal_visibility"} {
		sql := p.Datastores[store].SQL
		assert.Equal(t, "postgres12", sql.PluginName, store)
		assert.Equal(t, db, sql.DatabaseName, store)
		assert.Equal(t, "127.0.0.1:55432", sql.ConnectAddr, store)
	}
	ports := map[int]string{}
	for name, svc := range cfg.Services {
		for _, port := range []int{svc.RPC.GRPCPort, svc.RPC.MembershipPort} {
			assert.NotZero(t, port, name)
			assert.Empty(t, ports[port], "port %d used by %s and %s", port, ports[port], name)
			ports[port] = name
		}
	}
	assert.Equal(t, 7433, cfg.Services["frontend"].RPC.GRPCPort)
	assert.Len(t, cfg.Services, 4)
	assert.FileExists(t, cfg.DynamicConfigClient.Filepath)
}

func TestReachableNeedsSearchPermissionOnEveryAncestor(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open", "repo")
	closed := filepath.Join(base, "closed", "repo")
	require.NoError(t, os.MkdirAll(open, 0o755))
	require.NoError(t, os.MkdirAll(closed, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(open), 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(closed), 0o700))
	require.NoError(t, os.Chmod(base, 0o755))
	// Another user: neither owner nor group of the folders.
	const uid, gid = 54321, 54321
	if !reachable(filepath.Dir(base), uid, gid) {
		t.Skipf("%s is not searchable by other users on this machine", filepath.Dir(base))
	}
	assert.True(t, reachable(filepath.Join(open, "postgres"), uid, gid), "missing folders are created 0755")
	assert.False(t, reachable(closed, uid, gid))
	assert.True(t, reachable(closed, os.Getuid(), os.Getgid()), "the owner may enter")
}

func TestDaemonIsRunningOnlyWhenThePidIsALiveProcessOfItsBinary(t *testing.T) {
	dir := t.TempDir()
	self, err := os.Executable()
	require.NoError(t, err)
	d := daemon{name: "test", binary: self, pidFile: filepath.Join(dir, "x.pid")}
	_, ok := d.running()
	assert.False(t, ok, "no pid file")

	require.NoError(t, os.WriteFile(d.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644))
	pid, ok := d.running()
	assert.True(t, ok)
	assert.Equal(t, os.Getpid(), pid)

	other := d
	other.binary = "/usr/bin/some-other-program"
	_, ok = other.running()
	assert.False(t, ok, "a reused pid of another program is not ours")

	require.NoError(t, os.WriteFile(d.pidFile, []byte("999999999\n"), 0o644))
	_, ok = d.running()
	assert.False(t, ok, "a stale pid file")
}
