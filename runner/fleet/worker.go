package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/sdnotify"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// How long the worker waits on NATS for one operation, and how long it
// keeps trying to publish an answer before it gives the task back.
const (
	opTimeout      = 5 * time.Second
	publishTimeout = time.Minute
	// fetchBackoff bounds the pause after a failed pull request, while
	// the connection is down.
	fetchBackoff = 2 * time.Second
	// minPollWait is the shortest pull request, however many runtimes
	// share the poll.
	minPollWait = 200 * time.Millisecond
)

// errShutdown cancels the tasks still running when the grace period ends.
var errShutdown = errors.New("worker stopping: grace period over")

// Worker takes tasks from the fleet's queue and runs them with an
// executor, at most its capacity at a time.
type Worker struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	exec     service.Executor
	o        options
	runtimes []string
	host     string
	started  time.Time

	sem      chan struct{}
	running  atomic.Int64
	draining atomic.Bool
	tasks    jetstream.Stream
	results  jetstream.Stream
}

// NewWorker returns a worker that takes tasks from NATS through nc and
// runs them with exec (a *runner.Runner or a *runner.Pool).
func NewWorker(nc *nats.Conn, exec service.Executor, opts ...Option) (*Worker, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if exec == nil || nc == nil {
		return nil, errors.New("fleet: a worker needs a NATS connection and an executor")
	}
	if o.capacity < 1 {
		return nil, fmt.Errorf("capacity %d: give at least 1: %w", o.capacity, errdefs.ErrInvalidArgument)
	}
	if o.maxDeliveries < 1 {
		return nil, fmt.Errorf("max deliveries %d: give at least 1: %w", o.maxDeliveries, errdefs.ErrInvalidArgument)
	}
	if o.grace < 0 || o.retryDelay < 0 || o.pollWait < minPollWait {
		return nil, fmt.Errorf("grace and retry delay must be zero or more, poll wait at least %s: %w", minPollWait, errdefs.ErrInvalidArgument)
	}
	runtimes, err := canonicalRuntimes(o)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	if o.id == "" {
		o.id = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return &Worker{
		nc: nc, js: js, exec: exec, o: o, runtimes: runtimes, host: host,
		sem: make(chan struct{}, o.capacity),
	}, nil
}

// validate checks the options that workers and clients share.
func (o *options) validate() error { return o.streams.Validate() }

// canonicalRuntimes resolves the runtimes a worker takes through its
// catalog: aliases become their runtime's name, and every name must be
// routable.
func canonicalRuntimes(o options) ([]string, error) {
	names := o.runtimes
	if len(names) == 0 {
		names = o.catalog.Names()
	}
	var out []string
	for _, name := range names {
		rt, err := o.catalog.Lookup(name)
		if err != nil {
			return nil, err
		}
		if rt.Name == "" {
			rt.Name = name
		}
		if err := ValidateRuntime(rt.Name); err != nil {
			return nil, err
		}
		if !slices.Contains(out, rt.Name) {
			out = append(out, rt.Name)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no runtimes to take tasks of: %w", errdefs.ErrInvalidArgument)
	}
	slices.Sort(out)
	return out, nil
}

// ID returns the worker's id.
func (w *Worker) ID() string { return w.o.id }

// Runtimes returns the runtimes the worker takes tasks of.
func (w *Worker) Runtimes() []string { return slices.Clone(w.runtimes) }

// taskConsumer is one runtime's consumer, as this worker uses it.
type taskConsumer struct {
	runtime string
	c       jetstream.Consumer
	// heartbeat is a third of the consumer's ack wait.
	heartbeat time.Duration
}

// Run takes and runs tasks until ctx is done. Then it stops fetching,
// lets the running tasks finish for the grace period, cancels the rest
// and gives them back to the queue, removes its presence entry, and
// returns. It creates the streams, the consumers of its runtimes and the
// presence bucket when they do not exist.
//
// Under a systemd Type=notify unit (NOTIFY_SOCKET set), Run tells
// systemd READY=1, with a STATUS= line naming the server and the
// runtimes, once its consumers exist, its presence entry is written and
// it starts fetching; and STOPPING=1 the moment ctx is done.
func (w *Worker) Run(ctx context.Context) error {
	w.started = time.Now()
	if err := w.o.streams.Ensure(ctx, w.js); err != nil {
		return err
	}
	tasks, err := w.js.Stream(ctx, TaskStream)
	if err != nil {
		return fmt.Errorf("opening stream %s: %w", TaskStream, natsError(err))
	}
	w.tasks = tasks
	if w.results, err = w.js.Stream(ctx, ResultStream); err != nil {
		return fmt.Errorf("opening stream %s: %w", ResultStream, natsError(err))
	}
	kv, err := w.o.streams.EnsureBucket(ctx, w.js)
	if err != nil {
		return err
	}
	var consumers []*taskConsumer
	for _, rt := range w.runtimes {
		c, err := w.o.streams.EnsureConsumer(ctx, tasks, rt)
		if err != nil {
			return err
		}
		// The consumer's own ack wait counts, whoever created it.
		ackWait := c.CachedInfo().Config.AckWait
		if ackWait <= 0 {
			ackWait = DefaultAckWait
		}
		consumers = append(consumers, &taskConsumer{runtime: rt, c: c, heartbeat: ackWait / 3})
	}

	// Tasks run on a context of their own: the caller's ends fetching,
	// the grace period ends the tasks.
	runCtx, stopRuns := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopRuns(nil)
	// The first presence entry is written before READY=1, so that once
	// systemd has the worker started, `sandbox-runner workers` lists it.
	presenceCtx, stopPresence := context.WithCancel(context.WithoutCancel(ctx))
	w.putPresence(presenceCtx, kv)
	presenceDone := make(chan struct{})
	go func() {
		defer close(presenceDone)
		w.keepPresence(presenceCtx, kv)
	}()
	server := w.nc.ConnectedUrlRedacted()
	w.o.log.Info("worker started", "worker", w.o.id, "runtimes", w.runtimes, "capacity", w.o.capacity,
		"server", server, "max_deliveries", w.o.maxDeliveries)
	if err := sdnotify.Notify(fmt.Sprintf("READY=1\nSTATUS=taking tasks of %s from %s, %d at a time",
		strings.Join(w.runtimes, ","), server, w.o.capacity)); err != nil {
		w.o.log.Warn("telling systemd the worker is ready", "error", err)
	}

	// STOPPING=1 the moment ctx is done (SIGTERM), not once the pull
	// request in flight has run out.
	stopNotify := context.AfterFunc(ctx, func() {
		_ = sdnotify.Notify(fmt.Sprintf("STOPPING=1\nSTATUS=stopping: no more tasks taken; %d running, %s to finish",
			w.running.Load(), w.o.grace))
	})
	defer stopNotify()

	var wg sync.WaitGroup
	w.fetch(ctx, runCtx, consumers, &wg)

	w.draining.Store(true)
	w.o.log.Info("worker stopping: no more tasks taken", "worker", w.o.id, "in_flight", w.running.Load(), "grace", w.o.grace)
	w.putPresence(context.WithoutCancel(ctx), kv)
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(w.o.grace):
		w.o.log.Warn("grace period over: cancelling the tasks still running and giving them back", "in_flight", w.running.Load())
		stopRuns(errShutdown)
		<-finished
	}
	stopPresence()
	<-presenceDone
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	if err := kv.Delete(dctx, presenceKey(w.o.id)); err != nil {
		w.o.log.Warn("removing the presence entry", "error", err)
	}
	if err := w.nc.FlushTimeout(opTimeout); err != nil {
		w.o.log.Warn("flushing the NATS connection", "error", err)
	}
	w.o.log.Info("worker stopped", "worker", w.o.id)
	return nil
}

// fetch pulls tasks until ctx is done, never more than there are free
// slots: a pull request asks for exactly the slots it holds, and each
// task gives its slot back when it is answered. The runtimes' consumers
// take turns.
func (w *Worker) fetch(ctx, runCtx context.Context, consumers []*taskConsumer, wg *sync.WaitGroup) {
	wait := max(w.o.pollWait/time.Duration(len(consumers)), minPollWait)
	var pause time.Duration
	for i := 0; ctx.Err() == nil; i++ {
		n := w.acquire(ctx)
		if n == 0 {
			return
		}
		tc := consumers[i%len(consumers)]
		batch, err := tc.c.Fetch(n, jetstream.FetchMaxWait(wait))
		if err != nil {
			w.release(n)
			w.recreate(ctx, tc, err)
			pause = w.backoff(ctx, pause, "pulling tasks", tc.runtime, err)
			continue
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			if ctx.Err() != nil {
				// Arrived after the stop: straight back to the queue.
				_ = msg.Nak()
				w.release(1)
				continue
			}
			wg.Add(1)
			w.running.Add(1)
			go func() {
				defer wg.Done()
				defer w.release(1)
				defer w.running.Add(-1)
				w.handle(runCtx, tc, msg)
			}()
		}
		w.release(n - got)
		if err := batch.Error(); err != nil {
			w.recreate(ctx, tc, err)
			pause = w.backoff(ctx, pause, "pulling tasks", tc.runtime, err)
			continue
		}
		pause = 0
	}
}

// recreate makes a runtime's consumer again when a pull failed because
// it is gone (deleted by hand, or lost with an R1 stream's server). A
// pull from a consumer deleted earlier need not say so, hence the look.
func (w *Worker) recreate(ctx context.Context, tc *taskConsumer, err error) {
	cctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if !errors.Is(err, jetstream.ErrConsumerDeleted) && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		if _, lerr := w.tasks.Consumer(cctx, ConsumerName(tc.runtime)); !errors.Is(lerr, jetstream.ErrConsumerNotFound) {
			return
		}
	}
	c, cerr := w.o.streams.EnsureConsumer(cctx, w.tasks, tc.runtime)
	if cerr != nil {
		w.o.log.Warn("making the consumer again", "runtime", tc.runtime, "error", cerr)
		return
	}
	w.o.log.Warn("the consumer was gone: made it again", "runtime", tc.runtime, "consumer", ConsumerName(tc.runtime))
	tc.c = c
}

