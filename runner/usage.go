package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/typeurl/v2"
)

// readUsage reads the OOM kill count, CPU time and peak memory from the
// task's cgroup, through containerd, on cgroup v1 and v2 alike. It must
// run after the exit and before the task is deleted: the cgroup goes with
// the task.
func readUsage(ctx context.Context, task client.Task) (oomKills uint64, u Usage, err error) {
	m, err := task.Metrics(ctx)
	if err != nil {
		return 0, u, fmt.Errorf("reading task metrics: %w", err)
	}
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return 0, u, fmt.Errorf("decoding task metrics: %w", err)
	}
	switch s := data.(type) {
	case *v1.Metrics:
		if s.MemoryOomControl != nil {
			oomKills = s.MemoryOomControl.OomKill
		}
		if s.Memory != nil && s.Memory.Usage != nil {
			u.MemoryPeak = s.Memory.Usage.Max
		}
		if s.CPU != nil && s.CPU.Usage != nil {
			u.CPU = time.Duration(s.CPU.Usage.Total)
		}
	case *v2.Metrics:
		if s.MemoryEvents != nil {
			oomKills = s.MemoryEvents.OomKill
		}
		if s.Memory != nil {
			u.MemoryPeak = s.Memory.MaxUsage
		}
		if s.CPU != nil {
			u.CPU = time.Duration(s.CPU.UsageUsec) * time.Microsecond
		}
	default:
		return 0, u, fmt.Errorf("unknown metrics type %T", data)
	}
	return oomKills, u, nil
}

// readCgroupUsage reads the OOM kill count, CPU time and peak memory
// straight from the cgroup at path (cgroup v1 and v2): the counters the
// runc shim's metrics carry, without the round trips, and the only ones
// for a sandbox whose shim reports none once it exited (gVisor's asks
// the sandbox, which is gone by then: "no metrics received"). The
// runtimes keep the cgroup until the task is deleted. Under gVisor the
// figures are the whole sandbox's, its kernel (the sentry) and its gofer
// included. A counter the kernel does not keep reads as 0, never as a
// guess.
func readCgroupUsage(path string) (oomKills uint64, u Usage, err error) {
	v1 := func(ctrl, file string) string { return filepath.Join("/sys/fs/cgroup", ctrl, path, file) }
	if _, statErr := os.Stat(v1("memory", "")); statErr == nil {
		if v, ok := readKey(v1("memory", "memory.oom_control"), "oom_kill"); ok {
			oomKills = v
		}
		u.MemoryPeak, _ = readUint(v1("memory", "memory.max_usage_in_bytes"))
		if ns, ok := readUint(v1("cpuacct", "cpuacct.usage")); ok {
			u.CPU = time.Duration(ns)
		}
		return oomKills, u, nil
	}
	v2 := func(file string) string { return filepath.Join("/sys/fs/cgroup", path, file) }
	if _, statErr := os.Stat(v2("")); statErr != nil {
		return 0, u, fmt.Errorf("reading the sandbox's cgroup: %w", statErr)
	}
	oomKills, _ = readKey(v2("memory.events"), "oom_kill")
	u.MemoryPeak, _ = readUint(v2("memory.peak"))
	if us, ok := readKey(v2("cpu.stat"), "usage_usec"); ok {
		u.CPU = time.Duration(us) * time.Microsecond
	}
	return oomKills, u, nil
}

// readUint reads a file that holds one number.
func readUint(file string) (uint64, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v, err == nil
}

// readKey reads the number after key in a file of "key value" lines.
func readKey(file, key string) (uint64, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// pidsLimitHit reads the pids controller's "max" event count of the
// cgroup at path (cgroup v1 and v2). containerd's metrics do not carry it.
// A host whose cgroup fs this process cannot see reads as not hit.
func pidsLimitHit(path string) bool {
	for _, f := range []string{
		filepath.Join("/sys/fs/cgroup/pids", path, "pids.events"),
		filepath.Join("/sys/fs/cgroup", path, "pids.events"),
	} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, " "); ok && k == "max" {
				return strings.TrimSpace(v) != "0"
			}
		}
	}
	return false
}
