//go:build linux

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/integration/ctrdtest"
	"github.com/sandbox-runner/sandbox-runner/integration/testimage"
	"github.com/sandbox-runner/sandbox-runner/runner"
)

// mixedKind is one kind of task in the concurrent mix.
type mixedKind struct {
	name   string
	code   string
	limits runner.Limits
	check  func(t *testing.T, i int, res *runner.Result)
}

// TestFiftyConcurrentMixedTasks runs 50 tasks at once on one runner —
// normal exits, timeouts, OOM kills, fork bombs and floods of output —
// and checks every verdict, that nothing leaks, that timed-out tasks are
// gone promptly, and that the runner's memory stays bounded: output is
// capped while it streams, never buffered whole.
func TestFiftyConcurrentMixedTasks(t *testing.T) {
	h := RequiresRoot(t)
	r := h.NewRunner(t)
	const timeout = 3 * time.Second
	const outputLimit = 64 << 10
	kinds := []mixedKind{
		{"exit", "echo out-$1; exit $(($1 % 7))", runner.Limits{Timeout: 60 * time.Second},
			func(t *testing.T, i int, res *runner.Result) {
				assert.Equal(t, runner.OutcomeExited, res.Outcome)
				assert.Equal(t, i%7, res.ExitCode)
				assert.Equal(t, fmt.Sprintf("out-%d\n", i), string(res.Stdout.Data))
			}},
		{"timeout", "trap '' TERM; (setsid sleep 100 &); sleep 100", runner.Limits{Timeout: timeout},
			func(t *testing.T, i int, res *runner.Result) {
				assert.Equal(t, runner.OutcomeTimedOut, res.Outcome)
				assert.Equal(t, runner.ExitTimedOut, res.ExitCode)
			}},
		{"oom", `x=a; while true; do x="$x$x"; done`, runner.Limits{Timeout: 60 * time.Second, Memory: 32 << 20},
			func(t *testing.T, i int, res *runner.Result) {
				assert.Equal(t, runner.OutcomeOOMKilled, res.Outcome)
				assert.True(t, res.OOMKilled)
				assert.Equal(t, 137, res.ExitCode)
			}},
		{"forkbomb", "i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; echo started", runner.Limits{Timeout: 60 * time.Second, Pids: 16},
			func(t *testing.T, i int, res *runner.Result) {
				assert.True(t, res.PidsLimitHit, "pids limit hit")
				assert.False(t, res.TimedOut, "the task ends by itself once its shell gives up")
				assert.Contains(t, string(res.Stderr.Data), "can't fork")
			}},
		{"flood", "head -c 20000000 /dev/zero | tr '\\0' x; echo done >&2", runner.Limits{Timeout: 60 * time.Second, OutputLimit: outputLimit},
			func(t *testing.T, i int, res *runner.Result) {
				assert.Equal(t, runner.OutcomeExited, res.Outcome)
				assert.Equal(t, 0, res.ExitCode)
				assert.Len(t, res.Stdout.Data, outputLimit)
				assert.Equal(t, int64(20000000-outputLimit), res.Stdout.Dropped)
				assert.True(t, res.OutputTruncated)
				assert.Equal(t, "done\n", string(res.Stderr.Data))
			}},
	}

	// Sample the runner's heap while the tasks run.
	var peakHeap uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peakHeap = max(peakHeap, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	const n = 50
	results := make([]*runner.Result, n)
	errs := make([]error, n)
	returned := make([]time.Time, n)
	started := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			k := kinds[i%len(kinds)]
			results[i], errs[i] = r.Run(context.Background(), runner.Task{
				Runtime: testRuntime, Image: testImage,
				Files:  []runner.File{{Content: []byte(k.code)}},
				Args:   []string{fmt.Sprint(i)},
				Limits: k.limits,
			})
			returned[i] = time.Now()
		})
	}
	wg.Wait()
	close(stop)
	<-sampled

	var slowest time.Duration
	for i := range n {
		k := kinds[i%len(kinds)]
		t.Run(fmt.Sprintf("%02d-%s", i, k.name), func(t *testing.T) {
			require.NoError(t, errs[i])
			k.check(t, i, results[i])
		})
		if k.name == "timeout" && results[i] != nil {
			slowest = max(slowest, results[i].Duration-timeout)
		}
	}
	t.Logf("50 mixed tasks in %s; slowest timed-out task was gone %s after its timeout; runner peak heap in use %.1f MiB",
		time.Since(started).Round(time.Millisecond), slowest.Round(time.Millisecond), float64(peakHeap)/(1<<20))
	// How soon the runner sees a killed task's exit with 49 others being
	// made and torn down on 2 cores is the machine's speed, not a
	// property: 0.5 s on the machine this bound was first set on, 2-3.4 s
	// on today's for the code before the init and after it alike. That the
	// task itself is gone at its deadline, with or without a runner, is
	// TestTaskDiesAtItsDeadlineWithNoRunnerAlive's; this bound only
	// catches a kill that never lands.
	assert.Less(t, slowest, 10*time.Second, "a timed-out task was not killed")
	// Ten floods of 20 MB each would be 200 MB if buffered whole.
	assert.Less(t, peakHeap, uint64(64<<20), "output must be capped while it streams")
}

