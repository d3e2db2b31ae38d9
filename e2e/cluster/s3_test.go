//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Static credentials and bucket of the test's S3 server. The workers get
// the credentials through the standard AWS environment variables, as they
// would in production; the store URL carries none.
const (
	s3AccessKey = "durablecomfycluster"
	s3SecretKey = "durable-comfy-cluster-secret-0123456789"
	s3Bucket    = "cluster-outputs"
)

// s3Env is the AWS environment of the test's S3 server, for the workers and
// for the test's own reads through outputstore.
var s3Env = []string{"AWS_ACCESS_KEY_ID=" + s3AccessKey, "AWS_SECRET_ACCESS_KEY=" + s3SecretKey, "AWS_REGION=us-east-1"}

// startS3 starts versitygw (POSIX backend) on a free loopback port with its
// data under runDir/s3, creates the bucket and returns the store URL of a
// key prefix in it. The binary is VERSITYGW_PATH (set by `make
// test-cluster`), else versitygw beside the cluster's other binaries. This
// is a short copy of the e2e package's startS3: that one is tied to
// t.TempDir and in-process logs, this one logs beside the workers.
func startS3(t *testing.T, c clusterInfo, runDir string) string {
	t.Helper()
	bin := os.Getenv("VERSITYGW_PATH")
	if bin == "" {
		bin = filepath.Join(c.BinDir, "versitygw")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("S3 test server not found at %s: run `make versitygw` (or `make test-cluster`, which builds it) or set VERSITYGW_PATH", bin)
	}
	dir := filepath.Join(runDir, "s3")
	for _, d := range []string{"meta", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	p := startProc(t, "versitygw", runDir, bin, baseEnv(),
		"--access", s3AccessKey, "--secret", s3SecretKey, "--port", addr, "--quiet",
		"posix", "--sidecar", filepath.Join(dir, "meta"), filepath.Join(dir, "root"))
	endpoint := "http://" + addr
	cl := s3.New(s3.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(endpoint),
		UsePathStyle:     true,
		Credentials:      credentials.NewStaticCredentialsProvider(s3AccessKey, s3SecretKey, ""),
		RetryMaxAttempts: 1,
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := cl.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(s3Bucket)})
		if err == nil {
			break
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("versitygw on %s: cannot create bucket %s: %v; see %s", addr, s3Bucket, err, p.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, kv := range s3Env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return fmt.Sprintf("s3://%s/test-run?endpoint=%s&use_path_style=true&region=us-east-1", s3Bucket, endpoint)
}
