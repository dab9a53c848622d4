package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

// RunRequest is one input of a batch request (api.RunRequest).
type RunRequest = api.RunRequest

// BatchOf turns a request with runs into a runner.Batch, on top of base,
// the limits the runtime gets by default. Every error names its field
// (runs[3].limits.memory) and is runner.ErrInvalidTask; the bound on the
// number of runs and what only the runner can check are left to
// runner.ValidateBatch.
func BatchOf(r *Request, base runner.Limits) (runner.Batch, error) {
	var b runner.Batch
	if r.Runs == nil {
		return b, badField("runs", "required for a batch")
	}
	if len(r.Runs) == 0 {
		return b, badField("runs", "empty: give at least one run, or leave the field out to run the program once")
	}
	if r.Stdin != "" || r.StdinEncoding != "" {
		return b, badField("stdin", "a request with runs has no stdin of its own: give each run's as runs[i].stdin")
	}
	t, err := TaskOf(r, base)
	if err != nil {
		return b, err
	}
	b.Task = t
	for i, run := range r.Runs {
		field := fmt.Sprintf("runs[%d]", i)
		var in runner.Run
		if run.Stdin != "" || run.StdinEncoding != "" {
			stdin, err := decodeContent(field+".stdin", run.Stdin, field+".stdin_encoding", run.StdinEncoding)
			if err != nil {
				return b, err
			}
			in.Stdin = bytes.NewReader(stdin)
		}
		for j, a := range run.Args {
			if strings.ContainsRune(a, 0) {
				return b, badField(fmt.Sprintf("%s.args[%d]", field, j), "holds a NUL byte, which no argument can")
			}
		}
		if run.Args != nil {
			in.Args = append([]string{}, run.Args...)
		}
		for _, c := range []struct {
			name string
			v    Limit
		}{{"compile_timeout", run.Limits.CompileTimeout}, {"compile_memory", run.Limits.CompileMemory}} {
			if !c.v.IsZero() {
				return b, badField(field+".limits."+c.name, "the compile stage runs once for all the runs: give it in the request's limits")
			}
		}
		// Only what the run gives: the runner puts it on the request's.
		if in.Limits, err = run.Limits.Apply(runner.Limits{}, func(key string) string { return field + ".limits." + key }); err != nil {
			return b, err
		}
		b.Runs = append(b.Runs, in)
	}
	return b, nil
}

// NewBatchRequest is NewRequest for a batch: t is the program, stdins
// one run's whole standard input each.
func NewBatchRequest(t runner.Task, stdins [][]byte) Request {
	r := NewRequest(t, nil)
	for _, in := range stdins {
		var run RunRequest
		if len(in) > 0 {
			run.Stdin, run.StdinEncoding = encodeContent(in)
		}
		r.Runs = append(r.Runs, run)
	}
	return r
}

// BatchExecutor runs batches. *runner.Runner and *runner.Pool are ones.
type BatchExecutor interface {
	RunBatch(ctx context.Context, b runner.Batch) (*runner.BatchResult, error)
}

// tryAcquire takes a free slot only when one is free now and no task
// waits for one: a batch's further runs never jump the queue nor wait.
func (l *limiter) tryAcquire() (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.waiting > 0 {
		return nil, false
	}
	select {
	case l.tokens <- struct{}{}:
		l.notifyLocked()
		return l.releaser(), true
	default:
		return nil, false
	}
}

// handleBatch runs a request with runs. It takes one slot as any task
// does, queued as any task is; its first run goes on that slot, and
// each further run goes alongside when a slot is free and no other
// request waits for one, up to the service's max_concurrent.
func (s *Service) handleBatch(w http.ResponseWriter, r *http.Request, req *Request, received time.Time) {
	bx, ok := s.exec.(BatchExecutor)
	if !ok {
		writeError(w, http.StatusNotImplemented, KindRunnerFailed, "runs: this service's executor cannot run batches")
		return
	}
	b, err := s.batch(req)
	if err != nil {
		s.reject(w, r, RejectInvalid, http.StatusBadRequest, KindInvalidInput, err.Error())
		return
	}
	log := s.opts.log.With("request", runner.NewID(), "runtime", req.Runtime, "runs", len(b.Runs))
	rt := s.runtimeLabel(req.Runtime)
	release, err := s.lim.acquire(r.Context())
	queueWait := time.Since(received)
	switch {
	case errors.Is(err, errQueueFull):
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		s.reject(w, r, RejectQueueFull, http.StatusTooManyRequests, KindQueueFull, err.Error())
		return
	case errors.Is(err, errShuttingDown):
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		s.reject(w, r, RejectShuttingDown, http.StatusServiceUnavailable, KindShuttingDown, err.Error())
		return
	case err != nil:
		s.metrics.runs.WithLabelValues(string(runner.OutcomeCancelled), rt).Add(float64(len(b.Runs)))
		log.Info("batch cancelled while queued", "queue_ms", ms(queueWait))
		writeError(w, http.StatusServiceUnavailable, KindCancelled, "cancelled while waiting for a slot")
		return
	}
	defer release()
	s.metrics.observeStage(StageQueueWait, queueWait)
	b.Parallel, b.Extra = s.opts.maxConcurrent, s.lim.tryAcquire

	times := &taskTimes{m: s.metrics}
	started := time.Now()
	ctx := runner.WithCleanupHook(runner.WithObserver(r.Context(), times), func(error) { s.metrics.cleanupFailed.Add(1) })
	res, err := bx.RunBatch(ctx, b)
	took := time.Since(started)
	s.metrics.taskDuration.Observe(took.Seconds())
	attrs := []any{"queue_ms", ms(queueWait), "total_ms", ms(took)}
	if err != nil {
		status, kind := classify(err)
		s.metrics.runs.WithLabelValues(OutcomeError, rt).Add(float64(len(b.Runs)))
		log.Error("batch failed", append(attrs, "outcome", OutcomeError, "kind", kind, "error", err)...)
		writeError(w, status, kind, err.Error())
		return
	}
	s.metrics.observeBatch(rt, res)
	if res.Compile != nil {
		attrs = append(attrs, "compile_ms", ms(res.Compile.Duration))
	}
	log.Info("batch done", append(attrs, "task", res.ID, "compile_failed", res.CompileFailed)...)
	w.Header().Set("X-Sandbox-Runner-Task", res.ID)
	writeJSON(w, http.StatusOK, res)
}