// backoff logs a failed pull and waits a little longer each time, so
// that a worker whose server is gone does not spin.
func (w *Worker) backoff(ctx context.Context, pause time.Duration, what, runtime string, err error) time.Duration {
	pause = min(max(2*pause, 100*time.Millisecond), fetchBackoff)
	w.o.log.Warn(what+" failed", "runtime", runtime, "error", err, "retry_in", pause)
	select {
	case <-ctx.Done():
	case <-time.After(pause):
	}
	return pause
}

// acquire waits for a free slot and takes every free one; 0 means ctx
// is done.
func (w *Worker) acquire(ctx context.Context) int {
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for {
		select {
		case w.sem <- struct{}{}:
			n++
		default:
			return n
		}
	}
}

func (w *Worker) release(n int) {
	for range n {
		<-w.sem
	}
}

// handle runs one delivered task and answers it, or gives it back.
func (w *Worker) handle(runCtx context.Context, tc *taskConsumer, msg jetstream.Msg) {
	// NATS operations are not the task's: they go on after a shutdown
	// cancelled it, to give the task back.
	opCtx := context.WithoutCancel(runCtx)
	md, err := msg.Metadata()
	if err != nil {
		w.o.log.Error("a task message without JetStream metadata", "subject", msg.Subject(), "error", err)
		_ = msg.Term()
		return
	}
	d := &delivery{msg: msg, runtime: runtimeOf(msg.Subject()), deliveries: int(md.NumDelivered), queued: md.Timestamp}
	task, decodeErr := DecodeTask(msg.Data())
	d.id = task.ID
	if d.id == "" {
		// Undecodable: the id the client published it with, if any.
		if id := msg.Headers().Get(jetstream.MsgIDHeader); ValidateID(id) == nil {
			d.id = id
		}
	}
	log := w.o.log.With("task", d.id, "runtime", d.runtime, "delivery", d.deliveries, "seq", md.Sequence.Stream)

	if d.id != "" {
		answered, err := w.answered(opCtx, d.id)
		switch {
		case err != nil:
			// The answer's compare-and-set still guards against a second
			// one; running it again is the lesser harm.
			log.Warn("checking for an earlier answer", "error", err)
		case answered:
			log.Info("already answered: acknowledged without running it again")
			w.ack(opCtx, log, msg)
			return
		}
	}
	if d.deliveries > w.o.maxDeliveries {
		w.deadLetter(opCtx, log, d, w.unansweredError(opCtx, d))
		return
	}
	if decodeErr != nil {
		w.fail(opCtx, log, d, decodeErr)
		return
	}
	if task.Request.Runs != nil {
		w.handleBatch(runCtx, tc, msg, d, log, task.Request)
		return
	}
	rt, err := w.runnerTask(task.Request, d.runtime)
	if err != nil {
		w.fail(opCtx, log, d, err)
		return
	}

	stopBeat := w.heartbeat(msg, tc.heartbeat)
	defer stopBeat()
	started := time.Now()
	res, err := w.exec.Run(runCtx, rt)
	took := time.Since(started)
	if !w.deliver(runCtx, opCtx, log, msg, d, err, Answer{Result: res}) {
		return
	}
	log.Info("task done", "outcome", res.Outcome, "exit_code", res.ExitCode, "queue_ms", ms(started.Sub(d.queued)), "run_ms", ms(took))
}

