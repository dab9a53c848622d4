package service

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

// seriesValue returns the value of the one series of name whose labels
// are exactly labels, failing when there is none.
func seriesValue(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	require.True(t, ok, "no metric %s", name)
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		if len(got) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			match = match && got[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func TestTasksAreCountedByOutcomeAndRuntime(t *testing.T) {
	exec := &fakeExec{run: func(_ context.Context, task runner.Task) (*runner.Result, error) {
		res := &runner.Result{ID: task.ID, Runtime: task.Runtime, OCIRuntime: "crun", Stage: runner.Stage{Outcome: runner.OutcomeExited}}
		switch task.Runtime {
		case "python":
			res.Outcome, res.OOMKilled, res.ExitCode = runner.OutcomeOOMKilled, true, 137
			res.Usage = runner.Usage{CPU: 1500 * time.Millisecond, MemoryPeak: 10 << 20}
		case "node":
			res.Outcome, res.TimedOut, res.ExitCode = runner.OutcomeTimedOut, true, runner.ExitTimedOut
			res.PidsLimitHit, res.OutputTruncated = true, true
		}
		return res, nil
	}}
	ts := startService(t, exec)
	mfs := ts.scrape(t)
	assert.Equal(t, 0.0, seriesValue(t, mfs, MetricTasks, map[string]string{"outcome": "exited", "runtime": "sh"}),
		"every outcome and runtime is there from the start")
	for _, body := range []string{
		shTask, shTask,
		`{"runtime": "python", "files": [{"content": "x = ' ' * 10**10"}]}`,
		`{"runtime": "node", "files": [{"content": "while (true) {}"}]}`,
	} {
		a := ts.post(t, body)
		require.Equal(t, 200, a.status, "%s", a)
	}
	mfs = ts.scrape(t)
	for _, c := range []struct {
		outcome, runtime string
		want             float64
	}{
		{"exited", "sh", 2}, {"oom_killed", "python", 1}, {"timed_out", "node", 1},
		{"exited", "python", 0}, {"timed_out", "sh", 0},
	} {
		assert.Equal(t, c.want, seriesValue(t, mfs, MetricTasks, map[string]string{"outcome": c.outcome, "runtime": c.runtime}),
			"%s %s", c.outcome, c.runtime)
	}
	assert.Equal(t, 2.0, seriesValue(t, mfs, MetricTasksByOCI, map[string]string{"outcome": "exited", "oci_runtime": "crun"}),
		"tasks are counted by the OCI runtime they ran under")
	for _, c := range []struct {
		limit, runtime string
		want           float64
	}{
		{LimitMemory, "python", 1}, {LimitPids, "node", 1}, {LimitOutput, "node", 1},
		{LimitMemory, "node", 0}, {LimitPids, "sh", 0},
	} {
		assert.Equal(t, c.want, seriesValue(t, mfs, MetricLimitHits, map[string]string{"limit": c.limit, "runtime": c.runtime}),
			"%s %s", c.limit, c.runtime)
	}
	assert.Equal(t, 1.5, seriesValue(t, mfs, MetricTaskCPU, map[string]string{"runtime": "python"}))
	assert.Equal(t, 0.0, seriesValue(t, mfs, MetricTaskCPU, map[string]string{"runtime": "sh"}))
	assert.Equal(t, 1.0, metricValue(t, mfs, MetricTaskMemory, "", ""), "one stage reported its peak")
	assert.Equal(t, float64(10<<20), mfs[MetricTaskMemory].GetMetric()[0].GetHistogram().GetSampleSum())
}

func TestAnAliasCountsAsItsRuntime(t *testing.T) {
	ts := startService(t, &fakeExec{})
	a := ts.post(t, `{"runtime": "c++", "files": [{"content": "int main() {}"}]}`)
	require.Equal(t, 200, a.status, "%s", a)
	mfs := ts.scrape(t)
	assert.Equal(t, 1.0, seriesValue(t, mfs, MetricTasks, map[string]string{"outcome": "exited", "runtime": "cpp"}))
	assert.Equal(t, 1.0, metricValue(t, mfs, MetricTasks, "", ""), "one series only")
}

func TestCompileStageLimitsAreCountedOnce(t *testing.T) {
	m := newMetrics(metricsConfig{slots: 1, queue: 1, runtimes: []string{"cpp"}})
	oom := runner.Stage{Outcome: runner.OutcomeCompileFailed, OOMKilled: true}
	m.observeResult("cpp", &runner.Result{Stage: oom, Compile: &runner.Stage{Outcome: runner.OutcomeOOMKilled, OOMKilled: true}})
	m.observeResult("cpp", &runner.Result{
		Stage:   runner.Stage{Outcome: runner.OutcomeExited, OutputTruncated: true},
		Compile: &runner.Stage{Outcome: runner.OutcomeExited, OutputTruncated: true},
	})
	mfs := gather(t, m)
	assert.Equal(t, 1.0, seriesValue(t, mfs, MetricLimitHits, map[string]string{"limit": LimitMemory, "runtime": "cpp"}),
		"a failed compile's run stage repeats the compile stage: counted once")
	assert.Equal(t, 2.0, seriesValue(t, mfs, MetricLimitHits, map[string]string{"limit": LimitOutput, "runtime": "cpp"}),
		"two stages that both hit the cap: twice")
}

func TestCPUTimeAndFilesAreCounted(t *testing.T) {
	m := newMetrics(metricsConfig{slots: 1, queue: 1, runtimes: []string{"sh"}})
	mfs := gather(t, m)
	assert.Equal(t, 0.0, seriesValue(t, mfs, MetricTasks, map[string]string{"outcome": "cpu_time_exceeded", "runtime": "sh"}),
		"the outcome's series exists from the start")
	assert.Equal(t, 0.0, seriesValue(t, mfs, MetricLimitHits, map[string]string{"limit": LimitOutputFiles, "runtime": "sh"}))

	m.observeResult("sh", &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeCPUTimeExceeded, CPUTimeExceeded: true}, FilesTruncated: true})
	mfs = gather(t, m)
	assert.Equal(t, 1.0, seriesValue(t, mfs, MetricLimitHits, map[string]string{"limit": LimitOutputFiles, "runtime": "sh"}))
}

