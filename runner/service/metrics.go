package service

import (
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

// Names of the metrics GET /metrics serves.
const (
	MetricTasks         = "sandbox_runner_tasks_total"
	MetricRejected      = "sandbox_runner_requests_rejected_total"
	MetricStageDuration = "sandbox_runner_stage_duration_seconds"
	MetricTaskDuration  = "sandbox_runner_task_duration_seconds"
	MetricInFlight      = "sandbox_runner_tasks_in_flight"
	MetricQueueDepth    = "sandbox_runner_queue_depth"
	MetricSlots         = "sandbox_runner_slots"
	MetricQueueCapacity = "sandbox_runner_queue_capacity"
	MetricLimitHits     = "sandbox_runner_limit_hits_total"
	MetricCleanupFailed = "sandbox_runner_cleanup_failures_total"
	MetricSweeps        = "sandbox_runner_sweeps_total"
	MetricSweepFailures = "sandbox_runner_sweep_failures_total"
	MetricFound         = "sandbox_runner_leftovers_found_total"
	MetricRemoved       = "sandbox_runner_leftovers_removed_total"
	MetricContainerdUp  = "sandbox_runner_containerd_up"
	MetricProbeDuration = "sandbox_runner_containerd_probe_duration_seconds"
	MetricProbeFailures = "sandbox_runner_containerd_probe_failures_total"
	MetricBuildInfo     = "sandbox_runner_build_info"
	MetricPoolMisses    = "sandbox_runner_pool_misses_total"
	MetricTaskCPU       = "sandbox_runner_task_cpu_seconds_total"
	MetricTasksByOCI    = "sandbox_runner_tasks_by_oci_runtime_total"
	MetricTaskMemory    = "sandbox_runner_task_memory_peak_bytes"
	MetricRuns          = "sandbox_runner_runs_total"
)

// Limit labels of MetricLimitHits.
const (
	LimitMemory = "memory"
	LimitPids   = "pids"
	LimitOutput = "output"
	// LimitOutputFiles: returned files cut or left out at their caps.
	LimitOutputFiles = "output_files"
)

// OutcomeError is the outcome label of a task the runner failed to run
// (the request got a 5xx); the other labels are runner.Outcome values.
const OutcomeError = "error"

// Stage labels of MetricStageDuration.
const (
	StageQueueWait = "queue_wait"
	StageCreate    = "create"
	StageCompile   = "compile"
	StageRun       = "run"
	StageTeardown  = "teardown"
)

// Reasons of MetricRejected.
const (
	RejectInvalid      = "invalid"
	RejectTooLarge     = "too_large"
	RejectQueueFull    = "queue_full"
	RejectShuttingDown = "shutting_down"
	RejectUnauthorized = "unauthorized"
)

// probeBuckets span a containerd that answers at once (well under a
// millisecond) to one that is stuck (the probe's timeout).
var probeBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// durationBuckets span a warm task (a few ms) to a long one (minutes).
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// poolCollector reports a warm pool's figures, read when scraped.
type poolCollector struct {
	stats                                              func() []runner.PoolStats
	size, idle, hits, misses, recycled, initExits, mem *prometheus.Desc
}

func newPoolCollector(stats func() []runner.PoolStats) *poolCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"runtime"}, nil)
	}
	return &poolCollector{
		stats:    stats,
		size:     d("sandbox_runner_pool_size", "Sandboxes the warm pool keeps ready, per runtime (its target)."),
		idle:     d("sandbox_runner_pool_idle", "Sandboxes ready now."),
		hits:     d("sandbox_runner_pool_hits_total", "Tasks that got a pooled sandbox."),
		misses:   d(MetricPoolMisses, "Tasks that took the cold path because no sandbox was ready."),
		recycled: d("sandbox_runner_pool_recycled_total", "Sandboxes thrown away unused after their idle time."),
		initExits: d("sandbox_runner_pool_init_exits_total",
			"Pooled tasks whose verdict came from their init as it exited, not from containerd milliseconds later."),
		mem: d("sandbox_runner_pool_idle_memory_bytes", "Mean host memory one idle sandbox holds (its process and shim)."),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.size, c.idle, c.hits, c.misses, c.recycled, c.initExits, c.mem} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.stats() {
		for _, m := range []struct {
			d *prometheus.Desc
			t prometheus.ValueType
			v float64
		}{
			{c.size, prometheus.GaugeValue, float64(st.Size)},
			{c.idle, prometheus.GaugeValue, float64(st.Idle)},
			{c.hits, prometheus.CounterValue, float64(st.Hits)},
			{c.misses, prometheus.CounterValue, float64(st.Misses)},
			{c.recycled, prometheus.CounterValue, float64(st.Recycled)},
			{c.initExits, prometheus.CounterValue, float64(st.InitExits)},
			{c.mem, prometheus.GaugeValue, float64(st.IdleMemoryBytes)},
		} {
			ch <- prometheus.MustNewConstMetric(m.d, m.t, m.v, st.Runtime)
		}
	}
}

