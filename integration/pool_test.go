//go:build linux

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
)

// newPool returns a pool of size sandboxes for the test runtime on a
// runner whose catalog points that runtime at the test image, and waits
// until it is full. Closing it is registered before the leak check runs.
func newPool(t *testing.T, h *Harness, size int, limits runner.Limits) (*runner.Runner, *runner.Pool) {
	t.Helper()
	cat := images.DefaultCatalog()
	rt := cat[testRuntime]
	rt.Image = testImage
	cat[testRuntime] = rt
	r := h.NewRunner(t, runner.WithCatalog(cat))
	p, err := r.NewPool(context.Background(), runner.PoolOptions{
		Runtimes: map[string]runner.PoolRuntime{testRuntime: {Size: size, Limits: limits}},
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, p.Close(ctx))
	})
	waitFull(t, p, size)
	return r, p
}

func waitFull(t *testing.T, p *runner.Pool, size int) {
	t.Helper()
	require.Eventually(t, func() bool { return p.Stats()[0].Idle == size }, 60*time.Second, 20*time.Millisecond,
		"the pool never filled: %+v", p.Stats())
}

func pooledRun(t *testing.T, p *runner.Pool, code string, mod func(*runner.Task)) *runner.Result {
	t.Helper()
	task := runner.Task{Runtime: testRuntime, Files: []runner.File{{Content: []byte(code)}}}
	if mod != nil {
		mod(&task)
	}
	res, err := p.Run(context.Background(), task)
	require.NoError(t, err)
	return res
}

func TestPoolRunsTaskWithFullHardening(t *testing.T) {
	h := RequiresRoot(t)
	_, p := newPool(t, h, 1, runner.Limits{})
	res := pooledRun(t, p, `echo "args: $*"; read line; echo "stdin: $line"; pwd
grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status
touch /code/x 2>/dev/null || echo code-ro; touch /x 2>/dev/null || echo root-ro
[ $$ != 1 ] && echo "pid 1 is $(tr '\0' ' ' < /proc/1/cmdline)"; id -u`, func(t *runner.Task) {
		t.Args = []string{"a", "b"}
		t.Stdin = strings.NewReader("hello\n")
	})
	assert.Equal(t, runner.OutcomeExited, res.Outcome)
	lines := strings.Split(strings.TrimSuffix(string(res.Stdout.Data), "\n"), "\n")
	require.NotEmpty(t, lines)
	assertTaskUID(t, lines[len(lines)-1])
	assert.Equal(t, "args: a b\nstdin: hello\n/tmp\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\n"+
		"NoNewPrivs:\t1\nSeccomp:\t2\ncode-ro\nroot-ro\npid 1 is /.sandbox-runner/init /.sandbox-runner/cmd/command \n",
		strings.Join(lines[:len(lines)-1], "\n")+"\n", "the init is PID 1 and the task its child")
	assert.Equal(t, uint64(1), p.Stats()[0].Hits)
}

func TestPoolAppliesTheTasksLimitsBeforeStart(t *testing.T) {
	h := RequiresRoot(t)
	_, p := newPool(t, h, 1, runner.Limits{})
	res := pooledRun(t, p, `cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes /sys/fs/cgroup/pids/pids.max
cat /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us`,
		func(t *runner.Task) { t.Limits = runner.Limits{Memory: 64 << 20, Pids: 20, CPUs: 0.25} })
	require.Equal(t, uint64(1), p.Stats()[0].Hits, "a task asking for other memory, pids and CPU still gets a pooled sandbox")
	assert.Equal(t, fmt.Sprintf("%d\n%d\n20\n25000\n", 64<<20, 64<<20), string(res.Stdout.Data))
}

