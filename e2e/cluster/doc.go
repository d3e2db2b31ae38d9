// Package cluster is the production-shaped integration test: several worker
// processes (bin/worker) on one task queue of a real Temporal cluster on
// PostgreSQL (bin/devcluster, started by `make cluster`), the simulator
// process (bin/comfysim) under faults, a worker killed with SIGKILL and the
// Temporal server restarted in the middle of a batch.
//
// The test is behind the "cluster" build tag, so `go test ./...` does not
// need the cluster; `make test-cluster` runs it with -tags cluster and fails
// when the cluster is not reachable.
package cluster
