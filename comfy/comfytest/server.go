package comfytest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// DefaultAPIKey is the API key accepted when Options.APIKey is empty.
const DefaultAPIKey = "sim-key"

// Options configures a simulator. The zero value is usable.
type Options struct {
	// APIKey is the Bearer token accepted for the demo user (default "sim-key").
	// NoCreditsAPIKey is always accepted too.
	APIKey string
	// Seed seeds the random source used for fault decisions and jitter.
	Seed int64
	// Faults are the initial fault settings.
	Faults Faults
	// Timing is the default cold start and run duration of every deployment
	// (default 1s and 3s). Deployments may override it (see SetTiming).
	Timing Timing
	// OutputURLTTL is how long signed file URLs stay valid (default 1h).
	// Expiry has one-second resolution: URLs carry exp=<unix seconds>.
	OutputURLTTL time.Duration
	// WebhookBackoff is the wait before the second delivery attempt (default
	// 500ms); the third waits twice as long.
	WebhookBackoff time.Duration
	// WebhookTimeout bounds each delivery attempt (default 20s).
	WebhookTimeout time.Duration
	// Deployments overrides settings of seeded deployments by id.
	Deployments map[string]DeploymentSettings
	// PublicURL is the origin (scheme://host[:port], no /api) used in
	// generated file URLs. By default the request's Host is used.
	PublicURL string
	// Logf, if set, receives one line per notable event.
	Logf func(format string, args ...any)
}

// Timing is the duration of a run's phases. The cold start is split evenly
// between not-started and queued; the run phase covers started→success.
type Timing struct {
	ColdStart time.Duration
	Run       time.Duration
}

type timingJSON struct {
	ColdStart Duration `json:"cold_start"`
	Run       Duration `json:"run"`
}

// MarshalJSON encodes durations as Go duration strings.
func (t Timing) MarshalJSON() ([]byte, error) {
	return json.Marshal(timingJSON{Duration(t.ColdStart), Duration(t.Run)})
}

// UnmarshalJSON accepts duration strings ("1s") or numbers of seconds.
func (t *Timing) UnmarshalJSON(b []byte) error {
	var j timingJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*t = Timing{time.Duration(j.ColdStart), time.Duration(j.Run)}
	return nil
}

// DeploymentSettings are the per-deployment knobs an operator can change.
// Zero fields are left unchanged.
type DeploymentSettings struct {
	ConcurrencyLimit int           // runs beyond it wait in not-started
	RunTimeout       time.Duration // running longer than this ends in "timeout"
}

type deploymentSettingsJSON struct {
	ConcurrencyLimit int      `json:"concurrency_limit,omitempty"`
	RunTimeout       Duration `json:"run_timeout,omitempty"`
}

// MarshalJSON encodes RunTimeout as a Go duration string.
func (d DeploymentSettings) MarshalJSON() ([]byte, error) {
	return json.Marshal(deploymentSettingsJSON{d.ConcurrencyLimit, Duration(d.RunTimeout)})
}

// UnmarshalJSON accepts run_timeout as "2s" or a number of seconds.
func (d *DeploymentSettings) UnmarshalJSON(b []byte) error {
	var j deploymentSettingsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*d = DeploymentSettings{j.ConcurrencyLimit, time.Duration(j.RunTimeout)}
	return nil
}

