package fleet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/fleet"
	"github.com/sandbox-runner/sandbox-runner/runner/fleet/fleettest"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// fakeExec stands in for the runner: a task's code says what it does.
// "echo TEXT" prints TEXT; "sleep DURATION" waits; "fail" fails as a
// missing image does. It records how many tasks ran at once.
type fakeExec struct {
	mu      sync.Mutex
	runs    map[string]int // by code
	running atomic.Int64
	peak    atomic.Int64
}

func newFakeExec() *fakeExec { return &fakeExec{runs: map[string]int{}} }

func (f *fakeExec) Run(ctx context.Context, t runner.Task) (*runner.Result, error) {
	code := string(t.Files[0].Content)
	f.mu.Lock()
	f.runs[code]++
	f.mu.Unlock()
	n := f.running.Add(1)
	defer f.running.Add(-1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	res := &runner.Result{ID: runner.NewID(), Runtime: t.Runtime, Stage: runner.Stage{Outcome: runner.OutcomeExited}}
	verb, arg, _ := strings.Cut(code, " ")
	switch verb {
	case "echo":
		res.Stdout.Data = []byte(arg + "\n")
	case "sleep":
		d, _ := time.ParseDuration(arg)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			res.Outcome, res.Cancelled, res.ExitCode = runner.OutcomeCancelled, true, runner.ExitCancelled
		}
	case "fail":
		return nil, fmt.Errorf("image %s: %w", arg, runner.ErrImageNotFound)
	}
	return res, nil
}

func (f *fakeExec) count(code string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.runs[code]
}

// catalog has the runtimes the tests route: sh and python.
func catalog() images.Catalog {
	c := images.DefaultCatalog()
	return images.Catalog{"sh": c["sh"], "python": c["python"]}
}

func connect(t *testing.T, urls string) *nats.Conn {
	t.Helper()
	nc, err := fleet.Connect(fleet.ConnectOptions{URLs: urls, Name: t.Name()})
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// startWorker runs a worker until the test ends (or stop is called) and
// returns stop, which waits for Run to return.
func startWorker(t *testing.T, urls string, exec service.Executor, opts ...fleet.Option) (w *fleet.Worker, stop func()) {
	t.Helper()
	nc := connect(t, urls)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	w, err := fleet.NewWorker(nc, exec, append([]fleet.Option{
		fleet.WithCatalog(catalog()), fleet.WithCapacity(2), fleet.WithAckWait(time.Second),
		fleet.WithRetryDelay(50 * time.Millisecond), fleet.WithPollWait(500 * time.Millisecond),
		fleet.WithLogger(log),
	}, opts...)...)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				assert.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Errorf("the worker did not stop")
			}
		})
	}
	t.Cleanup(stop)
	waitForWorker(t, nc, w.ID())
	return w, stop
}

// waitForWorker waits until a worker's presence entry is there, which
// it writes once its consumers exist.
func waitForWorker(t *testing.T, nc *nats.Conn, id string) {
	t.Helper()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ws, err := fleet.ListWorkers(context.Background(), js)
		if err != nil {
			return false
		}
		for _, w := range ws {
			if w.ID == id {
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond)
}

func shTask(id, code string) fleet.Task {
	return fleet.Task{ID: id, Request: service.Request{Runtime: "sh", Files: []service.File{{Content: code}}}}
}

func newClient(t *testing.T, urls string) *fleet.Client {
	t.Helper()
	c, err := fleet.NewClient(connect(t, urls))
	require.NoError(t, err)
	return c
}

func wait(t *testing.T, c *fleet.Client, id string, d time.Duration) *fleet.Answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	a, err := c.Wait(ctx, id)
	require.NoError(t, err, "waiting for %s", id)
	return a
}