func gather(t *testing.T, m *metrics) map[string]*dto.MetricFamily {
	t.Helper()
	list, err := m.registry.Gather()
	require.NoError(t, err)
	mfs := map[string]*dto.MetricFamily{}
	for _, mf := range list {
		mfs[mf.GetName()] = mf
	}
	return mfs
}

func TestSweepsAreCountedByKind(t *testing.T) {
	first := runner.SweepReport{SweepCounts: runner.SweepCounts{Tasks: 1, Containers: 2, Snapshots: 1, Dirs: 2, Mounts: 1}}
	second := runner.SweepReport{
		SweepCounts: runner.SweepCounts{Leases: 3},
		Failed:      runner.SweepCounts{Containers: 1, Dirs: 1},
	}
	ts := startService(t, &fakeExec{}, WithSweep(first, nil), WithSweep(second, errors.New("removing container x: busy")))
	mfs := ts.scrape(t)
	assert.Equal(t, 2.0, metricValue(t, mfs, MetricSweeps, "", ""))
	assert.Equal(t, 1.0, metricValue(t, mfs, MetricSweepFailures, "", ""))
	for kind, want := range map[string][2]float64{ // found, removed
		runner.KindTasks: {1, 1}, runner.KindContainers: {3, 2}, runner.KindSnapshots: {1, 1},
		runner.KindLeases: {3, 3}, runner.KindDirs: {3, 2}, runner.KindMounts: {1, 1},
	} {
		assert.Equal(t, want[0], metricValue(t, mfs, MetricFound, "kind", kind), "found %s", kind)
		assert.Equal(t, want[1], metricValue(t, mfs, MetricRemoved, "kind", kind), "removed %s", kind)
	}

	mfs = startService(t, &fakeExec{}).scrape(t)
	assert.Equal(t, 0.0, metricValue(t, mfs, MetricSweeps, "", ""))
	assert.Equal(t, 0.0, metricValue(t, mfs, MetricRemoved, "kind", runner.KindContainers), "zeros, not missing series")
}

