package service

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

// admission is how runAdmitted runs one task.
type admission struct {
	// received is when the request came, for the queue wait.
	received time.Time
	// mode counts the task by how it is answered (ModeBuffered, ...);
	// "" counts it in no mode.
	mode string
	// api names the API in the log line, when not the service's own.
	api string
	// obs, when not nil, hears the task's steps too.
	obs runner.Observer
}

// runAdmitted runs task as every endpoint does: it waits for a slot (or
// is refused when the queue is full or the service stops), runs the task
// on ctx (a client that goes away cancels it, and the runner kills and
// removes it), and records the metrics and the log line. A refusal or a
// failure of the runner comes back as an *Error to answer with; a task
// that ran, as its result.
func (s *Service) runAdmitted(ctx context.Context, r *http.Request, task runner.Task, a admission) (*runner.Result, *Error) {
	log := s.opts.log.With("request", runner.NewID(), "runtime", task.Runtime)
	if a.mode != "" && a.mode != ModeBuffered {
		log = log.With("mode", a.mode)
	}
	if a.api != "" {
		log = log.With("api", a.api)
	}
	rt := s.runtimeLabel(task.Runtime)
	release, err := s.lim.acquire(ctx)
	queueWait := time.Since(a.received)
	switch {
	case errors.Is(err, errQueueFull):
		s.metrics.rejected.WithLabelValues(RejectQueueFull).Inc()
		log.Info("request refused", "reason", RejectQueueFull, "remote", r.RemoteAddr)
		return nil, &Error{Status: http.StatusTooManyRequests, Kind: KindQueueFull, Message: err.Error(), RetryAfter: retryAfter * time.Second}
	case errors.Is(err, errShuttingDown):
		s.metrics.rejected.WithLabelValues(RejectShuttingDown).Inc()
		log.Info("request refused", "reason", RejectShuttingDown, "remote", r.RemoteAddr)
		return nil, &Error{Status: http.StatusServiceUnavailable, Kind: KindShuttingDown, Message: err.Error(), RetryAfter: retryAfter * time.Second}
	case err != nil:
		// The client went away while its task waited: nothing ran.
		s.metrics.tasks.WithLabelValues(string(runner.OutcomeCancelled), rt).Inc()
		log.Info("task cancelled while queued", "outcome", runner.OutcomeCancelled, "queue_ms", ms(queueWait), "cancelled_by", s.endedBy(ctx))
		return nil, &Error{Status: http.StatusServiceUnavailable, Kind: KindCancelled, Message: "cancelled while waiting for a slot"}
	}
	defer release()
	s.metrics.observeStage(StageQueueWait, queueWait)
	if a.mode != "" {
		s.modes.WithLabelValues(a.mode).Inc()
	}

	times := &taskTimes{m: s.metrics}
	var o runner.Observer = times
	if a.obs != nil {
		o = observers{times, a.obs}
	}
	started := time.Now()
	rctx := runner.WithCleanupHook(runner.WithObserver(ctx, o), func(error) { s.metrics.cleanupFailed.Add(1) })
	res, err := s.exec.Run(rctx, task)
	took := time.Since(started)
	s.metrics.taskDuration.Observe(took.Seconds())
	attrs := []any{"queue_ms", ms(queueWait), "total_ms", ms(took)}
	if times.hooked {
		attrs = append(attrs, "create_ms", ms(times.create), "teardown_ms", ms(times.teardown))
	}
	if err != nil {
		status, kind := classify(err)
		s.metrics.tasks.WithLabelValues(OutcomeError, rt).Inc()
		log.Error("task failed", append(attrs, "outcome", OutcomeError, "kind", kind, "error", err)...)
		return nil, &Error{Status: status, Kind: kind, Message: err.Error()}
	}
	times.observeResult(res)
	s.metrics.tasks.WithLabelValues(string(res.Outcome), rt).Inc()
	s.metrics.observeResult(rt, res)
	attrs = append(attrs, "outcome", res.Outcome, "exit_code", res.ExitCode, "run_ms", ms(res.Duration))
	if res.Compile != nil {
		attrs = append(attrs, "compile_ms", ms(res.Compile.Duration))
	}
	if res.Cancelled && ctx.Err() != nil {
		attrs = append(attrs, "cancelled_by", s.endedBy(ctx))
	}
	log.Info("task done", append(attrs, "task", res.ID)...)
	return res, nil
}

// writeErrorOf answers with e, and its Retry-After when it has one.
func writeErrorOf(w http.ResponseWriter, e *Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(e.RetryAfter/time.Second)))
	}
	writeError(w, e.Status, e.Kind, e.Message)
}
