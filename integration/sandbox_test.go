//go:build linux

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
)

// taskTimeout bounds every test task that is not about timeouts: far
// above what any of them needs, so a slow machine does not fail them.
const taskTimeout = 30 * time.Second

// shTask returns a task that runs code with sh in the test image.
func shTask(code string) runner.Task {
	return runner.Task{
		Runtime: testRuntime,
		Image:   testImage,
		Files:   []runner.File{{Content: []byte(code)}},
		Limits:  runner.Limits{Timeout: taskTimeout},
	}
}

// runSh runs code in a fresh sandbox, with edit applied to the task, and
// returns the result; the leak check runs when t ends.
func runSh(t *testing.T, code string, edit ...func(*runner.Task)) *runner.Result {
	t.Helper()
	h := RequiresRoot(t)
	r := h.NewRunner(t)
	task := shTask(code)
	for _, e := range edit {
		e(&task)
	}
	res, err := r.Run(t.Context(), task)
	require.NoError(t, err)
	require.NotNil(t, res)
	return res
}

// requireExit asserts that the task exited by itself with code.
func requireExit(t *testing.T, res *runner.Result, code int) {
	t.Helper()
	require.Equal(t, runner.OutcomeExited, res.Outcome, describe(res))
	require.Equal(t, code, res.ExitCode, describe(res))
}

// describe gives what a failed assertion on res needs to be understood.
func describe(res *runner.Result) string {
	return fmt.Sprintf("outcome %s, exit %d, signal %q\nstdout:\n%s\nstderr:\n%s",
		res.Outcome, res.ExitCode, res.Signal, res.Stdout.Data, res.Stderr.Data)
}

