package comfytest

import (
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// adminRoutes registers the operator endpoints. They live outside /api and
// need no token.
func (s *Server) adminRoutes() {
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	s.mux.HandleFunc("GET /admin/counters", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Counters())
	})
	s.mux.HandleFunc("POST /admin/reset", func(w http.ResponseWriter, r *http.Request) {
		s.Reset()
		writeJSON(w, http.StatusOK, s.Counters())
	})
	s.mux.HandleFunc("GET /admin/faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Faults())
	})
	s.mux.HandleFunc("PUT /admin/faults", func(w http.ResponseWriter, r *http.Request) {
		var f Faults
		if !decodeAdmin(w, r, &f) {
			return
		}
		s.SetFaults(f)
		writeJSON(w, http.StatusOK, s.Faults())
	})
	s.mux.HandleFunc("PUT /admin/timing/{deployment_id}", func(w http.ResponseWriter, r *http.Request) {
		var t Timing
		if !decodeAdmin(w, r, &t) {
			return
		}
		id := r.PathValue("deployment_id")
		if !s.hasDeployment(id) {
			writeDetail(w, http.StatusNotFound, "Deployment not found")
			return
		}
		s.SetTiming(id, t)
		writeJSON(w, http.StatusOK, map[string]any{"deployment_id": id, "timing": t})
	})
	s.mux.HandleFunc("PUT /admin/deployments/{deployment_id}", func(w http.ResponseWriter, r *http.Request) {
		var ds DeploymentSettings
		if !decodeAdmin(w, r, &ds) {
			return
		}
		id := r.PathValue("deployment_id")
		if err := s.ConfigureDeployment(id, ds); err != nil {
			writeDetail(w, http.StatusNotFound, "Deployment not found")
			return
		}
		s.mu.Lock()
		body := s.deploymentJSONLocked(s.deployments[id])
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, body)
	})
	s.mux.HandleFunc("GET /admin/runs", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		out := []any{}
		for _, rn := range s.runList {
			out = append(out, map[string]any{"id": rn.ID, "deployment_id": nullable(rn.DeploymentID), "machine_id": rn.MachineID,
				"status": rn.Status, "progress": pyFloat(rn.Progress), "token": nullable(rn.Token), "fate": rn.fate,
				"created_at": rn.Created.UTC().Format(time.RFC3339Nano)})
		}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, out)
	})
}

func decodeAdmin(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		writeDetail(w, http.StatusBadRequest, "invalid JSON: "+err.Error())
		return false
	}
	return true
}

func (s *Server) hasDeployment(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deployments[id] != nil
}
