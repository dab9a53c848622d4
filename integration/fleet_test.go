//go:build linux

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/fleet"
	"github.com/sandbox-runner/sandbox-runner/runner/fleet/fleettest"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// fleetConfig points the sh runtime the fleet tests route at the test
// image.
const fleetConfig = `
[runtimes.sh]
image = "` + testImage + `"
`

// fleetEnv is a NATS server (or cluster) with workers, as CLI processes
// on the harness's containerd, and a client to submit tasks with.
type fleetEnv struct {
	t      *testing.T
	h      *Harness
	bin    string
	config string
	urls   string
	client *fleet.Client
	js     jetstream.JetStream
	// watches are the answers submit watches for, by task id.
	watches map[string]*fleet.Watch
}

func newFleetEnv(t *testing.T, urls string) *fleetEnv {
	t.Helper()
	h := RequiresRoot(t)
	e := &fleetEnv{t: t, h: h, bin: h.CLI(t), urls: urls, watches: map[string]*fleet.Watch{}}
	e.config = filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(e.config, []byte(fleetConfig), 0o644))
	nc, err := fleet.Connect(fleet.ConnectOptions{URLs: urls, Name: t.Name()})
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	e.client, err = fleet.NewClient(nc, fleet.WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil))))
	require.NoError(t, err)
	e.js = e.client.JetStream()
	return e
}

// fleetWorker is one `sandbox-runner worker` process.
type fleetWorker struct {
	t        *testing.T
	id       string
	stateDir string
	cmd      *exec.Cmd
	out      *lockedBuffer
	exited   chan struct{}
	stopOnce sync.Once
	code     int
}

// workerArgs are the flags every test worker gets; later ones win.
var workerArgs = []string{"--runtimes", "sh", "--max-concurrent", "2", "--ack-wait", "2s",
	"--retry-delay", "100ms", "--max-deliveries", "3", "--presence-ttl", "2s", "--grace", "20s"}

// startWorker starts a worker with stateDir and extra flags and waits
// until its presence entry says it takes tasks.
func (e *fleetEnv) startWorker(stateDir string, extra ...string) *fleetWorker {
	e.t.Helper()
	return e.startWorkerWith(workerSetup{}, stateDir, extra...)
}

// workerSetup is how a test wants its worker process started.
type workerSetup struct {
	// env is added to the worker's environment.
	env []string
	// wrapper is a command the worker runs under, such as setpriv; it
	// must exec the worker, so that the pid (and the worker's id) is
	// the wrapper's.
	wrapper []string
}