func TestCleanupFailuresAreCounted(t *testing.T) {
	exec := &fakeExec{run: func(ctx context.Context, task runner.Task) (*runner.Result, error) {
		runner.ReportCleanupFailure(ctx, errors.New("deleting container: busy"))
		return &runner.Result{ID: task.ID, Stage: runner.Stage{Outcome: runner.OutcomeExited}}, nil
	}}
	var pool atomic.Uint64
	pool.Store(3)
	ts := startService(t, exec, WithCleanupFailures(pool.Load))
	assert.Equal(t, 3.0, metricValue(t, ts.scrape(t), MetricCleanupFailed, "", ""))
	require.Equal(t, 200, ts.post(t, shTask).status)
	require.Equal(t, 200, ts.post(t, shTask).status)
	pool.Add(1)
	assert.Equal(t, 6.0, metricValue(t, ts.scrape(t), MetricCleanupFailed, "", ""), "the tasks' two and the pool's four")
}

func TestBuildInfo(t *testing.T) {
	mfs := startService(t, &fakeExec{}, WithVersion("v1.2.3")).scrape(t)
	assert.Equal(t, 1.0, seriesValue(t, mfs, MetricBuildInfo, map[string]string{"version": "v1.2.3", "goversion": runtime.Version()}))
}

func TestContainerdProbe(t *testing.T) {
	var down atomic.Bool
	var calls atomic.Int64
	probe := func(ctx context.Context) error {
		calls.Add(1)
		if down.Load() {
			<-ctx.Done() // an unreachable daemon: the call waits for its timeout
			return ctx.Err()
		}
		return nil
	}
	interval := 50 * time.Millisecond
	ts := startService(t, &fakeExec{}, WithContainerdProbe(probe, interval))
	mfs := ts.scrape(t)
	assert.Equal(t, 1.0, metricValue(t, mfs, MetricContainerdUp, "", ""), "probed once before serving")
	assert.GreaterOrEqual(t, metricValue(t, mfs, MetricProbeDuration, "", ""), 1.0)

	down.Store(true)
	require.Eventually(t, func() bool {
		return metricValue(t, ts.scrape(t), MetricContainerdUp, "", "") == 0
	}, 5*time.Second, 10*time.Millisecond, "down within a few intervals")
	mfs = ts.scrape(t)
	assert.GreaterOrEqual(t, metricValue(t, mfs, MetricProbeFailures, "", ""), 1.0)

	down.Store(false)
	require.Eventually(t, func() bool {
		return metricValue(t, ts.scrape(t), MetricContainerdUp, "", "") == 1
	}, 5*time.Second, 10*time.Millisecond, "up again")
	before := calls.Load()
	time.Sleep(5 * interval)
	assert.Greater(t, calls.Load(), before+1, "probed periodically")

	_, ok := startService(t, &fakeExec{}).scrape(t)[MetricContainerdUp]
	assert.False(t, ok, "no probe, no reachability metric")
}

func TestContainerdProbeIntervalMustNotBeNegative(t *testing.T) {
	_, err := New(&fakeExec{}, WithContainerdProbe(func(context.Context) error { return nil }, -time.Second))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "probe interval")
}

func scrapeHandler(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(rec.Body)
	require.NoError(t, err)
	return mfs
}