// TestWorkersShareTasksOneAnswerEach: three workers, 60 tasks, each
// task run once and answered once; no worker runs more than its
// capacity at a time.
func TestWorkersShareTasksOneAnswerEach(t *testing.T) {
	srv := fleettest.Start(t)
	exec := newFakeExec()
	var ids []string
	for i := range 3 {
		w, _ := startWorker(t, srv.URL, exec, fleet.WithID(fmt.Sprintf("w%d", i)), fleet.WithRuntimes("sh"))
		ids = append(ids, w.ID())
	}
	c := newClient(t, srv.URL)
	ctx := context.Background()
	const n = 60
	for i := range n {
		require.NoError(t, c.Submit(ctx, shTask(fmt.Sprintf("t-%d", i), fmt.Sprintf("echo %d", i))))
	}
	// The same task again, within the duplicate window: queued once.
	require.NoError(t, c.Submit(ctx, shTask("t-0", "echo 0")))

	byWorker := map[string]int{}
	for i := range n {
		a := wait(t, c, fmt.Sprintf("t-%d", i), 30*time.Second)
		require.NoError(t, a.Err())
		assert.Equal(t, fmt.Sprintf("%d\n", i), string(a.Result.Stdout.Data))
		assert.Equal(t, 1, a.Deliveries)
		byWorker[a.Worker]++
	}
	for i := range n {
		assert.Equal(t, 1, exec.count(fmt.Sprintf("echo %d", i)), "task %d ran once", i)
	}
	assert.LessOrEqual(t, exec.peak.Load(), int64(3*2), "at most the capacity of the three workers")
	t.Logf("tasks per worker: %v", byWorker)
	assert.Len(t, byWorker, 3, "every worker took tasks")

	js := c.JetStream()
	rs, err := js.Stream(ctx, fleet.ResultStream)
	require.NoError(t, err)
	info, err := rs.Info(ctx, jetstream.WithSubjectFilter(fleet.ResultSubjects))
	require.NoError(t, err)
	assert.Len(t, info.State.Subjects, n, "one answer per task")
	assert.Equal(t, uint64(n), info.State.Msgs)
	ts, err := js.Stream(ctx, fleet.TaskStream)
	require.NoError(t, err)
	// Each task is answered first and acknowledged after.
	assert.Eventually(t, func() bool {
		tinfo, err := ts.Info(ctx)
		return err == nil && tinfo.State.Msgs == 0
	}, 10*time.Second, 20*time.Millisecond, "the queue is empty")
}

// TestWorkerFetchesNoMoreThanItsCapacity: with capacity 2 and a queue of
// 8 long tasks, the consumer never has more than 2 unacknowledged
// deliveries: the worker only asks for what it has slots for.
func TestWorkerFetchesNoMoreThanItsCapacity(t *testing.T) {
	srv := fleettest.Start(t)
	exec := newFakeExec()
	startWorker(t, srv.URL, exec, fleet.WithRuntimes("sh"), fleet.WithCapacity(2))
	c := newClient(t, srv.URL)
	ctx := context.Background()
	for i := range 8 {
		require.NoError(t, c.Submit(ctx, shTask(fmt.Sprintf("t-%d", i), "sleep 300ms")))
	}
	ts, err := c.JetStream().Stream(ctx, fleet.TaskStream)
	require.NoError(t, err)
	cons, err := ts.Consumer(ctx, fleet.ConsumerName("sh"))
	require.NoError(t, err)
	deadline := time.Now().Add(20 * time.Second)
	var maxPending int
	for time.Now().Before(deadline) {
		info, err := cons.Info(ctx)
		require.NoError(t, err)
		maxPending = max(maxPending, info.NumAckPending)
		if info.NumPending == 0 && info.NumAckPending == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	assert.LessOrEqual(t, maxPending, 2)
	assert.Equal(t, 2, maxPending, "both slots were used")
	assert.Equal(t, int64(2), exec.peak.Load())
	for i := range 8 {
		require.NoError(t, wait(t, c, fmt.Sprintf("t-%d", i), 10*time.Second).Err())
	}
}

// TestHeartbeatKeepsALongTask: a task that runs for four ack waits is
// delivered once: the in-progress acknowledgements keep it.
func TestHeartbeatKeepsALongTask(t *testing.T) {
	srv := fleettest.Start(t)
	exec := newFakeExec()
	startWorker(t, srv.URL, exec, fleet.WithRuntimes("sh"), fleet.WithAckWait(500*time.Millisecond))
	startWorker(t, srv.URL, exec, fleet.WithRuntimes("sh"), fleet.WithAckWait(500*time.Millisecond), fleet.WithID("other"))
	c := newClient(t, srv.URL)
	require.NoError(t, c.Submit(context.Background(), shTask("long", "sleep 2s")))
	a := wait(t, c, "long", 20*time.Second)
	require.NoError(t, a.Err())
	assert.Equal(t, 1, a.Deliveries)
	assert.Equal(t, 1, exec.count("sleep 2s"), "run once")
}

// TestAnsweredTaskIsNotRunAgain: a task whose answer is there already
// (a worker died between publishing it and acknowledging) is
// acknowledged without running, and keeps its one answer.
func TestAnsweredTaskIsNotRunAgain(t *testing.T) {
	srv := fleettest.Start(t)
	c := newClient(t, srv.URL)
	ctx := context.Background()
	// Queued, and answered already: the worker that answered it died
	// before it acknowledged.
	require.NoError(t, c.Submit(ctx, shTask("done", "echo again")))
	first, _ := json.Marshal(fleet.Answer{TaskID: "done", Worker: "dead", Deliveries: 1, Result: &runner.Result{ID: "sr-1", Stage: runner.Stage{Outcome: runner.OutcomeExited}}})
	_, err := c.JetStream().Publish(ctx, fleet.ResultSubject("done"), first)
	require.NoError(t, err)

	exec := newFakeExec()
	startWorker(t, srv.URL, exec, fleet.WithRuntimes("sh"))
	ts, err := c.JetStream().Stream(ctx, fleet.TaskStream)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := ts.Info(ctx)
		return err == nil && info.State.Msgs == 0
	}, 10*time.Second, 20*time.Millisecond, "the task is acknowledged")
	assert.Zero(t, exec.count("echo again"))
	a := wait(t, c, "done", time.Second)
	assert.Equal(t, "dead", a.Worker, "the first answer stays")
}