// A pooled sandbox made for one CPU, claimed by a task that asks for
// two, runs on two and says so, in its affinity and in the online-CPU
// file glibc counts.
func TestPoolGivesTheTasksCPUCount(t *testing.T) {
	if hostCPUs() < 2 {
		t.Fatalf("this test needs a host with 2 CPUs or more; this one has %d", hostCPUs())
	}
	h := RequiresRoot(t)
	_, p := newPool(t, h, 1, runner.Limits{CPUs: 1})
	show := `nproc; cat /sys/devices/system/cpu/online`
	res := pooledRun(t, p, show, func(t *runner.Task) { t.Limits = runner.Limits{CPUs: 2} })
	require.Equal(t, uint64(1), p.Stats()[0].Hits)
	assert.Equal(t, "2\n0-1\n", string(res.Stdout.Data))
	waitFull(t, p, 1)
	res = pooledRun(t, p, show, func(t *runner.Task) { t.Limits = runner.Limits{CPUs: 0.5} })
	require.Equal(t, uint64(2), p.Stats()[0].Hits)
	lines := strings.Fields(string(res.Stdout.Data))
	require.Len(t, lines, 2, "%s", res.Stdout.Data)
	assert.Equal(t, "1", lines[0])
	assert.Contains(t, []string{"0", "1"}, lines[1])
}

func TestPoolVerdictsMatchTheColdPath(t *testing.T) {
	h := RequiresRoot(t)
	_, p := newPool(t, h, 1, runner.Limits{})
	res := pooledRun(t, p, "sleep 100", func(t *runner.Task) { t.Limits.Timeout = time.Second })
	assert.Equal(t, runner.OutcomeTimedOut, res.Outcome)
	assert.Equal(t, runner.ExitTimedOut, res.ExitCode)
	assert.Less(t, res.Duration, 3*time.Second)

	waitFull(t, p, 1)
	// 64 MiB, not less: the default /tmp is at most the memory limit, and
	// a task whose /tmp differs from the pool's takes the cold path.
	res = pooledRun(t, p, `x=a; while true; do x="$x$x"; done`, func(t *runner.Task) { t.Limits.Memory = 64 << 20 })
	assert.Equal(t, runner.OutcomeOOMKilled, res.Outcome)

	waitFull(t, p, 1)
	res = pooledRun(t, p, "exit 7", nil)
	assert.Equal(t, 7, res.ExitCode)
	assert.Equal(t, uint64(3), p.Stats()[0].Hits)
}

func TestPoolNeverReusesASandbox(t *testing.T) {
	h := RequiresRoot(t)
	_, p := newPool(t, h, 2, runner.Limits{})
	first := pooledRun(t, p, "echo secret > /tmp/left-behind; hostname", nil)
	second := pooledRun(t, p, "cat /tmp/left-behind 2>&1 || echo clean", nil)
	assert.NotEqual(t, first.ID, second.ID)
	assert.Contains(t, string(second.Stdout.Data), "clean")
	assert.Equal(t, uint64(2), p.Stats()[0].Hits)
}

func TestPoolMissTakesTheColdPath(t *testing.T) {
	h := RequiresRoot(t)
	_, p := newPool(t, h, 1, runner.Limits{})
	// Another tmp size cannot be given to a made sandbox.
	res := pooledRun(t, p, "echo cold", func(t *runner.Task) { t.Limits.TmpSize = 8 << 20 })
	assert.Equal(t, "cold\n", string(res.Stdout.Data))
	st := p.Stats()[0]
	assert.Equal(t, uint64(0), st.Hits)
	assert.Equal(t, uint64(1), st.Misses)
}

