// Package wakeup turns ComfyDeploy's webhooks into wake-ups for the waits
// on runs. ComfyDeploy signs nothing and delivers each webhook up to three
// times, duplicated and out of order, so a webhook is only ever a hint: it
// makes the wait poll GET /run/{id} now instead of at its next interval,
// and the poll stays the source of truth. Without webhooks, or when one is
// lost, polling alone finishes every run.
package wakeup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/durable-comfy/durable-comfy/comfy"
)

// DefaultTokenLifetime bounds how long a signed webhook URL is accepted:
// longer than ComfyDeploy's 24-hour run limit plus queueing and its
// delivery retries.
const DefaultTokenLifetime = 7 * 24 * time.Hour

// MinSecretLength is the shortest webhook secret New accepts.
const MinSecretLength = 16

// elsewhereLimit bounds the Elsewhere calls in flight; beyond it a webhook
// is left to polling rather than queued.
const elsewhereLimit = 16

// elsewhereTimeout bounds one Elsewhere call.
const elsewhereTimeout = 30 * time.Second

// maxBody bounds a webhook body: a run.updated carries every output's
// metadata, never the files.
const maxBody = 4 << 20

// Hub signs the webhook URL of each submitted run and wakes the waits of
// runs that ComfyDeploy calls back about. It is safe for concurrent use.
type Hub struct {
	url    string
	signer comfy.WebhookSigner
	dedupe *comfy.WebhookDeduper
	logger *slog.Logger
	now    func() time.Time
	// TokenLifetime is how long a signed URL is accepted.
	TokenLifetime time.Duration
	// Elsewhere, when set, is called with the URL's correlation token when
	// a run ended that no wait on this worker watches: with several workers
	// behind one webhook URL, the wait usually runs on another one.
	// activities.WaitFinisher.Finish fits. Set it before serving.
	Elsewhere func(ctx context.Context, correlationToken, runID string) (bool, error)

	slots chan struct{}

	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{}
}

// New returns a Hub whose URLs point at publicURL, the address at which
// ComfyDeploy reaches ServeHTTP, signed with secret. Every worker that can
// receive these webhooks needs the same secret.
func New(publicURL, secret string, logger *slog.Logger) (*Hub, error) {
	u, err := url.Parse(publicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("webhook URL %q must be an absolute http(s) URL at which ComfyDeploy reaches this worker", publicURL)
	}
	if len(secret) < MinSecretLength {
		return nil, fmt.Errorf("the webhook secret must be at least %d characters (for example `openssl rand -hex 32`)", MinSecretLength)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Hub{
		url:           publicURL,
		signer:        comfy.WebhookSigner{Secret: []byte(secret)},
		dedupe:        comfy.NewWebhookDeduper(comfy.DefaultWebhookDedupeCapacity),
		logger:        logger,
		now:           time.Now,
		TokenLifetime: DefaultTokenLifetime,
		waiters:       map[string]map[chan struct{}]struct{}{},
		slots:         make(chan struct{}, elsewhereLimit),
	}, nil
}

// URL returns the signed webhook URL for one submission. Its subject is the
// submission's correlation token, which ComfyDeploy then also stores with
// the run.
func (h *Hub) URL(correlationToken string) (string, error) {
	return h.signer.SignURL(h.url, correlationToken, h.now().Add(h.TokenLifetime))
}

// Watch returns a channel that receives when a webhook says runID ended,
// and a function that stops watching. Register before the first poll, so
// that a run which ends in between is either seen by that poll or wakes
// the next wait.
func (h *Hub) Watch(runID string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.waiters[runID] == nil {
		h.waiters[runID] = map[chan struct{}]struct{}{}
	}
	h.waiters[runID][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.waiters[runID], ch)
		if len(h.waiters[runID]) == 0 {
			delete(h.waiters, runID)
		}
	}
}

// wake tells every watcher of runID, without blocking, and returns how
// many there were.
func (h *Hub) wake(runID string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.waiters[runID] {
		select {
		case ch <- struct{}{}:
		default: // already woken; one pending wake is enough
		}
	}
	return len(h.waiters[runID])
}

// ServeHTTP receives ComfyDeploy's webhook POSTs. A URL this worker did not
// sign is refused with 401; anything else valid is answered 204, so
// ComfyDeploy does not retry. Only terminal statuses wake a wait: one on
// this worker, else through Elsewhere.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	token, err := h.signer.Verify(r.URL, h.now())
	if err != nil {
		// The query holds the signature: log the reason, never the URL.
		h.logger.Warn("Refused a webhook with a bad or expired token", "Error", err, "Remote", r.RemoteAddr)
		http.Error(w, "invalid webhook token", http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "webhook body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "could not read webhook body", http.StatusBadRequest)
		return
	}
	ev, err := comfy.ParseWebhook(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
	// One terminal status per submission and run is acted on. The key is
	// not the body, which a holder of a leaked URL could vary at will.
	if !ev.Status.IsTerminal() || h.dedupe.SeenKey(token+"\x00"+ev.RunID) {
		return
	}
	if n := h.wake(ev.RunID); n > 0 {
		h.logger.Debug("Webhook woke the wait of a run", "RunId", ev.RunID, "Status", string(ev.Status), "Waits", n)
		return
	}
	if h.Elsewhere != nil {
		h.finishElsewhere(token, ev.RunID)
	}
}

// finishElsewhere calls Elsewhere in the background, within elsewhereLimit.
func (h *Hub) finishElsewhere(token, runID string) {
	select {
	case h.slots <- struct{}{}:
	default:
		h.logger.Debug("Too many webhooks in flight; leaving the run to polling", "RunId", runID)
		return
	}
	go func() {
		defer func() { <-h.slots }()
		ctx, cancel := context.WithTimeout(context.Background(), elsewhereTimeout)
		defer cancel()
		done, err := h.Elsewhere(ctx, token, runID)
		switch {
		case err != nil:
			h.logger.Warn("Could not end the wait of a run from its webhook; polling will", "RunId", runID, "Error", err)
		case done:
			h.logger.Debug("Webhook ended the wait of a run on another worker", "RunId", runID)
		}
	}()
}