// delivery is one delivery of a task message.
type delivery struct {
	msg        jetstream.Msg
	id         string
	runtime    string
	deliveries int
	queued     time.Time
}

// runnerTask turns a request into the task the runner runs, checked as
// the service checks its requests; its runtime must be the subject's.
func (w *Worker) runnerTask(req service.Request, subjectRuntime string) (runner.Task, error) {
	rt, err := w.o.catalog.Lookup(req.Runtime)
	if err != nil {
		return runner.Task{}, err
	}
	if rt.Name != subjectRuntime {
		return runner.Task{}, invalidf("runtime %q was published on %s, the subject of runtime %q: publish on %s",
			req.Runtime, TaskSubject(subjectRuntime), subjectRuntime, TaskSubject(rt.Name))
	}
	base, err := w.o.limits(req.Runtime)
	if err != nil {
		return runner.Task{}, err
	}
	t, err := service.TaskOf(&req, base)
	if err != nil {
		return t, err
	}
	return t, runner.Validate(t, w.o.catalog)
}

// heartbeat tells the server the task is still being worked on, every
// interval, until the returned func is called.
func (w *Worker) heartbeat(msg jetstream.Msg, every time.Duration) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if err := msg.InProgress(); err != nil {
					w.o.log.Warn("heartbeat failed", "error", err)
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
	}
}