// Faults are injected failures. Rates are probabilities in [0,1].
type Faults struct {
	// ErrorRate maps a route pattern ("GET /api/run/{run_id}", as registered,
	// or the same without the method) or "*" to the probability of a 5xx
	// (a 500/502/503 mix, 503 sometimes with Retry-After: 1) returned before
	// the handler runs.
	ErrorRate map[string]float64
	// Latency is added to every /api request.
	Latency time.Duration
	// ResetRate is the probability that an /api connection is closed
	// without any response.
	ResetRate float64
	// AmbiguousSubmitRate is the probability that a run is created and then
	// its response is lost: the connection is closed, or, when
	// AmbiguousDelay > 0, the response is held back for AmbiguousDelay.
	AmbiguousSubmitRate float64
	AmbiguousDelay      time.Duration
	// Per-run fates, decided at creation.
	RunFailureRate  float64 // fails mid-run (execution_error)
	RunTimeoutRate  float64 // stalls mid-run, then ends in "timeout" when the run would have finished
	NeverFinishRate float64 // stalls in "running" forever
	// Webhook delivery faults.
	WebhookDuplicateRate float64       // a delivery is sent twice; a terminal status is re-sent late
	WebhookReorderRate   float64       // a delivery is held back by WebhookReorderDelay
	WebhookReorderDelay  time.Duration // default 300ms
	WebhookDropRate      float64       // a delivery is silently never sent
}

type faultsJSON struct {
	ErrorRate            map[string]float64 `json:"error_rate"`
	Latency              Duration           `json:"latency"`
	ResetRate            float64            `json:"reset_rate"`
	AmbiguousSubmitRate  float64            `json:"ambiguous_submit_rate"`
	AmbiguousDelay       Duration           `json:"ambiguous_delay"`
	RunFailureRate       float64            `json:"run_failure_rate"`
	RunTimeoutRate       float64            `json:"run_timeout_rate"`
	NeverFinishRate      float64            `json:"never_finish_rate"`
	WebhookDuplicateRate float64            `json:"webhook_duplicate_rate"`
	WebhookReorderRate   float64            `json:"webhook_reorder_rate"`
	WebhookReorderDelay  Duration           `json:"webhook_reorder_delay"`
	WebhookDropRate      float64            `json:"webhook_drop_rate"`
}

// MarshalJSON encodes durations as Go duration strings ("150ms").
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsJSON{f.ErrorRate, Duration(f.Latency), f.ResetRate, f.AmbiguousSubmitRate,
		Duration(f.AmbiguousDelay), f.RunFailureRate, f.RunTimeoutRate, f.NeverFinishRate,
		f.WebhookDuplicateRate, f.WebhookReorderRate, Duration(f.WebhookReorderDelay), f.WebhookDropRate})
}

// UnmarshalJSON accepts durations as strings ("150ms") or numbers of seconds.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var j faultsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*f = Faults{j.ErrorRate, time.Duration(j.Latency), j.ResetRate, j.AmbiguousSubmitRate, time.Duration(j.AmbiguousDelay),
		j.RunFailureRate, j.RunTimeoutRate, j.NeverFinishRate, j.WebhookDuplicateRate, j.WebhookReorderRate,
		time.Duration(j.WebhookReorderDelay), j.WebhookDropRate}
	return nil
}

func (f Faults) clone() Faults {
	if f.ErrorRate != nil {
		m := make(map[string]float64, len(f.ErrorRate))
		for k, v := range f.ErrorRate {
			m[k] = v
		}
		f.ErrorRate = m
	}
	return f
}

func (f Faults) errorRate(pattern string) float64 {
	if v, ok := f.ErrorRate[pattern]; ok {
		return v
	}
	if _, path, ok := strings.Cut(pattern, " "); ok {
		if v, ok := f.ErrorRate[path]; ok {
			return v
		}
	}
	return f.ErrorRate["*"]
}

// Counters is a snapshot of what the simulator has seen.
type Counters struct {
	// Calls maps a route pattern ("POST /api/run/deployment/queue") to
	// response status code to count. Status 0 means the connection was
	// closed without a response (reset or dropped ambiguous submit).
	Calls map[string]map[int]int `json:"calls"`
	// RunsByToken counts created runs per correlation token (inputs["__cid"]
	// or the cid query parameter of the webhook URL).
	RunsByToken       map[string]int `json:"runs_by_token"`
	RunsCreated       int            `json:"runs_created"`
	Cancels           int            `json:"cancels"`            // successful cancel calls
	WebhookDeliveries int            `json:"webhook_deliveries"` // deliveries answered with 2xx
	WebhookAttempts   int            `json:"webhook_attempts"`   // HTTP attempts, including retries
	WebhookFailures   int            `json:"webhook_failures"`   // deliveries abandoned after 3 attempts
}