// metrics are the service's Prometheus collectors, on a registry of its
// own so that nothing else in the process leaks into /metrics.
type metrics struct {
	registry      *prometheus.Registry
	tasks         *prometheus.CounterVec
	rejected      *prometheus.CounterVec
	stageDuration *prometheus.HistogramVec
	taskDuration  prometheus.Histogram
	inFlight      prometheus.Gauge
	queueDepth    prometheus.Gauge
	limitHits     *prometheus.CounterVec
	taskCPU       *prometheus.CounterVec
	tasksByOCI    *prometheus.CounterVec
	taskMemory    prometheus.Histogram
	runs          *prometheus.CounterVec
	// cleanupFailed counts the failed teardowns of tasks; background
	// adds those the service does not see (a warm pool's).
	cleanupFailed atomic.Uint64
	background    func() uint64
	sweeps        prometheus.Counter
	sweepFailures prometheus.Counter
	found         *prometheus.CounterVec
	removed       *prometheus.CounterVec
	// containerd's reachability: registered only with a probe.
	up            prometheus.Gauge
	probeDuration prometheus.Histogram
	probeFailures prometheus.Counter
}

// metricsConfig is what the metrics need from the service's options.
type metricsConfig struct {
	slots, queue int
	runtimes     []string
	version      string
	probe        bool
	// background counts cleanup failures outside tasks; may be nil.
	background func() uint64
}

