package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/workflow"

	"github.com/durable-comfy/durable-comfy/workflows"
)

func TestCheckCron(t *testing.T) {
	for _, ok := range []string{
		"0 3 * * *", "*/15 * * * *", "0 9-17 * * 1-5", "0,30 6 1,15 * *", "0 0 1 JAN *", "0 0 * * MON-FRI",
		"  5   4  *  *  0 ", "0 0 * * 7", "0 0 ? * *", "0-59/5 * * * *",
	} {
		assert.NoError(t, checkCron(ok), ok)
	}
	tests := []struct{ expr, want string }{
		{"0 3 * *", "has 4 fields; use the 5 fields minute hour day-of-month month day-of-week"},
		{"0 0 3 * * *", "has 6 fields"},
		{"", "has 0 fields"},
		{"60 * * * *", `minute field "60": 60 is outside 0 to 59`},
		{"0 24 * * *", `hour field "24": 24 is outside 0 to 23`},
		{"0 0 0 * *", `day of month field "0": 0 is outside 1 to 31`},
		{"0 0 * 13 *", `month field "13"`},
		{"0 0 * * 8", `day of week field "8"`},
		{"*/0 * * * *", `step "0" must be a positive number`},
		{"a * * * *", `"a" is not a number from 0 to 59`},
		{"1, * * * *", "empty list element"},
		{"1- * * * *", "not a number, range (1-5) or *"},
		{"0 0 * * MONDAY", `"MONDAY" is not a number`},
	}
	for _, tt := range tests {
		err := checkCron(tt.expr)
		require.Error(t, err, tt.expr)
		assert.Contains(t, err.Error(), tt.want, tt.expr)
		assert.Contains(t, err.Error(), "-cron", "the error names the flag")
	}
}

func TestScheduleAction(t *testing.T) {
	e := &env{stdin: strings.NewReader("")}
	act, err := scheduleAction(e, "pipeline", "../../examples/pipeline-hero.yaml", "nightly", "comfy")
	require.NoError(t, err)
	assert.Equal(t, "nightly-run", act.ID)
	assert.Equal(t, workflows.ComfyPipelineWorkflow, act.Workflow)
	assert.Equal(t, "comfy", act.TaskQueue)
	require.Len(t, act.Args, 1)
	in, ok := act.Args[0].(workflows.ComfyPipelineInput)
	require.True(t, ok)
	assert.Contains(t, in.SpecText, "name: hero")
	assert.Contains(t, act.StaticSummary, "3 steps")

	batchFile := writeTemp(t, "b.json", `{"deployments": ["`+testDeployment+`"], "items": [{"prompt": "a"}]}`)
	act, err = scheduleAction(e, "batch", batchFile, "s", "q")
	require.NoError(t, err)
	assert.Equal(t, workflows.ComfyBatchWorkflow, act.Workflow)
	_, ok = act.Args[0].(workflows.ComfyBatchInput)
	assert.True(t, ok)
	dep, _ := act.TypedSearchAttributes.GetKeyword(workflows.DeploymentIDKey)
	assert.Equal(t, testDeployment, dep)

	_, err = scheduleAction(e, "", batchFile, "s", "q")
	assert.ErrorContains(t, err, "missing -kind: use -kind batch")
	_, err = scheduleAction(e, "run", batchFile, "s", "q")
	assert.ErrorContains(t, err, `-kind "run": use batch or pipeline`)
	_, err = scheduleAction(e, "pipeline", batchFile, "s", "q")
	assert.ErrorContains(t, err, "invalid pipeline", "a batch file is not a spec")
}

