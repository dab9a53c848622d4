package service

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

// fakeMetrics is /metrics as a service that ran 1000 tasks serves it.
const fakeMetrics = `# TYPE sandbox_runner_tasks_total counter
sandbox_runner_tasks_total{outcome="exited",runtime="python"} 900
sandbox_runner_tasks_total{outcome="exited",runtime="sh"} 85
sandbox_runner_tasks_total{outcome="signaled",runtime="sh"} 3
sandbox_runner_tasks_total{outcome="compile_failed",runtime="cpp"} 2
sandbox_runner_tasks_total{outcome="timed_out",runtime="python"} 4
sandbox_runner_tasks_total{outcome="oom_killed",runtime="python"} 1
sandbox_runner_tasks_total{outcome="error",runtime="sh"} 5
sandbox_runner_tasks_total{outcome="cancelled",runtime="sh"} 100
# TYPE sandbox_runner_stage_duration_seconds histogram
sandbox_runner_stage_duration_seconds_bucket{stage="create",le="0.025"} 0
sandbox_runner_stage_duration_seconds_bucket{stage="create",le="0.05"} 400
sandbox_runner_stage_duration_seconds_bucket{stage="create",le="0.1"} 1000
sandbox_runner_stage_duration_seconds_bucket{stage="create",le="+Inf"} 1000
sandbox_runner_stage_duration_seconds_sum{stage="create"} 60
sandbox_runner_stage_duration_seconds_count{stage="create"} 1000
sandbox_runner_stage_duration_seconds_bucket{stage="run",le="0.025"} 1000
sandbox_runner_stage_duration_seconds_bucket{stage="run",le="+Inf"} 1000
sandbox_runner_stage_duration_seconds_sum{stage="run"} 10
sandbox_runner_stage_duration_seconds_count{stage="run"} 1000
# TYPE sandbox_runner_leftovers_found_total counter
sandbox_runner_leftovers_found_total{kind="containers"} 2
sandbox_runner_leftovers_found_total{kind="tasks"} 1
sandbox_runner_leftovers_found_total{kind="dirs"} 0
# TYPE sandbox_runner_leftovers_removed_total counter
sandbox_runner_leftovers_removed_total{kind="containers"} 2
sandbox_runner_leftovers_removed_total{kind="tasks"} 1
sandbox_runner_leftovers_removed_total{kind="dirs"} 0
# TYPE sandbox_runner_cleanup_failures_total counter
sandbox_runner_cleanup_failures_total 0
# TYPE sandbox_runner_containerd_up gauge
sandbox_runner_containerd_up 1
# TYPE sandbox_runner_tasks_in_flight gauge
sandbox_runner_tasks_in_flight 2
# TYPE sandbox_runner_queue_depth gauge
sandbox_runner_queue_depth 1
# TYPE sandbox_runner_build_info gauge
sandbox_runner_build_info{goversion="go1.25",version="v1.4.0"} 1
`

func TestParseStatus(t *testing.T) {
	s, err := ParseStatus(strings.NewReader(fakeMetrics))
	require.NoError(t, err)
	assert.Equal(t, "v1.4.0", s.Version)
	assert.Equal(t, 1100.0, s.Tasks)
	assert.Equal(t, 985.0, s.Outcomes["exited"])
	require.NotNil(t, s.SuccessRate)
	assert.InDelta(t, 0.99, *s.SuccessRate, 1e-9, "exited, signaled and compile_failed of the 1000 not cancelled")
	require.NotNil(t, s.TimeoutRate)
	assert.InDelta(t, 0.004, *s.TimeoutRate, 1e-9)
	require.NotNil(t, s.MedianStartSeconds)
	assert.InDelta(t, 0.05+0.05*100/600, *s.MedianStartSeconds, 1e-9, "the 500th of 1000 creates, in the 50-100ms bucket")
	assert.Equal(t, map[string]float64{"containers": 2, "tasks": 1, "dirs": 0}, s.LeftoversFound)
	assert.Equal(t, 0.0, s.LeftoversLeft())
	require.NotNil(t, s.ContainerdUp)
	assert.True(t, *s.ContainerdUp)
	assert.Equal(t, 2.0, s.InFlight)
	assert.Equal(t, 1.0, s.Queued)
	assert.Equal(t, []string{"success rate 99% is not above 99%", "timeout rate 0.4% is not under 0.1%"}, s.Missed)

	var b bytes.Buffer
	require.NoError(t, s.WriteText(&b))
	out := b.String()
	for _, want := range []string{
		"containerd         reachable",
		"tasks              1100 (2 running, 1 queued)",
		"exited 985, cancelled 100, error 5, timed_out 4, signaled 3, compile_failed 2, oom_killed 1",
		"success rate       99%",
		"timeout rate       0.4%",
		"median start time  58.3 ms",
		"leftovers          3 found, 3 removed",
		"(found: tasks 1, containers 2)",
		"MISSED: timeout rate 0.4% is not under 0.1%",
	} {
		assert.Contains(t, out, want)
	}
}