// keyValues parses "key=value" lines.
func keyValues(b []byte) map[string]string {
	kv := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

func TestHelloWorld(t *testing.T) {
	res := runSh(t, `echo "hello, world"`)
	requireExit(t, res, 0)
	assert.Equal(t, "hello, world\n", string(res.Stdout.Data))
	assert.Empty(t, res.Stderr.Data)
	assert.False(t, res.OutputTruncated)
	assert.False(t, res.PidsLimitHit)
	assert.Nil(t, res.Compile, "sh is not compiled")
	assert.NotEmpty(t, res.ID)
	assert.Equal(t, testImage, res.Image)
	assert.Positive(t, res.Duration)
}

func TestExitCodePassthrough(t *testing.T) {
	res := runSh(t, `echo on stderr >&2; exit 3`)
	requireExit(t, res, 3)
	assert.Empty(t, res.Signal)
	assert.False(t, res.TimedOut)
	assert.False(t, res.OOMKilled)
	assert.Equal(t, "on stderr\n", string(res.Stderr.Data))
}

func TestStdinReachesTask(t *testing.T) {
	input := "line one\nline two\n"
	res := runSh(t, `cat; echo "[eof]"`, func(task *runner.Task) {
		task.Stdin = strings.NewReader(input)
	})
	requireExit(t, res, 0)
	assert.Equal(t, input+"[eof]\n", string(res.Stdout.Data))
}

func TestArgsReachTask(t *testing.T) {
	res := runSh(t, `for a in "$@"; do echo "arg=$a"; done; echo "script=$0"`, func(task *runner.Task) {
		task.Args = []string{"one", "two words"}
	})
	requireExit(t, res, 0)
	assert.Equal(t, "arg=one\narg=two words\nscript=/code/main.sh\n", string(res.Stdout.Data))
}

func TestFilesStagedInCode(t *testing.T) {
	res := runSh(t, `. /code/lib/util.sh; greet; ls -lnd /code /code/lib /code/main.sh /code/lib/util.sh | awk '{print $1, $3, $4}'; id -u`,
		func(task *runner.Task) {
			task.Files = append(task.Files, runner.File{Name: "lib/util.sh", Content: []byte("greet() { echo hi from lib; }\n")})
		})
	requireExit(t, res, 0)
	// Readable by the task's identity alone, and read-only even to it.
	lines := strings.Split(strings.TrimSpace(string(res.Stdout.Data)), "\n")
	require.Len(t, lines, 6, describe(res))
	uid := lines[5]
	assertTaskUID(t, uid)
	assert.Equal(t, []string{"hi from lib", "dr-x------ " + uid + " " + uid, "dr-x------ " + uid + " " + uid,
		"-r-------- " + uid + " " + uid, "-r-------- " + uid + " " + uid}, lines[:5])
}

func TestRootfsReadOnly(t *testing.T) {
	res := runSh(t, `
awk '$5 == "/" { print "options=" $6 }' /proc/self/mountinfo
if touch /probe 2>/dev/null; then echo "create=ok"; else touch /probe 2>&1 | sed 's/^/create-error=/'; fi
if echo x >> /etc/passwd 2>/dev/null; then echo "append=ok"; else echo "append=failed"; fi
`)
	requireExit(t, res, 0)
	kv := keyValues(res.Stdout.Data)
	assert.Contains(t, strings.Split(kv["options"], ","), "ro", describe(res))
	// EROFS, not EACCES: the mount refuses before the permissions are asked.
	// gVisor's kernel asks the permissions first: the task is not root, so
	// EACCES, and the mount options above show root would get EROFS.
	assert.Contains(t, kv["create-error"], readOnlyError(), describe(res))
	assert.Equal(t, "failed", kv["append"], describe(res))
}

// readOnlyError is the error a task that is not root gets creating a file
// in a read-only mount of a root-owned dir: Linux says the mount is
// read-only, gVisor's kernel checks permissions first.
func readOnlyError() string {
	if underGVisor() {
		return "Permission denied"
	}
	return "Read-only file system"
}

func TestCodeReadOnly(t *testing.T) {
	res := runSh(t, `
awk '$5 == "/code" { print "options=" $6 }' /proc/self/mountinfo
if touch /code/new 2>/dev/null; then echo "create=ok"; else touch /code/new 2>&1 | sed 's/^/create-error=/'; fi
if echo x >> /code/main.sh 2>/dev/null; then echo "append=ok"; else echo "append=failed"; fi
`)
	requireExit(t, res, 0)
	kv := keyValues(res.Stdout.Data)
	assert.Contains(t, strings.Split(kv["options"], ","), "ro", describe(res))
	assert.Contains(t, kv["create-error"], readOnlyError(), describe(res))
	// The task's files are root's, so appending fails on permissions
	// before the read-only mount is asked; the mount options above show
	// it would fail for root too.
	assert.Equal(t, "failed", kv["append"], describe(res))
}

func TestTmpWritable(t *testing.T) {
	res := runSh(t, `echo scratch > /tmp/f && cat /tmp/f && mkdir /tmp/d && echo ok > /tmp/d/g && cat /tmp/d/g`)
	requireExit(t, res, 0)
	assert.Equal(t, "scratch\nok\n", string(res.Stdout.Data))
}

func TestTmpSizeLimit(t *testing.T) {
	res := runSh(t, `
echo "size-kb=$(df -k /tmp | awk 'NR == 2 { print $2 }')"
if dd if=/dev/zero of=/tmp/big bs=1M count=4 2>/dev/null; then echo "big=ok"; else echo "big=failed"; fi
rm -f /tmp/big
# Files each under the file size limit still cannot fill more than /tmp holds.
for i in 1 2 3; do
  if ! err=$(dd if=/dev/zero of=/tmp/f$i bs=1M count=1 2>&1 >/dev/null); then echo "fill-failed=$i"; echo "fill-error=$err"; break; fi
done
`, func(task *runner.Task) { task.Limits.TmpSize = 2 << 20 })
	requireExit(t, res, 0)
	kv := keyValues(res.Stdout.Data)
	assert.Equal(t, "2048", kv["size-kb"], describe(res))
	assert.Equal(t, "failed", kv["big"], describe(res))
	assert.NotEmpty(t, kv["fill-failed"], describe(res))
	assert.Contains(t, kv["fill-error"], "No space left on device", describe(res))
}

func TestNetworkOnlyLoopback(t *testing.T) {
	res := runSh(t, `
tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sed 's/^/interface=/'
# The sandbox's own loopback works, which shows that the refusals in
# TestHostNetworkUnreachable come from the isolation, not a broken nc.
nc -l -p 4444 -e echo pong &
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  out=$(nc -w 1 127.0.0.1 4444 </dev/null 2>/dev/null) && break
  sleep 0.1
done
echo "loopback=$out"
`)
	requireExit(t, res, 0)
	var ifaces []string
	for _, line := range strings.Split(string(res.Stdout.Data), "\n") {
		if name, ok := strings.CutPrefix(line, "interface="); ok {
			ifaces = append(ifaces, name)
		}
	}
	assert.Equal(t, []string{"lo"}, ifaces, describe(res))
	assert.Equal(t, "pong", keyValues(res.Stdout.Data)["loopback"], describe(res))
}

func TestHostNetworkUnreachable(t *testing.T) {
	RequiresRoot(t)
	// Listening on every host address, including 127.0.0.1; in the
	// sandbox 127.0.0.1 is its own loopback, so the host's other
	// addresses are tried too.
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	addrs := append([]string{"127.0.0.1"}, hostIPv4s(t)...)
	t.Logf("trying %v, port %d", addrs, port)

	res := runSh(t, fmt.Sprintf(`
for ip in %s; do
  if out=$(nc -w 2 $ip %d </dev/null 2>&1); then echo "$ip=reached"; else echo "$ip=$out"; fi
  if wget -q -T 2 -O /dev/null http://$ip:%d/ 2>/dev/null; then echo "wget-$ip=reached"; else echo "wget-$ip=failed"; fi
done
`, strings.Join(addrs, " "), port, port))
	requireExit(t, res, 0)
	kv := keyValues(res.Stdout.Data)
	for _, ip := range addrs {
		assert.NotEqual(t, "reached", kv[ip], "nc reached %s:%d\n%s", ip, port, describe(res))
		assert.Equal(t, "failed", kv["wget-"+ip], describe(res))
		want := "Network is unreachable"
		if ip == "127.0.0.1" {
			want = "Connection refused"
		}
		assert.Contains(t, kv[ip], want, "nc to %s", ip)
	}
	assert.Zero(t, accepted.Load(), "the host listener accepted connections from the sandbox")
}

// hostIPv4s returns the host's non-loopback IPv4 addresses.
func hostIPv4s(t *testing.T) []string {
	ifaces, err := net.Interfaces()
	require.NoError(t, err)
	var ips []string
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := iface.Addrs()
		require.NoError(t, err)
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
				ips = append(ips, n.IP.String())
			}
		}
	}
	return ips
}