func newMetrics(cfg metricsConfig) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricTasks,
			Help: "Tasks that ran (or were refused by the runner), by outcome (the result's outcome, or \"error\" when the runner failed) and runtime.",
		}, []string{"outcome", "runtime"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRejected,
			Help: "Requests to run a task that were refused before it was queued, by reason.",
		}, []string{"reason"}),
		stageDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricStageDuration,
			Help:    "Time spent in each stage of a task: queue_wait for a slot, create and teardown of each container, compile and run from start to exit.",
			Buckets: durationBuckets,
		}, []string{"stage"}),
		taskDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    MetricTaskDuration,
			Help:    "Time from taking a slot to the result, cleanup included: everything but the queue wait.",
			Buckets: durationBuckets,
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricInFlight,
			Help: "Tasks running now.",
		}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricQueueDepth,
			Help: "Tasks waiting for a slot now.",
		}),
		limitHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricLimitHits,
			Help: "Task stages that hit a limit, by limit (memory: OOM-killed; pids: a fork past the pids limit; output: output cut at its cap; output_files: returned files cut or left out at their caps) and runtime. Timeouts and CPU-time kills are the tasks_total outcomes timed_out and cpu_time_exceeded.",
		}, []string{"limit", "runtime"}),
		taskCPU: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricTaskCPU,
			Help: "CPU time (user and system) the tasks' stages used, by runtime, as their cgroups count it: its rate is the cores tasks keep busy.",
		}, []string{"runtime"}),
		tasksByOCI: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricTasksByOCI,
			Help: "Tasks that ran, by outcome and the OCI runtime (crun, runc, runsc) their sandboxes ran under.",
		}, []string{"outcome", "oci_runtime"}),
		taskMemory: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    MetricTaskMemory,
			Help:    "Peak memory of each task stage, where the kernel records it (cgroup v1; v2 from Linux 5.19).",
			Buckets: prometheus.ExponentialBuckets(1<<20, 2, 13), // 1 MiB to 4 GiB
		}),
		runs:       newRunsCounter(cfg.runtimes),
		background: cfg.background,
		sweeps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricSweeps,
			Help: "Sweeps for what dead runners left behind (one at start-up).",
		}),
		sweepFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricSweepFailures,
			Help: "Sweeps that could not list or remove some leftovers: run `sandbox-runner gc` to see why.",
		}),
		found: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricFound,
			Help: "Leftovers of dead runners that sweeps found, by kind (tasks, containers, snapshots, leases, dirs, mounts).",
		}, []string{"kind"}),
		removed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRemoved,
			Help: "Leftovers of dead runners that sweeps removed, by kind; found minus removed stayed behind.",
		}, []string{"kind"}),
	}
	slotsGauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricSlots, Help: "Tasks that may run at once (--max-concurrent)."})
	slotsGauge.Set(float64(cfg.slots))
	queueGauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricQueueCapacity, Help: "Tasks that may wait for a slot (--queue)."})
	queueGauge.Set(float64(cfg.queue))
	cleanupCounter := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: MetricCleanupFailed,
		Help: "Teardowns (of a task's containers, snapshots, task dir, or a warm pool's sandbox) that failed: what they left is removed by the next sweep, `sandbox-runner gc`.",
	}, func() float64 {
		n := m.cleanupFailed.Load()
		if m.background != nil {
			n += m.background()
		}
		return float64(n)
	})
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: MetricBuildInfo,
		Help: "Always 1; its labels say which sandbox-runner and which Go built it.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(cfg.version, runtime.Version()).Set(1)
	m.registry.MustRegister(m.tasks, m.rejected, m.stageDuration, m.taskDuration, m.inFlight, m.queueDepth,
		slotsGauge, queueGauge, m.limitHits, m.taskCPU, m.tasksByOCI, m.taskMemory, m.runs, cleanupCounter, m.sweeps, m.sweepFailures, m.found, m.removed, buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if cfg.probe {
		m.up = prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricContainerdUp,
			Help: "1 when containerd answered the last probe, 0 when it did not.",
		})
		m.probeDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    MetricProbeDuration,
			Help:    "Round-trip time of the periodic containerd probe (its version call), answered or not.",
			Buckets: probeBuckets,
		})
		m.probeFailures = prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricProbeFailures,
			Help: "containerd probes that got no answer in time.",
		})
		m.registry.MustRegister(m.up, m.probeDuration, m.probeFailures)
	}
	// Every label value exists from the start, so a scraper sees zeros
	// rather than missing series.
	for _, o := range []string{
		string(runner.OutcomeExited), string(runner.OutcomeSignaled), string(runner.OutcomeTimedOut),
		string(runner.OutcomeOOMKilled), string(runner.OutcomeCancelled), string(runner.OutcomeCompileFailed), OutcomeError,
		string(runner.OutcomeCPUTimeExceeded),
	} {
		for _, rt := range cfg.runtimes {
			m.tasks.WithLabelValues(o, rt)
		}
	}
	for _, rt := range cfg.runtimes {
		m.taskCPU.WithLabelValues(rt)
	}
	for _, l := range []string{LimitMemory, LimitPids, LimitOutput, LimitOutputFiles} {
		for _, rt := range cfg.runtimes {
			m.limitHits.WithLabelValues(l, rt)
		}
	}
	for _, k := range runner.SweepKinds {
		m.found.WithLabelValues(k)
		m.removed.WithLabelValues(k)
	}
	for _, r := range []string{RejectInvalid, RejectTooLarge, RejectQueueFull, RejectShuttingDown, RejectUnauthorized} {
		m.rejected.WithLabelValues(r)
	}
	for _, s := range []string{StageQueueWait, StageCreate, StageCompile, StageRun, StageTeardown} {
		m.stageDuration.WithLabelValues(s)
	}
	return m
}

