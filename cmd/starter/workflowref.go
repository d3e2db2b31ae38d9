package main

import (
	"context"
	"flag"
	"io"

	"go.temporal.io/api/workflowservice/v1"
)

// openRun is the common start of status, watch and cancel: their flags,
// the single ComfyRun id, the connection and the run's description.
func openRun(ctx context.Context, e *env, fs *flag.FlagSet, args []string) (string, *conn, *workflowservice.DescribeWorkflowExecutionResponse, error) {
	return openWorkflow(ctx, e, fs, args,
		func(pos []string) (string, error) { return oneWorkflowID(fs, pos) },
		describe)
}

// open is openRun for the subcommands of a group (batch, pipeline), whose
// messages name the kind.
func (k kind) open(ctx context.Context, e *env, fs *flag.FlagSet, args []string) (string, *conn, *workflowservice.DescribeWorkflowExecutionResponse, error) {
	return openWorkflow(ctx, e, fs, args,
		func(pos []string) (string, error) { return k.oneID(fs, pos) },
		k.describe)
}

// openWorkflow parses the flags, reads the id, dials and describes, in
// that order, so a usage error never waits for Temporal. On success the
// caller owns the connection; on failure it is already closed.
func openWorkflow(ctx context.Context, e *env, fs *flag.FlagSet, args []string,
	oneID func(pos []string) (string, error),
	describeID func(context.Context, *conn, string) (*workflowservice.DescribeWorkflowExecutionResponse, error),
) (string, *conn, *workflowservice.DescribeWorkflowExecutionResponse, error) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return "", nil, nil, err
	}
	id, err := oneID(pos)
	if err != nil {
		return "", nil, nil, err
	}
	c, err := e.dial(ctx)
	if err != nil {
		return "", nil, nil, err
	}
	desc, err := describeID(ctx, c, id)
	if err != nil {
		c.Close()
		return "", nil, nil, err
	}
	return id, c, desc, nil
}

// exitCoder is a report that knows the exit code its workflow's state
// calls for (report, batchReport, pipelineReport).
type exitCoder interface{ exitCode() int }

// writeReport prints r as JSON or through print, then ends the command
// with r's exit code: the last step of every status, watch and -wait.
func writeReport[R exitCoder](e *env, asJSON bool, r R, print func(io.Writer, R)) error {
	if asJSON {
		if err := writeJSON(e.stdout, r); err != nil {
			return err
		}
	} else {
		print(e.stdout, r)
	}
	return withCode(r.exitCode(), nil)
}