// processStatus runs a task that prints the given fields of its own
// /proc/self/status and returns them.
func processStatus(t *testing.T, fields ...string) map[string]string {
	t.Helper()
	res := runSh(t, `cat /proc/self/status`)
	requireExit(t, res, 0)
	status := map[string]string{}
	for _, line := range strings.Split(string(res.Stdout.Data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			status[k] = strings.TrimSpace(v)
		}
	}
	out := map[string]string{}
	for _, f := range fields {
		v, ok := status[f]
		require.True(t, ok, "no %s in /proc/self/status:\n%s", f, res.Stdout.Data)
		out[f] = v
	}
	return out
}

func TestNoCapabilities(t *testing.T) {
	got := processStatus(t, "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
	for k, v := range got {
		assert.Equal(t, "0000000000000000", v, k)
	}
}

func TestNoNewPrivileges(t *testing.T) {
	assert.Equal(t, "1", processStatus(t, "NoNewPrivs")["NoNewPrivs"])
}

func TestSeccompFilter(t *testing.T) {
	assert.Equal(t, "2", processStatus(t, "Seccomp")["Seccomp"], "2 is SECCOMP_MODE_FILTER")
}

func TestNamespacesAndMountsRefused(t *testing.T) {
	res := runSh(t, `
try() { name=$1; shift; if "$@" 2>/dev/null; then echo "$name=allowed"; else echo "$name=refused"; fi; }
mkdir -p /tmp/mnt
try userns unshare -U true
try mountns unshare -m true
try netns unshare -n true
try mount mount -t tmpfs none /tmp/mnt
try chroot chroot / true
`)
	requireExit(t, res, 0)
	kv := keyValues(res.Stdout.Data)
	for _, op := range []string{"userns", "mountns", "netns", "mount", "chroot"} {
		assert.Equal(t, "refused", kv[op], "%s\n%s", op, describe(res))
	}
}

// assertTaskUID asserts that uid is a task identity: in the runner's
// default range, so neither root nor the host's nobody.
func assertTaskUID(t *testing.T, uid string) {
	t.Helper()
	n, err := strconv.ParseUint(uid, 10, 32)
	if assert.NoError(t, err, "uid %q", uid) {
		assert.True(t, runner.UIDRange{First: runner.DefaultUIDBase, Count: runner.DefaultUIDCount}.Contains(uint32(n)),
			"uid %d is not in the task range", n)
	}
}

func TestNonRootUser(t *testing.T) {
	res := runSh(t, `echo "uid=$(id -u)"; echo "gid=$(id -g)"; echo "groups=$(id -G)"`)
	requireExit(t, res, 0)
	kv := keyValues(res.Stdout.Data)
	assertTaskUID(t, kv["uid"])
	assert.Equal(t, kv["uid"], kv["gid"], "a task's gid is its uid\n%s", describe(res))
	assert.Equal(t, kv["uid"], kv["groups"], "no supplementary groups\n%s", describe(res))
}

func TestMemoryHogOOMKilled(t *testing.T) {
	const limit = 64 << 20
	res := runSh(t, `x=a; while true; do x="$x$x"; done`, func(task *runner.Task) {
		task.Limits.Memory = limit
	})
	assert.Equal(t, runner.OutcomeOOMKilled, res.Outcome, describe(res))
	assert.True(t, res.OOMKilled, describe(res))
	assert.Equal(t, 137, res.ExitCode, describe(res))
	assert.Equal(t, "SIGKILL", res.Signal)
	assert.False(t, res.TimedOut)
	if res.Usage.MemoryPeak != 0 { // not recorded on cgroup v2 before Linux 5.19
		assert.Greater(t, res.Usage.MemoryPeak, uint64(limit/2))
		assert.LessOrEqual(t, res.Usage.MemoryPeak, uint64(limit))
	}
}

func TestForkBombStopsAtPidsLimit(t *testing.T) {
	const pids = 32
	timeout := 20 * time.Second
	res := runSh(t, `
i=0
while [ $i -lt 64 ]; do
  sleep 30 &
  echo started
  i=$((i + 1))
done
`, func(task *runner.Task) {
		task.Limits.Pids = pids
		task.Limits.Timeout = timeout
	})
	started := strings.Count(string(res.Stdout.Data), "started")
	assert.Less(t, started, pids, describe(res))
	assert.Greater(t, started, pids/2, "the limit, not something else, should stop the forks\n%s", describe(res))
	if !underGVisor() {
		// gVisor applies the limit to the sandbox's host tasks, its own
		// included: the fork that hits it fails without the shell saying
		// why (see the README, "gVisor").
		assert.Contains(t, string(res.Stderr.Data), "can't fork", describe(res))
	}
	assert.True(t, res.PidsLimitHit, "the result says the limit was hit")
	// The task ends when its shell does: the sleeps die with the pid
	// namespace, they do not keep it alive until the timeout.
	assert.False(t, res.TimedOut, describe(res))
	assert.NotEqual(t, runner.OutcomeTimedOut, res.Outcome)
	assert.Less(t, res.Duration, timeout/2)
}

// cgroupValue is a sh function that prints the first of its files that
// exists, so one script reads cgroup v1 and v2 alike.
const cgroupValue = `
first() { for f in "$@"; do if [ -r "$f" ]; then cat "$f"; return; fi; done; echo "none of $* exists" >&2; echo missing; }
`

func TestCPUQuota(t *testing.T) {
	res := runSh(t, cgroupValue+`
if [ -r /sys/fs/cgroup/cpu.max ]; then
  echo "cpu=$(cat /sys/fs/cgroup/cpu.max)"
else
  echo "cpu=$(first /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us) $(first /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us)"
fi
`, func(task *runner.Task) { task.Limits.CPUs = 0.5 })
	requireExit(t, res, 0)
	assert.Equal(t, "50000 100000", keyValues(res.Stdout.Data)["cpu"], describe(res))
}

func TestMemoryLimitNoSwap(t *testing.T) {
	const limit = 64 << 20
	res := runSh(t, `
if [ -r /sys/fs/cgroup/memory.max ]; then
  echo "version=2"
  echo "memory=$(cat /sys/fs/cgroup/memory.max)"
  echo "swap=$(cat /sys/fs/cgroup/memory.swap.max)"
else
  echo "version=1"
  echo "memory=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
  echo "swap=$(cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes)"
fi
`, func(task *runner.Task) { task.Limits.Memory = limit })
	requireExit(t, res, 0)
	kv := keyValues(res.Stdout.Data)
	assert.Equal(t, strconv.Itoa(limit), kv["memory"], describe(res))
	if kv["version"] == "2" {
		// v2 counts swap on its own: none at all.
		assert.Equal(t, "0", kv["swap"], describe(res))
	} else {
		// v1 counts memory plus swap: equal to memory means no swap.
		assert.Equal(t, strconv.Itoa(limit), kv["swap"], describe(res))
	}
}

func TestPidsLimit(t *testing.T) {
	res := runSh(t, cgroupValue+`echo "pids=$(first /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max)"`,
		func(task *runner.Task) { task.Limits.Pids = 32 })
	requireExit(t, res, 0)
	assert.Equal(t, "32", keyValues(res.Stdout.Data)["pids"], describe(res))
}

func TestTimeoutKills(t *testing.T) {
	start := time.Now()
	res := runSh(t, `sleep 100`, func(task *runner.Task) { task.Limits.Timeout = time.Second })
	elapsed := time.Since(start)
	assert.Equal(t, runner.OutcomeTimedOut, res.Outcome, describe(res))
	assert.True(t, res.TimedOut)
	assert.Equal(t, runner.ExitTimedOut, res.ExitCode)
	assert.False(t, res.Cancelled)
	assert.GreaterOrEqual(t, res.Duration, time.Second)
	assert.Less(t, elapsed, 3*time.Second, "Run returned %s after a 1s timeout", elapsed)
}

func TestTimeoutKillsEvasiveTask(t *testing.T) {
	// A number no other process on the host sleeps for, to find ours.
	secs := 100000 + rand.IntN(800000)
	start := time.Now()
	res := runSh(t, fmt.Sprintf(`
trap '' TERM
(setsid sleep %[1]d &)
sleep %[1]d &
sleep 0.2
echo "running=$(ps -o args | grep -c '^sleep %[1]d')"
sleep %[1]d
`, secs), func(task *runner.Task) { task.Limits.Timeout = time.Second })
	elapsed := time.Since(start)
	assert.Equal(t, runner.OutcomeTimedOut, res.Outcome, describe(res))
	assert.Equal(t, runner.ExitTimedOut, res.ExitCode)
	assert.Equal(t, "2", keyValues(res.Stdout.Data)["running"], "the escapees should have been running\n%s", describe(res))
	assert.Less(t, elapsed, 3*time.Second)
	// Nothing the task started outlives it on the host.
	marker := []byte("sleep\x00" + strconv.Itoa(secs) + "\x00")
	assert.Eventually(t, func() bool { return len(hostProcesses(marker)) == 0 }, 5*time.Second, 50*time.Millisecond,
		"host processes still running the task's sleeps: %v", hostProcesses(marker))
}

// hostProcesses returns the pids of host processes whose command line
// contains marker.
func hostProcesses(marker []byte) []string {
	var pids []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err == nil && bytes.Contains(b, marker) {
			pids = append(pids, filepath.Base(d))
		}
	}
	return pids
}

