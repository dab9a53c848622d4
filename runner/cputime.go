package runner

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

// ExitCPUTimeExceeded is the status of a task killed for going over its
// CPU-time limit: 128 + SIGXCPU, the signal the kernel's own CPU rlimit
// sends.
const ExitCPUTimeExceeded = api.ExitCPUTimeExceeded

// How often a task's CPU usage is read: never sooner than minCPUPoll,
// never later than maxCPUPoll, in between as late as the limit could be
// reached if every CPU of the host ran the task.
const (
	minCPUPoll = time.Millisecond
	maxCPUPoll = 500 * time.Millisecond
)

// cpuWatch enforces a CPU-time limit on one started sandbox: it reads the
// sandbox cgroup's CPU usage (user and system, every thread and process
// of it) straight from the cgroup file system, and kills the sandbox's
// init, which takes its whole pid namespace with it, once the usage
// since the start passes the limit. Reading the file costs microseconds,
// and the kill is one system call: no runtime process stands between
// the verdict and the kill, so the overshoot stays within the last poll
// interval whatever the number of threads.
type cpuWatch struct {
	file  *os.File
	v2    bool // cpu.stat's usage_usec, else cpuacct.usage's nanoseconds
	limit time.Duration
	cpus  int
	base  time.Duration // the usage when the task started
	used  time.Duration // since the start, when check found it over
	pid   int
	pidfd int // -1 when the kernel has no pidfd_open
	timer *time.Timer
	buf   []byte
}

// newCPUWatch opens the usage file of the cgroup at path (as given to
// the runtime, below the hierarchy's root) and the sandbox's init, pid.
// It must run while the task exists and before it starts; the returned
// watch's C fires when it is time to call check.
func newCPUWatch(path string, limit time.Duration, cpus int, pid uint32) (*cpuWatch, error) {
	w := &cpuWatch{limit: limit, cpus: max(cpus, 1), pid: int(pid), pidfd: -1, buf: make([]byte, 4096)}
	for _, c := range []struct {
		file string
		v2   bool
	}{
		{filepath.Join("/sys/fs/cgroup/cpuacct", path, "cpuacct.usage"), false},
		{filepath.Join("/sys/fs/cgroup/cpu,cpuacct", path, "cpuacct.usage"), false},
		{filepath.Join("/sys/fs/cgroup", path, "cpu.stat"), true},
		{filepath.Join("/sys/fs/cgroup/unified", path, "cpu.stat"), true},
	} {
		f, err := os.Open(c.file)
		if err != nil {
			continue
		}
		w.file, w.v2 = f, c.v2
		break
	}
	if w.file == nil {
		return nil, fmt.Errorf("%w: cannot read the CPU usage of the task's cgroup %s (neither cpuacct.usage nor cpu.stat), so its CPU-time limit cannot be enforced", ErrSandboxUnavailable, path)
	}
	if fd, err := unix.PidfdOpen(w.pid, 0); err == nil {
		w.pidfd = fd
	}
	base, err := w.usage()
	if err != nil {
		w.close()
		return nil, err
	}
	w.base = base
	w.timer = time.NewTimer(w.next(limit))
	return w, nil
}

// C returns the channel that fires when the usage is to be read again;
// nil for a nil watch, so a select on it never fires.
func (w *cpuWatch) C() <-chan time.Time {
	if w == nil {
		return nil
	}
	return w.timer.C
}

// check reads the usage and tells whether the limit is passed; if not it
// sets the next poll. A usage that cannot be read (the task just ended,
// its cgroup going) is read again soon; the exit decides then.
func (w *cpuWatch) check() bool {
	u, err := w.usage()
	if err != nil {
		w.timer.Reset(10 * time.Millisecond)
		return false
	}
	used := u - w.base
	if used >= w.limit {
		w.used = used
		return true
	}
	w.timer.Reset(w.next(w.limit - used))
	return false
}

// over tells whether total, the usage the stage ended with, passed the
// limit: a task that exits between two polls after its limit is judged
// by what it used.
func (w *cpuWatch) over(total time.Duration) bool {
	return total-w.base > w.limit
}

// next is how long the task needs at least to use remaining CPU time,
// with every CPU of the host running it, bounded to the poll range.
func (w *cpuWatch) next(remaining time.Duration) time.Duration {
	return min(max(remaining/time.Duration(w.cpus), minCPUPoll), maxCPUPoll)
}

// kill sends SIGKILL to the sandbox's init. The init is PID 1 of the
// sandbox's pid namespace, so every process in it dies with it, at once.
func (w *cpuWatch) kill() error {
	if w.pidfd >= 0 {
		return unix.PidfdSendSignal(w.pidfd, unix.SIGKILL, nil, 0)
	}
	return unix.Kill(w.pid, unix.SIGKILL)
}

// usage reads the cgroup's CPU usage.
func (w *cpuWatch) usage() (time.Duration, error) {
	n, err := w.file.ReadAt(w.buf, 0)
	if n == 0 && err != nil {
		return 0, fmt.Errorf("reading the task's CPU usage: %w", err)
	}
	return parseCPUUsage(w.buf[:n], w.v2)
}

// parseCPUUsage reads cgroup v1's cpuacct.usage (nanoseconds) or cgroup
// v2's cpu.stat (its usage_usec line).
func parseCPUUsage(b []byte, v2 bool) (time.Duration, error) {
	if !v2 {
		n, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading cpuacct.usage: %w", err)
		}
		return time.Duration(n), nil
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(" "))
		if !ok || string(k) != "usage_usec" {
			continue
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading cpu.stat usage_usec: %w", err)
		}
		return time.Duration(n) * time.Microsecond, nil
	}
	return 0, errors.New("reading cpu.stat: no usage_usec line")
}

// close releases the watch; a nil watch is fine.
func (w *cpuWatch) close() {
	if w == nil {
		return
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	if w.pidfd >= 0 {
		_ = unix.Close(w.pidfd)
	}
	_ = w.file.Close()
}
