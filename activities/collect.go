package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/egress"
	"github.com/durable-comfy/durable-comfy/outputstore"
)

// Attempt records one paid ComfyDeploy run made for a workflow.
type Attempt struct {
	Number           int       `json:"number"`
	RunID            string    `json:"run_id,omitempty"`
	CorrelationToken string    `json:"correlation_token"`
	Reconciled       bool      `json:"reconciled,omitempty"`
	Status           string    `json:"status,omitempty"`
	DeadlineExceeded string    `json:"deadline_exceeded,omitempty"`
	Error            string    `json:"error,omitempty"`
	SubmittedAt      time.Time `json:"submitted_at,omitzero"`
	EndedAt          time.Time `json:"ended_at,omitzero"`
	QueueSeconds     float64   `json:"queue_seconds,omitempty"`
	RunSeconds       float64   `json:"run_seconds,omitempty"`
	GPU              string    `json:"gpu,omitempty"`
}

// CollectRequest names a finished run and where its outputs go.
type CollectRequest struct {
	RunID string `json:"run_id"`
	// Folder is the run's folder in the output store, one path segment;
	// default: the workflow id made safe for file systems.
	Folder string `json:"folder,omitempty"`
	// Manifest fields that only the workflow knows.
	WorkflowID   string            `json:"workflow_id"`
	DeploymentID string            `json:"deployment_id"`
	MachineID    string            `json:"machine_id,omitempty"`
	MachineName  string            `json:"machine_name,omitempty"`
	Inputs       map[string]any    `json:"inputs,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Attempts     []Attempt         `json:"attempts,omitempty"`
}

// StoredOutput is one media output, safe in the output store.
type StoredOutput struct {
	OutputID string `json:"output_id,omitempty"`
	Kind     string `json:"kind"`
	Filename string `json:"filename"`
	// Path is the output's URL in the output store: file:///abs/dir/… for
	// a local directory, s3://bucket/prefix/… and so on for object stores.
	Path        string `json:"path"`
	Key         string `json:"key"`
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
	// SourceURL is the provider URL without its query string: presigned
	// signatures are credentials and expire within the hour anyway.
	SourceURL string `json:"source_url"`
}

// TextOutput is a text value a run produced (captions, prompts, JSON).
type TextOutput struct {
	OutputID string `json:"output_id,omitempty"`
	Text     string `json:"text"`
}

// CollectResult lists what was stored. It carries references only: Folder
// and ManifestPath are URLs in the output store.
type CollectResult struct {
	Folder       string         `json:"folder"`
	ManifestPath string         `json:"manifest_path"`
	Outputs      []StoredOutput `json:"outputs"`
	Texts        []TextOutput   `json:"texts,omitempty"`
}

// Manifest is written as manifest.json beside a run's outputs.
type Manifest struct {
	SchemaVersion int               `json:"schema_version"`
	WorkflowID    string            `json:"workflow_id"`
	DeploymentID  string            `json:"deployment_id"`
	MachineID     string            `json:"machine_id,omitempty"`
	MachineName   string            `json:"machine_name,omitempty"`
	RunID         string            `json:"run_id"`
	Status        string            `json:"status"`
	Inputs        map[string]any    `json:"inputs,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Attempts      []Attempt         `json:"attempts"`
	Outputs       []StoredOutput    `json:"outputs"`
	Texts         []TextOutput      `json:"texts,omitempty"`
	CollectedAt   time.Time         `json:"collected_at"`
}

