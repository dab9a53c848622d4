package service

import (
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

// durationBuckets span a warm task (a few ms) to a long one (minutes).
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// poolCollector reports a warm pool's figures, read when scraped.
type poolCollector struct {
	stats                                   func() []runner.PoolStats
	size, idle, hits, misses, recycled, mem *prometheus.Desc
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
		misses:   d("sandbox_runner_pool_misses_total", "Tasks that took the cold path because no sandbox was ready."),
		recycled: d("sandbox_runner_pool_recycled_total", "Sandboxes thrown away unused after their idle time."),
		mem:      d("sandbox_runner_pool_idle_memory_bytes", "Mean host memory one idle sandbox holds (its process and shim)."),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.size, c.idle, c.hits, c.misses, c.recycled, c.mem} {
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
}

func newMetrics(slots, queue int) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricTasks,
			Help: "Tasks that ran (or were refused by the runner), by outcome: the result's outcome, or \"error\" when the runner failed.",
		}, []string{"outcome"}),
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
	}
	slotsGauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricSlots, Help: "Tasks that may run at once (--max-concurrent)."})
	slotsGauge.Set(float64(slots))
	queueGauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricQueueCapacity, Help: "Tasks that may wait for a slot (--queue)."})
	queueGauge.Set(float64(queue))
	m.registry.MustRegister(m.tasks, m.rejected, m.stageDuration, m.taskDuration, m.inFlight, m.queueDepth,
		slotsGauge, queueGauge,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Every label value exists from the start, so a scraper sees zeros
	// rather than missing series.
	for _, o := range []string{
		string(runner.OutcomeExited), string(runner.OutcomeSignaled), string(runner.OutcomeTimedOut),
		string(runner.OutcomeOOMKilled), string(runner.OutcomeCancelled), string(runner.OutcomeCompileFailed), OutcomeError,
	} {
		m.tasks.WithLabelValues(o)
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
