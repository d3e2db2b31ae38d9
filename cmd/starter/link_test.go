package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func linkEnv(storeURL string) (*env, *bytes.Buffer) {
	var out bytes.Buffer
	return &env{stdin: strings.NewReader(""), stdout: &out, stderr: &bytes.Buffer{}, now: time.Now,
		getenv: func(k string) string {
			if k == "COMFY_OUTPUT_URL" {
				return storeURL
			}
			return ""
		}}, &out
}

func TestLinkSignsStoreURLs(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDLINKTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "link-test-secret")
	e, out := linkEnv("s3://media/team?region=us-east-1&endpoint=http://127.0.0.1:9&use_path_style=true")
	require.NoError(t, cmdLink(context.Background(), e, []string{"-expires", "30m", "s3://media/team/run-1/a.png"}))
	link := strings.TrimSpace(out.String())
	assert.True(t, strings.HasPrefix(link, "http://127.0.0.1:9/media/team/run-1/a.png?"), link)
	assert.Contains(t, link, "X-Amz-Expires=1800")
	assert.NotContains(t, link, "link-test-secret")
}

func TestLinkRefusesWhatItCannotSign(t *testing.T) {
	e, _ := linkEnv("s3://media/team?region=us-east-1")
	err := cmdLink(context.Background(), e, []string{"s3://other/run-1/a.png"})
	assert.ErrorContains(t, err, "is not an object of the output store s3://media/team")

	dir := t.TempDir()
	e, _ = linkEnv("file://" + dir)
	err = cmdLink(context.Background(), e, []string{"file://" + dir + "/run/a.png"})
	assert.ErrorContains(t, err, "cannot sign URLs")

	e, _ = linkEnv("")
	assert.ErrorContains(t, cmdLink(context.Background(), e, []string{"s3://media/x"}), "set COMFY_OUTPUT_URL")
	e, _ = linkEnv("s3://media/team?region=us-east-1")
	assert.ErrorContains(t, cmdLink(context.Background(), e, []string{"-expires", "200h", "s3://media/team/x"}), "at most")
}
