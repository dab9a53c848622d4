package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

func TestExecInputsBadInputFailsBeforeConnecting(t *testing.T) {
	in := writeCode(t, "1.in", "1\n", 0o644)
	many := []string{}
	for range runner.DefaultMaxRuns + 1 {
		many = append(many, "--input", in)
	}
	cfg := writeCode(t, "config.toml", "max_runs = 2\n", 0o644)
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"missing input", []string{"-r", "sh", "-c", "x", "--input", filepath.Join(t.TempDir(), "nope")}, "--input: open"},
		{"input and stdin", []string{"-r", "sh", "-c", "x", "--input", in, "--stdin", in}, "--stdin and --input given"},
		{"zero parallel", []string{"-r", "sh", "-c", "x", "--input", in, "--parallel", "0"}, "--parallel 0: give 1 or more"},
		{"over the default bound", append([]string{"-r", "sh", "-c", "x"}, many...), "runs: 65 given: give 1 to 64"},
		{"over the configured bound", []string{"--config", cfg, "-r", "sh", "-c", "x", "--input", in, "--input", in, "--input", in}, "runs: 3 given: give 1 to 2"},
		{"bad limit", []string{"-r", "sh", "-c", "x", "--input", in, "--memory", "1k"}, "memory limit 1024 bytes is too small"},
		{"parallel without inputs", []string{"-r", "sh", "-c", "x", "--parallel", "2"}, "--parallel without --input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"exec", "--address", noDaemon}, tc.args...)
			code, stdout, stderr := runCLI(t, nil, args...)
			assert.Equal(t, exitUsage, code, "stderr: %s", stderr)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, tc.msg)
			assert.NotContains(t, stderr, "hint:", "reached the connect step")
		})
	}
}

func TestPrintBatch(t *testing.T) {
	o := execOptions{runs: batchFlags{inputs: []string{"a.in", "b.in", "c.in"}}}
	res := &runner.BatchResult{ID: "b", Compile: &runner.Stage{Outcome: runner.OutcomeExited}, Runs: []*runner.Result{
		{Stage: runner.Stage{Outcome: runner.OutcomeExited, Stdout: runner.Stream{Data: []byte("one\n")}}},
		{Stage: runner.Stage{Outcome: runner.OutcomeExited, ExitCode: 3, Stdout: runner.Stream{Data: []byte("two\n")}, Stderr: runner.Stream{Data: []byte("oops\n")}}},
		{Stage: runner.Stage{Outcome: runner.OutcomeTimedOut, ExitCode: runner.ExitTimedOut, TimedOut: true}},
	}}
	var out, errw bytes.Buffer
	code, err := o.printBatch(stdio{out: &out, err: &errw}, res, runner.Limits{}.Filled())
	require.NoError(t, err)
	assert.Equal(t, 3, code, "the first run's status that is not 0")
	assert.Equal(t, "==> a.in <==\none\n\n==> b.in <==\ntwo\n\n==> c.in <==\n", out.String())
	assert.Equal(t, "oops\nsandbox-runner: b.in: exit status 3\nsandbox-runner: c.in: timed out after 30s; killed\n", errw.String())

	// A compile failure: the compiler's output and status, no run.
	res = &runner.BatchResult{ID: "b", CompileFailed: true,
		Compile: &runner.Stage{Outcome: runner.OutcomeExited, ExitCode: 1, Stderr: runner.Stream{Data: []byte("error: x\n")}},
		Runs:    []*runner.Result{{Stage: runner.Stage{Outcome: runner.OutcomeNotRun, ExitCode: 1}}, {Stage: runner.Stage{Outcome: runner.OutcomeNotRun, ExitCode: 1}}}}
	out.Reset()
	errw.Reset()
	code, err = o.printBatch(stdio{out: &out, err: &errw}, res, runner.Limits{}.Filled())
	require.NoError(t, err)
	assert.Equal(t, 1, code)
	assert.Empty(t, out.String())
	assert.Equal(t, "error: x\nsandbox-runner: compilation failed (exit status 1); the code did not run\nsandbox-runner: none of the 2 inputs was run\n", errw.String())

	// --json: the whole document.
	o.json = true
	out.Reset()
	code, err = o.printBatch(stdio{out: &out, err: &errw}, res, runner.Limits{}.Filled())
	require.NoError(t, err)
	assert.Equal(t, 1, code)
	assert.Contains(t, out.String(), `"compile_failed": true`)
	assert.Equal(t, 2, strings.Count(out.String(), fmt.Sprintf("%q", runner.OutcomeNotRun)))
}