func TestOutputTruncated(t *testing.T) {
	res := runSh(t, `dd if=/dev/zero bs=1000 count=10 2>/dev/null | tr '\0' a; echo done >&2`, func(task *runner.Task) {
		task.Limits.OutputLimit = 1000
	})
	// The output past the limit was read and dropped, so the task was
	// never blocked on a full pipe and exited by itself.
	requireExit(t, res, 0)
	assert.Equal(t, strings.Repeat("a", 1000), string(res.Stdout.Data))
	assert.Equal(t, int64(9000), res.Stdout.Dropped)
	assert.True(t, res.Stdout.Truncated())
	assert.True(t, res.OutputTruncated)
	assert.Equal(t, "done\n", string(res.Stderr.Data))
	assert.False(t, res.Stderr.Truncated())
}

func TestOutputStreamedToWriters(t *testing.T) {
	var stdout, stderr lockedBuffer
	res := runSh(t, `echo out; echo err >&2`, func(task *runner.Task) {
		task.Stdout, task.Stderr = &stdout, &stderr
	})
	requireExit(t, res, 0)
	assert.Equal(t, "out\n", stdout.String())
	assert.Equal(t, "err\n", stderr.String())
	assert.Equal(t, "out\n", string(res.Stdout.Data))
}

// lockedBuffer is a bytes.Buffer safe for the runner's copier goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// cancelAfterOutput cancels its context d after the first write, so the
// cancellation lands while the task surely runs.
type cancelAfterOutput struct {
	once     sync.Once
	d        time.Duration
	cancel   context.CancelFunc
	cancelAt atomic.Pointer[time.Time]
}