func TestMetricsOfAnotherExecutor(t *testing.T) {
	inside := make(chan struct{})
	release := make(chan struct{})
	exec := &fakeExec{run: func(ctx context.Context, task runner.Task) (*runner.Result, error) {
		switch string(task.Files[0].Content) {
		case "block":
			close(inside)
			<-release
		case "fail":
			return nil, errors.New("creating container: boom")
		case "cancel":
			<-ctx.Done()
			return nil, ctx.Err()
		case "leak":
			runner.ReportCleanupFailure(ctx, errors.New("deleting snapshot: busy"))
		}
		return &runner.Result{ID: task.ID, Stage: runner.Stage{Outcome: runner.OutcomeExited, PidsLimitHit: true}}, nil
	}}
	rep := runner.SweepReport{SweepCounts: runner.SweepCounts{Containers: 1}, Failed: runner.SweepCounts{Dirs: 1}}
	var up atomic.Bool
	up.Store(true)
	m, err := NewMetrics(WithVersion("v2"), WithMaxConcurrent(3), WithSweep(rep, errors.New("removing task dir: busy")),
		WithContainerdProbe(func(context.Context) error {
			if up.Load() {
				return nil
			}
			return errors.New("connection refused")
		}, 20*time.Millisecond))
	require.NoError(t, err)
	stop := m.StartProbe()
	defer stop()
	wrapped := m.Executor(exec)
	task := func(code string) runner.Task {
		return runner.Task{Runtime: "python", Files: []runner.File{{Content: []byte(code)}}}
	}

	done := make(chan struct{})
	go func() {
		_, _ = wrapped.Run(context.Background(), task("block"))
		close(done)
	}()
	<-inside
	mfs := scrapeHandler(t, m.Handler())
	assert.Equal(t, 1.0, metricValue(t, mfs, MetricInFlight, "", ""), "one task running")
	assert.Equal(t, 3.0, metricValue(t, mfs, MetricSlots, "", ""))
	assert.Equal(t, 1.0, metricValue(t, mfs, MetricContainerdUp, "", ""), "probed before the first scrape")
	close(release)
	<-done

	_, err = wrapped.Run(context.Background(), task("fail"))
	require.Error(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = wrapped.Run(ctx, task("cancel"))
	require.Error(t, err)
	_, err = wrapped.Run(context.Background(), task("leak"))
	require.NoError(t, err)

	up.Store(false)
	require.Eventually(t, func() bool {
		return metricValue(t, scrapeHandler(t, m.Handler()), MetricContainerdUp, "", "") == 0
	}, 5*time.Second, 10*time.Millisecond)

	mfs = scrapeHandler(t, m.Handler())
	for outcome, want := range map[string]float64{"exited": 2, OutcomeError: 1, "cancelled": 1} {
		assert.Equal(t, want, seriesValue(t, mfs, MetricTasks, map[string]string{"outcome": outcome, "runtime": "python"}), outcome)
	}
	assert.Equal(t, 0.0, metricValue(t, mfs, MetricInFlight, "", ""))
	assert.Equal(t, 2.0, seriesValue(t, mfs, MetricLimitHits, map[string]string{"limit": LimitPids, "runtime": "python"}))
	assert.Equal(t, 1.0, metricValue(t, mfs, MetricCleanupFailed, "", ""))
	assert.Equal(t, 4.0, metricValue(t, mfs, MetricTaskDuration, "", ""))
	assert.Equal(t, 1.0, metricValue(t, mfs, MetricSweepFailures, "", ""))
	assert.Equal(t, 1.0, metricValue(t, mfs, MetricFound, "kind", runner.KindDirs))
	assert.Equal(t, 0.0, metricValue(t, mfs, MetricRemoved, "kind", runner.KindDirs))
	assert.Equal(t, 1.0, seriesValue(t, mfs, MetricBuildInfo, map[string]string{"version": "v2", "goversion": runtime.Version()}))

	s, err := ParseStatus(strings.NewReader(textOf(t, m.Handler())))
	require.NoError(t, err)
	assert.Equal(t, 4.0, s.Tasks, "status reads a worker's metrics as a service's")
}

func textOf(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}
