package activities_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
	"github.com/durable-comfy/durable-comfy/egress"
	"github.com/durable-comfy/durable-comfy/outputstore"
)

func TestCollectOutputsStoresVerifiedFilesAndManifest(t *testing.T) {
	h := newHarness(t)
	id := h.runToSuccess(comfytest.DeploymentTxt2Img, txt2imgInputs)
	run, err := h.client.Runs.Get(t.Context(), id, nil)
	require.NoError(t, err)
	media := run.MediaItems()
	require.NotEmpty(t, media, "the txt2img run should have produced an image")

	req := activities.CollectRequest{
		RunID:        id,
		WorkflowID:   "batch/42:item 7",
		DeploymentID: comfytest.DeploymentTxt2Img,
		MachineID:    comfytest.MachineGPUPoolA,
		MachineName:  "gpu-pool-a",
		Inputs:       map[string]any{"prompt": "a lighthouse at dusk"},
		Labels:       map[string]string{"team": "art"},
		Attempts: []activities.Attempt{
			{Number: 1, CorrelationToken: "tok-a", Status: "failed", Error: "CUDA out of memory"},
			{Number: 2, RunID: id, CorrelationToken: "tok-b", Status: "success"},
		},
	}
	val, err := h.env().ExecuteActivity(h.acts.CollectOutputs, req)
	require.NoError(t, err)
	var res activities.CollectResult
	require.NoError(t, val.Get(&res))

	wantFolder := h.store.Location("batch_42_item_7")
	assert.Equal(t, wantFolder, res.Folder, "the folder defaults to the workflow id made safe")
	require.Len(t, res.Outputs, len(media), "every media output is downloaded")

	for _, out := range res.Outputs {
		assert.Equal(t, wantFolder+"/"+path.Base(out.Path), out.Path)
		assert.Equal(t, "batch_42_item_7/"+path.Base(out.Path), out.Key)
		data, err := os.ReadFile(localPath(t, out.Path))
		require.NoError(t, err, "stored output %s", out.Path)
		sum := sha256.Sum256(data)
		assert.Equal(t, hex.EncodeToString(sum[:]), out.SHA256)
		assert.Equal(t, int64(len(data)), out.Size)
		assert.Equal(t, "image/png", out.ContentType)
		_, err = png.Decode(bytes.NewReader(data))
		assert.NoError(t, err, "the stored image decodes as PNG")
		assert.NotContains(t, out.SourceURL, "?", "presigned query strings must not leak")
		assert.NotContains(t, out.SourceURL, "sig=")
		assert.True(t, strings.HasSuffix(out.SourceURL, "/"+out.Filename), "source %s names %s", out.SourceURL, out.Filename)
		assert.Equal(t, "image", out.OutputID)
		assert.Equal(t, "images", out.Kind)
	}
	require.NotEmpty(t, res.Texts, "the caption output is kept as text")
	assert.Contains(t, res.Texts[0].Text, "a lighthouse at dusk")

	assert.Equal(t, wantFolder+"/manifest.json", res.ManifestPath)
	raw, err := os.ReadFile(localPath(t, res.ManifestPath))
	require.NoError(t, err)
	assert.NotContains(t, string(raw), "sig=", "the manifest must not hold presigned URLs")
	var m activities.Manifest
	require.NoError(t, json.Unmarshal(raw, &m))
	assert.Equal(t, 1, m.SchemaVersion)
	assert.Equal(t, req.WorkflowID, m.WorkflowID)
	assert.Equal(t, comfytest.DeploymentTxt2Img, m.DeploymentID)
	assert.Equal(t, "gpu-pool-a", m.MachineName)
	assert.Equal(t, id, m.RunID)
	assert.Equal(t, string(comfy.StatusSuccess), m.Status)
	assert.Equal(t, "a lighthouse at dusk", m.Inputs["prompt"])
	assert.Equal(t, map[string]string{"team": "art"}, m.Labels)
	require.Len(t, m.Attempts, 2)
	assert.Equal(t, "CUDA out of memory", m.Attempts[0].Error)
	assert.Equal(t, id, m.Attempts[1].RunID)
	assert.Equal(t, res.Outputs, m.Outputs)
	assert.Equal(t, res.Texts, m.Texts)
	assert.False(t, m.CollectedAt.IsZero())

	// Collecting again (an activity retry) overwrites in place.
	val, err = h.env().ExecuteActivity(h.acts.CollectOutputs, req)
	require.NoError(t, err)
	var again activities.CollectResult
	require.NoError(t, val.Get(&again))
	assert.Equal(t, res.Outputs, again.Outputs)
	entries, err := os.ReadDir(localPath(t, wantFolder))
	require.NoError(t, err)
	assert.Len(t, entries, len(res.Outputs)+1, "outputs plus manifest, no leftovers")
}

