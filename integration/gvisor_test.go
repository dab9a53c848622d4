//go:build linux

package integration

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
)

// These tests name runsc on their tasks, whatever the suite's OCI
// runtime: `make test` puts gVisor's runsc and shim (`make gvisor`) on
// PATH for every pass, and runs the hardening, verdict, output and leak
// tests that apply to gVisor once more with runsc as the suite's runtime.

// runGVisor runs code under runsc with edit applied to the task.
func runGVisor(t *testing.T, r *runner.Runner, code string, edit ...func(*runner.Task)) *runner.Result {
	t.Helper()
	task := shTask(code)
	task.OCIRuntime = runner.OCIRuntimeRunsc
	for _, e := range edit {
		e(&task)
	}
	res, err := r.Run(t.Context(), task)
	require.NoError(t, err)
	require.Equal(t, runner.OCIRuntimeRunsc, res.OCIRuntime)
	return res
}

func TestGVisorTaskRunsInGVisorsKernel(t *testing.T) {
	h := RequiresRoot(t)
	requireUsable(t, runner.OCIRuntimeRunsc)
	r := h.NewRunner(t)
	res := runGVisor(t, r, `
echo kernel=$(uname -r)
echo uid=$(id -u)
echo interfaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')
awk '$5 == "/" { print "root=" $6 }' /proc/self/mountinfo
if touch /probe 2>/dev/null; then echo rootfs-write=ok; else echo rootfs-write=failed; fi
if wget -q -T 2 -O /dev/null http://127.0.0.2:9/ 2>/dev/null; then echo net=ok; else echo net=failed; fi
echo "$PPID" | sed 's/^/ppid=/'
exit 7`)
	requireExit(t, res, 7)
	kv := keyValues(res.Stdout.Data)
	// gVisor's kernel names itself in its release ("4.19.0-gvisor").
	assert.Contains(t, kv["kernel"], "gvisor", "the task ran in gVisor's kernel, not the host's\n%s", describe(res))
	assertTaskUID(t, kv["uid"])
	assert.Equal(t, "lo", strings.TrimSpace(kv["interfaces"]), "loopback only: runsc runs with --network=none\n%s", describe(res))
	assert.Contains(t, strings.Split(kv["root"], ","), "ro", describe(res))
	assert.Equal(t, "failed", kv["rootfs-write"], describe(res))
	assert.Equal(t, "failed", kv["net"], describe(res))
	assert.Equal(t, "1", kv["ppid"], "the init is PID 1 under gVisor too")
}

func TestGVisorVerdicts(t *testing.T) {
	h := RequiresRoot(t)
	requireUsable(t, runner.OCIRuntimeRunsc)
	r := h.NewRunner(t)

	t.Run("exit codes", func(t *testing.T) {
		for _, code := range []int{0, 1, 3, 128, 255} {
			res := runGVisor(t, r, "exit "+strconv.Itoa(code))
			requireExit(t, res, code)
		}
	})
	t.Run("signal", func(t *testing.T) {
		res := runGVisor(t, r, `kill -TERM $$; sleep 5`)
		assert.Equal(t, runner.OutcomeSignaled, res.Outcome, describe(res))
		assert.Equal(t, 143, res.ExitCode)
		assert.Equal(t, "SIGTERM", res.Signal)
	})
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		res := runGVisor(t, r, `sleep 100`, func(task *runner.Task) { task.Limits.Timeout = time.Second })
		assert.Equal(t, runner.OutcomeTimedOut, res.Outcome, describe(res))
		assert.Equal(t, runner.ExitTimedOut, res.ExitCode)
		assert.Less(t, time.Since(start), 10*time.Second)
	})
	t.Run("memory limit", func(t *testing.T) {
		const limit = 64 << 20
		res := runGVisor(t, r, `x=a; while true; do x="$x$x"; done`, func(task *runner.Task) { task.Limits.Memory = limit })
		assert.Equal(t, runner.OutcomeOOMKilled, res.Outcome, describe(res))
		assert.True(t, res.OOMKilled)
		assert.Equal(t, 137, res.ExitCode)
		// The sandbox's peak, read from its host cgroup.
		assert.Greater(t, res.Usage.MemoryPeak, uint64(limit/2), describe(res))
		assert.LessOrEqual(t, res.Usage.MemoryPeak, uint64(limit), describe(res))
	})
	t.Run("usage", func(t *testing.T) {
		res := runGVisor(t, r, `head -c 20000000 /dev/zero | md5sum >/dev/null`)
		requireExit(t, res, 0)
		assert.Greater(t, res.Usage.CPU, 10*time.Millisecond, "the sandbox's CPU time, its kernel's included")
		assert.Greater(t, res.Usage.MemoryPeak, uint64(1<<20))
	})
	t.Run("output", func(t *testing.T) {
		res := runGVisor(t, r, `head -c 100000 /dev/zero | tr '\0' x; echo err >&2`, func(task *runner.Task) { task.Limits.OutputLimit = 1000 })
		requireExit(t, res, 0)
		assert.Len(t, res.Stdout.Data, 1000)
		assert.True(t, res.OutputTruncated)
		assert.Equal(t, "err\n", string(res.Stderr.Data))
	})
}