// TestPoisonTaskIsDeadLettered: a task message whose request cannot be
// decoded fails on every delivery; the delivery that reaches the limit
// sends it to the dead letters with its error and answers it.
func TestPoisonTaskIsDeadLettered(t *testing.T) {
	srv := fleettest.Start(t)
	exec := newFakeExec()
	startWorker(t, srv.URL, exec, fleet.WithRuntimes("sh"), fleet.WithMaxDeliveries(3))
	c := newClient(t, srv.URL)
	ctx := context.Background()
	js := c.JetStream()
	poison := []byte(`{"id":"poison","request":{"runtime":"sh","files":"not a list"}}`)
	_, err := js.Publish(ctx, fleet.TaskSubject("sh"), poison, jetstream.WithMsgID("poison"))
	require.NoError(t, err)

	a := wait(t, c, "poison", 20*time.Second)
	assert.True(t, a.DeadLettered)
	assert.Equal(t, service.KindInvalidInput, a.Kind)
	assert.Equal(t, 3, a.Deliveries)
	assert.Contains(t, a.Error, "files: expected an array")
	assert.ErrorIs(t, a.Err(), runner.ErrInvalidTask)

	dead := lastDead(t, js, "sh")
	assert.Equal(t, poison, dead.Data)
	assert.Equal(t, "poison", dead.Header.Get(fleet.HeaderTaskID))
	assert.Equal(t, "3", dead.Header.Get(fleet.HeaderDeliveries))
	assert.Equal(t, service.KindInvalidInput, dead.Header.Get(fleet.HeaderErrorKind))
	assert.Contains(t, dead.Header.Get(fleet.HeaderError), "files: expected an array")
	assert.Equal(t, fleet.TaskSubject("sh"), dead.Header.Get(fleet.HeaderSubject))
	queueEmpty(t, js)

	// The worker goes on with the next task.
	require.NoError(t, c.Submit(ctx, shTask("after", "echo fine")))
	assert.NoError(t, wait(t, c, "after", 10*time.Second).Err())
}

// TestFailingRunnerIsRetriedThenDeadLettered: the runner fails on every
// delivery (an image no host has); the task is retried, then
// dead-lettered as image_not_found.
func TestFailingRunnerIsRetriedThenDeadLettered(t *testing.T) {
	srv := fleettest.Start(t)
	exec := newFakeExec()
	startWorker(t, srv.URL, exec, fleet.WithRuntimes("sh"), fleet.WithMaxDeliveries(2))
	c := newClient(t, srv.URL)
	require.NoError(t, c.Submit(context.Background(), shTask("noimage", "fail nowhere:1")))
	a := wait(t, c, "noimage", 20*time.Second)
	assert.Equal(t, service.KindImageNotFound, a.Kind)
	assert.ErrorIs(t, a.Err(), runner.ErrImageNotFound)
	assert.Equal(t, 2, exec.count("fail nowhere:1"))
	dead := lastDead(t, c.JetStream(), "sh")
	assert.Contains(t, dead.Header.Get(fleet.HeaderError), "image nowhere:1")
}

