//go:build linux

package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

// The attacks of the audit that found a task's files and processes open
// to other host users, reproduced from outside the sandbox.

// taskProcs returns the host pids in the cgroup of container id, on a
// cgroup v1 (pids controller) or v2 host.
func taskProcs(t *testing.T, ns, id string) []int {
	t.Helper()
	var pids []int
	for _, dir := range []string{"/sys/fs/cgroup/pids", "/sys/fs/cgroup"} {
		b, err := os.ReadFile(filepath.Join(dir, ns, id, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			require.NoError(t, err)
			pids = append(pids, pid)
		}
		return pids
	}
	return nil
}

// hostUID reads the real uid of a host process from /proc/PID/status.
func hostUID(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			return strings.Fields(rest)[0]
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return ""
}

// asUser runs script with sh as host uid and gid, with no groups and no
// capabilities, as the audit's other users did, and returns its output
// and whether it succeeded.
func asUser(t *testing.T, uid int, script string) (string, bool) {
	t.Helper()
	out, err := exec.Command("setpriv", "--reuid="+strconv.Itoa(uid), "--regid="+strconv.Itoa(uid), "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", "sh", "-c", script).CombinedOutput()
	return string(out), err == nil
}

// openToOthers lets any host user walk down to dir, as an installed
// state dir (/var/lib/sandbox-runner, 0755 from systemd) is: t.TempDir's
// own 0700 would stop another user before the runner's modes are tested.
func openToOthers(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		require.NoError(t, os.Chmod(d, 0o755))
	}
}

// waitRunning waits until container id's task runs and returns its pids.
func waitRunning(t *testing.T, h *Harness, id string) []int {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), h.Namespace)
	require.Eventually(t, func() bool {
		c, err := h.Client.LoadContainer(ctx, id)
		if err != nil {
			return false
		}
		task, err := c.Task(ctx, nil)
		if err != nil {
			return false
		}
		st, err := task.Status(ctx)
		return err == nil && st.Status == client.Running && len(taskProcs(t, h.Namespace, id)) >= 2
	}, 30*time.Second, 20*time.Millisecond, "task %s never ran", id)
	return taskProcs(t, h.Namespace, id)
}

// TestOtherHostUsersCannotReachATask: while a compiled task runs, host
// uid 1000 and the host's nobody (65534) try what the audit did: read its
// written code (through the state dir and through /proc/PID/root), plant
// and rewrite the program in its compile scratch, read its environment
// and signal it. Every attempt fails, and the task runs what it compiled.
func TestOtherHostUsersCannotReachATask(t *testing.T) {
	h := RequiresRoot(t)
	stateDir := h.StateDir(t)
	openToOthers(t, stateDir)
	r := h.NewRunner(t, runner.WithCatalog(compiledCatalog()), runner.WithStateDir(stateDir))
	id := fmt.Sprintf("it-private-%d", rand.IntN(1<<30))
	task := shTask(`build() { echo 'echo "ran: compiled"; sleep 3; cat /tmp/main.sh 2>/dev/null || echo "nothing planted"' > /tmp/prog; }
# secret: 4f1c`)
	task.Runtime, task.ID = "shc", id
	task.Env = []string{"SECRET=hunter2"}
	done := make(chan *runner.Result, 1)
	go func() {
		res, err := r.Run(context.Background(), task)
		assert.NoError(t, err)
		done <- res
	}()
	pids := waitRunning(t, h, id)
	dir := filepath.Join(stateDir, "tasks", id)
	for _, uid := range []int{1000, 65534} {
		for _, attack := range []string{
			"cat " + dir + "/code/main.sh",
			"ls " + dir,
			"echo 'echo injected' > " + dir + "/scratch/main.sh",
			"echo 'echo injected' > " + dir + "/scratch/prog",
			fmt.Sprintf("cat /proc/%d/root/code/main.sh", pids[len(pids)-1]),
			fmt.Sprintf("ls /proc/%d/root/tmp/", pids[len(pids)-1]),
			fmt.Sprintf("cat /proc/%d/environ", pids[len(pids)-1]),
			fmt.Sprintf("kill -0 %d", pids[len(pids)-1]),
		} {
			out, ok := asUser(t, uid, attack)
			assert.False(t, ok, "as uid %d, %q succeeded: %s", uid, attack, out)
			assert.NotContains(t, out, "4f1c", "as uid %d, %q read the written code", uid, attack)
			assert.NotContains(t, out, "hunter2", "as uid %d, %q read the environment", uid, attack)
		}
	}
	res := <-done
	require.NotNil(t, res)
	requireExit(t, res, 0)
	assert.Equal(t, "ran: compiled\nnothing planted\n", string(res.Stdout.Data))
}