func TestPoolCommandNotFound(t *testing.T) {
	h := RequiresRoot(t)
	cat := images.DefaultCatalog()
	cat["missing"] = images.Runtime{Name: "missing", Image: testImage, FileName: "x", Run: []string{"no-such-interpreter", "{file}"}}
	r := h.NewRunner(t, runner.WithCatalog(cat))
	p, err := r.NewPool(context.Background(), runner.PoolOptions{
		Runtimes: map[string]runner.PoolRuntime{"missing": {Size: 1}}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
	waitFull(t, p, 1)
	res, err := p.Run(context.Background(), runner.Task{Runtime: "missing", Files: []runner.File{{Content: []byte("x")}}})
	require.NoError(t, err)
	assert.Equal(t, 127, res.ExitCode)
	assert.Contains(t, string(res.Stderr.Data), "no-such-interpreter: command not found")
}

func TestRunnerRefusesADynamicInit(t *testing.T) {
	h := RequiresRoot(t)
	r := h.NewRunner(t, runner.WithInit("/bin/ls"))
	_, err := r.NewPool(context.Background(), runner.PoolOptions{
		Runtimes: map[string]runner.PoolRuntime{testRuntime: {Size: 1}}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "dynamically linked")
	_, err = r.Run(context.Background(), runner.Task{Runtime: testRuntime, Image: testImage, Files: []runner.File{{Content: []byte("true")}}})
	require.ErrorIs(t, err, runner.ErrSandboxUnavailable, "a sandbox without its init is never made")
	assert.Contains(t, err.Error(), "dynamically linked")
}

func TestPoolIdleSlotMemory(t *testing.T) {
	h := RequiresRoot(t)
	_, p := newPool(t, h, 3, runner.Limits{})
	st := p.Stats()[0]
	t.Logf("idle pooled sandbox: %.1f MiB of host memory (PSS of the waiting process and its shim)", float64(st.IdleMemoryBytes)/(1<<20))
	assert.NotZero(t, st.IdleMemoryBytes)
}

// TestServeWithWarmPool: `serve --pool` answers from pooled sandboxes,
// reports the pool in /metrics, and drains it on SIGTERM.
func TestServeWithWarmPool(t *testing.T) {
	h := RequiresRoot(t)
	p := startServe(t, serveSetup{args: []string{"--pool", "sh=2", "--pool-init", h.InitBinary(t)}})
	p.waitMetric("sandbox_runner_pool_idle", "runtime", "sh", 2)
	mfs := p.scrape()
	mem, _ := metric(t, mfs, "sandbox_runner_pool_idle_memory_bytes", "runtime", "sh")
	assert.NotZero(t, mem)

	for i := range 3 {
		a := p.post(execBody(fmt.Sprintf("echo pooled-%d; grep Seccomp: /proc/self/status", i)))
		res, _ := a.result(t)
		assert.Equal(t, runner.OutcomeExited, res.Outcome)
		assert.Equal(t, fmt.Sprintf("pooled-%d\nSeccomp:\t2\n", i), string(res.Stdout.Data))
		p.waitMetric("sandbox_runner_pool_idle", "runtime", "sh", 2)
	}
	hits, _ := metric(t, p.scrape(), "sandbox_runner_pool_hits_total", "runtime", "sh")
	assert.Equal(t, 3.0, hits)

	assert.Equal(t, 0, p.stop(), "serve exits 0 on SIGTERM")
	// The start line says what the sandboxes are made with, defaults in.
	assert.Contains(t, p.stderr.String(), `"msg":"warm pool","runtime":"sh","size":2,"oci_runtime":"the runtime's default","memory":"512MiB","cpus":1,"pids":128,"tmp_size":"64MiB"`)
	// The leak check registered by startServe's state dir runs next: the
	// drained pool left nothing.
}

// TestPoolSharedShimKilledMidTask: sandboxes that share a shim die
// together. The running task's result says its shim was lost; the pool
// passes over the idle sandboxes that went with it, the next tasks run,
// and nothing is left.
func TestPoolSharedShimKilledMidTask(t *testing.T) {
	h := RequiresRoot(t)
	cat := images.DefaultCatalog()
	rt := cat[testRuntime]
	rt.Image = testImage
	cat[testRuntime] = rt
	r := h.NewRunner(t, runner.WithCatalog(cat))
	const size = 3
	p, err := r.NewPool(context.Background(), runner.PoolOptions{
		Runtimes:  map[string]runner.PoolRuntime{testRuntime: {Size: size}},
		ShimGroup: 8,
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, p.Close(ctx))
	})
	waitFull(t, p, size)

	marker := fmt.Sprintf("pool-shim-kill-%d", time.Now().UnixNano())
	task := shTask("echo started; sleep 60")
	task.Args = []string{marker}
	done := make(chan error, 1)
	go func() {
		res, err := p.Run(context.Background(), task)
		if err == nil {
			err = fmt.Errorf("got a result: %s", describe(res))
		}
		done <- err
	}()
	var pids []string
	require.Eventually(t, func() bool { pids = hostProcesses([]byte(marker)); return len(pids) > 0 },
		30*time.Second, 20*time.Millisecond, "the task should be running")
	shim := ancestor(t, pids[0], "containerd-shim")
	require.NoError(t, syscall.Kill(shim, syscall.SIGKILL))
	select {
	case err := <-done:
		require.ErrorIs(t, err, runner.ErrShimLost)
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return within 60s of its shim's death")
	}

	// The idle sandboxes went with the shim; the tasks still run.
	for i := range size + 1 {
		res, err := p.Run(context.Background(), shTask(fmt.Sprintf("echo %d", i)))
		require.NoError(t, err, "task %d after the shim died", i)
		requireExit(t, res, 0)
		assert.Equal(t, fmt.Sprintf("%d\n", i), string(res.Stdout.Data))
	}
}

// TestPoolHoldsTheFreezer: while a pool lives, an empty cgroup of the
// namespace stays frozen in the v1 freezer hierarchy (it keeps the
// kernel's freezer switched on, which crun's freeze and thaw of every
// deleted sandbox would otherwise switch on and off); the pool removes
// it when it closes, and a hold whose process is gone when the next
// pool starts.
func TestPoolHoldsTheFreezer(t *testing.T) {
	h := RequiresRoot(t)
	const root = "/sys/fs/cgroup/freezer"
	if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("this CI host has no cgroup v1 freezer: %v", err)
		}
		t.Skipf("no cgroup v1 freezer on this host: %v", err)
	}
	parent := filepath.Join(root, h.Namespace)
	require.NoError(t, os.MkdirAll(parent, 0o755))
	gone := exec.Command("true")
	require.NoError(t, gone.Run())
	dead := filepath.Join(parent, fmt.Sprintf("sr-freezer-hold-%d", gone.Process.Pid))
	require.NoError(t, os.Mkdir(dead, 0o755))
	t.Cleanup(func() { _ = os.Remove(dead) })
	require.NoError(t, os.WriteFile(filepath.Join(dead, "freezer.state"), []byte("FROZEN"), 0))

	cat := images.DefaultCatalog()
	rt := cat[testRuntime]
	rt.Image = testImage
	cat[testRuntime] = rt
	r := h.NewRunner(t, runner.WithCatalog(cat))
	p, err := r.NewPool(context.Background(), runner.PoolOptions{Runtimes: map[string]runner.PoolRuntime{testRuntime: {Size: 1}}})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = p.Close(ctx)
	})
	hold := filepath.Join(parent, fmt.Sprintf("sr-freezer-hold-%d", os.Getpid()))
	state, err := os.ReadFile(filepath.Join(hold, "freezer.state"))
	require.NoError(t, err, "the pool holds the freezer")
	assert.Equal(t, "FROZEN", strings.TrimSpace(string(state)))
	assert.NoDirExists(t, dead, "the dead process's hold is removed")
	waitFull(t, p, 1)
	res := pooledRun(t, p, "echo ran", nil)
	assert.Equal(t, "ran\n", string(res.Stdout.Data))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, p.Close(ctx))
	assert.NoDirExists(t, hold, "closed, the pool lets go of the freezer")
}