// TestKilledRunnerLeftoversAreSweptByGC: a runner SIGKILLed mid-task
// leaves its task running; `sandbox-runner gc` finds it by our labels
// and removes it, and the staged files with it.
func TestKilledRunnerLeftoversAreSweptByGC(t *testing.T) {
	h := RequiresRoot(t)
	stateDir := h.StateDir(t)
	cli := h.CLI(t)
	killMidTask(t, h, cli, stateDir)

	out, err := exec.Command(cli, "gc", "--address", h.Address, "--namespace", h.Namespace,
		"--snapshotter", testSnapshotter, "--state-dir", stateDir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "removed 1 tasks, 1 containers")
}

// TestKilledRunnerLeftoversAreSweptByNextExec: the next exec sweeps what
// a killed one left, before running its own task.
func TestKilledRunnerLeftoversAreSweptByNextExec(t *testing.T) {
	h := RequiresRoot(t)
	stateDir := h.StateDir(t)
	cli := h.CLI(t)
	killMidTask(t, h, cli, stateDir)

	out, err := exec.Command(cli, "exec", "--address", h.Address, "--namespace", h.Namespace,
		"--snapshotter", testSnapshotter, "--state-dir", stateDir,
		"--runtime", testRuntime, "--image", testImage, "-c", "echo next").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "next")
	assert.Contains(t, string(out), "removed what a dead runner left behind")
}

// killMidTask starts `exec` of a long task, waits until the task runs,
// SIGKILLs the CLI and checks the task outlived it.
func killMidTask(t *testing.T, h *Harness, cli, stateDir string) {
	t.Helper()
	cmd := exec.Command(cli, "exec", "--address", h.Address, "--namespace", h.Namespace,
		"--snapshotter", testSnapshotter, "--state-dir", stateDir,
		"--runtime", testRuntime, "--image", testImage, "--timeout", "5m", "-c", "sleep 300")
	require.NoError(t, cmd.Start())
	ctx := namespaces.WithNamespace(context.Background(), h.Namespace)
	waitAnyRunning(t, h)
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()

	cs, err := h.Client.Containers(ctx)
	require.NoError(t, err)
	require.Len(t, cs, 1, "the killed runner's container is still there")
	entries, err := os.ReadDir(filepath.Join(stateDir, "tasks"))
	require.NoError(t, err)
	require.Len(t, entries, 1, "the killed runner's task dir is still there")
}

// TestContainerdRestartMidTask: containerd goes away under a running
// task. The runner reports a clear error for that task instead of
// hanging, cleans up once containerd is back, and the next task succeeds.
func TestContainerdRestartMidTask(t *testing.T) {
	h := RequiresRoot(t)
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "srrs-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	d, err := ctrdtest.StartDaemon(ctx, filepath.Join(dir, "d"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Stop() })

	c, err := client.New(d.Address)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	archive := filepath.Join(dir, "image.tar")
	require.NoError(t, testimage.BuildBusyboxArchive(archive, testImage))
	f, err := os.Open(archive)
	require.NoError(t, err)
	_, err = images.Import(namespaces.WithNamespace(ctx, "restart"), c, f, testSnapshotter)
	f.Close()
	require.NoError(t, err)

	stateDir := filepath.Join(dir, "state")
	r, err := runner.New(c, runner.WithNamespace("restart"), runner.WithStateDir(stateDir), runner.WithInit(h.InitBinary(t)))
	require.NoError(t, err)

	type outcome struct {
		res *runner.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := r.Run(ctx, runner.Task{Runtime: testRuntime, Image: testImage,
			Files: []runner.File{{Content: []byte("echo started; sleep 60")}}, Limits: runner.Limits{Timeout: 2 * time.Minute}})
		done <- outcome{res, err}
	}()
	nctx := namespaces.WithNamespace(ctx, "restart")
	require.Eventually(t, func() bool {
		cs, err := c.Containers(nctx)
		if err != nil || len(cs) != 1 {
			return false
		}
		task, err := cs[0].Task(nctx, nil)
		if err != nil {
			return false
		}
		st, err := task.Status(nctx)
		return err == nil && st.Status == client.Running
	}, 30*time.Second, 50*time.Millisecond)

	stopped := time.Now()
	require.NoError(t, d.Stop())
	time.Sleep(500 * time.Millisecond)
	d, err = ctrdtest.StartDaemon(ctx, filepath.Join(dir, "d"))
	require.NoError(t, err)

	select {
	case o := <-done:
		require.Error(t, o.err, "a task whose containerd went away has no trustworthy result")
		t.Logf("task failed %s after containerd stopped: %v", time.Since(stopped).Round(time.Millisecond), o.err)
	case <-time.After(45 * time.Second):
		t.Fatal("Run hung after containerd restarted")
	}

	res, err := r.Run(ctx, runner.Task{Runtime: testRuntime, Image: testImage,
		Files: []runner.File{{Content: []byte("echo after")}}})
	require.NoError(t, err)
	assert.Equal(t, "after\n", string(res.Stdout.Data))

	// The failed task's cleanup waited for containerd to come back and
	// removed everything: there is nothing left for a sweep.
	rep, err := r.Sweep(ctx, true)
	require.NoError(t, err)
	assert.Zero(t, rep.Total(), "cleanup left %+v for the sweep", rep)
	cs, err := c.Containers(nctx)
	require.NoError(t, err)
	assert.Empty(t, cs)
	entries, err := os.ReadDir(filepath.Join(stateDir, "tasks"))
	require.NoError(t, err)
	assert.Empty(t, entries)
}

