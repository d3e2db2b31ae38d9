package workflows

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// TestReplayRecordedHistories replays histories recorded from real runs on
// the dev server (see e2e, DC_RECORD_HISTORIES). A change to workflow code
// that would break running workflows fails here with a non-determinism error.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.history.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "recorded histories are missing from workflows/testdata")
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			replayer := worker.NewWorkflowReplayer()
			Register(replayer)
			f, err := os.Open(file)
			require.NoError(t, err)
			defer f.Close()
			history, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
			require.NoError(t, err)
			opts := worker.ReplayWorkflowHistoryOptions{}
			// Histories whose children derive their ids from the parent's
			// carry the original id beside them.
			if id, err := os.ReadFile(strings.TrimSuffix(file, ".history.json") + ".workflow-id"); err == nil {
				opts.OriginalExecution = workflow.Execution{ID: strings.TrimSpace(string(id))}
			}
			require.NoError(t, replayer.ReplayWorkflowHistoryWithOptions(nil, history, opts))
		})
	}
}