func (m *metrics) limiterChanged(running, waiting int) {
	m.inFlight.Set(float64(running))
	m.queueDepth.Set(float64(waiting))
}

// sweep records what a sweep found and removed.
func (m *metrics) sweep(rep runner.SweepReport, err error) {
	m.sweeps.Inc()
	if err != nil {
		m.sweepFailures.Inc()
	}
	found := rep.Found().ByKind()
	for kind, n := range rep.ByKind() {
		m.removed.WithLabelValues(kind).Add(float64(n))
		m.found.WithLabelValues(kind).Add(float64(found[kind]))
	}
}

// probed records one containerd probe.
func (m *metrics) probed(d time.Duration, err error) {
	m.probeDuration.Observe(d.Seconds())
	if err != nil {
		m.up.Set(0)
		m.probeFailures.Inc()
		return
	}
	m.up.Set(1)
}

// observeResult counts the limits a task's stages hit and what they used.
func (m *metrics) observeResult(rt string, res *runner.Result) {
	if res.OCIRuntime != "" {
		m.tasksByOCI.WithLabelValues(string(res.Outcome), res.OCIRuntime).Inc()
	}
	if res.FilesTruncated {
		m.limitHits.WithLabelValues(LimitOutputFiles, rt).Inc()
	}
	stages := []*runner.Stage{&res.Stage}
	switch {
	case res.Compile != nil && res.Outcome == runner.OutcomeCompileFailed:
		// The run stage's fields repeat the compile stage's.
		stages = []*runner.Stage{res.Compile}
	case res.Compile != nil:
		stages = append(stages, res.Compile)
	}
	for _, st := range stages {
		m.taskCPU.WithLabelValues(rt).Add(st.Usage.CPU.Seconds())
		if st.Usage.MemoryPeak > 0 {
			m.taskMemory.Observe(float64(st.Usage.MemoryPeak))
		}
		if st.OOMKilled {
			m.limitHits.WithLabelValues(LimitMemory, rt).Inc()
		}
		if st.PidsLimitHit {
			m.limitHits.WithLabelValues(LimitPids, rt).Inc()
		}
		if st.OutputTruncated {
			m.limitHits.WithLabelValues(LimitOutput, rt).Inc()
		}
	}
}

func (m *metrics) observeStage(stage string, d time.Duration) {
	m.stageDuration.WithLabelValues(stage).Observe(d.Seconds())
}

// taskTimes collects one task's step durations, from the runner's
// Observer hook and from the result, for its log line and the metrics.
type taskTimes struct {
	m *metrics
	// create and teardown add up both stages of a compiled runtime.
	create, teardown time.Duration
	hooked           bool
}

// ObserveStep implements runner.Observer.
func (t *taskTimes) ObserveStep(stage string, step runner.Step, d time.Duration) {
	t.hooked = true
	switch step {
	case runner.StepCreate:
		t.create += d
		t.m.observeStage(StageCreate, d)
	case runner.StepTeardown:
		t.teardown += d
		t.m.observeStage(StageTeardown, d)
	}
}

// observeResult records the stages' own durations, which the result holds.
func (t *taskTimes) observeResult(res *runner.Result) {
	if res.Compile != nil {
		t.m.observeStage(StageCompile, res.Compile.Duration)
	}
	if res.Compile == nil || res.Outcome != runner.OutcomeCompileFailed {
		t.m.observeStage(StageRun, res.Duration)
	}
}
