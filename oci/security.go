package oci

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	ctrdoci "github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// WithIsolatedNamespaces gives the task new pid, ipc, uts, mount, network and
// cgroup namespaces, and nothing else.
//
// The network namespace has no path, so the runtime creates an empty one
// with only loopback: a task has no network. Namespace paths, the user and
// time namespaces and their mappings are dropped, so nothing a base spec
// carried can make the task join a host (or another task's) namespace.
func WithIsolatedNamespaces() ctrdoci.SpecOpts {
	return func(_ context.Context, _ ctrdoci.Client, _ *containers.Container, s *specs.Spec) error {
		setLinux(s)
		s.Linux.Namespaces = []specs.LinuxNamespace{
			{Type: specs.PIDNamespace},
			{Type: specs.IPCNamespace},
			{Type: specs.UTSNamespace},
			{Type: specs.MountNamespace},
			{Type: specs.NetworkNamespace},
			{Type: specs.CgroupNamespace},
		}
		s.Linux.UIDMappings = nil
		s.Linux.GIDMappings = nil
		s.Linux.TimeOffsets = nil
		return nil
	}
}

// WithNoCapabilities empties all five capability sets. The sets are empty
// rather than nil so that no later option mistakes them for "unset, use a
// default". Serialized, they all disappear ("capabilities": {}); a runtime
// given a capabilities object with no sets grants none.
func WithNoCapabilities() ctrdoci.SpecOpts {
	return func(_ context.Context, _ ctrdoci.Client, _ *containers.Container, s *specs.Spec) error {
		setProcess(s)
		s.Process.Capabilities = &specs.LinuxCapabilities{
			Bounding:    []string{},
			Effective:   []string{},
			Permitted:   []string{},
			Inheritable: []string{},
			Ambient:     []string{},
		}
		return nil
	}
}

// WithUser runs the process as uid:gid with no supplementary groups and a
// umask of 0022. A zero uid or gid becomes DefaultUID or DefaultGID: a task
// never runs as root, even when a caller forgets to choose a user.
//
// Supplementary groups are cleared because the runtime would otherwise
// keep whatever the base spec listed, and containerd's own user options add
// the primary gid there.
func WithUser(uid, gid uint32) ctrdoci.SpecOpts {
	return func(_ context.Context, _ ctrdoci.Client, _ *containers.Container, s *specs.Spec) error {
		setProcess(s)
		c := Config{UID: uid, GID: gid}.withDefaults()
		umask := uint32(0o022)
		s.Process.User = specs.User{UID: c.UID, GID: c.GID, Umask: &umask}
		return nil
	}
}

// WithOOMScoreAdj sets the process's OOM score adjustment. Options uses
// DefaultOOMScore so that, when the host runs out of memory, the kernel kills
// a task before the runner or containerd.
func WithOOMScoreAdj(n int) ctrdoci.SpecOpts {
	return func(_ context.Context, _ ctrdoci.Client, _ *containers.Container, s *specs.Spec) error {
		setProcess(s)
		s.Process.OOMScoreAdj = &n
		return nil
	}
}

// WithDefaultSeccomp applies containerd's default seccomp profile (the same
// as Docker's). The profile allows extra syscalls for each capability in the
// bounding set, so it must run after WithNoCapabilities: run before, it would
// for example allow chroot, which containerd's default spec grants through
// CAP_SYS_CHROOT. Options puts it last.
func WithDefaultSeccomp() ctrdoci.SpecOpts {
	return func(ctx context.Context, client ctrdoci.Client, c *containers.Container, s *specs.Spec) error {
		setLinux(s)
		if s.Process == nil || s.Process.Capabilities == nil {
			// The runtime grants no capabilities when the spec lists
			// none, so the matching profile is the one for an empty set.
			noCaps := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
			s.Linux.Seccomp = seccomp.DefaultProfile(noCaps)
		} else if err := seccomp.WithDefaultProfile()(ctx, client, c, s); err != nil {
			return err
		}
		nativeArchOnly(s.Linux.Seccomp)
		return nil
	}
}

// nativeArch is the seccomp name of the architecture the runner was built
// for, by GOARCH.
var nativeArch = map[string]specs.Arch{
	"amd64":   specs.ArchX86_64,
	"arm64":   specs.ArchAARCH64,
	"ppc64le": specs.ArchPPC64LE,
	"s390x":   specs.ArchS390X,
	"riscv64": specs.ArchRISCV64,
	"loong64": specs.ArchLOONGARCH64,
}