// answered tells whether task id has its answer.
func (w *Worker) answered(ctx context.Context, id string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	_, err := w.results.GetLastMsgForSubject(ctx, ResultSubject(id))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, nil
	}
	return false, err
}

// answer publishes a task's answer, unless it has one already
// (published false): the publish expects no message on the subject, so
// two workers can never both answer, whatever the duplicate window. It
// keeps trying while the connection is down, for publishTimeout.
func (w *Worker) answer(ctx context.Context, a Answer) (published bool, err error) {
	limit := int(w.nc.MaxPayload()) - 1024
	b, err := encodeAnswer(a, limit)
	if err != nil {
		return false, err
	}
	deadline := time.Now().Add(publishTimeout)
	for pause := 100 * time.Millisecond; ; pause = min(2*pause, 2*time.Second) {
		pctx, cancel := context.WithTimeout(ctx, opTimeout)
		m := &nats.Msg{Subject: ResultSubject(a.TaskID), Data: b, Header: nats.Header{}}
		_, err := w.js.PublishMsg(pctx, m, jetstream.WithMsgID(a.TaskID), jetstream.WithExpectLastSequencePerSubject(0))
		cancel()
		switch {
		case err == nil:
			// A duplicate is this worker's own answer, sent again after a
			// lost acknowledgement.
			return true, nil
		case isWrongLastSequence(err):
			return false, nil
		case time.Now().After(deadline):
			return false, err
		}
		w.o.log.Warn("publishing an answer failed; retrying", "task", a.TaskID, "error", err)
		time.Sleep(pause)
	}
}