func (c Counters) clone() Counters {
	out := Counters{Calls: map[string]map[int]int{}, RunsByToken: map[string]int{}, RunsCreated: c.RunsCreated,
		Cancels: c.Cancels, WebhookDeliveries: c.WebhookDeliveries, WebhookAttempts: c.WebhookAttempts, WebhookFailures: c.WebhookFailures}
	for k, m := range c.Calls {
		out.Calls[k] = map[int]int{}
		for code, n := range m {
			out.Calls[k][code] = n
		}
	}
	for k, v := range c.RunsByToken {
		out.RunsByToken[k] = v
	}
	return out
}

// Server is a ComfyDeploy API simulator.
type Server struct {
	opts    Options
	hs      *httptest.Server
	mux     *http.ServeMux
	signKey []byte
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
	hooks   *http.Client

	// callsMu guards counters.Calls alone. Calls are counted when a handler
	// writes its status, and many handlers write while holding mu. Lock
	// order: mu, then callsMu.
	callsMu sync.Mutex

	mu                 sync.Mutex
	closed             bool // set by Close; no goroutines start afterwards
	rng                *mrand.Rand
	faults             Faults
	counters           Counters
	machines           map[string]*machine
	machineOrder       []string
	machineVersions    map[string][]*machineVersion
	workflows          map[string]*workflow
	workflowOrder      []string
	versions           map[string]*workflowVersion
	versionsByWorkflow map[string][]*workflowVersion
	deployments        map[string]*deployment
	deploymentOrder    []string
	runs               map[string]*run
	runList            []*run
	slots              map[string]*slotQueue
	progressSubs       map[chan progressMsg]struct{}
	assets             map[string]*asset
	blobs              map[string]*blob
	models             map[string]*modelFile
}

type principal struct {
	userID, orgID string
	credits       bool
}

type ctxKey struct{}

// New returns an unstarted simulator; serve [Server.Handler] yourself.
// Call Close to stop background goroutines.
func New(opts Options) *Server {
	if opts.APIKey == "" {
		opts.APIKey = DefaultAPIKey
	}
	if opts.Timing.ColdStart == 0 && opts.Timing.Run == 0 {
		opts.Timing = Timing{ColdStart: time.Second, Run: 3 * time.Second}
	}
	if opts.OutputURLTTL <= 0 {
		opts.OutputURLTTL = time.Hour
	}
	if opts.WebhookBackoff <= 0 {
		opts.WebhookBackoff = 500 * time.Millisecond
	}
	if opts.WebhookTimeout <= 0 {
		opts.WebhookTimeout = 20 * time.Second
	}
	opts.PublicURL = strings.TrimRight(opts.PublicURL, "/")
	s := &Server{
		opts:               opts,
		mux:                http.NewServeMux(),
		signKey:            make([]byte, 32),
		rng:                mrand.New(mrand.NewPCG(uint64(opts.Seed), 0x636f6d6679)),
		faults:             opts.Faults.clone(),
		counters:           Counters{}.clone(),
		machines:           map[string]*machine{},
		machineVersions:    map[string][]*machineVersion{},
		workflows:          map[string]*workflow{},
		versions:           map[string]*workflowVersion{},
		versionsByWorkflow: map[string][]*workflowVersion{},
		deployments:        map[string]*deployment{},
		runs:               map[string]*run{},
		slots:              map[string]*slotQueue{},
		progressSubs:       map[chan progressMsg]struct{}{},
		assets:             map[string]*asset{},
		blobs:              map[string]*blob{},
		models:             map[string]*modelFile{},
	}
	_, _ = rand.Read(s.signKey)
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.hooks = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}}
	s.seed()
	for id, ds := range opts.Deployments {
		_ = s.ConfigureDeployment(id, ds)
	}
	s.routes()
	return s
}

// NewServer starts a simulator on a random 127.0.0.1 port.
func NewServer(opts Options) *Server {
	s := New(opts)
	s.hs = httptest.NewServer(s.mux)
	return s
}

