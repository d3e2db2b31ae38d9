package comfy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Base URLs of the hosted API. Every route lives under the /api prefix.
const (
	DefaultBaseURL = "https://api.comfydeploy.com/api"
	StagingBaseURL = "https://staging.api.comfydeploy.com/api"
)

const (
	defaultUserAgent = "durable-comfy (+https://github.com/durable-comfy/durable-comfy)"

	// maxRetryAfter bounds how long the executor sleeps in-process on a
	// Retry-After. A longer wait is handed back to the caller, whose
	// scheduler (Temporal) can wait without holding a goroutine and a slot.
	maxRetryAfter = time.Minute

	// maxResponseBody protects the worker from a runaway body. Run documents
	// with many outputs are large but nowhere near this.
	maxResponseBody = 64 << 20
)

// Client talks to the ComfyDeploy API. It is safe for concurrent use.
type Client struct {
	Runs        *RunsService
	Deployments *DeploymentsService
	Machines    *MachinesService
	Workflows   *WorkflowsService
	Files       *FilesService
	Assets      *AssetsService
	Streams     *StreamsService

	base       *url.URL
	creds      *credentials // a pointer, so fmt prints an address and not the key
	httpClient *http.Client
	userAgent  string
	logger     *slog.Logger
	retry      RetryPolicy

	// sleep is replaced in tests so retry waits can be recorded instead
	// of spent.
	sleep func(ctx context.Context, d time.Duration) error
}

type service struct{ client *Client }

// credentials holds the API key. Its formatting methods are there so that
// printing it by accident cannot leak the key.
type credentials struct{ key string }

const redacted = "[REDACTED]"

func (*credentials) String() string               { return redacted }
func (*credentials) GoString() string             { return redacted }
func (*credentials) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (*credentials) MarshalJSON() ([]byte, error) { return json.Marshal(redacted) }

// String describes the client without its API key.
func (c *Client) String() string {
	if c == nil {
		return "comfy.Client(nil)"
	}
	return fmt.Sprintf("comfy.Client{BaseURL: %q, APIKey: %s}", c.base.String(), c.keyState())
}

// GoString keeps %#v from dumping the unexported fields.
func (c *Client) GoString() string { return c.String() }

// LogValue keeps slog from dumping the unexported fields.
func (c *Client) LogValue() slog.Value { return slog.StringValue(c.String()) }

func (c *Client) keyState() string {
	if c.creds == nil || c.creds.key == "" {
		return "(none)"
	}
	return redacted
}

// BaseURL returns the API root that request paths are resolved against.
func (c *Client) BaseURL() string { return c.base.String() }

// Option configures a Client.
type Option func(*Client) error

// WithBaseURL selects the API root, for example [StagingBaseURL] or a
// local simulator. Query strings and fragments are rejected because they
// would be silently dropped.
func WithBaseURL(u string) Option {
	return func(c *Client) error {
		parsed, err := url.Parse(strings.TrimSpace(u))
		if err != nil {
			return fmt.Errorf("comfy: invalid base URL: %w", err)
		}
		if parsed.Scheme != "http" && parsed.Scheme != "https" {
			return fmt.Errorf("comfy: invalid base URL %q: scheme must be http or https", u)
		}
		if parsed.Host == "" {
			return fmt.Errorf("comfy: invalid base URL %q: missing host", u)
		}
		if parsed.RawQuery != "" || parsed.Fragment != "" || parsed.User != nil {
			return fmt.Errorf("comfy: invalid base URL %q: must not carry a query, fragment or user info", u)
		}
		parsed.Path = strings.TrimRight(parsed.Path, "/")
		parsed.RawPath = ""
		c.base = parsed
		return nil
	}
}

// WithAPIKey sets the key that is sent as "Authorization: Bearer <key>".
// Surrounding whitespace (a trailing newline from a secrets file) is removed.
func WithAPIKey(key string) Option {
	return func(c *Client) error {
		c.creds = &credentials{key: strings.TrimSpace(key)}
		return nil
	}
}

// WithHTTPClient replaces the HTTP client. A Timeout on it also cuts off
// long sync runs and streams, so prefer context deadlines per call.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc != nil {
			c.httpClient = hc
		}
		return nil
	}
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option {
	return func(c *Client) error {
		if ua != "" {
			c.userAgent = ua
		}
		return nil
	}
}