func TestCollectOutputsExplicitFolder(t *testing.T) {
	h := newHarness(t)
	id := h.runToSuccess(comfytest.DeploymentTxt2Img, txt2imgInputs)
	val, err := h.env().ExecuteActivity(h.acts.CollectOutputs, activities.CollectRequest{RunID: id, Folder: "run-folder", WorkflowID: "ignored"})
	require.NoError(t, err)
	var res activities.CollectResult
	require.NoError(t, val.Get(&res))
	assert.Equal(t, h.store.Location("run-folder"), res.Folder)
	assert.FileExists(t, localPath(t, h.store.Location("run-folder/manifest.json")))
}

func TestCollectOutputsAfterURLExpiry(t *testing.T) {
	// URLs carry a whole-second expiry, so a 300ms TTL lasts 0.3–1.3s.
	h := newHarness(t, withSimOptions(func(o *comfytest.Options) { o.OutputURLTTL = 300 * time.Millisecond }))
	id := h.runToSuccess(comfytest.DeploymentTxt2Img, txt2imgInputs)
	run, err := h.client.Runs.Get(t.Context(), id, nil)
	require.NoError(t, err)
	media := run.MediaItems()
	require.NotEmpty(t, media)
	stale := media[0].Item.URL

	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(stale)
		require.NoError(t, err)
		resp.Body.Close()
		if resp.StatusCode == http.StatusForbidden {
			break
		}
		require.True(t, time.Now().Before(deadline), "URL did not expire in time (status %d)", resp.StatusCode)
		time.Sleep(50 * time.Millisecond)
	}

	val, err := h.env().ExecuteActivity(h.acts.CollectOutputs, activities.CollectRequest{RunID: id, WorkflowID: "wf-expired"})
	require.NoError(t, err, "the activity re-reads the run for fresh URLs")
	var res activities.CollectResult
	require.NoError(t, val.Get(&res))
	require.Len(t, res.Outputs, len(media))
	assert.FileExists(t, localPath(t, res.Outputs[0].Path))
}

func TestCollectOutputsTooLarge(t *testing.T) {
	h := newHarness(t)
	h.acts.MaxOutputBytes = 100
	id := h.runToSuccess(comfytest.DeploymentTxt2Img, txt2imgInputs)
	_, err := h.env().ExecuteActivity(h.acts.CollectOutputs, activities.CollectRequest{RunID: id, WorkflowID: "wf-big"})
	ae := appErr(t, err)
	assert.Equal(t, activities.ErrTypeOutputTooLarge, ae.Type())
	assert.True(t, ae.NonRetryable())
	assert.NotContains(t, ae.Error(), "sig=", "presigned query strings must not leak into errors")
	_, statErr := os.Stat(localPath(t, h.store.Location("wf-big/manifest.json")))
	assert.True(t, os.IsNotExist(statErr), "no manifest for a failed collection")
}

func TestCollectOutputsUnknownRun(t *testing.T) {
	h := newHarness(t)
	_, err := h.env().ExecuteActivity(h.acts.CollectOutputs, activities.CollectRequest{RunID: "00000000-0000-4000-8000-000000000000", WorkflowID: "wf"})
	ae := appErr(t, err)
	assert.True(t, ae.NonRetryable(), "type %s", ae.Type())
}

func TestCollectOutputsNeedsRunAndFolder(t *testing.T) {
	h := newHarness(t)
	_, err := h.env().ExecuteActivity(h.acts.CollectOutputs, activities.CollectRequest{RunID: "x"})
	ae := appErr(t, err)
	assert.Equal(t, activities.ErrTypeInvalidRequest, ae.Type())
	assert.True(t, ae.NonRetryable())
}