func (c *cancelAfterOutput) Write(p []byte) (int, error) {
	c.once.Do(func() {
		time.AfterFunc(c.d, func() {
			now := time.Now()
			c.cancelAt.Store(&now)
			c.cancel()
		})
	})
	return len(p), nil
}

func TestCancellation(t *testing.T) {
	h := RequiresRoot(t)
	r := h.NewRunner(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w := &cancelAfterOutput{d: 500 * time.Millisecond, cancel: cancel}
	task := shTask(`echo started; sleep 100`)
	task.Stdout = w

	res, err := r.Run(ctx, task)
	returned := time.Now()
	require.NoError(t, err, "a cancelled task is a result, not an error")
	require.NotNil(t, w.cancelAt.Load(), "the task never wrote, so it was never cancelled")
	assert.Equal(t, runner.OutcomeCancelled, res.Outcome, describe(res))
	assert.True(t, res.Cancelled)
	assert.False(t, res.TimedOut)
	assert.Equal(t, runner.ExitCancelled, res.ExitCode)
	assert.Equal(t, "started\n", string(res.Stdout.Data))
	assert.Less(t, returned.Sub(*w.cancelAt.Load()), 3*time.Second, "Run should return soon after the cancellation")
}

func TestMaskedAndReadOnlyProcPaths(t *testing.T) {
	RequiresRoot(t)
	// Which of these exist depends on the kernel's configuration; the
	// runtime skips what does not exist, and so does the test.
	maskedFiles := hostPaths(t, "/proc/kcore", "/proc/interrupts", "/proc/timer_list", "/proc/keys",
		"/proc/sched_debug", "/proc/latency_stats", "/proc/timer_stats")
	maskedDirs := hostPaths(t, "/proc/acpi", "/proc/scsi", "/proc/asound", "/sys/firmware")
	readOnly := hostPaths(t, "/proc/sys", "/proc/sysrq-trigger", "/proc/bus", "/proc/fs", "/proc/irq")
	require.Contains(t, maskedFiles, "/proc/interrupts")
	require.Contains(t, readOnly, "/proc/sys")
	t.Logf("masked files %v, masked dirs %v, read-only %v", maskedFiles, maskedDirs, readOnly)

	var script strings.Builder
	for _, p := range maskedFiles {
		fmt.Fprintf(&script, "echo \"size %[1]s=$(wc -c < %[1]s)\"\n", p)
	}
	for _, p := range maskedDirs {
		fmt.Fprintf(&script, "echo \"entries %[1]s=$(ls -A %[1]s | wc -l)\"\n", p)
	}
	script.WriteString(`awk '{ print "mount " $5 "=" $6 }' /proc/self/mountinfo
if echo sandbox > /proc/sys/kernel/domainname 2>/dev/null; then echo "procsys-write=ok"; else echo "procsys-write=failed"; fi
`)
	res := runSh(t, script.String())
	requireExit(t, res, 0)
	kv := keyValues(res.Stdout.Data)
	for _, p := range maskedFiles {
		// Masked files read as /dev/null does. Unmasked, /proc/interrupts
		// would have content, and the task could not even open the ones
		// only root may read (kcore, timer_list), so wc would print nothing.
		assert.Equal(t, "0", kv["size "+p], "%s\n%s", p, describe(res))
		assert.Contains(t, kv, "mount "+p, "%s is not masked by a mount", p)
	}
	for _, p := range maskedDirs {
		assert.Equal(t, "0", kv["entries "+p], "%s\n%s", p, describe(res))
		assert.Contains(t, kv, "mount "+p, "%s is not masked by a mount", p)
	}
	for _, p := range append(readOnly, "/sys") {
		opts, ok := kv["mount "+p]
		if assert.True(t, ok, "%s is not a mount of its own", p) {
			assert.Contains(t, strings.Split(opts, ","), "ro", "%s is mounted %s", p, opts)
		}
	}
	assert.Equal(t, "failed", kv["procsys-write"], describe(res))
}

// hostPaths returns those of paths that exist on the host.
func hostPaths(t *testing.T, paths ...string) []string {
	t.Helper()
	var out []string
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("looking at %s on the host: %v", p, err)
		}
	}
	return out
}

