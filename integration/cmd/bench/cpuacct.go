package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// cpuAccount counts the CPU time everything behind a task uses, from the
// kernel's cgroup counters: containerd and what it starts (the shims, the
// OCI runtime's processes, gVisor's gofer), and the services, which the
// bench moves into a cgroup of its own (a process's children are born in
// its cgroup); and the sandboxes, under the namespace's cgroup, whose
// counter keeps what its removed children used. A process that exited
// stays counted, which /proc cannot do for the shims: they are reparented
// to init.
type cpuAccount struct {
	// own is the bench's cgroup; counted are the cgroups read.
	own     string
	counted []string
	// usage reads one cgroup's CPU time.
	usage func(dir string) (time.Duration, error)
}

// newCPUAccount makes the bench's cgroup, named name, in the hierarchy
// that holds the CPU accounting controller: cgroup v1's cpuacct where it
// is mounted (a v1 or hybrid host), else the unified hierarchy.
func newCPUAccount(name, namespace string) (*cpuAccount, error) {
	var root string
	a := &cpuAccount{}
	switch {
	case exists("/sys/fs/cgroup/cpuacct/cpuacct.usage"):
		root = "/sys/fs/cgroup/cpuacct"
		a.usage = readCPUAcctUsage
	case exists("/sys/fs/cgroup/cgroup.controllers"):
		root = "/sys/fs/cgroup"
		a.usage = readCPUStatUsage
	default:
		return nil, errors.New("no cgroup CPU accounting: neither cgroup v1's cpuacct nor cgroup v2 is mounted under /sys/fs/cgroup")
	}
	a.own = filepath.Join(root, name)
	if err := os.Mkdir(a.own, 0o755); err != nil {
		return nil, fmt.Errorf("making the bench's cgroup: %w", err)
	}
	a.counted = []string{a.own, filepath.Join(root, namespace)}
	return a, nil
}

// add moves process pid into the bench's cgroup.
func (a *cpuAccount) add(pid int) error {
	return os.WriteFile(filepath.Join(a.own, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
}

// total is the CPU time used so far in the counted cgroups; one that
// does not exist yet has used none.
func (a *cpuAccount) total() time.Duration {
	var t time.Duration
	for _, dir := range a.counted {
		if d, err := a.usage(dir); err == nil {
			t += d
		}
	}
	return t
}

// close removes the bench's cgroup, once every process in it has ended.
func (a *cpuAccount) close() error {
	var err error
	for range 100 {
		if err = os.Remove(a.own); err == nil || !errors.Is(err, syscall.EBUSY) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the bench's cgroup: %w", err)
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// readCPUAcctUsage reads cgroup v1's cpuacct.usage, in nanoseconds.
func readCPUAcctUsage(dir string) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage"))
	if err != nil {
		return 0, err
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cpuacct.usage in %s: %w", dir, err)
	}
	return time.Duration(ns), nil
}

// readCPUStatUsage reads usage_usec from cgroup v2's cpu.stat.
func readCPUStatUsage(dir string) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return 0, err
	}
	return parseCPUStatUsage(string(b))
}

func parseCPUStatUsage(stat string) (time.Duration, error) {
	for _, line := range strings.Split(stat, "\n") {
		if rest, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("cpu.stat usage_usec: %w", err)
			}
			return time.Duration(us) * time.Microsecond, nil
		}
	}
	return 0, errors.New("cpu.stat has no usage_usec")
}

// childCPU is the CPU time of the client processes the bench has run and
// waited for (the CLI, ctr, runc run), with what each waited for in turn.
var childCPU atomic.Int64

// combinedOutput runs cmd as CombinedOutput does and counts its CPU time
// in childCPU.
func combinedOutput(cmd *exec.Cmd) ([]byte, error) {
	out, err := cmd.CombinedOutput()
	if ps := cmd.ProcessState; ps != nil {
		childCPU.Add(int64(ps.UserTime() + ps.SystemTime()))
	}
	return out, err
}