// WithLogger sets the logger for request and retry records. Records carry
// the method, path, status and attempt, never headers or bodies. By default
// nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) error {
		if l != nil {
			c.logger = l
		}
		return nil
	}
}

// WithRetry replaces [DefaultRetryPolicy]. Use RetryPolicy{MaxAttempts: 1}
// to turn retries off, for example when Temporal already retries activities.
func WithRetry(p RetryPolicy) Option {
	return func(c *Client) error {
		c.retry = p.normalized()
		return nil
	}
}

// RetryPolicy controls how the executor repeats idempotent requests.
type RetryPolicy struct {
	// MaxAttempts counts the first try. A value below 1 means 1.
	MaxAttempts int
	// InitialBackoff is the cap of the first jittered wait. The cap doubles
	// on every attempt up to MaxBackoff.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
}

// DefaultRetryPolicy returns 4 attempts with backoff capped from 200ms up to 5s.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 4, InitialBackoff: 200 * time.Millisecond, MaxBackoff: 5 * time.Second}
}

func (p RetryPolicy) normalized() RetryPolicy {
	if p.MaxAttempts < 1 {
		p.MaxAttempts = 1
	}
	if p.InitialBackoff < 0 {
		p.InitialBackoff = 0
	}
	if p.MaxBackoff < p.InitialBackoff {
		p.MaxBackoff = p.InitialBackoff
	}
	return p
}

// backoff uses "full jitter": a uniform wait in [0, cap). Clients that fail
// together then spread out instead of retrying in lockstep.
func (p RetryPolicy) backoff(attempt int) time.Duration {
	limit := p.InitialBackoff
	for i := 1; i < attempt && limit < p.MaxBackoff; i++ {
		limit *= 2
	}
	limit = min(limit, p.MaxBackoff)
	if limit <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(limit)))
}

type idempotentKey struct{}

// WithIdempotent marks requests made with the returned context as safe to
// repeat, which lets the executor retry a non-GET request (a cancel, an
// update with absolute values). Run creation ignores the mark.
func WithIdempotent(ctx context.Context) context.Context {
	return context.WithValue(ctx, idempotentKey{}, true)
}

func isIdempotent(ctx context.Context) bool {
	v, _ := ctx.Value(idempotentKey{}).(bool)
	return v
}

// NewClient builds a client for [DefaultBaseURL] unless an option says
// otherwise. It fails only on invalid options, such as a malformed base URL.
func NewClient(opts ...Option) (*Client, error) {
	c := &Client{
		httpClient: &http.Client{},
		userAgent:  defaultUserAgent,
		logger:     slog.New(slog.DiscardHandler),
		retry:      DefaultRetryPolicy(),
		creds:      &credentials{},
		sleep:      sleepContext,
	}
	if err := WithBaseURL(DefaultBaseURL)(c); err != nil {
		return nil, err
	}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	c.Runs = &RunsService{client: c}
	c.Deployments = &DeploymentsService{client: c}
	c.Machines = &MachinesService{client: c}
	c.Workflows = &WorkflowsService{client: c}
	c.Files = &FilesService{client: c}
	c.Assets = &AssetsService{client: c}
	c.Streams = &StreamsService{client: c}
	return c, nil
}

func sleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// NewRequest builds a request for a path relative to the base URL, such as
// "/v2/clickhouse-run-logs/<id>?x=1". A non-nil body is encoded as JSON,
// unless it is an io.Reader, which is sent as-is. Absolute URLs are
// rejected so the API key cannot be sent to another host.
func (c *Client) NewRequest(ctx context.Context, method, path string, body any) (*http.Request, error) {
	u, err := c.resolve(path)
	if err != nil {
		return nil, err
	}
	var (
		r           io.Reader
		contentType string
	)
	switch b := body.(type) {
	case nil:
	case io.Reader:
		r = b
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("comfy: encoding %s %s request: %w", method, u.Path, err)
		}
		r = bytes.NewReader(buf) // lets http set GetBody, so retries can replay it
		contentType = "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), r)
	if err != nil {
		return nil, fmt.Errorf("comfy: building request: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if c.creds.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.creds.key)
	}
	return req, nil
}

func (c *Client) resolve(path string) (*url.URL, error) {
	ref, err := url.Parse(path)
	if err != nil {
		return nil, fmt.Errorf("%w: path %q: %v", ErrInvalidArgument, path, err)
	}
	if ref.IsAbs() || ref.Host != "" || ref.User != nil {
		return nil, fmt.Errorf("%w: path %q must be relative to the base URL", ErrInvalidArgument, path)
	}
	u := *c.base
	u.RawPath = ""
	u.Path = ""
	// Joining escaped forms keeps %2F inside an id from becoming a separator.
	joined := c.base.EscapedPath() + "/" + strings.TrimPrefix(ref.EscapedPath(), "/")
	p, err := url.PathUnescape(joined)
	if err != nil {
		return nil, fmt.Errorf("%w: path %q: %v", ErrInvalidArgument, path, err)
	}
	u.Path = p
	if p != joined {
		u.RawPath = joined
	}
	u.RawQuery = ref.RawQuery
	return &u, nil
}

// Do sends req, built by [Client.NewRequest], and decodes a 2xx JSON body
// into v (if v is non-nil). The response body is already closed when Do
// returns. ctx replaces the request's context. Do retries under the same
// rules as the typed methods.
func (c *Client) Do(ctx context.Context, req *http.Request, v any) (*http.Response, error) {
	return c.send(ctx, req.WithContext(ctx), callOpts{}, jsonHandler(v))
}

// callOpts carries per-route knowledge that the generic executor needs.
type callOpts struct {
	// noRetry is set for run creation. The server has no idempotency key,
	// so a repeated POST can create a second GPU run.
	noRetry bool
	// idempotent lets a non-GET route be retried without the caller
	// marking the context, for routes that are safe to repeat by nature.
	idempotent bool
	quirk      quirk
	accept     string
}

// call is what the typed methods use: build, send, decode.
func (c *Client) call(ctx context.Context, method, path string, query url.Values, in, out any, o callOpts) error {
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	req, err := c.NewRequest(ctx, method, path, in)
	if err != nil {
		return err
	}
	_, err = c.send(ctx, req, o, jsonHandler(out))
	return err
}

// responseHandler consumes a 2xx body inside the retry loop. A read error
// there is a transport failure and may be retried like any other.
type responseHandler func(resp *http.Response, method, path string) error

func jsonHandler(v any) responseHandler {
	return func(resp *http.Response, method, path string) error {
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
		if err != nil {
			return &transportError{method: method, path: path, err: err}
		}
		if v == nil || len(bytes.TrimSpace(data)) == 0 {
			return nil
		}
		if err := json.Unmarshal(data, v); err != nil {
			return fmt.Errorf("%w: %s %s: %v", ErrUnexpectedResponse, method, path, err)
		}
		return nil
	}
}

// send is the one place where requests are retried. With a nil handler,
// the open 2xx response is returned for the caller to stream; otherwise
// the handler consumes it and the body is closed.
func (c *Client) send(ctx context.Context, req *http.Request, o callOpts, handle responseHandler) (*http.Response, error) {
	method, path := req.Method, c.redact(req.URL.EscapedPath())
	if o.accept != "" {
		req.Header.Set("Accept", o.accept)
	}
	safe := req.Method == http.MethodGet || req.Method == http.MethodHead || o.idempotent || isIdempotent(ctx)
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	attempts := 1
	if safe && replayable && !o.noRetry {
		attempts = c.retry.MaxAttempts
	}

	for attempt := 1; ; attempt++ {
		r := req
		if attempt > 1 {
			r = req.Clone(ctx)
			if req.GetBody != nil {
				body, err := req.GetBody()
				if err != nil {
					return nil, fmt.Errorf("comfy: replaying request body: %w", err)
				}
				r.Body = body
			}
		}
		start := time.Now()
		resp, err := c.httpClient.Do(r)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, ctxErr
			}
			err = c.transportErr(method, path, err)
		} else {
			c.logger.LogAttrs(ctx, slog.LevelDebug, "comfy request",
				slog.String("method", method), slog.String("path", path),
				slog.Int("status", resp.StatusCode), slog.Int("attempt", attempt),
				slog.Duration("elapsed", time.Since(start)))
			if resp.StatusCode >= 200 && resp.StatusCode < 300 {
				if handle == nil {
					return resp, nil
				}
				err = handle(resp, method, path)
				resp.Body.Close()
				if err == nil {
					return resp, nil
				}
				if ctxErr := ctx.Err(); ctxErr != nil {
					return nil, ctxErr
				}
				var te *transportError
				if !errors.As(err, &te) {
					return nil, err
				}
				err = c.transportErr(method, path, te.err)
			} else {
				err = c.newAPIError(resp, method, path, o.quirk)
			}
		}

		if attempt >= attempts || !shouldRetry(err) {
			return nil, err
		}
		wait := c.retry.backoff(attempt)
		var apiErr *APIError
		if errors.As(err, &apiErr) && apiErr.hasRetryAfter {
			if apiErr.RetryAfter > maxRetryAfter {
				return nil, err
			}
			wait = apiErr.RetryAfter
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return nil, err
		}
		c.logger.LogAttrs(ctx, slog.LevelInfo, "comfy retrying request",
			slog.String("method", method), slog.String("path", path),
			slog.Int("attempt", attempt), slog.Duration("wait", wait),
			slog.String("error", err.Error()))
		if err := c.sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// shouldRetry differs from IsRetryable in one way. A 500 that may hide a
// not-found is retried anyway: it is just as likely to be a real hiccup,
// and a few short retries are cheap next to failing a workflow on a blip.
// Only the final error is reported as not-found.
func shouldRetry(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.NotFoundQuirk && apiErr.ambiguousQuirk {
		return true
	}
	return IsRetryable(err)
}

func (c *Client) transportErr(method, path string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // url.Error repeats the full URL; method and path are enough
	}
	return &transportError{method: method, path: path, err: err, msg: c.redact(err.Error())}
}

