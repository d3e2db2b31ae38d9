# durable-comfy: every target works on a fresh clone that has only Go and the
# Go module proxy. The Temporal dev server (CLI v1.5.1, with the embedded Web
# UI) is pinned in tools/temporal/go.mod and built into bin/ on first use; so
# is the S3-compatible server the e2e tests use (versitygw, tools/versitygw).

SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
TEMPORAL := $(BIN)/temporal
VERSITYGW := $(BIN)/versitygw
GOTEST_FLAGS ?= -race -count=1 -timeout 20m

# Demo settings (overridable: make demo DEMO_PROMPT="a red fox").
DEMO_PROMPT ?= a lighthouse on a cliff at dawn, oil painting

.PHONY: all build test unit-test lint fmt-check vet dev demo bench bench-batch clean temporal versitygw help

all: build

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

build: ## Build the worker, starter, simulator and dev supervisor into bin/.
	$(GO) build -o $(BIN)/ ./cmd/...

temporal: $(TEMPORAL) ## Build the pinned Temporal CLI (dev server + Web UI) into bin/.

# First build takes several minutes on 2 cores; later builds are no-ops.
$(TEMPORAL): tools/temporal/go.mod tools/temporal/go.sum
	@echo ">> building the Temporal CLI dev server (pinned in tools/temporal/go.mod); the first build takes a few minutes"
	cd tools/temporal && $(GO) build -o $(TEMPORAL) github.com/temporalio/cli/cmd/temporal
	@touch $(TEMPORAL)

versitygw: $(VERSITYGW) ## Build the pinned S3-compatible test server (versitygw, POSIX backend) into bin/.

# About 80 s on a quiet 2-core machine; later builds are no-ops.
$(VERSITYGW): tools/versitygw/go.mod tools/versitygw/go.sum
	@echo ">> building versitygw, the S3-compatible server of the e2e tests (pinned in tools/versitygw/go.mod)"
	cd tools/versitygw && $(GO) build -o $(VERSITYGW) github.com/versity/versitygw/cmd/versitygw
	@touch $(VERSITYGW)

fmt-check: ## Fail when gofmt would change a file.
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './tools/*')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet: ## go vet over the module.
	$(GO) vet ./...

lint: fmt-check vet ## Format check and go vet (no third-party linters needed).

unit-test: ## Tests that need no Temporal server.
	$(GO) test $(GOTEST_FLAGS) -short ./...

test: fmt-check vet $(TEMPORAL) $(VERSITYGW) ## Format check, vet, and every test (unit + integration on the real dev server and S3 server).
	TEMPORAL_CLI_PATH=$(TEMPORAL) VERSITYGW_PATH=$(VERSITYGW) $(GO) test $(GOTEST_FLAGS) ./...

dev: build $(TEMPORAL) ## Dev server (UI on :8233), simulator and worker; Ctrl-C stops everything.
	$(BIN)/devstack -temporal $(TEMPORAL) -worker $(BIN)/worker -simulator $(BIN)/comfysim

demo: build $(TEMPORAL) ## Everything `make dev` starts, then an example run with live progress (DEMO_EXIT=1 exits after).
	$(BIN)/devstack -temporal $(TEMPORAL) -worker $(BIN)/worker -simulator $(BIN)/comfysim \
		-demo -starter $(BIN)/starter -demo-prompt "$(DEMO_PROMPT)"

bench: ## Go benchmarks (a report, not a pass/fail).
	$(GO) test -run '^$$' -bench . -benchmem ./...

# The batch benchmark of issue 4: N items at concurrency C with run time T,
# against the ideal N×T/C and a plain goroutine pool, in one run.
BENCH_N ?= 2000
BENCH_C ?= 50
BENCH_T ?= 3s
bench-batch: $(TEMPORAL) ## ComfyBatch wall time vs ideal and vs a goroutine pool (make bench-batch BENCH_N=… BENCH_C=… BENCH_T=…).
	$(GO) run ./cmd/benchbatch -temporal $(TEMPORAL) -n $(BENCH_N) -c $(BENCH_C) -t $(BENCH_T)

clean: ## Remove built binaries and local dev data.
	rm -rf $(BIN) .data out