func TestNoRunMount(t *testing.T) {
	res := runSh(t, `awk '$5 == "/run" || $5 ~ "^/run/" { print "mount=" $5 }' /proc/self/mountinfo; echo checked`)
	requireExit(t, res, 0)
	assert.Equal(t, "checked\n", string(res.Stdout.Data), "a /run mount is there: %s", res.Stdout.Data)
}

func TestHostname(t *testing.T) {
	res := runSh(t, `hostname`)
	requireExit(t, res, 0)
	assert.Equal(t, "sandbox\n", string(res.Stdout.Data))
}

func TestWorkingDirIsTmp(t *testing.T) {
	res := runSh(t, `pwd`)
	requireExit(t, res, 0)
	assert.Equal(t, "/tmp\n", string(res.Stdout.Data))
}

func TestEnvironment(t *testing.T) {
	res := runSh(t, `echo "PATH=$PATH"; echo "GREETING=$GREETING"; echo "EMPTY=[$EMPTY]"`, func(task *runner.Task) {
		task.Env = []string{"GREETING=hello there", "EMPTY="}
	})
	requireExit(t, res, 0)
	kv := keyValues(res.Stdout.Data)
	assert.Contains(t, strings.Split(kv["PATH"], ":"), "/bin", describe(res))
	assert.Equal(t, "hello there", kv["GREETING"])
	assert.Equal(t, "[]", kv["EMPTY"])
}

func TestInvalidTaskRefused(t *testing.T) {
	h := RequiresRoot(t)
	r := h.NewRunner(t)
	code := []runner.File{{Content: []byte("echo never")}}
	for _, tc := range []struct {
		name string
		task runner.Task
	}{
		{"unknown runtime", runner.Task{Runtime: "cobol", Image: testImage, Files: code}},
		{"file leaving /code", runner.Task{Runtime: testRuntime, Image: testImage, Files: []runner.File{{Name: "../x", Content: []byte("echo never")}}}},
		{"no files", runner.Task{Runtime: testRuntime, Image: testImage}},
		{"bad id", runner.Task{ID: "../escape", Runtime: testRuntime, Image: testImage, Files: code}},
		{"negative timeout", runner.Task{Runtime: testRuntime, Image: testImage, Files: code, Limits: runner.Limits{Timeout: -time.Second}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := r.Run(t.Context(), tc.task)
			require.Error(t, err)
			assert.Nil(t, res)
			assert.True(t, errors.Is(err, runner.ErrInvalidTask), "%v is not ErrInvalidTask", err)
			assert.True(t, errdefs.IsInvalidArgument(err), "%v is not an invalid argument", err)
			// Refused before anything was made.
			h.CheckNoLeaks(t, "")
		})
	}
}

