//go:build linux

package integration

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// busyLoop keeps one CPU busy until it is killed.
const busyLoop = "while :; do :; done"

// requireCPUTimeExceeded asserts that res was killed at its CPU-time
// limit, having used at least limit and at most limit+slack of CPU.
func requireCPUTimeExceeded(t *testing.T, res *runner.Result, limit, slack time.Duration) {
	t.Helper()
	require.Equal(t, runner.OutcomeCPUTimeExceeded, res.Outcome, describe(res))
	assert.Equal(t, runner.ExitCPUTimeExceeded, res.ExitCode)
	assert.Equal(t, 152, res.ExitCode, "128 + SIGXCPU")
	assert.True(t, res.CPUTimeExceeded)
	assert.False(t, res.TimedOut, "the wall clock did not end it")
	assert.GreaterOrEqual(t, res.Usage.CPU, limit, "killed before its limit")
	assert.LessOrEqual(t, res.Usage.CPU, limit+slack, "killed too long after its limit")
	t.Logf("limit %s: used %s of CPU in %s of wall time", limit, res.Usage.CPU, res.Duration)
}

func TestCPUTimeBusyLoopIsKilledAtItsLimit(t *testing.T) {
	res := runSh(t, busyLoop, func(task *runner.Task) {
		task.Limits.CPUTime = 300 * time.Millisecond
		task.Limits.Timeout = 10 * time.Second
	})
	requireCPUTimeExceeded(t, res, 300*time.Millisecond, 100*time.Millisecond)
	assert.Less(t, res.Duration, 5*time.Second)
}

func TestCPUTimeCountsEveryProcessAndThread(t *testing.T) {
	// Two busy processes on two CPUs use CPU time twice as fast as the
	// wall clock goes: the limit is on their sum.
	code := "sh -c '" + busyLoop + "' & sh -c '" + busyLoop + "' & wait"
	res := runSh(t, code, func(task *runner.Task) {
		task.Limits.CPUTime = 400 * time.Millisecond
		task.Limits.CPUs = 2
		task.Limits.Timeout = 10 * time.Second
	})
	requireCPUTimeExceeded(t, res, 400*time.Millisecond, 100*time.Millisecond)
}

func TestCPUTimeSleepingTaskTimesOutOnTheWallClock(t *testing.T) {
	res := runSh(t, "sleep 30", func(task *runner.Task) {
		task.Limits.CPUTime = 100 * time.Millisecond
		task.Limits.Timeout = time.Second
	})
	require.Equal(t, runner.OutcomeTimedOut, res.Outcome, describe(res))
	assert.Equal(t, runner.ExitTimedOut, res.ExitCode)
	assert.False(t, res.CPUTimeExceeded)
	assert.Less(t, res.Usage.CPU, 100*time.Millisecond)
}

func TestCPUTimeUnderItsLimitExitsNormally(t *testing.T) {
	res := runSh(t, "echo done", func(task *runner.Task) {
		task.Limits.CPUTime = 2 * time.Second
	})
	requireExit(t, res, 0)
	assert.False(t, res.CPUTimeExceeded)
	assert.Equal(t, "done\n", string(res.Stdout.Data))
}

func TestCPUTimeThroughTheService(t *testing.T) {
	p := startServe(t, serveSetup{})
	res, raw := p.post(execBody(busyLoop, `"limits": {"cpu_time": "300ms", "timeout": "10s"}`)).result(t)
	requireCPUTimeExceeded(t, &res, 300*time.Millisecond, 100*time.Millisecond)
	assert.Equal(t, "cpu_time_exceeded", raw["outcome"])
	assert.Equal(t, true, raw["cpu_time_exceeded"])

	// A number is seconds, as for timeout.
	res, _ = p.post(execBody(busyLoop, `"limits": {"cpu_time": 0.2, "timeout": "10s"}`)).result(t)
	requireCPUTimeExceeded(t, &res, 200*time.Millisecond, 100*time.Millisecond)

	for _, bad := range []string{`0`, `"0s"`, `-1`, `"-2s"`, `"soon"`, `true`, `"48h"`} {
		a := p.post(execBody("true", `"limits": {"cpu_time": `+bad+`}`))
		require.Equal(t, http.StatusBadRequest, a.status, "cpu_time %s: %s", bad, a)
		e := a.errorDoc(t)
		assert.Equal(t, service.KindInvalidInput, e.Kind)
		assert.Contains(t, e.Error, "cpu", "cpu_time %s", bad)
	}
	p.waitMetric(service.MetricTasks, "outcome", string(runner.OutcomeCPUTimeExceeded), 2)
}

func TestCPUTimeCLI(t *testing.T) {
	c := newCLI(t)
	r := c.exec(nil, "--cpu-time", "300ms", "--timeout", "10s", "-c", busyLoop)
	assert.Equal(t, 152, r.code, r)
	assert.Contains(t, r.stderr, "CPU time over its limit of 300ms", r)

	r = c.exec(nil, "--json", "--cpu-time", "250ms", "--timeout", "10s", "-c", busyLoop)
	res, _ := decodeResult(t, r)
	requireCPUTimeExceeded(t, &res, 250*time.Millisecond, 100*time.Millisecond)

	for _, bad := range []string{"0", "-1s", "soon"} {
		r = c.exec(nil, "--cpu-time", bad, "-c", "true")
		assert.Equal(t, 2, r.code, "--cpu-time %s\n%s", bad, r)
		assert.Contains(t, r.stderr, "--cpu-time", r)
	}
}

func TestCPUTimeInAPooledSandbox(t *testing.T) {
	h := RequiresRoot(t)
	_, p := newPool(t, h, 1, runner.Limits{})
	// The pooled sandbox was made long before the task: its making is not
	// charged, so the verdict matches the cold path's.
	res := pooledRun(t, p, busyLoop, func(task *runner.Task) {
		task.Limits.CPUTime = 300 * time.Millisecond
		task.Limits.Timeout = 10 * time.Second
	})
	require.Equal(t, uint64(1), p.Stats()[0].Hits, "the task ran in the pooled sandbox")
	requireCPUTimeExceeded(t, res, 300*time.Millisecond, 100*time.Millisecond)
}