func TestScheduleRowOf(t *testing.T) {
	cron, err := converter.GetDefaultDataConverter().ToPayload("0 3 * * *")
	require.NoError(t, err)
	next := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	en := &client.ScheduleListEntry{
		ID: "nightly", Paused: true, Note: "n", WorkflowType: workflow.Type{Name: workflows.ComfyBatchWorkflow},
		Memo:            &common.Memo{Fields: map[string]*common.Payload{memoCron: cron}},
		Spec:            &client.ScheduleSpec{TimeZoneName: "Europe/Berlin", Calendars: []client.ScheduleCalendarSpec{{Minute: []client.ScheduleRange{{Start: 0}}}}},
		NextActionTimes: []time.Time{next},
	}
	row := scheduleRowOf(en)
	assert.Equal(t, scheduleRow{ID: "nightly", WorkflowType: workflows.ComfyBatchWorkflow, Cron: "0 3 * * *", TimeZone: "Europe/Berlin", NextRun: &next, Paused: true, Note: "n"}, row)

	// Not created by the starter: no memo, the calendars shown in cron form.
	other := &client.ScheduleListEntry{ID: "x", Spec: &client.ScheduleSpec{
		Calendars: []client.ScheduleCalendarSpec{{
			Minute: []client.ScheduleRange{{Start: 0}, {Start: 30}}, Hour: []client.ScheduleRange{{Start: 9, End: 17, Step: 2}},
			DayOfWeek: []client.ScheduleRange{{Start: 1, End: 5}},
		}},
		Intervals: []client.ScheduleIntervalSpec{{Every: time.Hour}},
	}}
	assert.Equal(t, "0,30 9-17/2 * * 1-5; every 1h0m0s", scheduleRowOf(other).Cron)
}

func TestPrintSchedules(t *testing.T) {
	var buf bytes.Buffer
	printSchedules(&buf, nil)
	assert.Contains(t, buf.String(), "No schedules. Create one with `starter schedule create")

	buf.Reset()
	next := time.Date(2026, 1, 2, 3, 0, 0, 0, time.Local)
	printSchedules(&buf, []scheduleRow{
		{ID: "nightly", WorkflowType: "ComfyBatch", Cron: "0 3 * * *", NextRun: &next},
		{ID: "weekly", WorkflowType: "ComfyPipeline", Cron: "0 6 * * 1", TimeZone: "UTC", NextRun: &next, Paused: true},
	})
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	require.Len(t, lines, 3)
	assert.Equal(t, []string{"SCHEDULE", "ID", "WORKFLOW", "CRON", "NEXT", "RUN", "PAUSED"}, strings.Fields(lines[0]))
	assert.Equal(t, []string{"nightly", "ComfyBatch", "0", "3", "*", "*", "*", "2026-01-02", "03:00:00", "no"}, strings.Fields(lines[1]))
	assert.Equal(t, []string{"weekly", "ComfyPipeline", "0", "6", "*", "*", "1", "(UTC)", "-", "yes"}, strings.Fields(lines[2]), "a paused schedule has no next run")
}

func TestScheduleCommandsUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"schedule"}, exitUsage, []string{"missing schedule command: use one of create, list and delete"}},
		{[]string{"schedule", "-h"}, exitOK, []string{"starter schedule create -kind batch|pipeline"}},
		{[]string{"schedule", "create", "-h"}, exitOK, []string{"-cron", "-paused", "-note", "overlap SKIP"}},
		// Every problem at once: cron, time zone and kind.
		{[]string{"schedule", "create", "-f", "x", "-cron", "0 3 * *", "-tz", "Mars/Base"}, exitUsage,
			[]string{"has 4 fields", `-tz "Mars/Base"`, "missing -kind"}},
		{[]string{"schedule", "create", "-kind", "pipeline", "-f", "../../examples/pipeline-hero.yaml"}, exitUsage, []string{"missing -cron"}},
		{[]string{"schedule", "create", "-kind", "pipeline", "-f", "../../examples/pipeline-hero.yaml", "0", "3"}, exitUsage, []string{"quote the cron expression"}},
		{[]string{"schedule", "delete"}, exitUsage, []string{"expected one schedule id"}},
		{[]string{"schedule", "list", "x"}, exitUsage, []string{`unexpected argument "x"`}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out := runMain(tt.args...)
			assert.Equal(t, tt.code, code, out)
			for _, w := range tt.want {
				assert.Contains(t, out, w)
			}
		})
	}
}