func TestImageNotFound(t *testing.T) {
	h := RequiresRoot(t)
	r := h.NewRunner(t)
	task := shTask("echo never")
	task.Image = "sandbox-runner.test/absent:latest"
	res, err := r.Run(t.Context(), task)
	require.Error(t, err)
	assert.Nil(t, res)
	assert.True(t, errors.Is(err, runner.ErrImageNotFound), "%v is not ErrImageNotFound", err)
}

func TestStdinLeftOpenDoesNotBlock(t *testing.T) {
	// A caller's stdin that never ends (a terminal, an open pipe) must not
	// keep Run waiting once the task has exited without reading it.
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	t.Cleanup(func() { pr.Close(); pw.Close() })
	start := time.Now()
	res := runSh(t, `echo done`, func(task *runner.Task) { task.Stdin = pr })
	requireExit(t, res, 0)
	assert.Equal(t, "done\n", string(res.Stdout.Data))
	assert.Less(t, time.Since(start), 10*time.Second)
}

func TestTimeoutWhileFloodingOutput(t *testing.T) {
	start := time.Now()
	res := runSh(t, `yes`, func(task *runner.Task) {
		task.Limits.Timeout = time.Second
		task.Limits.OutputLimit = 4096
	})
	elapsed := time.Since(start)
	assert.Equal(t, runner.OutcomeTimedOut, res.Outcome, describe(res))
	assert.Len(t, res.Stdout.Data, 4096)
	assert.Positive(t, res.Stdout.Dropped, "the flood past the limit was read, not left in the pipe")
	assert.True(t, res.OutputTruncated)
	assert.Less(t, elapsed, 5*time.Second)
}

func TestOOMInChildReported(t *testing.T) {
	res := runSh(t, `sh -c 'x=a; while true; do x="$x$x"; done'; echo "child status $?"`, func(task *runner.Task) {
		task.Limits.Memory = 64 << 20
	})
	if underGVisor() {
		// The limit is the sandbox's: the host's OOM killer takes gVisor's
		// kernel, and the whole task with it.
		assert.Equal(t, runner.OutcomeOOMKilled, res.Outcome, describe(res))
		assert.True(t, res.OOMKilled, describe(res))
		assert.Equal(t, 137, res.ExitCode, describe(res))
		return
	}
	// The task itself survived and exited; the kill is still reported.
	requireExit(t, res, 0)
	assert.True(t, res.OOMKilled, describe(res))
	assert.Equal(t, "child status 137\n", string(res.Stdout.Data))
}

func TestCancelledBeforeStart(t *testing.T) {
	h := RequiresRoot(t)
	r := h.NewRunner(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	res, err := r.Run(ctx, shTask("echo never"))
	require.Error(t, err, "a task never started is an error, not a result")
	assert.ErrorIs(t, err, context.Canceled)
	assert.Nil(t, res)
}

func TestConcurrentTasks(t *testing.T) {
	h := RequiresRoot(t)
	r := h.NewRunner(t)
	const n = 6
	results := make([]*runner.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results[i], errs[i] = r.Run(t.Context(), shTask(fmt.Sprintf("echo task %d", i)))
		})
	}
	wg.Wait()
	ids := map[string]bool{}
	for i := range n {
		require.NoError(t, errs[i])
		requireExit(t, results[i], 0)
		assert.Equal(t, fmt.Sprintf("task %d\n", i), string(results[i].Stdout.Data))
		ids[results[i].ID] = true
	}
	assert.Len(t, ids, n, "every task gets its own id")
}

func TestExplicitTaskID(t *testing.T) {
	h := RequiresRoot(t)
	r := h.NewRunner(t)
	id := fmt.Sprintf("it-explicit-%d", rand.IntN(1<<30))
	task := shTask("echo $HOSTNAME")
	task.ID = id
	for range 2 {
		// The id is free again once the first task is cleaned up.
		res, err := r.Run(t.Context(), task)
		require.NoError(t, err)
		requireExit(t, res, 0)
		assert.Equal(t, id, res.ID)
	}
}

func TestRuntimeMissingFromImage(t *testing.T) {
	h := RequiresRoot(t)
	r := h.NewRunner(t)
	// The python runtime's interpreter is not in the busybox image: the
	// init finds no such command and says so, as a shell would, with
	// exit status 127, on the cold path as in a pooled sandbox.
	task := shTask("print('never')")
	task.Runtime = "python"
	res, err := r.Run(t.Context(), task)
	require.NoError(t, err)
	assert.Equal(t, runner.OutcomeExited, res.Outcome)
	assert.Equal(t, 127, res.ExitCode)
	assert.Equal(t, "sandbox-runner-init: python3: command not found\n", string(res.Stderr.Data))
}