func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// ack acknowledges a task and waits for the server to confirm it. A lost
// acknowledgement is harmless: the task comes back, finds its answer,
// and is acknowledged then.
func (w *Worker) ack(ctx context.Context, log *slog.Logger, msg jetstream.Msg) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := msg.DoubleAck(ctx); err != nil {
		log.Warn("acknowledging the task", "error", err)
	}
}

// fail handles a delivery that could not be run: it goes back to the
// queue after a delay growing with the deliveries, or, on the last
// delivery, to the dead-letter stream. Every failure is retried, even
// bad input: the next worker may be configured differently (runtimes,
// images, limits, version), and one path to the dead letters keeps the
// one-answer rule simple.
func (w *Worker) fail(ctx context.Context, log *slog.Logger, d *delivery, err error) {
	if d.deliveries >= w.o.maxDeliveries {
		w.deadLetter(ctx, log, d, err)
		return
	}
	delay := w.o.retryDelay * time.Duration(d.deliveries)
	log.Warn("task failed; it will be delivered again", "error", err, "kind", Kind(err), "retry_in", delay)
	if d.id != "" {
		f := Failure{TaskID: d.id, Worker: w.o.id, Deliveries: d.deliveries, Error: err.Error(), Kind: Kind(err), At: time.Now().UTC()}
		if b, merr := json.Marshal(f); merr == nil {
			pctx, cancel := context.WithTimeout(ctx, opTimeout)
			if _, perr := w.js.Publish(pctx, FailureSubject(d.id), b); perr != nil {
				log.Warn("recording the failure", "error", perr)
			}
			cancel()
		}
	}
	if err := d.msg.NakWithDelay(delay); err != nil {
		log.Warn("giving the task back", "error", err)
	}
}