// TestPoolStartsSandboxesAhead: a pooled crun or runc sandbox is started
// before a task claims it, its init waiting for the command; the task's
// deadline and duration count from the claim, not from that start; and
// a sandbox whose init died while idle is passed over.
func TestPoolStartsSandboxesAhead(t *testing.T) {
	h := RequiresRoot(t)
	_, p := newPool(t, h, 1, runner.Limits{})
	ctx := namespaces.WithNamespace(t.Context(), h.Namespace)
	idle := func() client.Task {
		t.Helper()
		var cs []client.Container
		// Until a used sandbox's teardown, which runs after the answer,
		// is done.
		require.Eventually(t, func() bool {
			var err error
			cs, err = h.Client.Containers(ctx)
			return err == nil && len(cs) == 1
		}, 10*time.Second, 20*time.Millisecond, "the pool's one sandbox")
		task, err := cs[0].Task(ctx, nil)
		require.NoError(t, err)
		return task
	}
	st, err := idle().Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, client.Running, st.Status, "the idle sandbox is started ahead")

	time.Sleep(1200 * time.Millisecond)
	res := pooledRun(t, p, "sleep 0.5; echo done", func(task *runner.Task) { task.Limits.Timeout = time.Second })
	requireExit(t, res, 0)
	assert.Equal(t, "done\n", string(res.Stdout.Data), "the deadline counts from the claim")
	assert.Less(t, res.Duration, time.Second, "the duration counts from the claim")
	assert.Equal(t, uint64(1), p.Stats()[0].Hits)

	waitFull(t, p, 1)
	task := idle()
	require.NoError(t, syscall.Kill(int(task.Pid()), syscall.SIGKILL))
	require.Eventually(t, func() bool {
		st, err := task.Status(ctx)
		return err == nil && st.Status == client.Stopped
	}, 10*time.Second, 20*time.Millisecond)
	res = pooledRun(t, p, "echo next", nil)
	requireExit(t, res, 0)
	assert.Equal(t, "next\n", string(res.Stdout.Data))
}

