package comfy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/durable-comfy/durable-comfy/comfy"
)

// fakeServer stands in for api.comfydeploy.com so the examples run.
func fakeServer() *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/run/deployment/queue", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"run_id":"6f1c0d3e-0000-4000-8000-000000000001"}`)
	})
	mux.HandleFunc("GET /api/run/{id}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"id":"`+r.PathValue("id")+`","status":"success","progress":1,
			"outputs":[{"id":"o1","output_id":"final","data":{"images":[{"url":"https://cdn.example/a.png","type":"output","filename":"a.png"}]}}]}`)
	})
	mux.HandleFunc("POST /api/run/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `{"detail":"Error cancel function 404: Run not found or has no modal function call ID"}`)
	})
	return httptest.NewServer(mux)
}

// Queue a deployment run with a correlation token, then poll it until it
// reaches a terminal status.
func ExampleRunsService_QueueDeployment() {
	srv := fakeServer()
	defer srv.Close()

	client, err := comfy.NewClient(
		comfy.WithBaseURL(srv.URL+"/api"),
		comfy.WithAPIKey(os.Getenv("COMFY_API_KEY")),
	)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	signer := comfy.WebhookSigner{Secret: []byte("from-your-secret-store")}
	hook, _ := signer.SignURL("https://worker.example/comfy/webhook", "workflow-42/attempt-1", time.Now().Add(48*time.Hour))

	req := &comfy.DeploymentRunRequest{
		DeploymentID: "c4c1c2b6-0000-4000-8000-000000000000",
		Inputs:       map[string]any{"prompt": "a lighthouse at dawn"},
		Webhook:      hook,
	}
	req.SetCorrelationToken("workflow-42/attempt-1")

	queued, err := client.Runs.QueueDeployment(ctx, req)
	if err != nil {
		// Never blindly resend: a timed-out queue request may have created
		// the run. Look for it with Workflows.FindRunByCorrelationToken.
		panic(err)
	}
	for {
		run, err := client.Runs.Get(ctx, queued.RunID, nil)
		if err != nil {
			panic(err)
		}
		if run.Status.IsTerminal() {
			fmt.Println("status:", run.Status)
			for _, m := range run.MediaItems() {
				fmt.Println(m.OutputID, m.Kind, m.Item.URL)
			}
			break
		}
		time.Sleep(2 * time.Second)
	}
	// Output:
	// status: success
	// final images https://cdn.example/a.png
}

// Classify errors instead of matching status codes.
func ExampleIsCancelUnsupported() {
	srv := fakeServer()
	defer srv.Close()
	client, _ := comfy.NewClient(comfy.WithBaseURL(srv.URL + "/api"))

	_, err := client.Runs.Cancel(context.Background(), "run-on-a-classic-machine")
	switch {
	case comfy.IsCancelUnsupported(err):
		fmt.Println("this machine type cannot cancel runs")
	case comfy.IsRetryable(err):
		fmt.Println("try again later")
	}
	var apiErr *comfy.APIError
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.StatusCode)
	}
	// Output:
	// this machine type cannot cancel runs
	// 500
}
