package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// recordHistory writes the workflow's history for the replay tests in
// workflows/testdata when DC_RECORD_HISTORIES=1. Re-record after an
// intentional, versioned change to workflow code.
func recordHistory(t *testing.T, e *env, workflowID, name string) {
	t.Helper()
	if os.Getenv("DC_RECORD_HISTORIES") != "1" {
		return
	}
	var h historypb.History
	iter := e.client.GetWorkflowHistory(context.Background(), workflowID, "", false, 0)
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		h.Events = append(h.Events, ev)
	}
	raw, err := protojson.MarshalOptions{Indent: "  "}.Marshal(&h)
	require.NoError(t, err)
	path := filepath.Join("..", "workflows", "testdata", name+".history.json")
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, raw, 0o644))
	// Child workflow ids derive from the parent's id, so the replay test
	// needs the original id, which the history itself does not hold.
	require.NoError(t, os.WriteFile(strings.TrimSuffix(path, ".history.json")+".workflow-id", []byte(workflowID+"\n"), 0o644))
	t.Logf("recorded %s", path)
}