// compiledCatalog is the default catalog plus "shc", a compiled runtime
// made of sh: its compile stage writes a program to the shared /tmp,
// which its run stage runs.
func compiledCatalog() images.Catalog {
	c := images.DefaultCatalog()
	c["shc"] = images.Runtime{
		Name: "shc", Image: testImage, FileName: "main.sh",
		Compile: []string{"sh", "-c", `. "$1" && build && echo "compiled by $(id -u)"`, "compile", images.FilePlaceholder},
		Run:     []string{"sh", "/tmp/prog"},
	}
	return c
}

// runCompiled runs code with the shc runtime.
func runCompiled(t *testing.T, code string) *runner.Result {
	t.Helper()
	r := RequiresRoot(t).NewRunner(t, runner.WithCatalog(compiledCatalog()))
	task := shTask(code)
	task.Runtime = "shc"
	res, err := r.Run(t.Context(), task)
	require.NoError(t, err)
	return res
}

func TestCompileStageSharesTmp(t *testing.T) {
	res := runCompiled(t, `build() { echo 'echo "ran from $0 as $(id -u)"; ls /tmp' > /tmp/prog; }`)
	requireExit(t, res, 0)
	require.NotNil(t, res.Compile, "a compiled runtime reports its compile stage")
	assert.Equal(t, runner.OutcomeExited, res.Compile.Outcome)
	uid, ok := strings.CutPrefix(strings.TrimSpace(string(res.Compile.Stdout.Data)), "compiled by ")
	require.True(t, ok, describe(res))
	assertTaskUID(t, uid)
	assert.Equal(t, "ran from /tmp/prog as "+uid+"\nprog\n", string(res.Stdout.Data), "both stages are the task's one identity\n%s", describe(res))
}

func TestCompileFailed(t *testing.T) {
	res := runCompiled(t, `build() { echo "syntax error" >&2; return 3; }`)
	assert.Equal(t, runner.OutcomeCompileFailed, res.Outcome, describe(res))
	assert.Equal(t, 3, res.ExitCode)
	require.NotNil(t, res.Compile)
	assert.Equal(t, runner.OutcomeExited, res.Compile.Outcome)
	assert.Contains(t, string(res.Compile.Stderr.Data), "syntax error")
	assert.Empty(t, res.Stdout.Data, "the run stage never ran")
}

func TestLargeStdin(t *testing.T) {
	const size = 4 << 20
	res := runSh(t, `wc -c`, func(task *runner.Task) {
		task.Stdin = bytes.NewReader(bytes.Repeat([]byte("x"), size))
	})
	requireExit(t, res, 0)
	assert.Equal(t, strconv.Itoa(size), strings.TrimSpace(string(res.Stdout.Data)))
}

func TestOutputAtLimitNotTruncated(t *testing.T) {
	res := runSh(t, `dd if=/dev/zero bs=1000 count=1 2>/dev/null | tr '\0' a`, func(task *runner.Task) {
		task.Limits.OutputLimit = 1000
	})
	requireExit(t, res, 0)
	assert.Len(t, res.Stdout.Data, 1000)
	assert.Zero(t, res.Stdout.Dropped)
	assert.False(t, res.OutputTruncated)
}

func TestUsageReported(t *testing.T) {
	// A fixed amount of work, so the CPU time does not depend on timing.
	res := runSh(t, `head -c 100000000 /dev/zero | md5sum >/dev/null; x=$(head -c 8000000 /dev/zero | tr '\0' a); echo ${#x}`,
		func(task *runner.Task) { task.Limits.CPUs = 1 })
	requireExit(t, res, 0)
	assert.Equal(t, "8000000\n", string(res.Stdout.Data))
	assert.Greater(t, res.Usage.CPU, 20*time.Millisecond, "CPU time of a busy task")
	// The cgroup's time: under gVisor the whole sandbox's, its start and
	// stop (outside the task's duration) included.
	slack := 100 * time.Millisecond
	if underGVisor() {
		slack = time.Second
	}
	assert.LessOrEqual(t, res.Usage.CPU, res.Duration+slack, "one CPU cannot give more than wall time")
	if res.Usage.MemoryPeak != 0 { // not recorded on cgroup v2 before Linux 5.19
		assert.Greater(t, res.Usage.MemoryPeak, uint64(8_000_000), "the shell held an 8MB string")
	}
}

func TestCompileTimeout(t *testing.T) {
	r := RequiresRoot(t).NewRunner(t, runner.WithCatalog(compiledCatalog()))
	task := shTask(`build() { sleep 100; }`)
	task.Runtime = "shc"
	task.Limits.CompileTimeout = time.Second
	start := time.Now()
	res, err := r.Run(t.Context(), task)
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Equal(t, runner.OutcomeCompileFailed, res.Outcome, describe(res))
	require.NotNil(t, res.Compile)
	assert.True(t, res.Compile.TimedOut)
	assert.Equal(t, runner.OutcomeTimedOut, res.Compile.Outcome)
	assert.Equal(t, runner.ExitTimedOut, res.ExitCode)
}
