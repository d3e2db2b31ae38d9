// Package egress builds the HTTP clients with which the worker fetches URLs
// that someone else chose: batch sources named in workflow inputs and output
// URLs returned by the provider. Such a client only reaches public
// addresses, unless the operator allowed a host, and never sends
// credentials. The check runs on the address actually dialed, after DNS
// resolution and on every redirect, so neither a name that resolves to
// 127.0.0.1 nor a redirect to 169.254.169.254 gets through.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// DefaultMaxRedirects is how many redirects a client follows.
const DefaultMaxRedirects = 3

// Policy says where a client may connect.
type Policy struct {
	// Allow lists the hosts reached even when they resolve to a loopback,
	// private or otherwise internal address (see ParseAllow).
	Allow Allowlist
	// MaxRedirects caps redirects; 0 means DefaultMaxRedirects, a negative
	// value follows none.
	MaxRedirects int
	// Timeout bounds one request, body included; 0 means none.
	Timeout time.Duration
}

// RefusedError says that a client refused to connect or to send a request.
type RefusedError struct {
	// Target is the host:port or URL that was refused, never with its query.
	Target string
	// Reason says why, in words that name the fix.
	Reason string
}

func (e *RefusedError) Error() string { return e.Target + ": " + e.Reason }

// IsRefused reports whether err (or an error it wraps) is a RefusedError.
func IsRefused(err error) bool {
	var r *RefusedError
	return errors.As(err, &r)
}

// NewClient returns an *http.Client that follows p. It ignores
// HTTP_PROXY/HTTPS_PROXY: through a proxy the dialed address would be the
// proxy's, and the check would see nothing of the real destination.
func NewClient(p Policy) *http.Client {
	maxRedirects := p.MaxRedirects
	if maxRedirects == 0 {
		maxRedirects = DefaultMaxRedirects
	}
	base := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer{allow: p.Allow}.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: time.Minute,
	}
	return &http.Client{
		Transport: withoutCredentials{base},
		Timeout:   p.Timeout,
		Jar:       nil,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return &RefusedError{Target: Redacted(req.URL.String()), Reason: fmt.Sprintf("more than %d redirects", max(maxRedirects, 0))}
			}
			return nil
		},
	}
}

// withoutCredentials refuses schemes other than http(s) and strips what
// could authenticate the worker: a URL's user:password (net/http turns it
// into an Authorization header before the transport runs), cookies and
// proxy credentials. It sees the first request and every redirect.
type withoutCredentials struct{ next http.RoundTripper }

func (t withoutCredentials) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return nil, &RefusedError{Target: Redacted(req.URL.String()), Reason: "only http and https URLs are fetched"}
	}
	if req.URL.User != nil || req.Header.Get("Authorization") != "" || req.Header.Get("Cookie") != "" || req.Header.Get("Proxy-Authorization") != "" {
		req = req.Clone(req.Context())
		req.URL.User = nil
		req.Header.Del("Authorization")
		req.Header.Del("Cookie")
		req.Header.Del("Proxy-Authorization")
	}
	return t.next.RoundTrip(req)
}

type dialer struct{ allow Allowlist }

func (d dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	if !d.allow.Allows(addr) {
		nd.Control = func(_, address string, _ syscall.RawConn) error {
			// address is the resolved ip:port about to be connected.
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return &RefusedError{Target: addr, Reason: "cannot tell which address is dialed"}
			}
			if why := Internal(ap.Addr()); why != "" {
				target := addr
				if host, _, _ := net.SplitHostPort(addr); host != ap.Addr().String() {
					target = fmt.Sprintf("%s (%s)", addr, ap.Addr())
				}
				return &RefusedError{Target: target, Reason: why + " addresses are not fetched unless the host is allowed"}
			}
			return nil
		}
	}
	return nd.DialContext(ctx, network, addr)
}

// internalPrefixes are ranges beyond netip's predicates that reach no
// public service: "this network" (Linux connects 0.0.0.0 to itself),
// carrier-grade NAT (also some clouds' metadata), IETF protocol
// assignments, benchmarking, reserved and broadcast, IPv6 site-local,
// IPv4-compatible IPv6 (deprecated; ::/128 and ::1 are judged before) and
// local-use NAT64, whose translator sits inside the network.
var internalPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("fec0::/10"),
	netip.MustParsePrefix("::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
}

// nat64 is the well-known NAT64 prefix: the IPv4 address it embeds is what
// is reached, so that is what gets checked.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// Internal says which kind of non-public address a is ("loopback",
// "private", …), or "" for a public one. IPv4-mapped IPv6 addresses are
// judged by their IPv4 address.
func Internal(a netip.Addr) string {
	a = a.Unmap()
	if nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:]))
	}
	switch {
	case !a.IsValid():
		return "invalid"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.IsPrivate():
		return "private"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsMulticast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		return "multicast"
	}
	for _, p := range internalPrefixes {
		if p.Contains(a) {
			return "reserved"
		}
	}
	return ""
}

// Redacted returns raw without its query, fragment and user info, which
// may hold credentials (presigned signatures, tokens).
func Redacted(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	if scheme, rest, ok := strings.Cut(raw, "://"); ok {
		host, path, _ := strings.Cut(rest, "/")
		if at := strings.LastIndex(host, "@"); at >= 0 {
			host = host[at+1:]
		}
		raw = scheme + "://" + host
		if path != "" || strings.Contains(rest, "/") {
			raw += "/" + path
		}
	}
	return raw
}