// TestImageConfigCannotLoosenTheSandbox: an image that asks to run as
// root, with its own entrypoint and working dir, still gets the
// sandbox's user, command and working dir.
func TestImageConfigCannotLoosenTheSandbox(t *testing.T) {
	h := RequiresRoot(t)
	ctx := namespaces.WithNamespace(context.Background(), h.Namespace)
	const ref = "sandbox-runner.test/root-wanting:latest"
	rootfs := t.TempDir()
	require.NoError(t, testimage.BusyboxRootfs(rootfs, ""))
	archive := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(archive)
	require.NoError(t, err)
	require.NoError(t, testimage.WriteArchive(f, rootfs, testimage.Options{
		Ref: ref, User: "0:0", Entrypoint: []string{"/bin/sh", "-c", "echo entrypoint ran"},
		Env: []string{"PATH=/bin", "FROM_IMAGE=yes"},
	}))
	require.NoError(t, f.Close())
	f, err = os.Open(archive)
	require.NoError(t, err)
	_, err = images.Import(ctx, h.Client, f, testSnapshotter)
	f.Close()
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Client.ImageService().Delete(ctx, ref) })

	r := h.NewRunner(t)
	res, err := r.Run(context.Background(), runner.Task{Runtime: testRuntime, Image: ref,
		Files: []runner.File{{Content: []byte("id -u; pwd; echo $FROM_IMAGE")}}})
	require.NoError(t, err)
	lines := strings.Split(string(res.Stdout.Data), "\n")
	require.Len(t, lines, 4, string(res.Stdout.Data))
	assertTaskUID(t, lines[0])
	assert.Equal(t, "/tmp\nyes\n", strings.Join(lines[1:], "\n"), "only the image's environment is used: not its user")
	assert.NotContains(t, string(res.Stdout.Data), "entrypoint ran")
}

// TestCancellationAtAnyPointLeavesNothing cancels tasks at many moments
// around their creation and start. A call cut short may still have done
// its work in containerd (the task exists, or even runs, and only the
// answer was lost): every such task is reported cancelled or failed with
// the context's error, and nothing is left behind.
func TestCancellationAtAnyPointLeavesNothing(t *testing.T) {
	h := RequiresRoot(t)
	r := h.NewRunner(t)
	outcomes := map[string]int{}
	// Every 4 ms up to 160 ms, around a sandbox's creation on a quiet
	// machine; then, until a few cancellations came after the start (a
	// loaded machine creates slower), at growing steps up to 5 s.
	next := func(d time.Duration) time.Duration {
		if d < 160*time.Millisecond {
			return d + 4*time.Millisecond
		}
		return d * 5 / 4
	}
	for d := 20 * time.Millisecond; d < 160*time.Millisecond || (outcomes["cancelled"] < 3 && d < 5*time.Second); d = next(d) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		start := time.Now()
		res, err := r.Run(ctx, runner.Task{Runtime: testRuntime, Image: testImage,
			Files: []runner.File{{Content: []byte("sleep 100")}}})
		cancel()
		switch {
		case err != nil:
			require.ErrorIs(t, err, context.DeadlineExceeded, "cancelled after %s", d)
			outcomes["error"]++
		default:
			require.Equal(t, runner.OutcomeCancelled, res.Outcome, "cancelled after %s", d)
			outcomes["cancelled"]++
		}
		require.Less(t, time.Since(start), 10*time.Second)
	}
	t.Logf("outcomes: %v", outcomes)
	assert.NotZero(t, outcomes["cancelled"], "some cancellations came after the start")
}