// Handler serves the whole simulator: /api, /files, /admin and /healthz.
func (s *Server) Handler() http.Handler { return s.mux }

// URL is the API base URL including "/api", e.g. http://127.0.0.1:1234/api.
// For a simulator from New it is PublicURL + "/api" (empty when unset).
func (s *Server) URL() string {
	if s.hs != nil {
		return s.hs.URL + "/api"
	}
	if s.opts.PublicURL == "" {
		return ""
	}
	return s.opts.PublicURL + "/api"
}

// APIKey returns the accepted Bearer token.
func (s *Server) APIKey() string { return s.opts.APIKey }

// Close stops the HTTP server (if started), all run and webhook goroutines,
// and open streams.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true // createRun and webhookLocked check it before wg.Add
	s.mu.Unlock()
	s.stop()
	if s.hs != nil {
		s.hs.CloseClientConnections()
		s.hs.Close()
	}
	s.wg.Wait()
	s.hooks.CloseIdleConnections()
}

// SetFaults replaces the fault settings.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	s.faults = f.clone()
	s.mu.Unlock()
}

// Faults returns the current fault settings.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults.clone()
}

// SetTiming sets the cold start and run duration of one deployment's future
// runs. Unknown deployment ids are ignored.
func (s *Server) SetTiming(deploymentID string, t Timing) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.deployments[deploymentID]; d != nil {
		d.timing = &t
	}
}

// ConfigureDeployment changes a deployment's concurrency limit and/or run
// timeout. Zero fields are left unchanged. Waiting runs are admitted at once
// if the limit grows.
func (s *Server) ConfigureDeployment(id string, ds DeploymentSettings) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.deployments[id]
	if d == nil {
		return fmt.Errorf("comfytest: unknown deployment %q", id)
	}
	if ds.ConcurrencyLimit > 0 {
		d.ConcurrencyLimit = ds.ConcurrencyLimit
	}
	if ds.RunTimeout > 0 {
		d.RunTimeout = ds.RunTimeout
	}
	d.Updated = time.Now()
	s.pumpLocked(d.ID)
	return nil
}

// Counters returns a snapshot of the counters.
func (s *Server) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.callsMu.Lock()
	defer s.callsMu.Unlock()
	return s.counters.clone()
}