// startWorkerWith is startWorker with a setup.
func (e *fleetEnv) startWorkerWith(s workerSetup, stateDir string, extra ...string) *fleetWorker {
	e.t.Helper()
	args := append([]string{"worker",
		"--config", e.config,
		"--address", e.h.Address,
		"--namespace", e.h.Namespace,
		"--snapshotter", testSnapshotter,
		"--state-dir", stateDir,
		"--nats", e.urls,
		"--log-level", "info",
	}, append(append([]string{}, workerArgs...), extra...)...)
	w := &fleetWorker{t: e.t, stateDir: stateDir, out: &lockedBuffer{}, exited: make(chan struct{})}
	name := e.bin
	if len(s.wrapper) > 0 {
		args = append(append(append([]string{}, s.wrapper[1:]...), e.bin), args...)
		name = s.wrapper[0]
	}
	w.cmd = exec.Command(name, args...)
	w.cmd.Env = append(cleanEnv(), s.env...)
	w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
	require.NoError(e.t, w.cmd.Start())
	host, _ := os.Hostname()
	w.id = fmt.Sprintf("%s-%d", host, w.cmd.Process.Pid)
	go func() {
		_ = w.cmd.Wait()
		w.code = w.cmd.ProcessState.ExitCode()
		close(w.exited)
	}()
	e.t.Cleanup(func() {
		w.stop()
		if e.t.Failed() {
			e.t.Logf("worker %s's log:\n%s", w.id, w.out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !e.live(w.id) {
		select {
		case <-w.exited:
			e.t.Fatalf("worker exited before it took tasks (status %d):\n%s", w.code, w.out.String())
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("worker %s never showed up in the presence bucket:\n%s", w.id, w.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return w
}

// live tells whether a worker has a presence entry.
func (e *fleetEnv) live(id string) bool {
	ws, err := e.client.Workers(context.Background())
	if err != nil {
		return false
	}
	for _, w := range ws {
		if w.ID == id {
			return true
		}
	}
	return false
}

func (e *fleetEnv) worker(id string) (fleet.WorkerInfo, bool) {
	ws, err := e.client.Workers(context.Background())
	if err != nil {
		e.t.Logf("listing workers: %v", err)
	}
	for _, w := range ws {
		if w.ID == id {
			return w, true
		}
	}
	return fleet.WorkerInfo{}, false
}

// stop sends SIGTERM and waits for the exit; it returns the status.
func (w *fleetWorker) stop() int {
	w.stopOnce.Do(func() {
		select {
		case <-w.exited:
			return
		default:
		}
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.exited:
		case <-time.After(time.Minute):
			_ = w.cmd.Process.Kill()
			<-w.exited
			w.t.Errorf("worker %s did not stop within a minute of SIGTERM", w.id)
		}
	})
	<-w.exited
	return w.code
}

// kill SIGKILLs the worker, as a crash or the OOM killer would.
func (w *fleetWorker) kill() {
	w.stopOnce.Do(func() {
		_ = w.cmd.Process.Kill()
		<-w.exited
	})
}

// submit queues a task, watching for its answer from before.
func (e *fleetEnv) submit(id, code string) {
	e.t.Helper()
	w, err := e.client.Watch(id)
	require.NoError(e.t, err)
	e.t.Cleanup(w.Close)
	e.watches[id] = w
	req := service.NewRequest(runner.Task{Runtime: testRuntime, Files: []runner.File{{Content: []byte(code)}},
		Limits: runner.Limits{Timeout: time.Minute}}, nil)
	require.NoError(e.t, e.client.Submit(context.Background(), fleet.Task{ID: id, Request: req}))
}

func (e *fleetEnv) wait(id string, d time.Duration) *fleet.Answer {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var a *fleet.Answer
	var err error
	if w, ok := e.watches[id]; ok {
		a, err = w.Wait(ctx)
	} else {
		a, err = e.client.Wait(ctx, id)
	}
	if err != nil {
		e.diagnose(id)
	}
	require.NoError(e.t, err, "waiting for task %s", id)
	return a
}

// diagnose logs what a fresh connection sees of task id's answer.
func (e *fleetEnv) diagnose(id string) {
	nc, err := fleet.Connect(fleet.ConnectOptions{URLs: e.urls})
	if err != nil {
		e.t.Logf("diagnose: %v", err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, fleet.ResultStream)
	if err != nil {
		e.t.Logf("diagnose: stream: %v", err)
		return
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err == nil {
		e.t.Logf("diagnose: results stream state %+v cluster %+v", info.State, info.Cluster)
	}
	m, err := s.GetLastMsgForSubject(ctx, fleet.ResultSubject(id))
	e.t.Logf("diagnose: last answer %v %v; client connected to %s status %s", m != nil, err, e.client.JetStream().Conn().ConnectedUrl(), e.client.JetStream().Conn().Status())
}

// cli runs the CLI with args and returns its exit status and output.
func (e *fleetEnv) cli(stdin string, args ...string) (int, string, string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Env = cleanEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		require.NoError(e.t, err)
	}
	e.t.Logf("sandbox-runner %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), cmd.ProcessState.ExitCode(), stdout.String(), stderr.String())
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// containersOf returns the ids of the containers a runner process made.
func (e *fleetEnv) containersOf(pid int) []string {
	ctx := namespaces.WithNamespace(context.Background(), e.h.Namespace)
	cs, err := e.h.Client.Containers(ctx, fmt.Sprintf("labels.%q==%d", runner.LabelOwnerPID, pid))
	require.NoError(e.t, err)
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.ID())
	}
	return ids
}

// runningTaskOf waits until a runner process has a running task.
func (e *fleetEnv) runningTaskOf(pid int, within time.Duration) string {
	e.t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), e.h.Namespace)
	var id string
	require.Eventually(e.t, func() bool {
		for _, cid := range e.containersOf(pid) {
			c, err := e.h.Client.LoadContainer(ctx, cid)
			if err != nil {
				continue
			}
			task, err := c.Task(ctx, nil)
			if err != nil {
				continue
			}
			if st, err := task.Status(ctx); err == nil && st.Status == client.Running {
				id = cid
				return true
			}
		}
		return false
	}, within, 20*time.Millisecond, "no task of pid %d runs", pid)
	return id
}

// TestFleetTwoWorkersShareFiftyTasks: two workers share a queue of 50
// tasks; every task gets exactly one answer, with its own output, and
// both workers take part. submit and workers work from the CLI.
func TestFleetTwoWorkersShareFiftyTasks(t *testing.T) {
	Parallel(t)
	srv := fleettest.Start(t)
	e := newFleetEnv(t, srv.URL)
	a := e.startWorker(e.h.StateDir(t))
	b := e.startWorker(e.h.StateDir(t))

	const n = 50
	start := time.Now()
	for i := range n {
		e.submit(fmt.Sprintf("fifty-%d", i), fmt.Sprintf("echo %d $((%d * 7))", i, i))
	}
	byWorker := map[string]int{}
	for i := range n {
		ans := e.wait(fmt.Sprintf("fifty-%d", i), 2*time.Minute)
		require.NoError(t, ans.Err(), "task %d", i)
		assert.Equal(t, fmt.Sprintf("%d %d\n", i, i*7), string(ans.Result.Stdout.Data), "task %d", i)
		assert.Equal(t, 0, ans.Result.ExitCode)
		assert.Equal(t, 1, ans.Deliveries)
		byWorker[ans.Worker]++
	}
	took := time.Since(start)
	t.Logf("%d tasks through two workers of 2 slots in %s: %.1f tasks/s; by worker: %v", n, took.Round(time.Millisecond), n/took.Seconds(), byWorker)
	assert.Len(t, byWorker, 2, "both workers took tasks")
	assert.Equal(t, n, byWorker[a.id]+byWorker[b.id])

	ctx := context.Background()
	rs, err := e.js.Stream(ctx, fleet.ResultStream)
	require.NoError(t, err)
	info, err := rs.Info(ctx, jetstream.WithSubjectFilter(fleet.ResultSubjects))
	require.NoError(t, err)
	assert.Len(t, info.State.Subjects, n, "one answer subject per task")
	for subject, count := range info.State.Subjects {
		assert.Equal(t, uint64(1), count, subject)
	}

	// From the CLI: the task's output and exit status, as exec.
	code, stdout, stderr := e.cli("", "submit", "--config", e.config, "--nats", srv.URL, "--runtime", "sh", "-c", "echo out; echo err >&2; exit 3")
	assert.Equal(t, 3, code)
	assert.Equal(t, "out\n", stdout)
	assert.Equal(t, "err\n", stderr)
	code, stdout, _ = e.cli("piped\n", "submit", "--nats", srv.URL, "--runtime", "sh", "--json", "--id", "cli-json", "-c", "cat")
	require.Equal(t, 0, code)
	var res runner.Result
	require.NoError(t, json.Unmarshal([]byte(stdout), &res))
	assert.Equal(t, "piped\n", string(res.Stdout.Data), "stdin goes with the task")
	assert.Equal(t, runner.OutcomeExited, res.Outcome)
	// The same id again: the first answer, not a second run.
	code, stdout2, _ := e.cli("other\n", "submit", "--nats", srv.URL, "--runtime", "sh", "--json", "--id", "cli-json", "-c", "cat")
	require.Equal(t, 0, code)
	assert.JSONEq(t, stdout, stdout2)
	code, _, stderr = e.cli("", "submit", "--nats", srv.URL, "--runtime", "sh", "--timeout", "1s", "-c", "sleep 5")
	assert.Equal(t, runner.ExitTimedOut, code)
	assert.Contains(t, stderr, "timed out after 1s")

	code, stdout, _ = e.cli("", "workers", "--nats", srv.URL)
	require.Equal(t, 0, code)
	assert.Contains(t, stdout, a.id)
	assert.Contains(t, stdout, b.id)
	assert.Contains(t, stdout, "0/2")
}

// TestFleetKilledWorkersTaskIsRedelivered: a worker is SIGKILLed while
// its task runs; the task is delivered again after the ack wait, runs
// to the end on the other worker, and the dead worker's sandbox is
// removed when it starts again.
func TestFleetKilledWorkersTaskIsRedelivered(t *testing.T) {
	Parallel(t)
	srv := fleettest.Start(t)
	e := newFleetEnv(t, srv.URL)
	deadDir := e.h.StateDir(t)
	a := e.startWorker(deadDir, "--max-concurrent", "1")
	e.submit("doomed", "echo started; sleep 3; echo finished")
	orphan := e.runningTaskOf(a.cmd.Process.Pid, 30*time.Second)
	// The other worker comes up while the first one lives, so its sweep
	// leaves the first one's sandbox alone.
	b := e.startWorker(e.h.StateDir(t))

	killed := time.Now()
	a.kill()
	e.runningTaskOf(b.cmd.Process.Pid, 30*time.Second)
	redelivered := time.Since(killed)
	ans := e.wait("doomed", time.Minute)
	t.Logf("SIGKILL to the task running again on the other worker: %s (ack wait 2s); to its answer: %s",
		redelivered.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	require.NoError(t, ans.Err())
	assert.Equal(t, b.id, ans.Worker)
	assert.Equal(t, 2, ans.Deliveries)
	assert.Equal(t, "started\nfinished\n", string(ans.Result.Stdout.Data))
	assert.Less(t, redelivered, 10*time.Second)

	// The dead worker's sandbox outlived it ...
	assert.Equal(t, []string{orphan}, e.containersOf(a.cmd.Process.Pid))
	entries, err := os.ReadDir(filepath.Join(deadDir, "tasks"))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "its task dir is still there")
	// ... until it starts again, on the same state dir.
	again := e.startWorker(deadDir)
	assert.Empty(t, e.containersOf(a.cmd.Process.Pid), "the dead worker's sandbox survived its next start")
	entries, err = os.ReadDir(filepath.Join(deadDir, "tasks"))
	require.NoError(t, err)
	assert.Empty(t, entries)
	assert.Contains(t, again.out.String(), "removed what a dead runner left behind")
}

// TestFleetPoisonTasksAreDeadLettered: a task whose processing fails on
// every delivery (a malformed request document; an image no worker
// has) goes to the dead letters after the configured deliveries, with
// its last error, and is answered with it; the workers go on.
func TestFleetPoisonTasksAreDeadLettered(t *testing.T) {
	Parallel(t)
	srv := fleettest.Start(t)
	e := newFleetEnv(t, srv.URL)
	e.startWorker(e.h.StateDir(t))
	ctx := context.Background()

	poison := []byte(`{"id":"poison","request":{"runtime":"sh","files":[{"content":"echo hi"}],"limits":{"memory":"lots"}}}`)
	_, err := e.js.Publish(ctx, fleet.TaskSubject("sh"), poison, jetstream.WithMsgID("poison"))
	require.NoError(t, err)
	ans := e.wait("poison", time.Minute)
	assert.True(t, ans.DeadLettered)
	assert.Equal(t, 3, ans.Deliveries)
	assert.Equal(t, service.KindInvalidInput, ans.Kind)
	assert.Contains(t, ans.Error, "limits.memory")

	dead, err := e.js.Stream(ctx, fleet.DeadStream)
	require.NoError(t, err)
	m, err := dead.GetLastMsgForSubject(ctx, fleet.DeadSubject("sh"))
	require.NoError(t, err)
	assert.Equal(t, poison, m.Data, "the dead letter is the task message as it was sent")
	assert.Equal(t, "3", m.Header.Get(fleet.HeaderDeliveries))
	assert.Contains(t, m.Header.Get(fleet.HeaderError), "limits.memory")

	// An image nobody has, never pulled: the runner fails each time.
	code, stdout, stderr := e.cli("", "submit", "--nats", srv.URL, "--runtime", "sh", "--json",
		"--image", "sandbox-runner.test/nowhere:1", "--pull", "never", "-c", "echo hi")
	assert.Equal(t, 125, code)
	assert.Contains(t, stderr, "dead-lettered after 3 deliveries")
	var doc struct{ Kind string }
	require.NoError(t, json.Unmarshal([]byte(stdout), &doc))
	assert.Equal(t, service.KindImageNotFound, doc.Kind)
	info, err := dead.Info(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), info.State.Msgs)

	e.submit("after", "echo still here")
	ans = e.wait("after", time.Minute)
	require.NoError(t, ans.Err())
	assert.Equal(t, "still here\n", string(ans.Result.Stdout.Data))
	// A worker answers a task before it removes it from the queue (a
	// worker dying in between leaves a task that finds its answer), so
	// the queue empties just after the last answer, not with it.
	tasks, err := e.js.Stream(ctx, fleet.TaskStream)
	require.NoError(t, err)
	assert.Eventually(t, func() bool {
		tinfo, err := tasks.Info(ctx)
		return err == nil && tinfo.State.Msgs == 0
	}, 10*time.Second, 20*time.Millisecond, "nothing is left in the queue")
}

// TestFleetPresenceExpires: a worker stopped with SIGTERM finishes its
// task and removes its presence entry; a killed one's entry expires
// after the TTL.
func TestFleetPresenceExpires(t *testing.T) {
	Parallel(t)
	srv := fleettest.Start(t)
	e := newFleetEnv(t, srv.URL)
	a := e.startWorker(e.h.StateDir(t))
	b := e.startWorker(e.h.StateDir(t))
	info, ok := e.worker(a.id)
	require.True(t, ok)
	assert.Equal(t, []string{"sh"}, info.Runtimes)
	assert.Equal(t, 2, info.Capacity)
	assert.Equal(t, srv.URL, info.Server)
	code, stdout, _ := e.cli("", "workers", "--nats", srv.URL, "--json")
	require.Equal(t, 0, code)
	var listed []fleet.WorkerInfo
	require.NoError(t, json.Unmarshal([]byte(stdout), &listed))
	assert.Len(t, listed, 2)

	// SIGTERM while a task runs: it finishes on a, which then leaves.
	e.submit("last", "sleep 1; echo done")
	require.Eventually(t, func() bool {
		return len(e.containersOf(a.cmd.Process.Pid)) > 0 || len(e.containersOf(b.cmd.Process.Pid)) > 0
	}, 30*time.Second, 20*time.Millisecond)
	running := a
	if len(e.containersOf(a.cmd.Process.Pid)) == 0 {
		running, b = b, a
	}
	require.Equal(t, 0, running.stop())
	ans := e.wait("last", time.Second)
	assert.Equal(t, running.id, ans.Worker, "finished by the stopping worker")
	assert.Equal(t, "done\n", string(ans.Result.Stdout.Data))
	assert.False(t, e.live(running.id), "a stopped worker's entry is gone at once")
	assert.True(t, e.live(b.id))

	b.kill()
	killed := time.Now()
	assert.True(t, e.live(b.id), "a killed worker's entry lives on until the TTL")
	require.Eventually(t, func() bool { return !e.live(b.id) }, 10*time.Second, 100*time.Millisecond)
	t.Logf("a killed worker's entry expired %s after the kill (TTL 2s)", time.Since(killed).Round(100*time.Millisecond))
	code, stdout, _ = e.cli("", "workers", "--nats", srv.URL, "--json")
	require.Equal(t, 0, code)
	assert.JSONEq(t, "[]", stdout)
	// The killed worker's sandboxes, if any, go with the harness's
	// sweep; b ran nothing here.
	assert.Empty(t, e.containersOf(b.cmd.Process.Pid))
}

// TestFleetNATSClusterNodeStops: on a three-node cluster with every
// stream replicated three times, a worker goes on when the node it is
// connected to stops: its running task is answered and new ones run.
func TestFleetNATSClusterNodeStops(t *testing.T) {
	Parallel(t)
	begin := time.Now()
	nodes := fleettest.StartCluster(t, 3)
	t.Logf("cluster of 3 up in %s", time.Since(begin).Round(time.Millisecond))
	e := newFleetEnv(t, fleettest.URLs(nodes))
	begin = time.Now()
	w := e.startWorker(e.h.StateDir(t), "--replicas", "3")
	t.Logf("worker up, R3 streams made, in %s", time.Since(begin).Round(time.Millisecond))
	info, ok := e.worker(w.id)
	require.True(t, ok)
	var connected *fleettest.Server
	for _, n := range nodes {
		if n.URL == info.Server {
			connected = n
		}
	}
	require.NotNil(t, connected, "the worker is connected to %s, not one of the nodes", info.Server)
	ctx := context.Background()
	s, err := e.js.Stream(ctx, fleet.TaskStream)
	require.NoError(t, err)
	require.Equal(t, 3, s.CachedInfo().Config.Replicas)

	e.submit("across", "echo before; sleep 3; echo after")
	e.runningTaskOf(w.cmd.Process.Pid, 30*time.Second)
	stopped := time.Now()
	connected.Stop()
	t.Logf("stopped %s, the node the worker was connected to", connected.Name)

	ans := e.wait("across", time.Minute)
	require.NoError(t, ans.Err())
	assert.Equal(t, "before\nafter\n", string(ans.Result.Stdout.Data))
	assert.Equal(t, w.id, ans.Worker)
	assert.Equal(t, 1, ans.Deliveries, "the heartbeat went on through another node")
	t.Logf("answer %s after the node stopped", time.Since(stopped).Round(time.Millisecond))

	begin = time.Now()
	for i := range 5 {
		e.submit("after-"+strconv.Itoa(i), fmt.Sprintf("echo %d", i))
	}
	t.Logf("5 more tasks queued in %s", time.Since(begin).Round(time.Millisecond))
	for i := range 5 {
		ans := e.wait("after-"+strconv.Itoa(i), time.Minute)
		require.NoError(t, ans.Err())
		assert.Equal(t, fmt.Sprintf("%d\n", i), string(ans.Result.Stdout.Data))
	}
	t.Logf("5 more tasks answered in %s", time.Since(begin).Round(time.Millisecond))
	require.Eventually(t, func() bool {
		info, ok := e.worker(w.id)
		return ok && info.Server != connected.URL
	}, 10*time.Second, 100*time.Millisecond, "the worker's entry names another node")
}

// fleetCompiledConfig adds shc, the service tests' "compiled" runtime,
// whose run stage works only when the scratch tmpfs the runner mounts
// on the host is shared with the compile stage.
const fleetCompiledConfig = fleetConfig + `
[runtimes.shc]
image = "` + testImage + `"
file = "main.sh"
compile = ["sh", "-c", "cp {file} /tmp/prog.sh"]
run = ["sh", "/tmp/prog.sh"]
`

// TestWorkerSystemdNotifyWithinTheUnitsCapabilities runs the worker as
// sandbox-runner-worker.service does: with no more than the unit's
// capability bounding set, no_new_privs, and a NOTIFY_SOCKET. It says
// READY=1 (with a STATUS= naming the server and runtimes) once it takes
// tasks; does what needs privilege (mount a compiled runtime's scratch
// tmpfs, kill a task at its timeout); says STOPPING=1 as soon as SIGTERM
// comes, then lets its running task finish, exits 0 and leaves nothing
// behind.
func TestWorkerSystemdNotifyWithinTheUnitsCapabilities(t *testing.T) {
	srv := fleettest.Start(t)
	e := newFleetEnv(t, srv.URL)
	setpriv, err := exec.LookPath("setpriv")
	require.NoError(t, err, "setpriv (util-linux) runs the worker with the unit's capabilities")
	caps, nnp := unitCapabilities(t, workerUnit)
	require.True(t, nnp, "the unit sets NoNewPrivileges=yes")
	require.NoError(t, os.WriteFile(e.config, []byte(fleetCompiledConfig), 0o644))

	dir := serveDir(t)
	notifyPath := filepath.Join(dir, "notify")
	notifyConn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	require.NoError(t, err)
	defer notifyConn.Close()

	stateDir := e.h.StateDir(t)
	w := e.startWorkerWith(workerSetup{
		env:     []string{"NOTIFY_SOCKET=" + notifyPath},
		wrapper: []string{setpriv, "--bounding-set", "-all,+" + strings.Join(caps, ",+"), "--inh-caps", "-all", "--no-new-privs", "--"},
	}, stateDir, "--runtimes", "sh,shc")
	// startWorker saw its presence entry; READY=1 was sent after it.
	ready := strings.Split(readNotify(t, notifyConn, 10*time.Second), "\n")
	assert.Contains(t, ready, "READY=1", ready)
	assert.Contains(t, ready, "STATUS=taking tasks of sh,shc from "+srv.URL+", 2 at a time", ready)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.cmd.Process.Pid))
	require.NoError(t, err)
	assert.Contains(t, string(status), "NoNewPrivs:\t1")

	run := func(id, runtime, code string, timeout time.Duration) *fleet.Answer {
		t.Helper()
		req := service.NewRequest(runner.Task{Runtime: runtime, Files: []runner.File{{Content: []byte(code)}},
			Limits: runner.Limits{Timeout: timeout}}, nil)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		a, err := e.client.Run(ctx, fleet.Task{ID: id, Request: req})
		require.NoError(t, err, "task %s", id)
		require.NoError(t, a.Err(), "task %s", id)
		return a
	}
	a := run("compiled", "shc", "echo compiled", time.Minute)
	assert.Equal(t, runner.OutcomeExited, a.Result.Outcome)
	assert.Equal(t, "compiled\n", string(a.Result.Stdout.Data), "the scratch tmpfs was shared")
	a = run("killed", "sh", "sleep 100", time.Second)
	assert.Equal(t, runner.OutcomeTimedOut, a.Result.Outcome)

	// SIGTERM while a task runs: STOPPING=1 at once, the task finishes.
	e.submit("finishing", "sleep 2; echo done")
	e.runningTaskOf(w.cmd.Process.Pid, 30*time.Second)
	require.NoError(t, w.cmd.Process.Signal(syscall.SIGTERM))
	termed := time.Now()
	stopping := strings.Split(readNotify(t, notifyConn, 5*time.Second), "\n")
	assert.Contains(t, stopping, "STOPPING=1", stopping)
	t.Logf("STOPPING=1 %s after SIGTERM", time.Since(termed).Round(time.Millisecond))
	select {
	case <-w.exited:
	case <-time.After(time.Minute):
		t.Fatalf("the worker did not stop within a minute of SIGTERM")
	}
	assert.Equal(t, 0, w.code, "%s", w.out.String())
	a = e.wait("finishing", time.Second)
	assert.Equal(t, w.id, a.Worker, "finished by the stopping worker")
	assert.Equal(t, "done\n", string(a.Result.Stdout.Data))

	log := w.out.String()
	assert.NotContains(t, log, `"level":"ERROR"`)
	assert.NotContains(t, log, "operation not permitted")
	e.h.CheckNoLeaks(t, stateDir)
}

// TestWorkerNextToServiceOnOneStateDir: a worker and the service on one
// host, as their units run them: one containerd namespace, one state
// dir. The worker's start-up sweep leaves the service's running task
// alone (it sweeps only what dead runners left), both run tasks at once,
// and neither leaves anything behind.
func TestWorkerNextToServiceOnOneStateDir(t *testing.T) {
	Parallel(t)
	srv := fleettest.Start(t)
	e := newFleetEnv(t, srv.URL)
	p := startServe(t, serveSetup{})
	type answer struct {
		a   apiAnswer
		err error
	}
	served := make(chan answer, 1)
	go func() {
		a, err := p.do(context.Background(), http.MethodPost, "/v1/exec", execBody("sleep 3; echo served"))
		served <- answer{a, err}
	}()
	require.Eventually(t, func() bool { return len(runningTasks(t, p.h)) == 1 }, 30*time.Second, 20*time.Millisecond)

	w := e.startWorker(p.stateDir)
	assert.NotContains(t, w.out.String(), "removed what a dead runner left behind")
	require.Len(t, runningTasks(t, p.h), 1, "the service's task survived the worker's sweep")
	e.submit("beside", "echo from the worker")
	a := e.wait("beside", time.Minute)
	require.NoError(t, a.Err())
	assert.Equal(t, "from the worker\n", string(a.Result.Stdout.Data))

	select {
	case ans := <-served:
		require.NoError(t, ans.err)
		res, _ := ans.a.result(t)
		assert.Equal(t, runner.OutcomeExited, res.Outcome)
		assert.Equal(t, "served\n", string(res.Stdout.Data))
	case <-time.After(time.Minute):
		t.Fatal("the service's task never finished")
	}
	assert.Equal(t, 0, w.stop(), "%s", w.out.String())
	assert.Equal(t, 0, p.stop(), "%s", p.stderr.String())
	e.h.CheckNoLeaks(t, p.stateDir)
}

// TestFleetWorkerUsesTheWarmPoolAndItsOCIRuntime: a worker with a pool
// runs a task in a sandbox made ahead, under the OCI runtime its config
// names; a task naming another OCI runtime runs under that one, cold.
func TestFleetWorkerUsesTheWarmPoolAndItsOCIRuntime(t *testing.T) {
	Parallel(t)
	srv := fleettest.Start(t)
	e := newFleetEnv(t, srv.URL)
	other := otherOCIRuntime(t, e.h)
	require.NoError(t, os.WriteFile(e.config, []byte("oci_runtime = \""+other+"\"\n"+fleetConfig), 0o644))
	// Without the suite's $SANDBOX_RUNNER_OCI_RUNTIME, which would win
	// over the config.
	w := e.startWorkerWith(workerSetup{env: []string{noOCIEnv}}, e.h.StateDir(t), "--pool", testRuntime+"=1", "--pool-init", e.h.InitBinary(t))
	pid := w.cmd.Process.Pid

	ctx := namespaces.WithNamespace(context.Background(), e.h.Namespace)
	// used are sandboxes that ran a task: the answer can come before
	// containerd has seen the task's exit (the init reports it first),
	// so a used sandbox may still show a running task for a moment.
	pooled := func(used ...string) string {
		t.Helper()
		var id string
		require.Eventually(t, func() bool {
			for _, cid := range e.containersOf(pid) {
				if slices.Contains(used, cid) {
					continue
				}
				c, err := e.h.Client.LoadContainer(ctx, cid)
				if err != nil {
					continue
				}
				if task, err := c.Task(ctx, nil); err == nil {
					// Started ahead: the init waits for a task's command.
					if st, err := task.Status(ctx); err == nil && st.Status == client.Running {
						id = cid
						return true
					}
				}
			}
			return false
		}, 30*time.Second, 20*time.Millisecond, "the worker's pool never filled:\n%s", w.out.String())
		return id
	}
	run := func(id, oci string) *runner.Result {
		t.Helper()
		watch, err := e.client.Watch(id)
		require.NoError(t, err)
		defer watch.Close()
		req := service.NewRequest(runner.Task{Runtime: testRuntime, OCIRuntime: oci,
			Files: []runner.File{{Content: []byte("echo hi; id -u")}}, Limits: runner.Limits{Timeout: time.Minute}}, nil)
		require.NoError(t, e.client.Submit(context.Background(), fleet.Task{ID: id, Request: req}))
		wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		a, err := watch.Wait(wctx)
		require.NoError(t, err)
		require.NoError(t, a.Err())
		out, uid, _ := strings.Cut(strings.TrimSpace(string(a.Result.Stdout.Data)), "\n")
		assert.Equal(t, "hi", out)
		assertTaskUID(t, uid)
		return a.Result
	}

	slot := pooled()
	res := run("pool-default", "")
	assert.Equal(t, slot, res.ID, "the task ran in the sandbox the pool had made")
	assert.Equal(t, other, res.OCIRuntime, "the worker's config names the OCI runtime")

	slot = pooled(res.ID)
	res = run("pool-named", e.h.OCIRuntime)
	assert.Equal(t, e.h.OCIRuntime, res.OCIRuntime, "the task names its OCI runtime")
	assert.NotEqual(t, slot, res.ID, "the pool's sandbox is %s's, so the task ran cold", other)
	assert.Eventually(t, func() bool { return slices.Equal([]string{slot}, e.containersOf(pid)) }, 10*time.Second, 20*time.Millisecond,
		"the pooled sandbox still waits, and nothing else is left: %v", e.containersOf(pid))
}