// TestGVisorLeavesNothing: after gVisor tasks, cold and killed at their
// deadline, no sandbox, gofer or shim process and no runsc state is left
// (the runner's own leak check runs too, when the test ends).
func TestGVisorLeavesNothing(t *testing.T) {
	h := RequiresRoot(t)
	requireUsable(t, runner.OCIRuntimeRunsc)
	r := h.NewRunner(t)
	var ids []string
	for _, code := range []string{"true", "sleep 100", "sleep 1 & sleep 1 & wait"} {
		res := runGVisor(t, r, code, func(task *runner.Task) { task.Limits.Timeout = 2 * time.Second })
		ids = append(ids, res.ID)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && len(processesUnder(h.Dir, "runsc")) > 0; {
		time.Sleep(50 * time.Millisecond)
	}
	assert.Empty(t, processesUnder(h.Dir, "runsc"), "gVisor's sandbox and gofer processes are gone")
	for _, id := range ids {
		matches, _ := filepath.Glob(filepath.Join("/run/containerd/runsc", h.Namespace, "*"+id+"*"))
		assert.Empty(t, matches, "runsc's state of %s is removed", id)
		_, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", h.Namespace, id))
		assert.ErrorIs(t, err, os.ErrNotExist, "the sandbox's cgroup is removed")
	}
}

// TestGVisorPoolClosesWithoutLeaks: a warm pool under runsc tears down
// sandboxes that were created but never started (the idle ones, when it
// closes) at once and completely. gVisor's shim learns a container's exit
// only once it has started it, so the kill of an unstarted sandbox was
// never followed by an exit: the delete waited out the runner's cleanup
// timeout, failed, and left the container, its stopped task and its shim
// behind.
func TestGVisorPoolClosesWithoutLeaks(t *testing.T) {
	h := RequiresRoot(t)
	requireUsable(t, runner.OCIRuntimeRunsc)
	cat := images.DefaultCatalog()
	rt := cat[testRuntime]
	rt.Image = testImage
	cat[testRuntime] = rt
	r := h.NewRunner(t, runner.WithCatalog(cat))
	const size = 2
	p, err := r.NewPool(context.Background(), runner.PoolOptions{
		Runtimes: map[string]runner.PoolRuntime{testRuntime: {Size: size, OCIRuntime: runner.OCIRuntimeRunsc}},
	})
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = p.Close(ctx)
		}
	})
	waitFull(t, p, size)

	// A task takes a pooled gVisor sandbox, and the pool refills.
	res := pooledRun(t, p, "echo pooled", func(task *runner.Task) { task.OCIRuntime = runner.OCIRuntimeRunsc })
	require.Equal(t, runner.OutcomeExited, res.Outcome, describe(res))
	assert.Equal(t, "pooled\n", string(res.Stdout.Data))
	assert.Equal(t, runner.OCIRuntimeRunsc, res.OCIRuntime)
	assert.Equal(t, uint64(1), p.Stats()[0].Hits, "the task ran in a pooled sandbox")
	waitFull(t, p, size)

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, p.Close(ctx))
	closed = true
	took := time.Since(start)
	assert.Less(t, took, 15*time.Second, "closing the pool waited on its unstarted gVisor sandboxes")
	t.Logf("closing a pool of %d idle gVisor sandboxes took %s", size, took.Round(time.Millisecond))
	// Nothing of the unstarted sandboxes is left: no container, task,
	// snapshot, shim or gVisor process, no runsc state (the runner's
	// state dir is checked when the test ends).
	h.CheckNoLeaks(t, "")
	states, _ := filepath.Glob(filepath.Join("/run/containerd/runsc", h.Namespace, "*_sandbox:*"))
	assert.Empty(t, states, "runsc's state of the pool's sandboxes is removed")
}