// CollectOutputs downloads every media output of a successful run into the
// output store, verifying sizes and computing sha256, and writes
// manifest.json. It reads the run afresh because output URLs are presigned
// for about an hour; a retry after expiry gets new ones. Writes are atomic
// and keyed by the run, so retrying is safe.
func (a *Activities) CollectOutputs(ctx context.Context, req CollectRequest) (*CollectResult, error) {
	if req.RunID == "" || (req.Folder == "" && req.WorkflowID == "") {
		return nil, temporal.NewNonRetryableApplicationError("run_id and folder (or workflow_id) are required", ErrTypeInvalidRequest, nil)
	}
	if req.Folder == "" {
		req.Folder = outputstore.SafeName(req.WorkflowID)
	}
	run, err := a.Comfy.Runs.Get(ctx, req.RunID, nil)
	if err != nil {
		return nil, classify("get run "+req.RunID, err)
	}

	res := &CollectResult{Folder: a.Store.Location(req.Folder), Outputs: []StoredOutput{}}
	used := map[string]int{}
	for i, media := range run.MediaItems() {
		activity.RecordHeartbeat(ctx, i)
		name := outputName(media, i, used)
		stored, err := a.download(ctx, media, req.Folder+"/"+name)
		if err != nil {
			return nil, err
		}
		res.Outputs = append(res.Outputs, *stored)
	}
	for _, out := range run.Outputs {
		for _, v := range out.Data["text"] {
			if v.Text != nil {
				res.Texts = append(res.Texts, TextOutput{OutputID: out.OutputID, Text: *v.Text})
			}
		}
	}

	manifest := Manifest{
		SchemaVersion: 1,
		WorkflowID:    req.WorkflowID,
		DeploymentID:  req.DeploymentID,
		MachineID:     req.MachineID,
		MachineName:   req.MachineName,
		RunID:         run.ID,
		Status:        string(run.Status),
		Inputs:        req.Inputs,
		Labels:        req.Labels,
		Attempts:      req.Attempts,
		Outputs:       res.Outputs,
		Texts:         res.Texts,
		CollectedAt:   time.Now().UTC(),
	}
	body, err := json.MarshalIndent(manifest, "", "  ")
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError("encode manifest: "+err.Error(), ErrTypeInvalidRequest, err)
	}
	obj, err := a.Store.Put(ctx, req.Folder+"/manifest.json", bytes.NewReader(body), outputstore.ContentType("application/json"))
	if err != nil {
		return nil, classifyStore("write manifest", err)
	}
	res.ManifestPath = obj.Location
	return res, nil
}

func (a *Activities) download(ctx context.Context, media comfy.OutputMedia, key string) (*StoredOutput, error) {
	source := stripQuery(media.Item.URL)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, media.Item.URL, nil)
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("output %s has an invalid URL %q", media.Item.Filename, source), ErrTypeInvalidRequest, err)
	}
	client := a.Downloader
	if client == nil {
		client = defaultEgress
	}
	resp, err := client.Do(req)
	var refusal *egress.RefusedError
	if errors.As(err, &refusal) {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("download %s refused: %s (the worker fetches outputs from public addresses and the hosts of COMFY_API_URL and COMFY_OUTPUT_URL_ALLOW)", source, refusal), ErrTypeOutputURLRefused, nil)
	}
	if err != nil {
		return nil, temporal.NewApplicationError(fmt.Sprintf("download %s: %v", source, stripURLs(err)), ErrTypeComfyUnavailable)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusGone:
		// Expired presigned URL: retrying re-reads the run for fresh URLs.
		return nil, temporal.NewApplicationError(fmt.Sprintf("download %s: %s (URL expired?)", source, resp.Status), ErrTypeOutputURLExpired)
	case resp.StatusCode != http.StatusOK:
		return nil, temporal.NewApplicationError(fmt.Sprintf("download %s: %s", source, resp.Status), ErrTypeComfyUnavailable)
	}
	limit := a.MaxOutputBytes
	if limit <= 0 {
		limit = DefaultMaxOutputBytes
	}
	if resp.ContentLength > limit {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("output %s is %d bytes, over the %d-byte limit (COMFY_MAX_OUTPUT_BYTES)", source, resp.ContentLength, limit), ErrTypeOutputTooLarge, nil)
	}

	sniff := &sniffer{}
	var opts []outputstore.PutOption
	if known := contentType(resp.Header.Get("Content-Type"), nil, media.Item.Filename); known != "" {
		opts = append(opts, outputstore.ContentType(known))
	}
	body := &limitedReader{r: resp.Body, n: limit}
	obj, err := a.Store.Put(ctx, key, io.TeeReader(body, sniff), opts...)
	if errors.Is(err, errOverLimit) {
		// The write was cancelled, so nothing over the limit was stored.
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("output %s exceeds the %d-byte limit (COMFY_MAX_OUTPUT_BYTES)", source, limit), ErrTypeOutputTooLarge, nil)
	}
	if err != nil && body.err != nil {
		// The download broke off, not the store: retry, with fresh URLs.
		return nil, temporal.NewApplicationError(fmt.Sprintf("download %s: %v", source, stripURLs(body.err)), ErrTypeComfyUnavailable)
	}
	if err != nil {
		return nil, classifyStore("store output "+key, err)
	}
	if resp.ContentLength >= 0 && obj.Size != resp.ContentLength {
		return nil, temporal.NewApplicationError(
			fmt.Sprintf("download %s: got %d bytes, Content-Length said %d", source, obj.Size, resp.ContentLength), ErrTypeComfyUnavailable)
	}
	if obj.Size == 0 {
		return nil, temporal.NewApplicationError(fmt.Sprintf("download %s: empty body", source), ErrTypeComfyUnavailable)
	}
	return &StoredOutput{
		OutputID:    media.OutputID,
		Kind:        media.Kind,
		Filename:    media.Item.Filename,
		Path:        obj.Location,
		Key:         obj.Key,
		SHA256:      obj.SHA256,
		Size:        obj.Size,
		ContentType: contentType(resp.Header.Get("Content-Type"), sniff.head, media.Item.Filename),
		SourceURL:   source,
	}, nil
}