// Reset zeroes the counters. Runs and other state are kept.
func (s *Server) Reset() {
	s.mu.Lock()
	s.callsMu.Lock()
	s.counters = Counters{}.clone()
	s.callsMu.Unlock()
	s.mu.Unlock()
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// chance draws from the seeded random source.
func (s *Server) chance(p float64) bool {
	if p <= 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.Float64() < p
}

func (s *Server) chanceLocked(p float64) bool { return p > 0 && s.rng.Float64() < p }

// origin is the scheme://host used in URLs handed to the client.
func (s *Server) origin(r *http.Request) string {
	if s.opts.PublicURL != "" {
		return s.opts.PublicURL
	}
	return "http://" + r.Host
}

// ---- routing ---------------------------------------------------------------------

func (s *Server) routes() {
	api := func(pattern string, h http.HandlerFunc) { s.mux.Handle(pattern, s.apiHandler(pattern, h, true)) }

	// Runs (runs.go, streams.go).
	for _, kind := range []string{"deployment", "workflow"} {
		for _, mode := range []string{"queue", "sync", "stream"} {
			api("POST /api/run/"+kind+"/"+mode, s.createRunHandler(kind, mode))
		}
	}
	api("POST /api/run", s.createRunHandler("legacy", "queue"))
	for _, mode := range []string{"queue", "sync", "stream"} {
		api("POST /api/run/"+mode, s.createRunHandler("legacy", mode))
	}
	api("GET /api/run/{run_id}", s.handleGetRun)
	api("GET /api/run", s.handleGetRunAlias)
	api("POST /api/run/{run_id}/cancel", s.handleCancel)
	api("GET /api/runs/count", s.handleRunsCount)
	api("GET /api/workflow/{workflow_id}/runs", s.handleWorkflowRuns)
	api("GET /api/v2/workflow/{workflow_id}/runs", s.handleWorkflowRunsV2)
	api("GET /api/deployment/{deployment_id}/runs", s.handleDeploymentRuns)

	// Catalogue (catalog.go).
	api("GET /api/deployments", s.handleListDeployments)
	api("GET /api/deployment/{deployment_id}", s.handleGetDeployment)
	api("PATCH /api/deployment/{deployment_id}", s.handlePatchDeployment)
	api("POST /api/deployment", s.handleCreateDeployment)
	api("POST /api/deployment/{deployment_id}/deactivate", s.handleDeactivateDeployment)
	api("DELETE /api/deployment/{deployment_id}", s.handleDeleteDeployment)
	api("GET /api/machines", s.handleListMachines)
	api("GET /api/machine/{machine_id}", s.handleGetMachine)
	api("GET /api/machine/{machine_id}/check-custom-nodes", s.handleCheckCustomNodes)
	api("GET /api/machine/{machine_id}/events", s.handleMachineEvents)
	api("GET /api/machine/serverless/{machine_id}/versions", s.handleMachineVersions)
	api("GET /api/machine/serverless/{machine_id}/versions/all", s.handleMachineVersions)
	api("GET /api/machine/serverless/{machine_id}/versions/{version_id}", s.handleMachineVersion)
	api("GET /api/workflows", s.handleListWorkflows)
	api("GET /api/workflow/{workflow_id}", s.handleGetWorkflow)
	api("GET /api/workflow/{workflow_id}/versions", s.handleWorkflowVersions)
	api("GET /api/workflow/{workflow_id}/version/{version}", s.handleWorkflowVersionByNumber)
	api("POST /api/workflow/{workflow_id}/version", s.handleCreateWorkflowVersion)
	api("POST /api/workflow", s.handleCreateWorkflow)
	api("GET /api/workflow-version/{version_id}", s.handleWorkflowVersionByID)

	// Streams (streams.go).
	api("GET /api/v2/stream-progress", s.handleStreamProgress)
	api("GET /api/v2/stream-logs", s.handleStreamLogs)
	api("GET /api/v2/clickhouse-run-logs/{run_id}", s.handleRunLogs)

	// Files and assets (assets.go).
	api("POST /api/file/upload", s.handleFileUpload)
	api("POST /api/file/{file_id}/rename", s.handleModelRename)
	api("GET /api/assets", s.handleListAssets)
	api("POST /api/assets/folder", s.handleCreateFolder)
	api("POST /api/assets/upload", s.handleAssetUpload)
	api("GET /api/assets/presigned-url", s.handlePresignedURL)
	api("POST /api/assets/register", s.handleRegisterAsset)
	api("POST /api/assets/add", s.handleAddAsset)
	api("GET /api/assets/search", s.handleSearchAssets)
	api("GET /api/assets/{asset_id}", s.handleGetAsset)
	api("PATCH /api/assets/{asset_id}", s.handleMoveAsset)
	api("DELETE /api/assets/{asset_id}", s.handleDeleteAsset)

	api("/api/", func(w http.ResponseWriter, r *http.Request) { writeDetail(w, http.StatusNotFound, "Not Found") })

	// Signed file downloads and presigned uploads (outputs.go, assets.go): no Bearer.
	files := func(pattern string, h http.HandlerFunc) { s.mux.Handle(pattern, s.apiHandler(pattern, h, false)) }
	files("GET /files/{run_id}/{name}", s.handleRunFile)
	files("GET /files/inputs/{name}", s.handleInputFile)
	files("GET /files/assets/{asset_id}/{name}", s.handleAssetFile)
	files("PUT /files/put/{file_id}/{name}", s.handlePresignedPut)

	s.adminRoutes()
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { writeDetail(w, http.StatusNotFound, "Not Found") })
}

