package comfy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestFindRunByCorrelationTokenBounds pages a workflow of 250 runs, one a
// minute, newest first, the token of run i being "tok-i".
func TestFindRunByCorrelationTokenBounds(t *testing.T) {
	newest := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	const total = 250
	f := newFakeAPI(t)
	f.handle("GET /api/workflow/{id}/runs", func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		rows := []map[string]any{}
		for i := offset; i < min(offset+limit, total); i++ {
			rows = append(rows, map[string]any{
				"id": fmt.Sprintf("run-%d", i), "created_at": newest.Add(-time.Duration(i) * time.Minute).Format(time.RFC3339),
				"workflow_inputs": map[string]any{CorrelationInputKey: fmt.Sprintf("tok-%d", i)},
			})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rows)
	})
	c := f.client()
	cases := []struct {
		name      string
		token     string
		opts      *FindRunOptions
		wantRun   string
		wantPages int
		wantRuns  int
	}{
		{"default: the newest 100 runs", "tok-99", nil, "run-99", 1, 100},
		{"default: not beyond them", "tok-100", nil, "", 1, 100},
		{"pages until found", "tok-120", &FindRunOptions{PageSize: 50, MaxPages: 10}, "run-120", 3, 150},
		{"to the oldest run", "tok-none", &FindRunOptions{PageSize: 100, MaxPages: 10}, "", 3, 250},
		{"bounded by pages", "tok-220", &FindRunOptions{PageSize: 50, MaxPages: 2}, "", 2, 100},
		// Since 60 minutes ago: the page holding run 60 reaches back past it.
		{"bounded by time", "tok-none", &FindRunOptions{PageSize: 25, MaxPages: 10, Since: newest.Add(-60 * time.Minute)}, "", 3, 75},
		{"found within the time bound", "tok-40", &FindRunOptions{PageSize: 25, MaxPages: 10, Since: newest.Add(-60 * time.Minute)}, "run-40", 2, 50},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lookup, err := c.Workflows.FindRunByCorrelationToken(context.Background(), "w1", tc.token, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if lookup.Found() {
				got = lookup.Run.ID
			}
			assertEq(t, got, tc.wantRun)
			assertEq(t, lookup.Pages, tc.wantPages)
			assertEq(t, lookup.Runs, tc.wantRuns)
		})
	}
	if _, err := c.Workflows.FindRunByCorrelationToken(context.Background(), "w1", "", nil); err == nil {
		t.Fatal("an empty token must be refused")
	}
}
