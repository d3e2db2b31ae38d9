package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/durable-comfy/durable-comfy/activities"
	"github.com/durable-comfy/durable-comfy/comfy/comfytest"
	"github.com/durable-comfy/durable-comfy/workflows"
)

// Static credentials of the test S3 server. The worker's store reads them
// from the standard AWS environment variables, like it would in production.
const (
	s3AccessKey = "durablecomfytest"
	s3SecretKey = "durable-comfy-test-secret-0123456789"
	s3Bucket    = "outputs"
)

// s3Server is a versitygw process (POSIX backend) on a private port and
// data directory; stop and start keep both, like a restarted service.
type s3Server struct {
	t    *testing.T
	bin  string
	dir  string
	addr string
	cmd  *exec.Cmd
}

func startS3(t *testing.T) *s3Server {
	t.Helper()
	bin := os.Getenv("VERSITYGW_PATH")
	if bin == "" {
		bin, _ = filepath.Abs("../bin/versitygw")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("S3 test server not found at %s: run `make test` (it builds bin/versitygw from tools/versitygw) or set VERSITYGW_PATH", bin)
	}
	s := &s3Server{t: t, bin: bin, dir: t.TempDir(), addr: fmt.Sprintf("127.0.0.1:%d", freePort())}
	t.Setenv("AWS_ACCESS_KEY_ID", s3AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3SecretKey)
	t.Setenv("AWS_REGION", "us-east-1")
	s.start()
	t.Cleanup(s.stop)
	_, err := s.client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(s3Bucket)})
	require.NoError(t, err)
	return s
}

func (s *s3Server) start() {
	s.t.Helper()
	cmd := exec.Command(s.bin, "--access", s3AccessKey, "--secret", s3SecretKey, "--port", s.addr, "--quiet", "posix", "--sidecar", filepath.Join(s.dir, "meta"), filepath.Join(s.dir, "root"))
	cmd.Env = os.Environ()
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	for _, d := range []string{"meta", "root"} {
		require.NoError(s.t, os.MkdirAll(filepath.Join(s.dir, d), 0o755))
	}
	require.NoError(s.t, cmd.Start())
	s.cmd = cmd
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.client().ListBuckets(context.Background(), &s3.ListBucketsInput{})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("versitygw did not come up on %s: %v\n%s", s.addr, err, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop kills the server, as a crash or a network cut would end it.
func (s *s3Server) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

func (s *s3Server) endpoint() string { return "http://" + s.addr }

// storeURL is the COMFY_OUTPUT_URL of the store, under a key prefix.
func (s *s3Server) storeURL(prefix string) string {
	return fmt.Sprintf("s3://%s/%s?region=us-east-1&endpoint=%s&use_path_style=true", s3Bucket, prefix, s.endpoint())
}

// client is a plain AWS SDK client, independent of the store under test.
func (s *s3Server) client() *s3.Client {
	return s3.New(s3.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(s.endpoint()),
		UsePathStyle:     true,
		Credentials:      credentials.NewStaticCredentialsProvider(s3AccessKey, s3SecretKey, ""),
		RetryMaxAttempts: 1,
	})
}

// get reads the object an s3:// URL names with the AWS SDK.
func (s *s3Server) get(u string) []byte {
	s.t.Helper()
	rest, ok := strings.CutPrefix(u, "s3://"+s3Bucket+"/")
	require.True(s.t, ok, "%s is not in bucket %s", u, s3Bucket)
	out, err := s.client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(s3Bucket), Key: aws.String(rest)})
	require.NoError(s.t, err, u)
	defer out.Body.Close()
	body, err := io.ReadAll(out.Body)
	require.NoError(s.t, err, u)
	return body
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// verifyOutputs reads a run's manifest and every output it lists from S3,
// checking each sha256 and size against the manifest.
func (s *s3Server) verifyOutputs(manifestURL string) int {
	s.t.Helper()
	var m activities.Manifest
	require.NoError(s.t, json.Unmarshal(s.get(manifestURL), &m), manifestURL)
	require.NotEmpty(s.t, m.Outputs, manifestURL)
	for _, o := range m.Outputs {
		body := s.get(o.Path)
		assert.Equal(s.t, o.SHA256, sha(body), o.Path)
		assert.Equal(s.t, o.Size, int64(len(body)), o.Path)
	}
	return len(m.Outputs)
}

// writeItems writes n items into the worker's source directory.
func writeItems(t *testing.T, e *env, n int) string {
	t.Helper()
	source := filepath.Join(e.sourceDir, "items.jsonl")
	var buf bytes.Buffer
	for i := range n {
		fmt.Fprintf(&buf, `{"prompt": "item %d", "seed": %d}`+"\n", i, i)
	}
	require.NoError(t, os.WriteFile(source, buf.Bytes(), 0o644))
	return source
}

func startBatch(t *testing.T, e *env, id, source string, concurrency int) client.WorkflowRun {
	t.Helper()
	run, err := e.client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: id, TaskQueue: e.taskQueue},
		workflows.ComfyBatchWorkflow, workflows.ComfyBatchInput{
			Deployments:    []string{txt2img},
			Source:         &activities.BatchSource{Path: source},
			MaxConcurrency: concurrency,
			Defaults:       workflows.BatchDefaults{PollInterval: workflows.Duration(100 * time.Millisecond)},
		})
	require.NoError(t, err)
	return run
}

