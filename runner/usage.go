package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
