package egress_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durable-comfy/durable-comfy/egress"
)

// counting is a test server that must not be reached by refused requests.
type counting struct {
	*httptest.Server
	hits atomic.Int32
	got  http.Header
}

func newCounting(t *testing.T, h http.HandlerFunc) *counting {
	c := &counting{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		c.got = r.Header.Clone()
		if h != nil {
			h(w, r)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(c.Close)
	return c
}

func hostOf(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

func allow(t *testing.T, patterns ...string) egress.Allowlist {
	a, err := egress.ParseAllow(strings.Join(patterns, ","))
	require.NoError(t, err)
	return a
}

func TestClientRefusesInternalAddressesAndOtherSchemes(t *testing.T) {
	target := newCounting(t, nil)
	port := target.URL[strings.LastIndex(target.URL, ":")+1:]
	// An allowed server (standing in for a public one) that redirects to
	// the target, which is not allowed.
	redirector := newCounting(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/secret", http.StatusFound)
	})
	toMetadata := newCounting(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	client := egress.NewClient(egress.Policy{Allow: allow(t, hostOf(redirector.Server), hostOf(toMetadata.Server))})

	for _, tc := range []struct{ name, url, want string }{
		{"loopback", target.URL + "/items.csv", "loopback addresses are not fetched"},
		{"IPv6 loopback", "http://[::1]:" + port + "/", "loopback"},
		{"IPv4-mapped loopback", "http://[::ffff:127.0.0.1]:" + port + "/", "loopback"},
		{"unspecified", "http://0.0.0.0:" + port + "/", "unspecified"},
		{"cloud metadata", "http://169.254.169.254/latest/meta-data/", "link-local"},
		{"private", "http://10.0.0.1/", "private"},
		{"IPv6 unique local", "http://[fd00::1]/", "private"},
		{"name resolving to loopback", "http://localhost:" + port + "/", "loopback"},
		{"redirect to loopback", redirector.URL + "/items.csv", "loopback"},
		{"redirect to metadata", toMetadata.URL + "/", "link-local"},
		{"file URL", "file:///etc/passwd", "only http and https"},
		{"gopher URL", "gopher://127.0.0.1:" + port + "/", "only http and https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client.Get(tc.url)
			if resp != nil {
				resp.Body.Close()
			}
			require.Error(t, err)
			assert.True(t, egress.IsRefused(err), "%v", err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Zero(t, target.hits.Load(), "nothing reaches the refused address")
		})
	}
	assert.EqualValues(t, 1, redirector.hits.Load(), "the allowed host itself was reached")
}

func TestClientReachesAllowedHostsWithoutCredentials(t *testing.T) {
	srv := newCounting(t, nil)
	client := egress.NewClient(egress.Policy{Allow: allow(t, hostOf(srv.Server))})
	u := strings.Replace(srv.URL, "http://", "http://user:password@", 1) + "/items.csv?sig=x"
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(t, err)
	req.Header.Set("Cookie", "session=1")
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.EqualValues(t, 1, srv.hits.Load())
	assert.Empty(t, srv.got.Get("Authorization"), "user info is not sent")
	assert.Empty(t, srv.got.Get("Cookie"))
}

func TestClientFollowsAFewRedirects(t *testing.T) {
	var loop *counting
	loop = newCounting(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, loop.URL+"/again", http.StatusFound)
	})
	client := egress.NewClient(egress.Policy{Allow: allow(t, "127.0.0.1")})
	_, err := client.Get(loop.URL)
	require.Error(t, err)
	assert.True(t, egress.IsRefused(err))
	assert.Contains(t, err.Error(), "more than 3 redirects")
	assert.EqualValues(t, 4, loop.hits.Load(), "the first request and three redirects")
}

func TestAllowlistPatterns(t *testing.T) {
	a := allow(t, "data.example.com", "*.example.org", "127.0.0.1:8080", "[::1]:9000", "Files.Example.NET.")
	for hostport, want := range map[string]bool{
		"data.example.com:443":    true,
		"DATA.example.com.:80":    true,
		"other.example.com:443":   false,
		"a.example.org:443":       true,
		"a.b.example.org:443":     true,
		"example.org:443":         false,
		"badexample.org:443":      false,
		"127.0.0.1:8080":          true,
		"127.0.0.1:8081":          false,
		"[::1]:9000":              true,
		"files.example.net:443":   true,
		"data.example.com.evil:1": false,
	} {
		assert.Equal(t, want, a.Allows(hostport), hostport)
	}
	for _, bad := range []string{"http://x.com", "x.com/path", "*", "a.*.com", "user@x.com"} {
		_, err := egress.ParseAllow(bad)
		assert.Error(t, err, bad)
	}
}

func TestInternal(t *testing.T) {
	for addr, want := range map[string]string{
		"8.8.8.8":          "",
		"2606:4700::1111":  "",
		"127.0.0.53":       "loopback",
		"::1":              "loopback",
		"::ffff:10.1.2.3":  "private",
		"172.16.0.1":       "private",
		"192.168.1.1":      "private",
		"fc00::1":          "private",
		"169.254.169.254":  "link-local",
		"fe80::1":          "link-local",
		"224.0.0.1":        "multicast",
		"ff02::1":          "multicast",
		"0.0.0.0":          "unspecified",
		"::":               "unspecified",
		"0.1.2.3":          "reserved",
		"100.100.100.200":  "reserved",
		"255.255.255.255":  "reserved",
		"64:ff9b::7f00:1":  "loopback",
		"64:ff9b::808:808": "",
		"::7f00:1":         "reserved", // IPv4-compatible 127.0.0.1
		"::a00:1":          "reserved", // IPv4-compatible 10.0.0.1
		"64:ff9b:1::a00:1": "reserved", // local-use NAT64 of 10.0.0.1
	} {
		assert.Equal(t, want, egress.Internal(netip.MustParseAddr(addr)), addr)
	}
}

func TestRedacted(t *testing.T) {
	assert.Equal(t, "https://host/a/b", egress.Redacted("https://user:pw@host/a/b?X-Amz-Signature=s#f"))
	assert.Equal(t, "http://host", egress.Redacted("http://host?x"))
}