// localPath is the file a file:// store URL names.
func localPath(t *testing.T, u string) string {
	t.Helper()
	p, ok := outputstore.FilePath(u)
	require.True(t, ok, "%s is not a file URL", u)
	return p
}

// downStore is an output store whose service is unreachable.
type downStore struct{ outputstore.Store }

func (downStore) Put(context.Context, string, io.Reader, ...outputstore.PutOption) (outputstore.Object, error) {
	return outputstore.Object{}, errors.New("dial tcp 127.0.0.1:9: connect: connection refused")
}

func TestCollectOutputsRetriesWhileTheStoreIsDown(t *testing.T) {
	h := newHarness(t)
	id := h.runToSuccess(comfytest.DeploymentTxt2Img, txt2imgInputs)
	h.acts.Store = downStore{h.store}
	_, err := h.env().ExecuteActivity(h.acts.CollectOutputs, activities.CollectRequest{RunID: id, WorkflowID: "wf-down"})
	ae := appErr(t, err)
	assert.Equal(t, activities.ErrTypeStoreUnavailable, ae.Type())
	assert.False(t, ae.NonRetryable(), "a store outage is retried, never fails a paid run")

	h.acts.Store = h.store // the store is back: the retry collects everything
	val, err := h.env().ExecuteActivity(h.acts.CollectOutputs, activities.CollectRequest{RunID: id, WorkflowID: "wf-down"})
	require.NoError(t, err)
	var res activities.CollectResult
	require.NoError(t, val.Get(&res))
	assert.NotEmpty(t, res.Outputs)
}

func TestCollectOutputsOverTheLimitWithoutContentLengthStoresNothing(t *testing.T) {
	h := newHarness(t)
	h.acts.MaxOutputBytes = 100
	// The provider's file server streams without a Content-Length.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		for range 10 {
			_, _ = w.Write(bytes.Repeat([]byte("x"), 64))
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	id := h.runToSuccess(comfytest.DeploymentTxt2Img, txt2imgInputs)
	h.acts.Downloader = &http.Client{Transport: redirectTo(srv.URL)}
	_, err := h.env().ExecuteActivity(h.acts.CollectOutputs, activities.CollectRequest{RunID: id, WorkflowID: "wf-stream"})
	ae := appErr(t, err)
	assert.Equal(t, activities.ErrTypeOutputTooLarge, ae.Type())
	entries, _ := os.ReadDir(localPath(t, h.store.Location("wf-stream")))
	assert.Empty(t, entries, "no partial output, no temporary file")
}

// redirectTo sends every request to base, keeping the path.
type redirectTo string

func (r redirectTo) RoundTrip(req *http.Request) (*http.Response, error) {
	u, err := url.Parse(string(r) + req.URL.Path)
	if err != nil {
		return nil, err
	}
	out := req.Clone(req.Context())
	out.URL, out.Host = u, u.Host
	return http.DefaultTransport.RoundTrip(out)
}

// An output URL the provider returns must not make the worker fetch from
// its own network: the simulator serves outputs on 127.0.0.1, which is
// refused unless its host is allowed (as the worker allows COMFY_API_URL's).
func TestCollectOutputsRefusesInternalAddressesUnlessAllowed(t *testing.T) {
	h := newHarness(t)
	id := h.runToSuccess(comfytest.DeploymentTxt2Img, txt2imgInputs)
	h.acts.Downloader = egress.NewClient(egress.Policy{})
	_, err := h.env().ExecuteActivity(h.acts.CollectOutputs, activities.CollectRequest{RunID: id, WorkflowID: "wf-internal"})
	ae := appErr(t, err)
	assert.Equal(t, activities.ErrTypeOutputURLRefused, ae.Type())
	assert.True(t, ae.NonRetryable())
	assert.Contains(t, ae.Error(), "loopback addresses are not fetched")
	assert.NotContains(t, ae.Error(), "sig=")

	var allow egress.Allowlist
	require.NoError(t, allow.AddURLHost(h.srv.URL()))
	h.acts.Downloader = egress.NewClient(egress.Policy{Allow: allow})
	_, err = h.env().ExecuteActivity(h.acts.CollectOutputs, activities.CollectRequest{RunID: id, WorkflowID: "wf-internal"})
	require.NoError(t, err)
}