// TestSweepTakesLeasesByOwner: a lease a live runner owns (as a long pull
// holds one) survives another runner's sweep, and one whose owner is gone
// is removed at once, however young.
func TestSweepTakesLeasesByOwner(t *testing.T) {
	h := RequiresRoot(t)
	ctx := namespaces.WithNamespace(context.Background(), h.Namespace)
	_, done, err := runner.OwnedLease(ctx, h.Client)
	require.NoError(t, err)
	defer done()
	dead, err := h.Client.LeasesService().Create(ctx, leases.WithRandomID(),
		leases.WithLabels(map[string]string{runner.LabelOwnerPID: "2147483646", runner.LabelOwnerStart: "1"}))
	require.NoError(t, err)

	out, err := exec.Command(h.CLI(t), "gc", "--address", h.Address, "--namespace", h.Namespace,
		"--snapshotter", testSnapshotter, "--state-dir", h.StateDir(t), "--json").CombinedOutput()
	require.NoError(t, err, "%s", out)
	ls, err := h.Client.LeasesService().List(ctx)
	require.NoError(t, err)
	var ids []string
	for _, l := range ls {
		ids = append(ids, l.ID)
		assert.NotEqual(t, dead.ID, l.ID, "the dead runner's lease is removed")
	}
	assert.Len(t, ids, 1, "the live runner's lease stays: %v\n%s", ids, out)

	done()
	ls, err = h.Client.LeasesService().List(ctx)
	require.NoError(t, err)
	assert.Empty(t, ls, "done removes the lease")
}

// TestShimKilledMidTask: the shim of a running task dies (a crash, the
// OOM killer). Whatever containerd then says of the task's exit is not
// the task's verdict, so the runner must not report one: Run fails,
// saying the shim was lost, nothing of the task is left, and the next
// task runs.
func TestShimKilledMidTask(t *testing.T) {
	h := RequiresRoot(t)
	r := h.NewRunner(t)
	marker := fmt.Sprintf("shim-kill-%d", time.Now().UnixNano())
	task := shTask("echo started; sleep 60")
	task.Args = []string{marker}
	task.Limits.Timeout = 2 * time.Minute
	type outcome struct {
		res *runner.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := r.Run(context.Background(), task)
		done <- outcome{res, err}
	}()
	var pids []string
	require.Eventually(t, func() bool { pids = hostProcesses([]byte(marker)); return len(pids) > 0 },
		30*time.Second, 20*time.Millisecond, "the task should be running")
	shim := ancestor(t, pids[0], "containerd-shim")
	t.Logf("task %s, shim %d", pids[0], shim)
	killed := time.Now()
	require.NoError(t, syscall.Kill(shim, syscall.SIGKILL))

	select {
	case o := <-done:
		require.Error(t, o.err, "a task whose shim died has no verdict; got %+v", o.res)
		assert.Nil(t, o.res)
		assert.ErrorIs(t, o.err, runner.ErrShimLost)
		t.Logf("Run failed %s after the kill: %v", time.Since(killed).Round(time.Millisecond), o.err)
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return within 60s of its shim's death")
	}
	assert.Eventually(t, func() bool { return len(hostProcesses([]byte(marker))) == 0 }, 10*time.Second, 50*time.Millisecond,
		"the task's processes outlived its shim")

	// The next task runs as usual.
	requireExit(t, runSh(t, "echo next"), 0)
}

// ancestor returns the nearest ancestor of pid whose command name starts
// with prefix.
func ancestor(t *testing.T, pid, prefix string) int {
	t.Helper()
	for p := pid; p != "0" && p != "1"; {
		comm, err := os.ReadFile(filepath.Join("/proc", p, "comm"))
		require.NoError(t, err)
		if strings.HasPrefix(string(comm), prefix) && p != pid {
			n, err := strconv.Atoi(p)
			require.NoError(t, err)
			return n
		}
		b, err := os.ReadFile(filepath.Join("/proc", p, "status"))
		require.NoError(t, err)
		_, rest, _ := strings.Cut(string(b), "\nPPid:\t")
		p, _, _ = strings.Cut(rest, "\n")
	}
	t.Fatalf("no ancestor of %s is a %s", pid, prefix)
	return 0
}