// TestUnansweredTaskIsDeadLettered: a task taken by workers that never
// answer (they died) is dead-lettered by the next worker once it was
// delivered more than the limit, with the last recorded failure.
func TestUnansweredTaskIsDeadLettered(t *testing.T) {
	srv := fleettest.Start(t)
	c := newClient(t, srv.URL)
	ctx := context.Background()
	js := c.JetStream()
	require.NoError(t, c.Submit(ctx, shTask("cursed", "echo never")))
	fail, _ := json.Marshal(fleet.Failure{TaskID: "cursed", Worker: "w0", Deliveries: 1, Error: "containerd went away", Kind: service.KindSandboxUnavailable})
	_, err := js.Publish(ctx, fleet.FailureSubject("cursed"), fail)
	require.NoError(t, err)

	// Two "workers" that take the task and die: they never acknowledge.
	s, err := js.Stream(ctx, fleet.TaskStream)
	require.NoError(t, err)
	cons, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: fleet.ConsumerName("sh"), FilterSubject: fleet.TaskSubject("sh"),
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 300 * time.Millisecond, MaxDeliver: -1,
	})
	require.NoError(t, err)
	for range 2 {
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(3*time.Second))
		require.NoError(t, err)
		got := 0
		for range b.Messages() {
			got++
		}
		require.Equal(t, 1, got)
	}

	exec := newFakeExec()
	startWorker(t, srv.URL, exec, fleet.WithRuntimes("sh"), fleet.WithMaxDeliveries(2))
	a := wait(t, c, "cursed", 20*time.Second)
	assert.True(t, a.DeadLettered)
	assert.Equal(t, 3, a.Deliveries)
	assert.Contains(t, a.Error, "never answered")
	assert.Contains(t, a.Error, "containerd went away")
	assert.Equal(t, service.KindSandboxUnavailable, a.Kind)
	assert.Zero(t, exec.count("echo never"), "not run past the limit")
	queueEmpty(t, js)
}

// TestRoutingByRuntime: a worker takes only the runtimes it runs; a
// python task waits for a python worker.
func TestRoutingByRuntime(t *testing.T) {
	srv := fleettest.Start(t)
	shExec, pyExec := newFakeExec(), newFakeExec()
	startWorker(t, srv.URL, shExec, fleet.WithRuntimes("sh"), fleet.WithID("sh-only"))
	c := newClient(t, srv.URL)
	ctx := context.Background()
	py := fleet.Task{ID: "py", Request: service.Request{Runtime: "python", Files: []service.File{{Content: "echo py"}}}}
	require.NoError(t, c.Submit(ctx, py))
	require.NoError(t, c.Submit(ctx, shTask("sh", "echo sh")))
	assert.Equal(t, "sh-only", wait(t, c, "sh", 10*time.Second).Worker)
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	_, err := c.Wait(wctx, "py")
	cancel()
	assert.ErrorIs(t, err, context.DeadlineExceeded, "no worker runs python yet")

	startWorker(t, srv.URL, pyExec, fleet.WithRuntimes("python", "sh"), fleet.WithID("both"))
	assert.Equal(t, "both", wait(t, c, "py", 10*time.Second).Worker)
	assert.Zero(t, shExec.count("echo py"))

	// A task published on another runtime's subject is refused.
	wrong := []byte(`{"id":"wrong","request":{"runtime":"python","files":[{"content":"echo x"}]}}`)
	_, err = c.JetStream().Publish(ctx, fleet.TaskSubject("sh"), wrong)
	require.NoError(t, err)
	a := wait(t, c, "wrong", 30*time.Second)
	assert.Contains(t, a.Error, "was published on sandbox.tasks.sh")
}

