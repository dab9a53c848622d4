package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// A task message whose request has "runs" is a batch: one program,
// compiled once and run on each input (service.RunRequest). Its answer
// carries the batch's result as "batch" instead of "result":
//
//	{"task_id": "t-5d3c...", "worker": "host-a-4242", "deliveries": 1, "batch": {...runner.BatchResult...}}
//
// A worker runs a batch's runs one after another, on the one slot the
// task holds.

// WithMaxRuns bounds the runs of one batch task; more are refused as
// invalid input. Default runner.DefaultMaxRuns.
func WithMaxRuns(n int) Option { return func(o *options) { o.maxRuns = n } }

// runnerBatch turns a request with runs into the batch the runner runs,
// checked as the service checks it.
func (w *Worker) runnerBatch(req service.Request, subjectRuntime string) (runner.Batch, error) {
	rt, err := w.o.catalog.Lookup(req.Runtime)
	if err != nil {
		return runner.Batch{}, err
	}
	if rt.Name != subjectRuntime {
		return runner.Batch{}, invalidf("runtime %q was published on %s, the subject of runtime %q: publish on %s",
			req.Runtime, TaskSubject(subjectRuntime), subjectRuntime, TaskSubject(rt.Name))
	}
	base, err := w.o.limits(req.Runtime)
	if err != nil {
		return runner.Batch{}, err
	}
	b, err := service.BatchOf(&req, base)
	if err != nil {
		return b, err
	}
	return b, runner.ValidateBatch(b, w.o.catalog, w.o.maxRuns)
}

// handleBatch runs a delivery whose request has runs, and answers it as
// handle answers a task.
func (w *Worker) handleBatch(runCtx context.Context, tc *taskConsumer, msg jetstream.Msg, d *delivery, log *slog.Logger, req service.Request) {
	opCtx := context.WithoutCancel(runCtx)
	bx, ok := w.exec.(service.BatchExecutor)
	if !ok {
		w.fail(opCtx, log, d, invalidf("runs: this worker's executor cannot run batches"))
		return
	}
	b, err := w.runnerBatch(req, d.runtime)
	if err != nil {
		w.fail(opCtx, log, d, err)
		return
	}
	stopBeat := w.heartbeat(msg, tc.heartbeat)
	defer stopBeat()
	started := time.Now()
	res, err := bx.RunBatch(runCtx, b)
	took := time.Since(started)
	if !w.deliver(runCtx, opCtx, log, msg, d, err, Answer{Batch: res}) {
		return
	}
	log.Info("batch done", "runs", len(res.Runs), "compile_failed", res.CompileFailed, "queue_ms", ms(started.Sub(d.queued)), "run_ms", ms(took))
}

// encodeBatchAnswer is encodeAnswer for a batch's answer: the largest
// stream of the compile stage and the runs is halved until the document
// fits.
func encodeBatchAnswer(a Answer, limit int) ([]byte, error) {
	b, err := json.Marshal(a)
	if err != nil || len(b) <= limit {
		return b, err
	}
	res := *a.Batch
	a.Batch, a.Truncated = &res, true
	var stages []*runner.Stage
	if res.Compile != nil {
		c := *res.Compile
		res.Compile = &c
		stages = append(stages, res.Compile)
	}
	res.Runs = append([]*runner.Result(nil), res.Runs...)
	for i, run := range res.Runs {
		r := *run
		res.Runs[i] = &r
		stages = append(stages, &r.Stage)
	}
	for len(b) > limit {
		var big *runner.Stream
		var owner *runner.Stage
		for _, st := range stages {
			for _, s := range []*runner.Stream{&st.Stdout, &st.Stderr} {
				if big == nil || len(s.Data) > len(big.Data) {
					big, owner = s, st
				}
			}
		}
		if big == nil || len(big.Data) == 0 {
			return nil, fmt.Errorf("the answer is %d bytes without any output, over the %d the NATS server takes", len(b), limit)
		}
		keep := cutUTF8(big.Data, len(big.Data)/2)
		big.Dropped += int64(len(big.Data) - len(keep))
		big.Data = keep
		owner.OutputTruncated = true
		if b, err = json.Marshal(a); err != nil {
			return nil, err
		}
	}
	return b, nil
}
