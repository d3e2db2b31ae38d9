# durable-comfy: every target works on a fresh clone that has only Go and the
# Go module proxy. The Temporal dev server (CLI v1.5.1, with the embedded Web
# UI) is pinned in tools/temporal/go.mod and built into bin/ on first use; so
# is the S3-compatible server the e2e tests use (versitygw, tools/versitygw).
# The production-shaped cluster (`make cluster`) pins the Temporal server in
# tools/temporal-server and the Web UI in tools/temporal-ui, and installs
# PostgreSQL 15 from Debian's packages when it is missing.

SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
TEMPORAL := $(BIN)/temporal
VERSITYGW := $(BIN)/versitygw
TEMPORAL_SERVER := $(BIN)/temporal-server
TEMPORAL_SQL_TOOL := $(BIN)/temporal-sql-tool
TEMPORAL_UI := $(BIN)/temporal-ui
GOTEST_FLAGS ?= -race -count=1 -timeout 20m

# Demo settings (overridable: make demo DEMO_PROMPT="a red fox").
DEMO_PROMPT ?= a lighthouse on a cliff at dawn, oil painting

# The cluster of `make cluster` (ports overridable: make cluster CLUSTER_FRONTEND_PORT=7533).
CLUSTER_DIR ?= $(CURDIR)/.data/cluster
CLUSTER_PG_BIN ?= /usr/lib/postgresql/15/bin
CLUSTER_PG_PORT ?= 55432
CLUSTER_FRONTEND_PORT ?= 7433
CLUSTER_UI_PORT ?= 8433
DEVCLUSTER = $(BIN)/devcluster -dir $(CLUSTER_DIR)
CLUSTER_FLAGS = -bin $(BIN) -pg-bin $(CLUSTER_PG_BIN) -pg-port $(CLUSTER_PG_PORT) \
	-frontend-port $(CLUSTER_FRONTEND_PORT) -ui-port $(CLUSTER_UI_PORT)

.PHONY: all build test unit-test lint fmt-check vet dev demo bench bench-batch clean temporal versitygw help \
	cluster cluster-stop cluster-status cluster-restart-server cluster-tools postgres test-cluster

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

cluster-tools: $(TEMPORAL_SERVER) $(TEMPORAL_SQL_TOOL) $(TEMPORAL_UI) ## Build the pinned Temporal server, its SQL schema tool and the Web UI into bin/.

# The server's first build takes a few minutes on 2 cores (about 12 on a busy one).
$(TEMPORAL_SERVER): tools/temporal-server/go.mod tools/temporal-server/go.sum
	@echo ">> building the Temporal server (pinned in tools/temporal-server/go.mod); the first build takes a few minutes"
	cd tools/temporal-server && $(GO) build -o $(TEMPORAL_SERVER) go.temporal.io/server/cmd/server
	@touch $(TEMPORAL_SERVER)

$(TEMPORAL_SQL_TOOL): tools/temporal-server/go.mod tools/temporal-server/go.sum
	cd tools/temporal-server && $(GO) build -o $(TEMPORAL_SQL_TOOL) go.temporal.io/server/cmd/tools/sql
	@touch $(TEMPORAL_SQL_TOOL)

$(TEMPORAL_UI): tools/temporal-ui/go.mod tools/temporal-ui/go.sum
	cd tools/temporal-ui && $(GO) build -o $(TEMPORAL_UI) github.com/temporalio/ui-server/v2/cmd/server
	@touch $(TEMPORAL_UI)

postgres: ## Install PostgreSQL 15 from Debian's packages when it is missing.
	@if [ ! -x "$(CLUSTER_PG_BIN)/postgres" ]; then \
		echo ">> installing PostgreSQL 15 (apt-get install postgresql)"; \
		sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		export DEBIAN_FRONTEND=noninteractive; \
		$$sudo apt-get install -y -q postgresql >/dev/null || \
			{ $$sudo apt-get update -q >/dev/null && $$sudo apt-get install -y -q postgresql >/dev/null; }; \
		[ -x "$(CLUSTER_PG_BIN)/postgres" ] || { echo "PostgreSQL 15 is not at $(CLUSTER_PG_BIN) after the install; set CLUSTER_PG_BIN"; exit 1; }; \
	fi

cluster: build cluster-tools postgres ## Start PostgreSQL, the Temporal server (4 shards, SQL visibility) and the Web UI; a no-op when running.
	$(DEVCLUSTER) $(CLUSTER_FLAGS) start

cluster-stop: ## Stop the cluster of `make cluster` (a no-op when stopped).
	@if [ -f $(CLUSTER_DIR)/cluster.json ]; then \
		if [ -x $(BIN)/devcluster ]; then $(DEVCLUSTER) stop; else $(GO) run ./cmd/devcluster -dir $(CLUSTER_DIR) stop; fi; \
	fi

cluster-status: build ## Print the state and addresses of the cluster's parts.
	$(DEVCLUSTER) status

cluster-restart-server: build ## Restart the Temporal server process only (PostgreSQL keeps running).
	$(DEVCLUSTER) restart-server

# Runs against the cluster of `make cluster` (it does not start one, and
# fails when none is reachable): .ci/run starts and stops it around this.
test-cluster: build $(VERSITYGW) ## Three workers on a versitygw S3 store, a 500-item batch under faults, a worker kill and a server restart on the cluster.
	CLUSTER_DIR=$(CLUSTER_DIR) CLUSTER_BIN=$(BIN) VERSITYGW_PATH=$(VERSITYGW) $(GO) test -race -count=1 -timeout 30m -tags cluster -v ./e2e/cluster/

fmt-check: ## Fail when gofmt would change a file.
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './tools/*')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet: ## go vet over the module (the cluster test included, though only `make test-cluster` runs it).
	$(GO) vet ./...
	$(GO) vet -tags cluster ./e2e/cluster/

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

clean: cluster-stop ## Remove built binaries and local dev data (stops the cluster first).
	rm -rf $(BIN) .data out