// batch turns a request with runs into a batch with the runtime's
// default limits, checked as the runner will check it.
func (s *Service) batch(req *Request) (runner.Batch, error) {
	base, err := s.baseLimits(req)
	if err != nil {
		return runner.Batch{}, err
	}
	b, err := BatchOf(req, base)
	if err != nil {
		return b, err
	}
	return b, runner.ValidateBatch(b, s.opts.catalog, s.opts.maxRuns)
}

// baseLimits are the limits req's runtime gets when it gives none.
func (s *Service) baseLimits(req *Request) (runner.Limits, error) {
	if _, err := s.opts.catalog.Lookup(req.Runtime); err != nil || req.Runtime == "" {
		return runner.Limits{}, nil
	}
	return s.opts.limits(req.Runtime)
}

// WithMaxRuns bounds the runs of one batch request; more are answered
// 400. Default runner.DefaultMaxRuns.
func WithMaxRuns(n int) Option { return func(o *options) { o.maxRuns = n } }

// observeBatch counts a batch's runs by outcome, and what its compile
// stage and runs used, as observeResult does for a task.
func (m *metrics) observeBatch(rt string, res *runner.BatchResult) {
	if res.Compile != nil {
		m.observeStage(StageCompile, res.Compile.Duration)
		m.observeResult(rt, &runner.Result{Stage: *res.Compile})
	}
	for _, run := range res.Runs {
		m.runs.WithLabelValues(string(run.Outcome), rt).Inc()
		if run.Outcome == runner.OutcomeNotRun || (run.Cancelled && run.Duration == 0) {
			// Never started: nothing ran, nothing to observe.
			continue
		}
		m.observeStage(StageRun, run.Duration)
		m.observeResult(rt, run)
	}
}

// newRunsCounter is MetricRuns, with every outcome of every runtime
// present from the start.
func newRunsCounter(runtimes []string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricRuns,
		Help: "Runs of batch requests (\"runs\": one program compiled once, run on many inputs), by outcome (not_run when the compile stage failed, error when the runner failed the batch) and runtime. A batch's runs are not counted in tasks_total.",
	}, []string{"outcome", "runtime"})
	for _, o := range []string{
		string(runner.OutcomeExited), string(runner.OutcomeSignaled), string(runner.OutcomeTimedOut),
		string(runner.OutcomeOOMKilled), string(runner.OutcomeCancelled), string(runner.OutcomeNotRun), OutcomeError,
	} {
		for _, rt := range runtimes {
			c.WithLabelValues(o, rt)
		}
	}
	return c
}

// countingExecutor is what Metrics.Executor returns: tasks counted, and
// batches run by the wrapped executor (when it runs them) with their
// runs counted.
type countingExecutor struct {
	Executor
	m     *Metrics
	inner Executor
}

// RunBatch runs b with the wrapped executor, counting its runs.
func (c countingExecutor) RunBatch(ctx context.Context, b runner.Batch) (*runner.BatchResult, error) {
	bx, ok := c.inner.(BatchExecutor)
	if !ok {
		return nil, fmt.Errorf("runs: this executor cannot run batches: %w", runner.ErrInvalidTask)
	}
	rt := runtimeLabel(c.m.catalog, b.Runtime)
	c.m.m.inFlight.Set(float64(c.m.running.Add(1)))
	defer func() { c.m.m.inFlight.Set(float64(c.m.running.Add(-1))) }()
	times := &taskTimes{m: c.m.m}
	tctx := runner.WithCleanupHook(runner.WithObserver(ctx, times), func(error) { c.m.m.cleanupFailed.Add(1) })
	started := time.Now()
	res, err := bx.RunBatch(tctx, b)
	c.m.m.taskDuration.Observe(time.Since(started).Seconds())
	switch {
	case err != nil && ctx.Err() != nil:
		c.m.m.runs.WithLabelValues(string(runner.OutcomeCancelled), rt).Add(float64(len(b.Runs)))
	case err != nil:
		c.m.m.runs.WithLabelValues(OutcomeError, rt).Add(float64(len(b.Runs)))
	default:
		c.m.m.observeBatch(rt, res)
	}
	return res, err
}