// TestGracefulStop: on stop a worker takes no more tasks, finishes the
// running one within the grace period, and removes its presence entry;
// a task still running when the grace period ends goes back to the
// queue and is answered by another worker.
func TestGracefulStop(t *testing.T) {
	srv := fleettest.Start(t)
	exec := newFakeExec()
	_, stop := startWorker(t, srv.URL, exec, fleet.WithRuntimes("sh"), fleet.WithGrace(time.Second), fleet.WithID("leaving"))
	c := newClient(t, srv.URL)
	ctx := context.Background()
	require.NoError(t, c.Submit(ctx, shTask("short", "sleep 300ms")))
	require.NoError(t, c.Submit(ctx, shTask("long", "sleep 3s")))
	require.Eventually(t, func() bool { return exec.running.Load() == 2 }, 10*time.Second, 10*time.Millisecond)
	stop()
	a := wait(t, c, "short", time.Second)
	assert.Equal(t, "leaving", a.Worker, "finished within the grace period")
	ws, err := c.Workers(ctx)
	require.NoError(t, err)
	assert.Empty(t, ws, "the presence entry is gone at once")

	startWorker(t, srv.URL, exec, fleet.WithRuntimes("sh"), fleet.WithID("staying"))
	a = wait(t, c, "long", 20*time.Second)
	assert.Equal(t, "staying", a.Worker)
	assert.Equal(t, 2, a.Deliveries)
	require.NotNil(t, a.Result)
	assert.Equal(t, runner.OutcomeExited, a.Result.Outcome, "the cancelled run was not the answer")
}

// TestPresence: a worker's entry says what it runs, and expires after
// the TTL when the worker stops refreshing it.
func TestPresence(t *testing.T) {
	srv := fleettest.Start(t)
	exec := newFakeExec()
	// A TTL of 1s: entries refreshed every 333ms.
	startWorker(t, srv.URL, exec, fleet.WithRuntimes("python", "sh"), fleet.WithCapacity(3), fleet.WithID("p1"),
		fleet.WithVersion("v9"), fleet.WithPresenceTTL(time.Second))
	c := newClient(t, srv.URL)
	ctx := context.Background()
	ws, err := c.Workers(ctx)
	require.NoError(t, err)
	require.Len(t, ws, 1)
	w := ws[0]
	assert.Equal(t, "p1", w.ID)
	assert.Equal(t, []string{"python", "sh"}, w.Runtimes)
	assert.Equal(t, 3, w.Capacity)
	assert.Equal(t, "v9", w.Version)
	assert.Equal(t, srv.URL, w.Server)
	assert.NotEmpty(t, w.Host)

	// Refreshed past its TTL while the worker lives.
	time.Sleep(2 * time.Second)
	ws, err = c.Workers(ctx)
	require.NoError(t, err)
	require.Len(t, ws, 1)
	assert.Greater(t, ws[0].Updated, w.Updated)

	// An entry nobody refreshes expires.
	kv, err := c.JetStream().KeyValue(ctx, fleet.WorkersBucket)
	require.NoError(t, err)
	b, _ := json.Marshal(fleet.WorkerInfo{ID: "ghost"})
	_, err = kv.Put(ctx, "ghost", b)
	require.NoError(t, err)
	ws, err = c.Workers(ctx)
	require.NoError(t, err)
	assert.Len(t, ws, 2)
	require.Eventually(t, func() bool {
		ws, err := c.Workers(ctx)
		return err == nil && len(ws) == 1 && ws[0].ID == "p1"
	}, 5*time.Second, 100*time.Millisecond)
}

func lastDead(t *testing.T, js jetstream.JetStream, runtime string) *jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(context.Background(), fleet.DeadStream)
	require.NoError(t, err)
	m, err := s.GetLastMsgForSubject(context.Background(), fleet.DeadSubject(runtime))
	require.NoError(t, err)
	return m
}

func queueEmpty(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	s, err := js.Stream(context.Background(), fleet.TaskStream)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := s.Info(context.Background())
		return err == nil && info.State.Msgs == 0
	}, 5*time.Second, 20*time.Millisecond, "the queue is empty")
}

// TestDeletedConsumerIsMadeAgain: a worker whose consumer is deleted
// under it makes it again and goes on.
func TestDeletedConsumerIsMadeAgain(t *testing.T) {
	srv := fleettest.Start(t)
	exec := newFakeExec()
	startWorker(t, srv.URL, exec, fleet.WithRuntimes("sh"))
	c := newClient(t, srv.URL)
	ctx := context.Background()
	s, err := c.JetStream().Stream(ctx, fleet.TaskStream)
	require.NoError(t, err)
	require.NoError(t, s.DeleteConsumer(ctx, fleet.ConsumerName("sh")))
	a, err := func() (*fleet.Answer, error) {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return c.Run(wctx, shTask("again", "echo back"))
	}()
	require.NoError(t, err)
	assert.Equal(t, "back\n", string(a.Result.Stdout.Data))
}
