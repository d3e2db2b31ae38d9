package comfy

import (
	"container/list"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ComfyDeploy does not sign webhooks: it POSTs JSON to the stored URL with
// no signature header. Its docs advise putting your own signed token in
// the URL's query string. The server stores the URL verbatim and calls it
// as is, so the token comes back on every delivery. WebhookSigner does
// that.

// Query parameters added by [WebhookSigner.SignURL]. The subject goes in
// [CorrelationQueryParam].
const (
	WebhookExpiresParam   = "exp"
	WebhookSignatureParam = "sig"
)

// Errors returned by [WebhookSigner.Verify].
var (
	ErrWebhookTokenMissing = errors.New("comfy: webhook token missing")
	ErrWebhookTokenInvalid = errors.New("comfy: webhook token invalid")
	ErrWebhookTokenExpired = errors.New("comfy: webhook token expired")
)

// WebhookSigner signs and verifies webhook URLs with an HMAC-SHA256 secret.
// Its formatting methods hide the secret.
type WebhookSigner struct {
	Secret []byte
}

// String hides the secret.
func (s WebhookSigner) String() string { return "comfy.WebhookSigner{Secret: " + redacted + "}" }

// GoString hides the secret.
func (s WebhookSigner) GoString() string { return s.String() }

// LogValue hides the secret.
func (s WebhookSigner) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Format hides the secret for every verb, including %d and %x, which would
// otherwise print the struct's bytes.
func (s WebhookSigner) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// The MAC input puts a version tag first so that the scheme can change
// later, and puts the expiry, which is all digits, before the subject, so
// that no subject can be read as another subject with another expiry.
func (s WebhookSigner) mac(subject string, exp int64) []byte {
	m := hmac.New(sha256.New, s.Secret)
	fmt.Fprintf(m, "comfy-webhook-v1\n%d\n%s", exp, subject)
	return m.Sum(nil)
}

// SignURL adds subject, expiry and signature to baseURL's query string.
// The subject goes in [CorrelationQueryParam], so the same value is also
// the run's correlation token. Other parameters, such as
// target_events=run.output, are kept exactly as written. Runs can take up
// to 24 hours, so give an expiry beyond the longest run plus the retry
// window.
func (s WebhookSigner) SignURL(baseURL, subject string, expires time.Time) (string, error) {
	if len(s.Secret) == 0 {
		return "", errors.New("comfy: webhook signer has no secret")
	}
	if subject == "" {
		return "", fmt.Errorf("%w: empty webhook subject", ErrInvalidArgument)
	}
	if expires.IsZero() {
		return "", fmt.Errorf("%w: webhook expiry is required", ErrInvalidArgument)
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return "", fmt.Errorf("%w: webhook URL: %v", ErrInvalidArgument, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("%w: webhook URL must be absolute http(s)", ErrInvalidArgument)
	}
	exp := expires.Unix()
	var kept []string
	for _, part := range strings.Split(u.RawQuery, "&") {
		if part == "" {
			continue
		}
		key, _, _ := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(key); err == nil && isSignerParam(k) {
			continue
		}
		kept = append(kept, part)
	}
	ours := url.Values{}
	ours.Set(CorrelationQueryParam, subject)
	ours.Set(WebhookExpiresParam, strconv.FormatInt(exp, 10))
	ours.Set(WebhookSignatureParam, base64.RawURLEncoding.EncodeToString(s.mac(subject, exp)))
	u.RawQuery = strings.Join(append(kept, ours.Encode()), "&")
	return u.String(), nil
}

func isSignerParam(k string) bool {
	return k == CorrelationQueryParam || k == WebhookExpiresParam || k == WebhookSignatureParam
}

// Verify checks a signed webhook URL, usually r.URL of the incoming
// request, and returns its subject. The signature is checked before the
// expiry, so a forged token is reported as invalid rather than expired.
// Repeated parameters are rejected, because a proxy and this code could
// read different copies.
func (s WebhookSigner) Verify(u *url.URL, now time.Time) (subject string, err error) {
	if len(s.Secret) == 0 {
		return "", errors.New("comfy: webhook signer has no secret")
	}
	if u == nil {
		return "", ErrWebhookTokenMissing
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", fmt.Errorf("%w: malformed query", ErrWebhookTokenInvalid)
	}
	subs, exps, sigs := q[CorrelationQueryParam], q[WebhookExpiresParam], q[WebhookSignatureParam]
	if len(subs) == 0 || len(exps) == 0 || len(sigs) == 0 || subs[0] == "" || sigs[0] == "" {
		return "", ErrWebhookTokenMissing
	}
	if len(subs) > 1 || len(exps) > 1 || len(sigs) > 1 {
		return "", fmt.Errorf("%w: repeated parameter", ErrWebhookTokenInvalid)
	}
	if !isDigits(exps[0]) {
		return "", fmt.Errorf("%w: malformed expiry", ErrWebhookTokenInvalid)
	}
	exp, err := strconv.ParseInt(exps[0], 10, 64)
	if err != nil {
		return "", fmt.Errorf("%w: malformed expiry", ErrWebhookTokenInvalid)
	}
	got, err := base64.RawURLEncoding.DecodeString(sigs[0])
	if err != nil {
		return "", fmt.Errorf("%w: malformed signature", ErrWebhookTokenInvalid)
	}
	if !hmac.Equal(got, s.mac(subs[0], exp)) {
		return "", ErrWebhookTokenInvalid
	}
	if now.Unix() > exp {
		return "", ErrWebhookTokenExpired
	}
	return subs[0], nil
}

// Webhook event types. Bodies without event_type are run.updated.
const (
	WebhookRunUpdated = "run.updated"
	// WebhookRunOutput is sent once per stored output, and only when the
	// webhook URL's query has target_events=run.output.
	WebhookRunOutput = "run.output"
)

// WebhookEvent is a webhook body. Deliveries are duplicated and unordered,
// and they stop after 3 attempts. Treat them as hints to check the run
// with Runs.Get, and filter them with [WebhookDeduper] and Supersedes.
type WebhookEvent struct {
	EventType  string    `json:"event_type"`
	RunID      string    `json:"run_id"`
	Status     RunStatus `json:"status"`
	LiveStatus string    `json:"live_status"`
	Progress   float64   `json:"progress"`
	// Outputs holds the run's outputs for run.updated, and only the new
	// output for run.output. Private URLs in it expire after one hour.
	Outputs []Output `json:"outputs"`
}

// ParseWebhook decodes a webhook body. It fails when the body is not JSON
// or has no run_id.
func ParseWebhook(body []byte) (*WebhookEvent, error) {
	var aux struct {
		WebhookEvent
		Outputs    json.RawMessage `json:"outputs"`
		LiveStatus json.RawMessage `json:"live_status"`
		Progress   json.RawMessage `json:"progress"`
	}
	if err := json.Unmarshal(body, &aux); err != nil {
		return nil, fmt.Errorf("%w: webhook body: %v", ErrInvalidArgument, err)
	}
	ev := aux.WebhookEvent
	if ev.RunID == "" {
		return nil, fmt.Errorf("%w: webhook body has no run_id", ErrInvalidArgument)
	}
	if ev.EventType == "" {
		ev.EventType = WebhookRunUpdated
	}
	ev.LiveStatus = looseString(aux.LiveStatus)
	ev.Progress, _ = looseFloat(aux.Progress)
	outs, err := decodeList[Output](aux.Outputs)
	if err != nil {
		return nil, fmt.Errorf("%w: webhook outputs: %v", ErrInvalidArgument, err)
	}
	ev.Outputs = outs
	return &ev, nil
}

// Supersedes reports whether the event moves a run past prev. See
// [RunStatus.Supersedes].
func (e *WebhookEvent) Supersedes(prev RunStatus) bool { return e.Status.Supersedes(prev) }

// Key identifies a delivery by its content: event type, run, status,
// progress and the ids of its outputs. Repeated deliveries share a key.
func (e *WebhookEvent) Key() string {
	ids := make([]string, 0, len(e.Outputs))
	for _, o := range e.Outputs {
		id := o.ID
		if id == "" {
			id = "output_id:" + o.OutputID
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return strings.Join([]string{
		e.EventType, e.RunID, string(e.Status), e.LiveStatus,
		strconv.FormatFloat(e.Progress, 'g', -1, 64),
		strings.Join(ids, ","),
	}, "\x00")
}

// DefaultWebhookDedupeCapacity is the capacity of a zero WebhookDeduper.
const DefaultWebhookDedupeCapacity = 4096

// WebhookDeduper remembers the most recent deliveries, so that duplicates
// can be dropped. Its memory is bounded: the oldest keys are forgotten
// first. It is safe for concurrent use. The zero value holds
// [DefaultWebhookDedupeCapacity] keys.
type WebhookDeduper struct {
	mu       sync.Mutex
	capacity int
	order    *list.List // front is the most recently seen
	index    map[string]*list.Element
}

// NewWebhookDeduper returns a deduper that remembers capacity keys.
func NewWebhookDeduper(capacity int) *WebhookDeduper {
	return &WebhookDeduper{capacity: capacity}
}

// Seen records the delivery and reports whether it had been seen before.
func (d *WebhookDeduper) Seen(ev *WebhookEvent) bool {
	return d.SeenKey(ev.Key())
}

// SeenKey is Seen for an arbitrary key.
func (d *WebhookDeduper) SeenKey(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.index == nil {
		d.index = make(map[string]*list.Element)
		d.order = list.New()
		if d.capacity <= 0 {
			d.capacity = DefaultWebhookDedupeCapacity
		}
	}
	if el, ok := d.index[key]; ok {
		d.order.MoveToFront(el)
		return true
	}
	d.index[key] = d.order.PushFront(key)
	for d.order.Len() > d.capacity {
		oldest := d.order.Back()
		d.order.Remove(oldest)
		delete(d.index, oldest.Value.(string))
	}
	return false
}

// Len returns the number of keys remembered.
func (d *WebhookDeduper) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.order == nil {
		return 0
	}
	return d.order.Len()
}