// TestPoolVerdictsComeFromTheInit: a started-ahead sandbox's verdict
// comes from its init's status FIFO as it exits, not from containerd
// milliseconds later, and is the same verdict: exit codes, signals, the
// deadline, output. The task cannot reach the FIFO to forge one: it is
// unlinked before the task exists, and the init's descriptors are not the
// task's to open.
func TestPoolVerdictsComeFromTheInit(t *testing.T) {
	h := RequiresRoot(t)
	_, p := newPool(t, h, 1, runner.Limits{})
	// fromInit: 1 when the verdict is the init's, 0 when the runner
	// killed the task (its timeout comes before the init's deadline).
	run := func(script string, fromInit uint64, mod func(*runner.Task)) *runner.Result {
		t.Helper()
		waitFull(t, p, 1)
		before := p.Stats()[0]
		res := pooledRun(t, p, script, mod)
		after := p.Stats()[0]
		require.Equal(t, before.Hits+1, after.Hits, "a pooled task")
		assert.Equal(t, before.InitExits+fromInit, after.InitExits, "where its verdict came from: %s", describe(res))
		return res
	}

	res := run("echo out; echo err >&2; exit 3", 1, nil)
	requireExit(t, res, 3)
	assert.Equal(t, "out\n", string(res.Stdout.Data))
	assert.Equal(t, "err\n", string(res.Stderr.Data))

	res = run("kill -KILL $$", 1, nil)
	assert.Equal(t, runner.OutcomeSignaled, res.Outcome, describe(res))
	assert.Equal(t, "SIGKILL", res.Signal)

	res = run("sleep 30", 0, func(task *runner.Task) { task.Limits.Timeout = 500 * time.Millisecond })
	assert.Equal(t, runner.OutcomeTimedOut, res.Outcome, describe(res))

	// The forger: writes a 0 wherever the status could be, then fails.
	res = run(`ls -a /.sandbox-runner/cmd
for f in /.sandbox-runner/cmd/status /proc/1/fd/*; do
	printf '\0' >"$f" 2>/dev/null && echo "wrote $f"
done
exit 7`, 1, nil)
	requireExit(t, res, 7)
	assert.NotContains(t, string(res.Stdout.Data), "status", "the FIFO is gone before the task runs")
	assert.NotContains(t, string(res.Stdout.Data), "wrote", "nothing of the init's is the task's to write")
}