// redact removes the API key, and a JWT's signature part on its own, from
// text that came from the server or the network.
func (c *Client) redact(s string) string {
	key := c.creds.key
	if len(key) < 4 || s == "" {
		return s
	}
	s = strings.ReplaceAll(s, key, redacted)
	if i := strings.LastIndexByte(key, '.'); i >= 0 && len(key)-i > 16 {
		s = strings.ReplaceAll(s, key[i+1:], redacted)
	}
	return s
}

func (c *Client) redactBytes(b []byte) []byte {
	if len(c.creds.key) < 4 || len(b) == 0 {
		return b
	}
	return []byte(c.redact(string(b)))
}

// escapeID makes an identifier safe to place in a path. Empty and dot
// segments are refused: "/run/" or "/run/.." would reach another route.
func escapeID(name, id string) (string, error) {
	if strings.TrimSpace(id) == "" || id == "." || id == ".." {
		return "", fmt.Errorf("%w: %s is empty or invalid", ErrInvalidArgument, name)
	}
	return url.PathEscape(id), nil
}

// decodeList accepts a bare array or an envelope around one. Some list
// routes answer {data:[…], meta:{…}} even though they are documented as
// arrays.
func decodeList[T any](data []byte) ([]T, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil, nil
	}
	if trimmed[0] == '[' {
		var out []T
		err := json.Unmarshal(trimmed, &out)
		return out, err
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &env); err != nil {
		return nil, err
	}
	for _, k := range []string{"data", "items", "runs", "results"} {
		if raw, ok := env[k]; ok {
			var out []T
			err := json.Unmarshal(raw, &out)
			return out, err
		}
	}
	return nil, errors.New("expected a JSON array or an object with a data array")
}

type listOf[T any] []T

func (l *listOf[T]) UnmarshalJSON(data []byte) error {
	items, err := decodeList[T](data)
	*l = items
	return err
}

func getList[T any](ctx context.Context, c *Client, path string, query url.Values) ([]T, error) {
	var out listOf[T]
	if err := c.call(ctx, http.MethodGet, path, query, nil, &out, callOpts{}); err != nil {
		return nil, err
	}
	return out, nil
}

func doOne[T any](ctx context.Context, c *Client, method, path string, query url.Values, in any, o callOpts) (*T, error) {
	out := new(T)
	if err := c.call(ctx, method, path, query, in, out, o); err != nil {
		return nil, err
	}
	return out, nil
}

// ListOptions pages through list routes. Zero values are left out, so the
// server's defaults apply.
type ListOptions struct {
	Limit  int
	Offset int
}

func (o *ListOptions) values(limitKey string) url.Values {
	q := url.Values{}
	if o == nil {
		return q
	}
	setInt(q, limitKey, o.Limit)
	setInt(q, "offset", o.Offset)
	return q
}

func setInt(q url.Values, key string, v int) {
	if v != 0 {
		q.Set(key, fmt.Sprint(v))
	}
}

func setStr(q url.Values, key, v string) {
	if v != "" {
		q.Set(key, v)
	}
}

func setBoolPtr(q url.Values, key string, v *bool) {
	if v != nil {
		q.Set(key, fmt.Sprint(*v))
	}
}