// outputName makes a unique, safe file name for the i-th media item:
// "<output id or kind>-<filename>", numbered when names repeat.
func outputName(m comfy.OutputMedia, i int, used map[string]int) string {
	prefix := m.OutputID
	if prefix == "" {
		prefix = m.Kind
	}
	file := m.Item.Filename
	if file == "" {
		file = fmt.Sprintf("output-%d", i)
	}
	name := outputstore.SafeName(prefix + "-" + path.Base(file))
	if n := used[name]; n > 0 {
		ext := path.Ext(name)
		name = fmt.Sprintf("%s-%d%s", name[:len(name)-len(ext)], n, ext)
	}
	used[name]++
	if name == "manifest.json" {
		name = "output-manifest.json"
	}
	return name
}

// contentType is the output's media type: the provider's header, else the
// filename's extension, else the first bytes (head; nil gives "" then).
func contentType(header string, head []byte, filename string) string {
	if mt, _, err := mime.ParseMediaType(header); err == nil && mt != "application/octet-stream" && mt != "binary/octet-stream" {
		return mt
	}
	if byExt := mime.TypeByExtension(path.Ext(filename)); byExt != "" {
		mt, _, _ := mime.ParseMediaType(byExt)
		return mt
	}
	if head == nil {
		return ""
	}
	mt, _, _ := mime.ParseMediaType(http.DetectContentType(head))
	return mt
}

// errOverLimit ends a download that grew past COMFY_MAX_OUTPUT_BYTES. It
// fails the store's write, which is then cancelled: nothing is committed.
var errOverLimit = errors.New("output over the size limit")

// limitedReader reads at most n bytes and fails on the byte after them. It
// remembers a read error of the download itself, to tell it from a store
// error.
type limitedReader struct {
	r   io.Reader
	n   int64
	err error
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return 0, errOverLimit
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		return n, errOverLimit
	}
	if err != nil && !errors.Is(err, io.EOF) {
		l.err = err
	}
	return n, err
}

func stripQuery(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

// stripURLs keeps presigned query strings out of error messages.
func stripURLs(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return fmt.Errorf("%s %s: %w", uerr.Op, stripQuery(uerr.URL), uerr.Err)
	}
	return err
}

// sniffer keeps the first bytes for content-type detection.
type sniffer struct{ head []byte }

func (s *sniffer) Write(p []byte) (int, error) {
	if room := 512 - len(s.head); room > 0 {
		s.head = append(s.head, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