// apiHandler wraps a route with call counting, fault injection and
// (optionally) authentication.
func (s *Server) apiHandler(pattern string, h http.HandlerFunc, auth bool) http.Handler {
	isAPI := strings.Contains(pattern, "/api")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w, count: func(code int) { s.countCall(pattern, code) }}
		defer rec.counted() // for handlers that return without writing
		if isAPI {
			f := s.Faults()
			if f.Latency > 0 {
				select {
				case <-time.After(f.Latency):
				case <-r.Context().Done():
					rec.dropped = true
					return
				case <-s.ctx.Done():
				}
			}
			if s.chance(f.ResetRate) {
				s.logf("fault: reset %s %s", r.Method, r.URL.Path)
				rec.drop()
				return
			}
			if s.chance(f.errorRate(pattern)) {
				s.writeInjectedError(rec, r)
				return
			}
		}
		if auth {
			p, ok := s.authenticate(r)
			if !ok {
				writeDetail(rec, http.StatusUnauthorized, "Invalid or missing token")
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, p))
		}
		h(rec, r)
	})
}

func (s *Server) countCall(pattern string, code int) {
	s.callsMu.Lock()
	defer s.callsMu.Unlock()
	m := s.counters.Calls[pattern]
	if m == nil {
		m = map[int]int{}
		s.counters.Calls[pattern] = m
	}
	m[code]++
}

// authenticate checks the token sources in the service's order: the
// __session cookie, the cd_token query parameter, the Bearer header and the
// x-api-key header.
func (s *Server) authenticate(r *http.Request) (principal, bool) {
	var token string
	if c, err := r.Cookie("__session"); err == nil && c.Value != "" {
		token = c.Value
	} else if t := r.URL.Query().Get("cd_token"); t != "" {
		token = t
	} else if h := r.Header.Get("Authorization"); h != "" {
		scheme, t, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return principal{}, false
		}
		token = strings.TrimSpace(t)
	} else {
		token = r.Header.Get("x-api-key")
	}
	switch token {
	case "":
		return principal{}, false
	case s.opts.APIKey:
		return principal{userID: SeedUserID, orgID: SeedOrgID, credits: true}, true
	case NoCreditsAPIKey:
		return principal{userID: "user_nocredits", orgID: SeedOrgID}, true
	}
	return principal{}, false
}

func caller(r *http.Request) principal {
	p, _ := r.Context().Value(ctxKey{}).(principal)
	return p
}

// writeInjectedError answers like an unhealthy backend or proxy would.
func (s *Server) writeInjectedError(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := s.rng.IntN(4)
	s.mu.Unlock()
	s.logf("fault: injected 5xx (%d) on %s %s", n, r.Method, r.URL.Path)
	switch n {
	case 0:
		writeDetail(w, http.StatusInternalServerError, "Internal server error")
	case 1:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"))
	case 2:
		w.Header().Set("Retry-After", "1")
		writeDetail(w, http.StatusServiceUnavailable, "Service Unavailable")
	default:
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("upstream connect error or disconnect/reset before headers. reset reason: connection termination"))
	}
}

// recorder captures the status code and supports streaming and hijacking.
// It counts the call as soon as the outcome is decided, before anything
// reaches the client: a caller that has just received its answer (or its
// reset) must already see the call in Counters.
type recorder struct {
	http.ResponseWriter
	status  int
	dropped bool
	count   func(code int)
	done    bool
}

// counted records the call once, with the outcome known so far.
func (r *recorder) counted() {
	if !r.done {
		r.done = true
		r.count(r.code())
	}
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
		r.counted()
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
		r.counted()
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if r.status == 0 {
		r.status = http.StatusOK
		r.counted()
	}
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) code() int {
	if r.dropped {
		return 0
	}
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

// drop closes the connection without writing a response.
func (r *recorder) drop() {
	r.dropped = true
	r.counted()
	hj, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // RST rather than FIN: a real "connection reset"
	}
	_ = conn.Close()
}

// Hijack lets handlers take over the connection.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("hijack not supported")
	}
	return hj.Hijack()
}