// pythonTask runs code with the Debian image's python on the harness's
// containerd, as a CLI in the background, and returns its stdout.
func pythonTask(t *testing.T, e *imgEnv, code string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := e.command(nil, "exec", "--address", e.h.Address, "--namespace", e.ns, "--snapshotter", testSnapshotter,
		"--state-dir", e.stateDir, "--config", e.Config, "--runtime", "python", "--timeout", "20s", "-c", code)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	return cmd, bufio.NewReader(out)
}

const exhaust = `
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
inotify = mq = 0
while libc.inotify_init1(0) >= 0:
    inotify += 1
while libc.mq_open(b"/sr-%d" % mq, os.O_CREAT | os.O_RDWR, 0o600, None) >= 0:
    mq += 1
print("uid", os.getuid(), "exhausted", inotify, mq, "errno", ctypes.get_errno(), flush=True)
time.sleep(15)
`

const useOne = `
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
ino = libc.inotify_init1(0)
mq = libc.mq_open(b"/sr-b", os.O_CREAT | os.O_RDWR, 0o600, None)
print("uid", os.getuid(), "inotify", "ok" if ino >= 0 else "EMFILE", "mq", "ok" if mq >= 0 else "failed", flush=True)
time.sleep(15)
`

// TestConcurrentTasksHaveTheirOwnIdentity: two tasks running at once have
// different host uids, read from the host, neither the host's nobody; and
// task A using up its per-user inotify instances and POSIX message queue
// bytes leaves task B its own.
func TestConcurrentTasksHaveTheirOwnIdentity(t *testing.T) {
	h := RequiresRoot(t)
	e := debianEnv(t)
	a, aOut := pythonTask(t, e, exhaust)
	line, err := aOut.ReadString('\n')
	require.NoError(t, err)
	t.Logf("task A: %s", line)
	fa := strings.Fields(line)
	require.Len(t, fa, 7, line)
	assert.NotEqual(t, "0", fa[3], "A opened no inotify instance")
	assert.NotEqual(t, "0", fa[4], "A opened no message queue")

	b, bOut := pythonTask(t, e, useOne)
	line, err = bOut.ReadString('\n')
	require.NoError(t, err)
	t.Logf("task B: %s", line)
	fb := strings.Fields(line)
	require.Len(t, fb, 6, line)
	assert.Equal(t, "ok", fb[3], "task A's inotify instances counted against task B")
	assert.Equal(t, "ok", fb[5], "task A's message queues counted against task B")
	assertTaskUID(t, fa[1])
	assertTaskUID(t, fb[1])
	assert.NotEqual(t, fa[1], fb[1], "two live tasks share a host uid")

	// From the host: every process of each task runs as its uid.
	ctx := namespaces.WithNamespace(context.Background(), e.ns)
	cs, err := h.Client.Containers(ctx)
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, c := range cs {
		for _, pid := range taskProcs(t, e.ns, c.ID()) {
			uid := hostUID(t, pid)
			assert.NotEqual(t, "65534", uid)
			assert.NotEqual(t, "0", uid)
			seen[uid] = true
		}
	}
	assert.Equal(t, map[string]bool{fa[1]: true, fb[1]: true}, seen, "the host sees the tasks' processes as their two uids")
	// Interrupted, each CLI kills and removes its task before the leak
	// check looks.
	for _, c := range []*exec.Cmd{a, b} {
		require.NoError(t, c.Process.Signal(syscall.SIGINT))
		_ = c.Wait()
	}
}

// TestTaskDiesAtItsDeadlineWithNoRunnerAlive: exec is SIGKILLed while its
// task runs; the sandbox's init kills the task at its deadline, with no
// runner alive, and the next gc removes the rest.
func TestTaskDiesAtItsDeadlineWithNoRunnerAlive(t *testing.T) {
	h := RequiresRoot(t)
	stateDir := h.StateDir(t)
	cli := h.CLI(t)
	cmd := exec.Command(cli, "exec", "--address", h.Address, "--namespace", h.Namespace,
		"--snapshotter", testSnapshotter, "--state-dir", stateDir,
		"--runtime", testRuntime, "--image", testImage, "--timeout", "2s",
		"-c", "trap '' TERM INT HUP; sleep 300 & sleep 300")
	require.NoError(t, cmd.Start())
	killed := killAndWatch(t, h, cmd.Process, func() { _ = cmd.Wait() }, 2*time.Second)
	t.Logf("the task's processes were gone %s after the runner was killed", killed)
	sweepWithGC(t, h, cli, stateDir)
}