func TestParseStatusJudgesTheTargets(t *testing.T) {
	healthy := strings.NewReplacer(
		`{outcome="timed_out",runtime="python"} 4`, `{outcome="timed_out",runtime="python"} 0`,
		`{outcome="error",runtime="sh"} 5`, `{outcome="error",runtime="sh"} 0`,
	).Replace(fakeMetrics)
	s, err := ParseStatus(strings.NewReader(healthy))
	require.NoError(t, err)
	assert.Empty(t, s.Missed)
	var b bytes.Buffer
	require.NoError(t, s.WriteText(&b))
	assert.Contains(t, b.String(), "every target met")

	broken := strings.NewReplacer(
		"sandbox_runner_containerd_up 1", "sandbox_runner_containerd_up 0",
		`sandbox_runner_leftovers_removed_total{kind="containers"} 2`, `sandbox_runner_leftovers_removed_total{kind="containers"} 1`,
		// Every create took over the largest bucket's 100ms.
		`{stage="create",le="0.05"} 400`, `{stage="create",le="0.05"} 0`,
		`{stage="create",le="0.1"} 1000`, `{stage="create",le="0.1"} 0`,
	).Replace(healthy)
	s, err = ParseStatus(strings.NewReader(broken))
	require.NoError(t, err)
	assert.Equal(t, []string{
		"containerd does not answer",
		"1 leftovers of dead runners could not be removed: run `sandbox-runner gc`",
	}, s.Missed)
	require.NotNil(t, s.MedianStartSeconds)
	assert.Equal(t, 0.1, *s.MedianStartSeconds, "in the +Inf bucket: the highest finite bound, as Prometheus says")

	slow := strings.NewReplacer(
		`{stage="create",le="0.1"} 1000`, `{stage="create",le="0.1"} 0`,
		`{stage="create",le="0.05"} 400`, `{stage="create",le="0.05"} 0`,
		`{stage="create",le="+Inf"} 1000`, "{stage=\"create\",le=\"2.5\"} 1000\nsandbox_runner_stage_duration_seconds_bucket{stage=\"create\",le=\"+Inf\"} 1000",
	).Replace(healthy)
	s, err = ParseStatus(strings.NewReader(slow))
	require.NoError(t, err)
	require.NotNil(t, s.MedianStartSeconds)
	assert.InDelta(t, 1.3, *s.MedianStartSeconds, 1e-9, "the middle of the 0.1-2.5s bucket")
	assert.Equal(t, []string{"median start time 1.3 s is not under 1s"}, s.Missed)
}

func TestParseStatusWithoutTasks(t *testing.T) {
	s, err := ParseStatus(strings.NewReader("# TYPE sandbox_runner_tasks_total counter\nsandbox_runner_tasks_total{outcome=\"exited\",runtime=\"sh\"} 0\n"))
	require.NoError(t, err)
	assert.Nil(t, s.SuccessRate)
	assert.Nil(t, s.TimeoutRate)
	assert.Nil(t, s.MedianStartSeconds)
	assert.Nil(t, s.ContainerdUp)
	assert.Empty(t, s.Missed)
	var b bytes.Buffer
	require.NoError(t, s.WriteText(&b))
	assert.Contains(t, b.String(), "n/a (no tasks yet)")

	_, err = ParseStatus(strings.NewReader("# TYPE up gauge\nup 1\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a sandbox-runner service")
	_, err = ParseStatus(strings.NewReader("not metrics {"))
	require.Error(t, err)
}

func TestClientStatusFromAService(t *testing.T) {
	exec := &fakeExec{run: func(_ context.Context, task runner.Task) (*runner.Result, error) {
		if task.Runtime == "node" {
			return &runner.Result{ID: task.ID, Stage: runner.Stage{Outcome: runner.OutcomeTimedOut, TimedOut: true, ExitCode: 124}}, nil
		}
		return &runner.Result{ID: task.ID, Stage: runner.Stage{Outcome: runner.OutcomeExited}}, nil
	}}
	rep := runner.SweepReport{SweepCounts: runner.SweepCounts{Containers: 2, Tasks: 1}}
	ts := startService(t, exec, WithSweep(rep, nil), WithVersion("v9"),
		WithContainerdProbe(func(context.Context) error { return nil }, 0))
	for range 3 {
		require.Equal(t, 200, ts.post(t, shTask).status)
	}
	require.Equal(t, 200, ts.post(t, `{"runtime": "node", "files": [{"content": "for(;;);"}]}`).status)

	s, err := NewClient(ts.socket).Status(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "v9", s.Version)
	assert.Equal(t, 4.0, s.Tasks)
	require.NotNil(t, s.SuccessRate)
	assert.Equal(t, 0.75, *s.SuccessRate)
	assert.Equal(t, 0.25, *s.TimeoutRate)
	assert.Equal(t, 2.0, s.LeftoversFound["containers"])
	assert.Equal(t, 2.0, s.LeftoversRemoved["containers"])
	require.NotNil(t, s.ContainerdUp)
	assert.True(t, *s.ContainerdUp)

	_, err = NewClient(ts.socket + ".none").Status(context.Background())
	assert.True(t, errors.Is(err, ErrUnreachable), "%v", err)
}

func TestTCPClientSendsTheToken(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ts := startServiceOn(t, &fakeExec{}, []net.Listener{tcp}, WithToken("s3cret-token"))
	_ = ts
	s, err := NewTCPClient(tcp.Addr().String(), "s3cret-token").Status(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 0.0, s.Tasks)

	_, err = NewTCPClient(tcp.Addr().String(), "wrong").Status(context.Background())
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 401, e.Status)
}
