// Package devserver is how durable-comfy runs the pinned Temporal dev server
// (bin/temporal, CLI v1.5.1): one set of search attributes and dynamic
// config for `make dev` and `make demo`, the end-to-end tests and the
// benchmarks, so what we measure is what we demo and test.
package devserver

import (
	"fmt"
	"sort"

	"go.temporal.io/sdk/testsuite"

	"github.com/durable-comfy/durable-comfy/workflows"
)

// Setting is one dynamic config value and why we set it.
type Setting struct {
	Key, Value, Why string
}

// DynamicConfig is applied to every dev server we start.
var DynamicConfig = []Setting{
	{"system.enableActivityEagerExecution", "true",
		"an activity scheduled by a workflow task starts in the same round trip instead of waiting for a poll"},
	// The dev server has one history shard, where a cluster has hundreds.
	// Each shard reads its task queues at most 20 times a second, so on one
	// shard every workflow step waits up to 50 ms once a batch makes more
	// than 20 steps a second. Raising the limit makes the single shard
	// behave like a cluster whose load is spread over many.
	{"history.transferProcessorMaxPollRPS", "1000", "workflow and activity tasks, child starts and signals"},
	{"history.timerProcessorMaxPollRPS", "1000", "timers, retries and timeouts"},
	{"history.visibilityProcessorMaxPollRPS", "1000", "search attributes reach list queries sooner"},
}

// DynamicConfigFlags are the `temporal server start-dev` flags for DynamicConfig.
func DynamicConfigFlags() []string {
	var args []string
	for _, s := range DynamicConfig {
		args = append(args, "--dynamic-config-value", fmt.Sprintf("%s=%s", s.Key, s.Value))
	}
	return args
}

// Flags are the `temporal server start-dev` flags for DynamicConfig and
// the workflows' search attributes.
func Flags() []string {
	args := DynamicConfigFlags()
	attrs := workflows.SearchAttributes()
	names := make([]string, 0, len(attrs))
	for name := range attrs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		args = append(args, "--search-attribute", fmt.Sprintf("%s=%s", name, attrs[name]))
	}
	return args
}

// TestOptions starts the CLI at cliPath with our search attributes and
// dynamic config, for testsuite.StartDevServer; extraArgs are appended.
func TestOptions(cliPath string, extraArgs ...string) testsuite.DevServerOptions {
	return testsuite.DevServerOptions{
		ExistingPath:     cliPath,
		LogLevel:         "error",
		SearchAttributes: workflows.DevServerSearchAttributes(),
		ExtraArgs:        append(DynamicConfigFlags(), extraArgs...),
	}
}
