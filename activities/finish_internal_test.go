package activities

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCorrelationTokenParsesFromTheRight(t *testing.T) {
	for _, tc := range []struct {
		token, workflowID, runID string
		ok                       bool
	}{
		{CorrelationToken("run-1", "r1", 1), "run-1", "r1", true},
		{CorrelationToken("batch/42", "0190-abc", 3), "batch/42", "0190-abc", true},
		{CorrelationToken("pipe/upscale/2", "r", 12), "pipe/upscale/2", "r", true},
		{"no-slashes", "", "", false},
		{"wf/run/not-a-number", "", "", false},
		{"/run/1", "", "", false},
		{"wf//1", "", "", false},
	} {
		wf, run, ok := parseCorrelationToken(tc.token)
		assert.Equal(t, tc.ok, ok, tc.token)
		if tc.ok {
			assert.Equal(t, tc.workflowID, wf, tc.token)
			assert.Equal(t, tc.runID, run, tc.token)
		}
	}
}