// checkBatch verifies a finished batch against S3 and the simulator: every
// item succeeded, every output is in S3 with its sha256, no run was paid twice.
func checkBatch(t *testing.T, e *env, s *s3Server, res workflows.ComfyBatchResult, items int) {
	t.Helper()
	assert.Equal(t, items, res.Succeeded, "%+v", res)
	require.True(t, strings.HasPrefix(res.ResultsPath, "s3://"+s3Bucket+"/"), res.ResultsPath)
	var lines []activities.BatchItemResult
	for _, raw := range bytes.Split(bytes.TrimSpace(s.get(res.ResultsPath)), []byte("\n")) {
		var l activities.BatchItemResult
		require.NoError(t, json.Unmarshal(raw, &l))
		lines = append(lines, l)
	}
	require.Len(t, lines, items, "one results line per item")
	outputs := 0
	for _, l := range lines {
		require.Equal(t, activities.ItemSucceeded, l.Status, "item %d: %s", l.Index, l.Error)
		require.NotEmpty(t, l.Outputs, "item %d", l.Index)
		for _, o := range l.Outputs {
			assert.Equal(t, o.SHA256, sha(s.get(o.Path)), "item %d output %s", l.Index, o.Path)
			outputs++
		}
		s.verifyOutputs(l.ManifestPath)
	}
	c := e.sim.Counters()
	for token, n := range c.RunsByToken {
		assert.Equal(t, 1, n, "token %s paid %d times", token, n)
	}
	assert.Equal(t, items, c.RunsCreated, "one paid run per item")
	t.Logf("%d items, %d outputs verified in S3, %d paid runs", items, outputs, c.RunsCreated)
}

// TestS3StoreHoldsEveryOutputOfABatchAndAPipeline runs a batch and a
// pipeline with COMFY_OUTPUT_URL=s3://… against a real S3-compatible server
// and reads every object back with the AWS SDK.
func TestS3StoreHoldsEveryOutputOfABatchAndAPipeline(t *testing.T) {
	s := startS3(t)
	e := newEnv(t, comfytest.Options{}, withStoreURL(s.storeURL("team-a/outputs")))
	assert.Equal(t, "s3://outputs/team-a/outputs", e.store.URL())

	const items = 12
	run := startBatch(t, e, "e2e-s3-batch", writeItems(t, e, items), 6)
	var res workflows.ComfyBatchResult
	require.NoError(t, run.Get(context.Background(), &res))
	assert.Equal(t, "s3://outputs/team-a/outputs/e2e-s3-batch/results.jsonl", res.ResultsPath)
	checkBatch(t, e, s, res, items)

	spec, err := os.ReadFile("../examples/pipeline-hero.yaml")
	require.NoError(t, err)
	prun, err := e.client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: "e2e-s3-pipeline", TaskQueue: e.taskQueue},
		workflows.ComfyPipelineWorkflow, workflows.ComfyPipelineInput{SpecText: string(spec)})
	require.NoError(t, err)
	var pres workflows.ComfyPipelineResult
	require.NoError(t, prun.Get(context.Background(), &pres))
	require.Equal(t, workflows.PipelineSucceeded, pres.Status)
	for _, step := range pres.Steps {
		require.Len(t, step.Runs, 1, step.Name)
		assert.Equal(t, len(step.Runs[0].Outputs), s.verifyOutputs(step.Runs[0].ManifestPath), step.Name)
	}
}

// TestS3OutageMidBatchLosesNothing kills the S3 server for 20 seconds in
// the middle of a batch and starts it again on the same port and data: the
// batch completes, every output is in S3, and no item is paid twice.
func TestS3OutageMidBatchLosesNothing(t *testing.T) {
	s := startS3(t)
	e := newEnv(t, comfytest.Options{Timing: comfytest.Timing{ColdStart: 50 * time.Millisecond, Run: 300 * time.Millisecond}},
		withStoreURL(s.storeURL("outage")))

	const items = 60
	run := startBatch(t, e, "e2e-s3-outage", writeItems(t, e, items), 4)
	// Wait until some items are stored, so the outage hits a batch mid-way.
	require.Eventually(t, func() bool { return e.sim.Counters().RunsCreated >= 10 }, time.Minute, 50*time.Millisecond)
	s.stop()
	down := e.sim.Counters().RunsCreated
	time.Sleep(20 * time.Second)
	s.start()
	t.Logf("S3 down for 20s after %d paid runs; %d paid runs when it came back", down, e.sim.Counters().RunsCreated)

	var res workflows.ComfyBatchResult
	require.NoError(t, run.Get(context.Background(), &res))
	checkBatch(t, e, s, res, items)
}

// TestS3BatchSourceIsReadFromTheStore starts a batch whose source is an
// object of the worker's S3 store, read in pages with ranged reads.
func TestS3BatchSourceIsReadFromTheStore(t *testing.T) {
	s := startS3(t)
	e := newEnv(t, comfytest.Options{}, withStoreURL(s.storeURL("team-b")))
	const items = 9
	var buf bytes.Buffer
	for i := range items {
		fmt.Fprintf(&buf, `{"prompt": "stored item %d", "seed": %d}`+"\n", i, i)
	}
	obj, err := e.store.Put(context.Background(), "sources/items.jsonl", &buf)
	require.NoError(t, err)
	require.Equal(t, "s3://outputs/team-b/sources/items.jsonl", obj.Location)

	run, err := e.client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: "e2e-s3-source", TaskQueue: e.taskQueue},
		workflows.ComfyBatchWorkflow, workflows.ComfyBatchInput{
			Deployments:    []string{txt2img},
			Source:         &activities.BatchSource{URL: obj.Location},
			MaxConcurrency: 3,
			PageSize:       4, // three pages: each a ranged read from the cursor
			Defaults:       workflows.BatchDefaults{PollInterval: workflows.Duration(100 * time.Millisecond)},
		})
	require.NoError(t, err)
	var res workflows.ComfyBatchResult
	require.NoError(t, run.Get(context.Background(), &res))
	checkBatch(t, e, s, res, items)
}