// waitAnyRunning waits until some container of the namespace has a running
// task and returns its id.
func waitAnyRunning(t *testing.T, h *Harness) string {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), h.Namespace)
	var id string
	require.Eventually(t, func() bool {
		cs, err := h.Client.Containers(ctx)
		if err != nil || len(cs) != 1 {
			return false
		}
		task, err := cs[0].Task(ctx, nil)
		if err != nil {
			return false
		}
		st, err := task.Status(ctx)
		id = cs[0].ID()
		return err == nil && st.Status == client.Running && len(taskProcs(t, h.Namespace, id)) >= 2
	}, 30*time.Second, 20*time.Millisecond, "no task ever ran")
	return id
}

// killAndWatch SIGKILLs the runner process p once a task of the namespace
// runs, reaps it, and asserts that the task's processes are all gone
// within a second of its timeout, counted from when it was seen running.
func killAndWatch(t *testing.T, h *Harness, p *os.Process, reap func(), timeout time.Duration) time.Duration {
	t.Helper()
	id := waitAnyRunning(t, h)
	seen := time.Now()
	require.NoError(t, p.Signal(syscall.SIGKILL))
	killedAt := time.Now()
	// Reaped, or its zombie would look alive to the sweep.
	reap()
	require.NotEmpty(t, taskProcs(t, h.Namespace, id), "the task died with its runner")
	for len(taskProcs(t, h.Namespace, id)) > 0 {
		require.Less(t, time.Since(seen), timeout+time.Second, "the task outlived its deadline by a second with no runner alive: %v",
			taskProcs(t, h.Namespace, id))
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(killedAt)
}

// sweepWithGC runs gc on stateDir and asserts it removed the dead
// runner's container.
func sweepWithGC(t *testing.T, h *Harness, cli, stateDir string) {
	t.Helper()
	out, err := exec.Command(cli, "gc", "--address", h.Address, "--namespace", h.Namespace,
		"--snapshotter", testSnapshotter, "--state-dir", stateDir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "1 containers", "%s", out)
}

// TestServedTaskDiesAtItsDeadlineWithNoServiceAlive: the same with serve
// SIGKILLed mid-task.
func TestServedTaskDiesAtItsDeadlineWithNoServiceAlive(t *testing.T) {
	h := RequiresRoot(t)
	p := startServe(t, serveSetup{})
	go func() {
		_, _ = p.do(context.Background(), "POST", "/v1/exec",
			`{"runtime": "sh", "files": [{"content": "trap '' TERM; sleep 300"}], "limits": {"timeout": "2s"}}`)
	}()
	killed := killAndWatch(t, h, p.cmd.Process, func() { <-p.exited }, 2*time.Second)
	t.Logf("the task's processes were gone %s after serve was killed", killed)
	sweepWithGC(t, h, h.CLI(t), p.stateDir)
}

// TestClosedStdoutEndsTheTask: `exec -c yes | head -1`. The CLI kills and
// removes its task as soon as its output has no reader, and exits 141 as
// a pipe writer would.
func TestClosedStdoutEndsTheTask(t *testing.T) {
	h := RequiresRoot(t)
	stateDir := h.StateDir(t)
	cmd := exec.Command(h.CLI(t), "exec", "--address", h.Address, "--namespace", h.Namespace,
		"--snapshotter", testSnapshotter, "--state-dir", stateDir,
		"--runtime", testRuntime, "--image", testImage, "--timeout", "60s", "-c", "yes")
	cmd.Env = cleanEnv()
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "y\n", line)
	closed := time.Now()
	require.NoError(t, out.Close())
	err = cmd.Wait()
	took := time.Since(closed)
	t.Logf("exec exited %s after its stdout was closed", took)
	assert.Equal(t, 141, cmd.ProcessState.ExitCode(), "%v", err)
	// Well before the task's 60 s timeout; usually ~150 ms, but once in
	// CI (runc on containerd 2.4.2, 2 busy cores) 10.2 s.
	assert.Less(t, took, 30*time.Second)
	// Everything is gone by the time exec exits: the leak check that
	// runs when this test ends sees the namespace and the state dir.
	cs, err := h.Client.Containers(namespaces.WithNamespace(context.Background(), h.Namespace))
	require.NoError(t, err)
	assert.Empty(t, cs)
	_, _ = io.Copy(io.Discard, out)
}