// TestPoolMissesShareShims: tasks that miss the pool run cold, their
// sandboxes sharing a shim (a group per OCI runtime), each with its own
// verdict, and nothing is left after them.
func TestPoolMissesShareShims(t *testing.T) {
	h := RequiresRoot(t)
	_, p := newPool(t, h, 1, runner.Limits{})
	marker := fmt.Sprintf("pool-miss-%d", time.Now().UnixNano())
	const n = 3
	errs := make(chan error, n)
	for i := range n {
		go func() {
			res, err := p.Run(context.Background(), missTask(fmt.Sprintf("sleep 1; exit %d", i), marker))
			if err == nil && res.ExitCode != i {
				err = fmt.Errorf("task %d: %s", i, describe(res))
			}
			errs <- err
		}()
	}
	shims := map[int]bool{}
	require.Eventually(t, func() bool {
		pids := taskProcesses(marker)
		if len(pids) < n {
			return false
		}
		clear(shims)
		for _, pid := range pids {
			shims[ancestor(t, pid, "containerd-shim")] = true
		}
		return true
	}, 30*time.Second, 20*time.Millisecond, "the tasks should be running")
	for range n {
		require.NoError(t, <-errs)
	}
	assert.Len(t, shims, 1, "the tasks that missed the pool share a shim")
	assert.Equal(t, uint64(n), p.Stats()[0].Misses)
}

// TestPoolMissesSharedShimKilledMidTask: the tasks that missed the pool
// and share a shim all fail with "shim lost" when it dies, never with a
// verdict; their processes go, and the next task runs.
func TestPoolMissesSharedShimKilledMidTask(t *testing.T) {
	h := RequiresRoot(t)
	_, p := newPool(t, h, 1, runner.Limits{})
	marker := fmt.Sprintf("pool-miss-kill-%d", time.Now().UnixNano())
	const n = 2
	errs := make(chan error, n)
	for range n {
		go func() {
			res, err := p.Run(context.Background(), missTask("echo started; sleep 60", marker))
			if err == nil {
				err = fmt.Errorf("got a result: %s", describe(res))
			}
			errs <- err
		}()
	}
	var pids []string
	// One process per task: a shell's child holds its command line too
	// until it execs.
	require.Eventually(t, func() bool { pids = taskProcesses(marker); return len(pids) >= n },
		30*time.Second, 20*time.Millisecond, "the tasks should be running")
	shim := ancestor(t, pids[0], "containerd-shim")
	for _, pid := range pids[1:] {
		require.Equal(t, shim, ancestor(t, pid, "containerd-shim"), "the tasks share a shim")
	}
	require.NoError(t, syscall.Kill(shim, syscall.SIGKILL))
	for range n {
		select {
		case err := <-errs:
			require.ErrorIs(t, err, runner.ErrShimLost)
		case <-time.After(60 * time.Second):
			t.Fatal("Run did not return within 60s of its shim's death")
		}
	}
	assert.Eventually(t, func() bool { return len(hostProcesses([]byte(marker))) == 0 }, 10*time.Second, 50*time.Millisecond,
		"the tasks' processes outlived their shim")

	res := pooledRun(t, p, "echo next", func(task *runner.Task) { task.Limits.TmpSize = 8 << 20 })
	requireExit(t, res, 0)
	assert.Equal(t, "next\n", string(res.Stdout.Data))
}

// missTask is a task that misses a pool made by newPool (it asks for
// another tmp size), its command line holding marker.
func missTask(script, marker string) runner.Task {
	task := shTask(script)
	task.Args = []string{marker}
	task.Limits.TmpSize = 8 << 20
	return task
}

// taskProcesses returns the host processes whose command line holds
// marker and whose parent's does not: one per task.
func taskProcesses(marker string) []string {
	all := hostProcesses([]byte(marker))
	var out []string
	for _, pid := range all {
		b, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
		if err != nil {
			continue
		}
		_, rest, _ := strings.Cut(string(b), "\nPPid:\t")
		ppid, _, _ := strings.Cut(rest, "\n")
		if !slices.Contains(all, ppid) {
			out = append(out, pid)
		}
	}
	return out
}
