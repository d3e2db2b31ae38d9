package egress

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Allowlist holds host patterns. A pattern is a host name
// ("data.example.com"), a wildcard for its subdomains ("*.example.com",
// which does not match example.com itself), or either of them or an IP
// address with a port ("127.0.0.1:8080", "[::1]:8080"), which then matches
// that port only. Names compare case-insensitively.
type Allowlist struct{ patterns []pattern }

type pattern struct {
	host     string // lower case; "*.suffix" for a wildcard
	port     string // "" matches any port
	wildcard bool
}

// ParseAllow parses a comma-separated list of host patterns.
func ParseAllow(list string) (Allowlist, error) {
	var a Allowlist
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		if err := a.Add(raw); err != nil {
			return Allowlist{}, err
		}
	}
	return a, nil
}

// Add adds one pattern.
func (a *Allowlist) Add(raw string) error {
	if strings.Contains(raw, "://") || strings.ContainsAny(raw, "/?#@") {
		return fmt.Errorf("host pattern %q must be a host or host:port, not a URL", raw)
	}
	host, port := raw, ""
	if h, p, err := net.SplitHostPort(raw); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(raw, "[") && strings.HasSuffix(raw, "]") {
		host = raw[1 : len(raw)-1]
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	p := pattern{host: host, port: port}
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		p.wildcard, p.host = true, "."+rest
		host = rest
	}
	if host == "" || strings.Contains(host, "*") {
		return fmt.Errorf("host pattern %q: want a host, *.domain or host:port", raw)
	}
	a.patterns = append(a.patterns, p)
	return nil
}

// AddURLHost allows the host (and port, when the URL names one) of rawURL.
func (a *Allowlist) AddURLHost(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", rawURL)
	}
	return a.Add(u.Host)
}

// Allows reports whether hostport ("host:port", as dialed) matches.
func (a Allowlist) Allows(hostport string) bool {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, p := range a.patterns {
		if p.port != "" && p.port != port {
			continue
		}
		if p.wildcard && strings.HasSuffix(host, p.host) || !p.wildcard && host == p.host {
			return true
		}
	}
	return false
}

// String lists the patterns, for logs and messages.
func (a Allowlist) String() string {
	out := make([]string, len(a.patterns))
	for i, p := range a.patterns {
		h := p.host
		if p.wildcard {
			h = "*" + h
		}
		if p.port != "" {
			h = net.JoinHostPort(h, p.port)
		}
		out[i] = h
	}
	return strings.Join(out, ",")
}