// unansweredError is why a task delivered past the limit is
// dead-lettered: the workers that had it never answered, and the last
// attempt that did fail said why.
func (w *Worker) unansweredError(ctx context.Context, d *delivery) error {
	err := &deadError{kind: service.KindRunnerFailed, msg: fmt.Sprintf(
		"delivered %d times and never answered: the workers that took it died or lost their connection", d.deliveries-1)}
	if d.id == "" {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	m, gerr := w.results.GetLastMsgForSubject(ctx, FailureSubject(d.id))
	if gerr != nil {
		return err
	}
	var f Failure
	if json.Unmarshal(m.Data, &f) == nil && f.Error != "" {
		err.msg += fmt.Sprintf("; delivery %d failed on %s: %s", f.Deliveries, f.Worker, f.Error)
		err.kind = f.Kind
	}
	return err
}

// deadError is a failure whose kind is known by name.
type deadError struct{ kind, msg string }

func (e *deadError) Error() string { return e.msg }

// kindOf is Kind, or a deadError's own.
func kindOf(err error) string {
	var de *deadError
	if errors.As(err, &de) {
		return de.kind
	}
	return Kind(err)
}

// deadLetter moves a task to the dead-letter stream with its last error,
// answers it with that error, and removes it from the queue, in that
// order: a worker dying in between leaves a task that comes back and is
// finished by the next one (the dead letter and the answer are both
// deduplicated).
func (w *Worker) deadLetter(ctx context.Context, log *slog.Logger, d *delivery, cause error) {
	kind := kindOf(cause)
	log.Error("task dead-lettered", "error", cause, "kind", kind, "deliveries", d.deliveries)
	m := &nats.Msg{Subject: DeadSubject(d.runtime), Data: d.msg.Data(), Header: nats.Header{}}
	for k, v := range d.msg.Headers() {
		// The server's headers (Nats-Msg-Id, Nats-Expected-Stream, ...)
		// were for the task's publish, not this one.
		if !strings.HasPrefix(k, "Nats-") {
			m.Header[k] = v
		}
	}
	m.Header.Set(HeaderTaskID, d.id)
	m.Header.Set(HeaderError, cause.Error())
	m.Header.Set(HeaderErrorKind, kind)
	m.Header.Set(HeaderDeliveries, strconv.Itoa(d.deliveries))
	m.Header.Set(HeaderWorker, w.o.id)
	m.Header.Set(HeaderSubject, d.msg.Subject())
	msgID := d.id
	if msgID == "" {
		md, _ := d.msg.Metadata()
		msgID = fmt.Sprintf("seq-%d", md.Sequence.Stream)
	}
	pctx, cancel := context.WithTimeout(ctx, opTimeout)
	_, err := w.js.PublishMsg(pctx, m, jetstream.WithMsgID(msgID))
	cancel()
	if err != nil {
		log.Error("publishing the dead letter failed: the task stays queued", "error", err)
		_ = d.msg.NakWithDelay(w.o.retryDelay)
		return
	}
	if d.id != "" {
		a := Answer{TaskID: d.id, Worker: w.o.id, Deliveries: d.deliveries, DeadLettered: true, Kind: kind,
			Error: fmt.Sprintf("dead-lettered after %d deliveries: %v", d.deliveries, cause)}
		if _, err := w.answer(ctx, a); err != nil {
			log.Error("answering the dead-lettered task failed: the task stays queued", "error", err)
			_ = d.msg.NakWithDelay(w.o.retryDelay)
			return
		}
	}
	// Terminating a work-queue message removes it, as an ack does. (No
	// reason: servers before 2.10 do not read one.)
	if err := d.msg.Term(); err != nil {
		log.Warn("removing the dead-lettered task from the queue", "error", err)
	}
}

// keepPresence refreshes the worker's presence entry, which Run wrote
// first, every third of the bucket's TTL until ctx is done.
func (w *Worker) keepPresence(ctx context.Context, kv jetstream.KeyValue) {
	every := w.o.streams.PresenceTTL / 3
	if st, err := kv.Status(ctx); err == nil && st.TTL() > 0 {
		every = st.TTL() / 3
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.putPresence(ctx, kv)
		}
	}
}

func (w *Worker) putPresence(ctx context.Context, kv jetstream.KeyValue) {
	info := WorkerInfo{
		ID: w.o.id, Host: w.host, PID: os.Getpid(), Runtimes: w.runtimes, Capacity: w.o.capacity,
		InFlight: int(w.running.Load()), Version: w.o.version, Server: w.nc.ConnectedUrlRedacted(),
		Started: w.started.UTC(), Updated: time.Now().UTC(), Draining: w.draining.Load(),
	}
	b, err := json.Marshal(info)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := kv.Put(ctx, presenceKey(w.o.id), b); err != nil && ctx.Err() == nil {
		w.o.log.Warn("refreshing the presence entry", "error", err)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// deliver ends a task that ran: one the shutdown cancelled goes back to
// the queue, one the runner failed is failed, else a is published (with
// the task's id, this worker and the deliveries) and the message
// acknowledged. It tells whether the task was answered.
func (w *Worker) deliver(runCtx, opCtx context.Context, log *slog.Logger, msg jetstream.Msg, d *delivery, err error, a Answer) bool {
	if runCtx.Err() != nil {
		// Cancelled by the shutdown, not by anything the task did.
		log.Warn("cancelled by the shutdown: given back to the queue")
		_ = msg.Nak()
		return false
	}
	if err != nil {
		w.fail(opCtx, log, d, err)
		return false
	}
	a.TaskID, a.Worker, a.Deliveries = d.id, w.o.id, d.deliveries
	published, err := w.answer(opCtx, a)
	if err != nil {
		log.Error("publishing the result failed: giving the task back", "error", err)
		_ = msg.Nak()
		return false
	}
	if !published {
		log.Warn("another worker answered the task first: this result is dropped")
	}
	w.ack(opCtx, log, msg)
	return true
}