// nativeArchOnly narrows a profile to the native architecture. Docker's
// profile also admits the compat ABIs (i386 and x32 on amd64, arm on
// arm64), which untrusted code here never needs and which have been a
// source of kernel bugs; a syscall made through one of them is refused by
// the filter like any other not on the list. It also makes the filter a
// third of the size, and libseccomp compiles it at every container start:
// about 7 ms of CPU per task on amd64.
func nativeArchOnly(p *specs.LinuxSeccomp) {
	arch, ok := nativeArch[runtime.GOARCH]
	if p == nil || !ok || !slices.Contains(p.Architectures, arch) {
		return
	}
	p.Architectures = []specs.Arch{arch}
}

// dockerMaskedPaths are the paths Docker hides from containers, besides the
// per-CPU thermal_throttle directories added by maskedPaths.
var dockerMaskedPaths = []string{
	"/proc/asound",
	"/proc/acpi",
	"/proc/interrupts",
	"/proc/kcore",
	"/proc/keys",
	"/proc/latency_stats",
	"/proc/timer_list",
	"/proc/timer_stats",
	"/proc/sched_debug",
	"/proc/scsi",
	"/sys/firmware",
	"/sys/devices/virtual/powercap",
}

// dockerReadonlyPaths are the paths Docker makes read-only in containers.
var dockerReadonlyPaths = []string{
	"/proc/bus",
	"/proc/fs",
	"/proc/irq",
	"/proc/sys",
	"/proc/sysrq-trigger",
}

// WithMaskedPaths makes sure the spec masks and makes read-only at least the
// /proc and /sys paths Docker does, keeping any other paths the base spec
// lists, without duplicates.
//
// containerd only lists a CPU's thermal_throttle directory when it exists
// while the spec is built, so on hosts (and in tests) without one it lists
// none. Here every possible CPU's directory is listed: the runtime skips a
// masked path that does not exist, and the spec no longer depends on which
// drivers the host had loaded when it was built.
func WithMaskedPaths() ctrdoci.SpecOpts {
	return func(_ context.Context, _ ctrdoci.Client, _ *containers.Container, s *specs.Spec) error {
		setLinux(s)
		s.Linux.MaskedPaths = mergePaths(s.Linux.MaskedPaths, maskedPaths())
		s.Linux.ReadonlyPaths = mergePaths(s.Linux.ReadonlyPaths, dockerReadonlyPaths)
		return nil
	}
}

func maskedPaths() []string {
	paths := slices.Clone(dockerMaskedPaths)
	for _, cpu := range possibleCPUs() {
		paths = append(paths, fmt.Sprintf("/sys/devices/system/cpu/cpu%d/thermal_throttle", cpu))
	}
	return paths
}

// mergePaths returns base followed by the entries of add it lacks.
func mergePaths(base, add []string) []string {
	out := make([]string, 0, len(base)+len(add))
	seen := make(map[string]bool, len(base)+len(add))
	for _, p := range slices.Concat(base, add) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// possibleCPUs lists the CPUs the kernel may ever bring online, so that a CPU
// hot-plugged after the spec is built is masked too.
var possibleCPUs = sync.OnceValue(func() []int {
	if b, err := os.ReadFile("/sys/devices/system/cpu/possible"); err == nil {
		if cpus, err := parseCPUList(strings.TrimSpace(string(b))); err == nil && len(cpus) > 0 {
			return cpus
		}
	}
	cpus := make([]int, runtime.NumCPU())
	for i := range cpus {
		cpus[i] = i
	}
	return cpus
})

// parseCPUList parses the kernel's CPU list format, such as "0-3,8,10-11".
func parseCPUList(list string) ([]int, error) {
	var cpus []int
	for r := range strings.SplitSeq(list, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		if !isRange {
			hi = lo
		}
		start, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("parsing cpu list %q: %w", list, err)
		}
		end, err := strconv.Atoi(hi)
		if err != nil {
			return nil, fmt.Errorf("parsing cpu list %q: %w", list, err)
		}
		if start < 0 || end < start {
			return nil, fmt.Errorf("parsing cpu list %q: bad range %q", list, r)
		}
		for cpu := start; cpu <= end; cpu++ {
			cpus = append(cpus, cpu)
		}
	}
	return cpus, nil
}

func setLinux(s *specs.Spec) {
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
}

func setProcess(s *specs.Spec) {
	if s.Process == nil {
		s.Process = &specs.Process{}
	}
}

func setResources(s *specs.Spec) {
	setLinux(s)
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
}
