package oci

import (
	"context"
	"math"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	ctrdoci "github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// WithResources sets the task's cgroup limits from r: memory, swap, CPU
// quota, pids and the device allow-list.
//
// OCI's swap limit is memory plus swap, so setting it equal to the memory
// limit gives the task no swap: it is OOM-killed at the limit instead of
// thrashing the host. The device rules deny everything, then allow only
// the character devices every program expects (null, zero, full, random,
// urandom, tty, ptmx and the pts terminals). containerd's default spec has
// just the deny rule, and its WithDefaultUnixDevices also allows
// /dev/console, which a task without a terminal has no use for.
//
// Invalid limits give an error satisfying errdefs.IsInvalidArgument rather
// than a spec without them.
func WithResources(r Resources) ctrdoci.SpecOpts {
	return func(_ context.Context, _ ctrdoci.Client, _ *containers.Container, s *specs.Spec) error {
		if err := r.validateCgroup(); err != nil {
			return err
		}
		setResources(s)
		res := s.Linux.Resources
		limits := LinuxResources(r)
		if res.Memory == nil {
			res.Memory = &specs.LinuxMemory{}
		}
		res.Memory.Limit, res.Memory.Swap = limits.Memory.Limit, limits.Memory.Swap
		if res.CPU == nil {
			res.CPU = &specs.LinuxCPU{}
		}
		res.CPU.Quota, res.CPU.Period = limits.CPU.Quota, limits.CPU.Period
		if limits.CPU.Cpus != "" {
			res.CPU.Cpus = limits.CPU.Cpus
		}
		res.Pids = limits.Pids
		res.Devices = deviceRules()
		return nil
	}
}

// LinuxResources returns the cgroup limits r sets: memory, swap equal to
// it, the CPU quota, the cpuset when r names one, and the pids limit. WithResources puts them in a spec;
// a warm-pool sandbox gets them as an update when its task asks for other
// limits than it was made with, so both paths round alike.
func LinuxResources(r Resources) *specs.LinuxResources {
	mem, swap := r.MemoryBytes, r.MemoryBytes
	quota := int64(math.Round(r.CPUs * DefaultCPUPeriod))
	period := uint64(DefaultCPUPeriod)
	pids := r.Pids
	return &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &mem, Swap: &swap},
		CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period, Cpus: FormatCPUList(r.CPUSet)},
		Pids:   &specs.LinuxPids{Limit: &pids},
	}
}

func deviceRules() []specs.LinuxDeviceCgroup {
	char := func(major int64, minor *int64) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Minor: minor, Access: "rwm"}
	}
	minor := func(n int64) *int64 { return &n }
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		char(1, minor(3)), // null
		char(1, minor(5)), // zero
		char(1, minor(7)), // full
		char(1, minor(8)), // random
		char(1, minor(9)), // urandom
		char(5, minor(0)), // tty
		char(5, minor(2)), // ptmx
		char(136, nil),    // pts/*
	}
}

// WithRlimits sets the task's rlimits from r: RLIMIT_NOFILE (soft = hard),
// RLIMIT_FSIZE at the /tmp size, so a runaway writer gets SIGXFSZ/EFBIG
// instead of filling the tmpfs, and RLIMIT_CORE at zero, so a crash does not
// write a core file there. An existing limit of the same type is replaced:
// runtimes apply the entries in order, so a duplicate could silently win.
// A TmpBytes <= 0 gives an error satisfying errdefs.IsInvalidArgument.
func WithRlimits(r Resources) ctrdoci.SpecOpts {
	return func(_ context.Context, _ ctrdoci.Client, _ *containers.Container, s *specs.Spec) error {
		if err := r.validateScratch(); err != nil {
			return err
		}
		r = r.withDefaults()
		setProcess(s)
		for _, l := range []specs.POSIXRlimit{
			{Type: "RLIMIT_NOFILE", Soft: r.NoFile, Hard: r.NoFile},
			{Type: "RLIMIT_FSIZE", Soft: uint64(r.TmpBytes), Hard: uint64(r.TmpBytes)},
			{Type: "RLIMIT_CORE", Soft: 0, Hard: 0},
		} {
			s.Process.Rlimits = setRlimit(s.Process.Rlimits, l)
		}
		return nil
	}
}

func setRlimit(limits []specs.POSIXRlimit, l specs.POSIXRlimit) []specs.POSIXRlimit {
	out := limits[:0:0]
	replaced := false
	for _, old := range limits {
		switch {
		case old.Type != l.Type:
			out = append(out, old)
		case !replaced:
			out = append(out, l)
			replaced = true
		}
	}
	if !replaced {
		out = append(out, l)
	}
	return out
}

// FormatCPUList writes cpus in the kernel's CPU list format ("0-3,8"), as
// cpuset.cpus and /sys/devices/system/cpu/online have it; cpus must be
// sorted. No CPUs give "".
func FormatCPUList(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(cpus[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return b.String()
}

// ParseCPUList parses the kernel's CPU list format, such as "0-3,8,10-11".
func ParseCPUList(list string) ([]int, error) { return parseCPUList(list) }