// TestOOMScoreIsSticky: the task cannot lower the OOM score adjustment
// that makes the kernel pick it first when the host runs out of memory.
// Only a writer with CAP_SYS_RESOURCE can make it a floor: a runner
// without it (this CI machine's root has none) must say so in check.
func TestOOMScoreIsSticky(t *testing.T) {
	res := runSh(t, `cat /proc/self/oom_score_adj; echo 0 > /proc/self/oom_score_adj && echo lowered; echo 999 > /proc/self/oom_score_adj && echo lowered; cat /proc/self/oom_score_adj`)
	requireExit(t, res, 0)
	if hasSysResource(t) {
		assert.Equal(t, "1000\n1000\n", string(res.Stdout.Data), describe(res))
		return
	}
	t.Log("this host's root lacks CAP_SYS_RESOURCE: the score starts at 1000 but cannot be made a floor")
	assert.True(t, strings.HasPrefix(string(res.Stdout.Data), "1000\n"), describe(res))
	c := newCLI(t)
	r := c.run(nil, "check", "--json", "--address", c.h.Address, "--state-dir", c.stateDir)
	assert.Contains(t, r.stdout, `"name": "oom score"`, r)
	assert.Contains(t, r.stdout, "lacks CAP_SYS_RESOURCE", r)
	assert.Contains(t, r.stdout, `"warning": true`, r)
}

// hasSysResource tells whether this process, and so the runner it
// starts, has CAP_SYS_RESOURCE.
func hasSysResource(t *testing.T) bool {
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "CapEff:"); ok {
			eff, err := strconv.ParseUint(strings.TrimSpace(rest), 16, 64)
			require.NoError(t, err)
			return eff&(1<<24) != 0
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return false
}

// TestSignalsHaveTheirDefaultMeaning: under the init a task is not PID 1,
// so abort(), an uncaught C++ exception and a self-sent SIGTERM end it
// with that signal, where a PID 1 task ignored them (abort fell through
// to SIGSEGV); and a task that makes its parent its tracer gets the
// verdict of what it did.
func TestSignalsHaveTheirDefaultMeaning(t *testing.T) {
	e := debianEnv(t)
	for _, tc := range []struct {
		name, runtime, code string
		outcome             runner.Outcome
		exit                int
		signal, stdout      string
	}{
		{"abort from C", "c", "#include <stdlib.h>\nint main(void) { abort(); }\n",
			runner.OutcomeSignaled, 134, "SIGABRT", ""},
		{"uncaught C++ exception", "cpp", "#include <stdexcept>\nint main() { throw std::runtime_error(\"boom\"); }\n",
			runner.OutcomeSignaled, 134, "SIGABRT", ""},
		{"self-sent SIGTERM", "c", "#include <signal.h>\n#include <unistd.h>\nint main(void) { kill(getpid(), SIGTERM); pause(); }\n",
			runner.OutcomeSignaled, 143, "SIGTERM", ""},
		{"PTRACE_TRACEME", "c", `#include <signal.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <unistd.h>
static void on_usr1(int s) { (void)s; printf("usr1\n"); fflush(stdout); _exit(7); }
int main(void) {
	signal(SIGUSR1, on_usr1);
	if (ptrace(PTRACE_TRACEME, 0, 0, 0) != 0) { perror("ptrace"); return 2; }
	raise(SIGUSR1);
	sleep(5);
	return 3;
}
`, runner.OutcomeExited, 7, "", "usr1\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.execIn(nil, "--runtime", tc.runtime, "--json", "-c", tc.code)
			res, _ := decodeResult(t, r)
			assert.Equal(t, tc.outcome, res.Outcome, r)
			assert.Equal(t, tc.exit, res.ExitCode, r)
			assert.Equal(t, tc.signal, res.Signal, r)
			assert.Equal(t, tc.stdout, string(res.Stdout.Data), r)
		})
	}
}

// TestSelfSentSignalOnEveryPath: a shell that sends itself SIGTERM ends
// with it, cold and pooled alike.
func TestSelfSentSignalOnEveryPath(t *testing.T) {
	res := runSh(t, "kill -TERM $$; sleep 5; echo survived")
	assert.Equal(t, runner.OutcomeSignaled, res.Outcome, describe(res))
	assert.Equal(t, "SIGTERM", res.Signal)

	_, p := newPool(t, RequiresRoot(t), 1, runner.Limits{})
	res = pooledRun(t, p, "kill -TERM $$; sleep 5; echo survived", nil)
	assert.Equal(t, runner.OutcomeSignaled, res.Outcome, describe(res))
	assert.Equal(t, "SIGTERM", res.Signal)
}
