package oci

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	ctrdoci "github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func validConfig() Config {
	return Config{
		Args:       []string{"node", "/code/main.js"},
		Env:        []string{"LANG=C.UTF-8"},
		CodeSource: "/var/lib/sandbox-runner/tasks/42",
		Resources: Resources{
			MemoryBytes: 256 << 20,
			CPUs:        1.5,
			Pids:        64,
			TmpBytes:    32 << 20,
		},
	}
}

func testCtx(t *testing.T) context.Context {
	return namespaces.WithNamespace(t.Context(), "test")
}

func testContainer(t *testing.T) *containers.Container {
	return &containers.Container{ID: strings.ReplaceAll(t.Name(), "/", "-")}
}

// generate builds the spec a task gets: containerd's default Linux spec, as
// client.WithNewSpec starts from, with Options(cfg) applied.
func generate(t *testing.T, cfg Config) *specs.Spec {
	t.Helper()
	opts, err := Options(cfg)
	require.NoError(t, err)
	s, err := ctrdoci.GenerateSpecWithPlatform(testCtx(t), nil, "linux", testContainer(t), opts...)
	require.NoError(t, err)
	return s
}

// defaultSpec is containerd's default Linux spec, with no options applied.
func defaultSpec(t *testing.T) *specs.Spec {
	t.Helper()
	s, err := ctrdoci.GenerateSpecWithPlatform(testCtx(t), nil, "linux", testContainer(t))
	require.NoError(t, err)
	return s
}

func apply(t *testing.T, s *specs.Spec, opts ...ctrdoci.SpecOpts) error {
	t.Helper()
	return ctrdoci.ApplyOpts(testCtx(t), nil, testContainer(t), s, opts...)
}

func findMount(s *specs.Spec, dest string) (specs.Mount, bool) {
	i := slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == dest })
	if i < 0 {
		return specs.Mount{}, false
	}
	return s.Mounts[i], true
}

func findRlimit(s *specs.Spec, typ string) []specs.POSIXRlimit {
	var out []specs.POSIXRlimit
	for _, l := range s.Process.Rlimits {
		if l.Type == typ {
			out = append(out, l)
		}
	}
	return out
}

func TestNamespacesAreNewAndEmpty(t *testing.T) {
	s := generate(t, validConfig())

	var types []specs.LinuxNamespaceType
	for _, ns := range s.Linux.Namespaces {
		assert.Empty(t, ns.Path, "namespace %s must be new, not joined", ns.Type)
		types = append(types, ns.Type)
	}
	assert.ElementsMatch(t, []specs.LinuxNamespaceType{
		specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace,
		specs.MountNamespace, specs.NetworkNamespace, specs.CgroupNamespace,
	}, types)
}

func TestNamespacesNeverJoinHost(t *testing.T) {
	s := &specs.Spec{Linux: &specs.Linux{
		Namespaces: []specs.LinuxNamespace{
			{Type: specs.NetworkNamespace, Path: "/proc/1/ns/net"},
			{Type: specs.PIDNamespace, Path: "/proc/1/ns/pid"},
			{Type: specs.UserNamespace},
			{Type: specs.TimeNamespace},
		},
		UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 1}},
		GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 1}},
		TimeOffsets: map[string]specs.LinuxTimeOffset{"monotonic": {Secs: 1}},
	}}
	require.NoError(t, apply(t, s, WithIsolatedNamespaces()))

	for _, ns := range s.Linux.Namespaces {
		assert.Empty(t, ns.Path, "namespace %s", ns.Type)
		assert.NotEqual(t, specs.UserNamespace, ns.Type)
		assert.NotEqual(t, specs.TimeNamespace, ns.Type)
	}
	assert.Nil(t, s.Linux.UIDMappings)
	assert.Nil(t, s.Linux.GIDMappings)
	assert.Nil(t, s.Linux.TimeOffsets)
}

func TestNoCapabilities(t *testing.T) {
	caps := generate(t, validConfig()).Process.Capabilities
	require.NotNil(t, caps)
	for name, set := range map[string][]string{
		"bounding":    caps.Bounding,
		"effective":   caps.Effective,
		"permitted":   caps.Permitted,
		"inheritable": caps.Inheritable,
		"ambient":     caps.Ambient,
	} {
		assert.NotNil(t, set, name)
		assert.Empty(t, set, name)
	}
}

func TestNoNewPrivileges(t *testing.T) {
	s := defaultSpec(t)
	s.Process.NoNewPrivileges = false // prove Options sets it, not the base
	opts, err := Options(validConfig())
	require.NoError(t, err)
	require.NoError(t, apply(t, s, opts...))
	assert.True(t, s.Process.NoNewPrivileges)
}

func TestUserNeverRoot(t *testing.T) {
	for _, tc := range []struct {
		uid, gid         uint32
		wantUID, wantGID uint32
	}{
		{0, 0, DefaultUID, DefaultGID},
		{1000, 0, 1000, DefaultGID},
		{0, 1000, DefaultUID, 1000},
		{1000, 1001, 1000, 1001},
	} {
		t.Run(fmt.Sprintf("%d:%d", tc.uid, tc.gid), func(t *testing.T) {
			cfg := validConfig()
			cfg.UID, cfg.GID = tc.uid, tc.gid
			u := generate(t, cfg).Process.User
			assert.Equal(t, tc.wantUID, u.UID)
			assert.Equal(t, tc.wantGID, u.GID)
		})
	}
}

func TestUserHasNoSupplementaryGroupsAndUmask022(t *testing.T) {
	s := &specs.Spec{Process: &specs.Process{User: specs.User{AdditionalGids: []uint32{0, 10}}}}
	require.NoError(t, apply(t, s, WithUser(1000, 1000)))
	assert.Empty(t, s.Process.User.AdditionalGids)
	require.NotNil(t, s.Process.User.Umask)
	assert.Equal(t, uint32(0o022), *s.Process.User.Umask)
}

func TestOOMScoreAdj(t *testing.T) {
	s := generate(t, validConfig())
	require.NotNil(t, s.Process.OOMScoreAdj)
	assert.Equal(t, DefaultOOMScore, *s.Process.OOMScoreAdj)
}

func TestRootFSReadonly(t *testing.T) {
	s := generate(t, validConfig())
	require.NotNil(t, s.Root)
	assert.True(t, s.Root.Readonly)
}

func wantMaskedPaths() []string {
	want := []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore",
		"/proc/keys", "/proc/latency_stats", "/proc/timer_list",
		"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
	for _, cpu := range possibleCPUs() {
		want = append(want, fmt.Sprintf("/sys/devices/system/cpu/cpu%d/thermal_throttle", cpu))
	}
	return want
}

var wantReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}

func TestMaskedPaths(t *testing.T) {
	masked := generate(t, validConfig()).Linux.MaskedPaths
	assert.Subset(t, masked, wantMaskedPaths())
	assert.Contains(t, masked, "/sys/devices/system/cpu/cpu0/thermal_throttle")
	assert.Len(t, masked, len(slices.Compact(slices.Sorted(slices.Values(masked)))), "duplicates in %v", masked)
}

func TestReadonlyPaths(t *testing.T) {
	ro := generate(t, validConfig()).Linux.ReadonlyPaths
	assert.ElementsMatch(t, wantReadonlyPaths, ro)
}

func TestMaskedPathsOnEmptySpec(t *testing.T) {
	s := &specs.Spec{}
	require.NoError(t, apply(t, s, WithMaskedPaths()))
	assert.ElementsMatch(t, wantMaskedPaths(), s.Linux.MaskedPaths)
	assert.ElementsMatch(t, wantReadonlyPaths, s.Linux.ReadonlyPaths)
}

func TestMaskedPathsKeepBaseExtras(t *testing.T) {
	s := &specs.Spec{Linux: &specs.Linux{MaskedPaths: []string{"/proc/extra", "/proc/kcore"}}}
	require.NoError(t, apply(t, s, WithMaskedPaths()))
	assert.Equal(t, "/proc/extra", s.Linux.MaskedPaths[0])
	assert.Len(t, s.Linux.MaskedPaths, len(wantMaskedPaths())+1)
}

func TestMemoryLimitWithoutSwap(t *testing.T) {
	mem := generate(t, validConfig()).Linux.Resources.Memory
	require.NotNil(t, mem)
	require.NotNil(t, mem.Limit)
	require.NotNil(t, mem.Swap)
	assert.Equal(t, int64(256<<20), *mem.Limit)
	assert.Equal(t, *mem.Limit, *mem.Swap, "swap limit is memory+swap: equal means no swap")
}

func TestCPUQuota(t *testing.T) {
	for _, tc := range []struct {
		cpus  float64
		quota int64
	}{
		{1.5, 150000},
		{0.25, 25000},
		{2, 200000},
		{0.01, 1000},
	} {
		t.Run(fmt.Sprint(tc.cpus), func(t *testing.T) {
			cfg := validConfig()
			cfg.Resources.CPUs = tc.cpus
			cpu := generate(t, cfg).Linux.Resources.CPU
			require.NotNil(t, cpu)
			require.NotNil(t, cpu.Quota)
			require.NotNil(t, cpu.Period)
			assert.Equal(t, tc.quota, *cpu.Quota)
			assert.Equal(t, uint64(100000), *cpu.Period)
		})
	}
}

func TestPidsLimit(t *testing.T) {
	pids := generate(t, validConfig()).Linux.Resources.Pids
	require.NotNil(t, pids)
	require.NotNil(t, pids.Limit)
	assert.Equal(t, int64(64), *pids.Limit)
}

func TestDeviceRules(t *testing.T) {
	rules := generate(t, validConfig()).Linux.Resources.Devices
	require.NotEmpty(t, rules)

	first := rules[0]
	assert.False(t, first.Allow, "first rule must deny")
	assert.Contains(t, []string{"", "a"}, first.Type, "first rule must cover all devices")
	assert.Nil(t, first.Major)
	assert.Nil(t, first.Minor)
	assert.Equal(t, "rwm", first.Access)

	var allowed []string
	for _, r := range rules[1:] {
		require.True(t, r.Allow, "only the first rule denies")
		require.Equal(t, "c", r.Type, "only character devices")
		require.NotNil(t, r.Major)
		minor := "*"
		if r.Minor != nil {
			minor = fmt.Sprint(*r.Minor)
		}
		allowed = append(allowed, fmt.Sprintf("%d:%s", *r.Major, minor))
	}
	assert.ElementsMatch(t, []string{
		"1:3",   // null
		"1:5",   // zero
		"1:7",   // full
		"1:8",   // random
		"1:9",   // urandom
		"5:0",   // tty
		"5:2",   // ptmx
		"136:*", // pts
	}, allowed)
}

func TestRlimits(t *testing.T) {
	s := generate(t, validConfig())
	for _, tc := range []struct {
		typ  string
		want uint64
	}{
		{"RLIMIT_NOFILE", DefaultNoFile},
		{"RLIMIT_FSIZE", 32 << 20},
		{"RLIMIT_CORE", 0},
	} {
		got := findRlimit(s, tc.typ)
		require.Len(t, got, 1, tc.typ)
		assert.Equal(t, tc.want, got[0].Soft, tc.typ)
		assert.Equal(t, tc.want, got[0].Hard, tc.typ)
	}
}

func TestRlimitsReplaceExisting(t *testing.T) {
	s := &specs.Spec{Process: &specs.Process{Rlimits: []specs.POSIXRlimit{
		{Type: "RLIMIT_NOFILE", Soft: 1 << 20, Hard: 1 << 20},
		{Type: "RLIMIT_NPROC", Soft: 10, Hard: 10},
		{Type: "RLIMIT_NOFILE", Soft: 1 << 20, Hard: 1 << 20},
	}}}
	r := validConfig().Resources
	r.NoFile = 256
	require.NoError(t, apply(t, s, WithRlimits(r)))

	nofile := findRlimit(s, "RLIMIT_NOFILE")
	require.Len(t, nofile, 1)
	assert.Equal(t, uint64(256), nofile[0].Hard)
	assert.Len(t, findRlimit(s, "RLIMIT_NPROC"), 1, "unrelated limits are kept")
}

func TestMountsHaveNoRun(t *testing.T) {
	base := defaultSpec(t)
	_, ok := findMount(base, "/run")
	require.True(t, ok, "containerd's default spec is expected to have /run")

	_, ok = findMount(generate(t, validConfig()), "/run")
	assert.False(t, ok)
}

func TestMountsTmpIsSizedTmpfsOfTheTasksOwn(t *testing.T) {
	cfg := validConfig()
	cfg.UID, cfg.GID = 1500000007, 1500000007
	m, ok := findMount(generate(t, cfg), ScratchDir)
	require.True(t, ok)
	assert.Equal(t, "tmpfs", m.Type)
	assert.ElementsMatch(t, []string{"nosuid", "nodev", "mode=0700", "uid=1500000007", "gid=1500000007", fmt.Sprintf("size=%d", 32<<20)}, m.Options,
		"no other uid may enter the task's /tmp")
	assert.NotContains(t, m.Options, "noexec", "compiled programs run from /tmp")
}

func TestMountsShmIsSized(t *testing.T) {
	cfg := validConfig()
	s := generate(t, cfg)
	m, ok := findMount(s, "/dev/shm")
	require.True(t, ok)
	assert.Equal(t, "tmpfs", m.Type)
	assert.ElementsMatch(t, []string{"nosuid", "noexec", "nodev", "mode=1777", fmt.Sprintf("size=%d", DefaultShmBytes)}, m.Options)

	cfg.Resources.ShmBytes = 1 << 20
	m, _ = findMount(generate(t, cfg), "/dev/shm")
	assert.Contains(t, m.Options, "size=1048576")
}

func TestMountsCodeIsReadOnlyBind(t *testing.T) {
	m, ok := findMount(generate(t, validConfig()), CodeDir)
	require.True(t, ok)
	assert.Equal(t, "bind", m.Type)
	assert.Equal(t, "/var/lib/sandbox-runner/tasks/42", m.Source)
	assert.ElementsMatch(t, []string{"rbind", "ro", "nosuid", "nodev"}, m.Options)
}

func TestMountsNoCodeWithoutSource(t *testing.T) {
	cfg := validConfig()
	cfg.CodeSource = ""
	_, ok := findMount(generate(t, cfg), CodeDir)
	assert.False(t, ok)
}

func TestMountsCgroupReadOnly(t *testing.T) {
	s := generate(t, validConfig())
	m, ok := findMount(s, "/sys/fs/cgroup")
	require.True(t, ok)
	assert.Equal(t, "cgroup", m.Type)
	assert.Equal(t, "cgroup", m.Source)
	assert.ElementsMatch(t, []string{"nosuid", "noexec", "nodev", "relatime", "ro"}, m.Options)
}

func TestMountsKeepSystemFilesystemsInOrder(t *testing.T) {
	s := generate(t, validConfig())
	var dests []string
	for _, m := range s.Mounts {
		dests = append(dests, m.Destination)
	}
	for _, d := range []string{"/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys"} {
		assert.Contains(t, dests, d)
	}
	assert.Len(t, dests, len(slices.Compact(slices.Sorted(slices.Values(dests)))), "duplicate mounts in %v", dests)

	// A mount must come after the one it sits on.
	pos := func(d string) int { return slices.Index(dests, d) }
	assert.Less(t, pos("/dev"), pos("/dev/pts"))
	assert.Less(t, pos("/dev"), pos("/dev/shm"))
	assert.Less(t, pos("/dev"), pos("/dev/mqueue"))
	assert.Less(t, pos("/sys"), pos("/sys/fs/cgroup"))

	sys, _ := findMount(s, "/sys")
	assert.Contains(t, sys.Options, "ro")
}

func TestMountsForceSysReadOnly(t *testing.T) {
	s := &specs.Spec{Mounts: []specs.Mount{
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "rw"}},
		{Destination: "/etc/hosts", Type: "bind", Source: "/etc/hosts", Options: []string{"rbind", "ro"}},
	}}
	require.NoError(t, apply(t, s, WithMounts(validConfig())))
	sys, _ := findMount(s, "/sys")
	assert.Equal(t, []string{"nosuid", "ro"}, sys.Options)
	_, ok := findMount(s, "/etc/hosts")
	assert.True(t, ok, "other base mounts are kept")
}

func TestProcess(t *testing.T) {
	cfg := validConfig()
	cfg.Cwd = "/code"
	cfg.Hostname = "task-42"
	s := generate(t, cfg)
	assert.Equal(t, []string{"node", "/code/main.js"}, s.Process.Args)
	assert.Equal(t, []string{"LANG=C.UTF-8", DefaultPATH}, s.Process.Env)
	assert.Equal(t, "/code", s.Process.Cwd)
	assert.Equal(t, "task-42", s.Hostname)
	assert.False(t, s.Process.Terminal)
}

func TestProcessDefaults(t *testing.T) {
	s := generate(t, validConfig())
	assert.Equal(t, ScratchDir, s.Process.Cwd)
	assert.Equal(t, DefaultHostname, s.Hostname)
}

func TestProcessKeepsCallerPATH(t *testing.T) {
	cfg := validConfig()
	cfg.Env = []string{"PATH=/opt/bin"}
	assert.Equal(t, []string{"PATH=/opt/bin"}, generate(t, cfg).Process.Env)
}

func TestProcessReplacesBaseEnv(t *testing.T) {
	s := &specs.Spec{Process: &specs.Process{Env: []string{"SECRET=1"}, Terminal: true}}
	require.NoError(t, apply(t, s, WithProcess(validConfig())))
	assert.NotContains(t, s.Process.Env, "SECRET=1")
	assert.False(t, s.Process.Terminal)
}

func TestOptionsDoNotModifyConfig(t *testing.T) {
	cfg := validConfig()
	cfg.Env = make([]string, 1, 4)
	cfg.Env[0] = "A=1"
	_, err := Options(cfg)
	require.NoError(t, err)
	spare := cfg.Env[:cap(cfg.Env)]
	assert.Empty(t, spare[1], "Options wrote into the caller's Env array")
}

func TestOptionsRejectInvalidConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		field  string
		mutate func(*Config)
	}{
		{"no args", "Args", func(c *Config) { c.Args = nil }},
		{"empty command", "Args", func(c *Config) { c.Args = []string{""} }},
		{"zero memory", "Resources.MemoryBytes", func(c *Config) { c.Resources.MemoryBytes = 0 }},
		{"negative memory", "Resources.MemoryBytes", func(c *Config) { c.Resources.MemoryBytes = -1 }},
		{"zero cpus", "Resources.CPUs", func(c *Config) { c.Resources.CPUs = 0 }},
		{"negative cpus", "Resources.CPUs", func(c *Config) { c.Resources.CPUs = -1 }},
		{"cpus below kernel minimum", "Resources.CPUs", func(c *Config) { c.Resources.CPUs = 0.001 }},
		{"zero pids", "Resources.Pids", func(c *Config) { c.Resources.Pids = 0 }},
		{"zero tmp", "Resources.TmpBytes", func(c *Config) { c.Resources.TmpBytes = 0 }},
		{"negative shm", "Resources.ShmBytes", func(c *Config) { c.Resources.ShmBytes = -1 }},
		{"relative code source", "CodeSource", func(c *Config) { c.CodeSource = "tasks/42" }},
		{"env without =", "Env", func(c *Config) { c.Env = []string{"LANG"} }},
		{"env without key", "Env", func(c *Config) { c.Env = []string{"=x"} }},
		{"relative cwd", "Cwd", func(c *Config) { c.Cwd = "code" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig()
			tc.mutate(&cfg)
			opts, err := Options(cfg)
			require.Error(t, err)
			assert.Nil(t, opts)
			assert.True(t, errdefs.IsInvalidArgument(err), "%v is not invalid argument", err)
			assert.Contains(t, err.Error(), tc.field)
		})
	}
}

func TestOptionsRejectInvalidLimitsWhenUsedAlone(t *testing.T) {
	for name, opt := range map[string]ctrdoci.SpecOpts{
		"WithResources": WithResources(Resources{}),
		"WithRlimits":   WithRlimits(Resources{}),
		"WithMounts":    WithMounts(Config{}),
		"WithProcess":   WithProcess(Config{}),
	} {
		t.Run(name, func(t *testing.T) {
			err := apply(t, &specs.Spec{}, opt)
			assert.True(t, errdefs.IsInvalidArgument(err), "got %v", err)
		})
	}
}

func TestEachOptionOnBareSpec(t *testing.T) {
	cfg := validConfig()
	for name, opt := range map[string]ctrdoci.SpecOpts{
		"WithIsolatedNamespaces": WithIsolatedNamespaces(),
		"WithNoCapabilities":     WithNoCapabilities(),
		"WithUser":               WithUser(0, 0),
		"WithOOMScoreAdj":        WithOOMScoreAdj(DefaultOOMScore),
		"WithMaskedPaths":        WithMaskedPaths(),
		"WithResources":          WithResources(cfg.Resources),
		"WithRlimits":            WithRlimits(cfg.Resources),
		"WithMounts":             WithMounts(cfg),
		"WithProcess":            WithProcess(cfg),
		"WithDefaultSeccomp":     WithDefaultSeccomp(),
	} {
		t.Run(name, func(t *testing.T) {
			assert.NoError(t, apply(t, &specs.Spec{}, opt))
		})
	}
}

func TestOptionsOnBareSpec(t *testing.T) {
	opts, err := Options(validConfig())
	require.NoError(t, err)
	s := &specs.Spec{}
	require.NoError(t, apply(t, s, opts...))
	assert.Empty(t, s.Process.Capabilities.Bounding)
	assert.NotNil(t, s.Linux.Seccomp)
	_, ok := findMount(s, "/proc")
	assert.True(t, ok, "a bare spec gets the system mounts too")
}

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string][]int{
		"0":          {0},
		"0-3":        {0, 1, 2, 3},
		"0-1,4,6-7":  {0, 1, 4, 6, 7},
		"2":          {2},
		"0-0":        {0},
		"10-11,0":    {10, 11, 0},
		"0,2-3,5-5 ": nil, // callers trim; a stray space is an error
	} {
		got, err := parseCPUList(in)
		if want == nil {
			assert.Error(t, err, in)
			continue
		}
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "a", "3-1", "-1", "1-"} {
		_, err := parseCPUList(bad)
		assert.Error(t, err, bad)
	}
}

func TestScratchSourceReplacesTmpfs(t *testing.T) {
	cfg := validConfig()
	cfg.ScratchSource = "/var/lib/sandbox-runner/tasks/x/scratch"
	s := generate(t, cfg)
	var found bool
	for _, m := range s.Mounts {
		if m.Destination == ScratchDir {
			require.False(t, found, "/tmp mounted twice")
			found = true
			assert.Equal(t, "bind", m.Type)
			assert.Equal(t, cfg.ScratchSource, m.Source)
			assert.Subset(t, m.Options, []string{"rbind", "rw", "nosuid", "nodev"})
		}
	}
	require.True(t, found)
}

func TestScratchSourceMustBeAbsolute(t *testing.T) {
	cfg := validConfig()
	cfg.ScratchSource = "scratch"
	_, err := Options(cfg)
	require.Error(t, err)
	assert.True(t, errdefs.IsInvalidArgument(err))
	assert.Contains(t, err.Error(), "ScratchSource")
}

func TestReadOnlyBinds(t *testing.T) {
	cfg := validConfig()
	cfg.ReadOnlyBinds = []Bind{{Source: "/usr/libexec/sr/init", Destination: "/.sandbox-runner/init"}}
	s := generate(t, cfg)
	var found bool
	for _, m := range s.Mounts {
		if m.Destination == "/.sandbox-runner/init" {
			found = true
			assert.Equal(t, "/usr/libexec/sr/init", m.Source)
			assert.Subset(t, m.Options, []string{"rbind", "ro", "nosuid", "nodev"})
			assert.NotContains(t, m.Options, "rw")
		}
	}
	assert.True(t, found)

	cfg.ReadOnlyBinds = []Bind{{Source: "relative", Destination: "/x"}}
	_, err := Options(cfg)
	require.Error(t, err)
	assert.True(t, errdefs.IsInvalidArgument(err))
}

func TestOCIVersion(t *testing.T) {
	s := defaultSpec(t)
	ours := s.Version
	require.NotEmpty(t, ours)
	require.NoError(t, apply(t, s, WithOCIVersion("")))
	assert.Equal(t, ours, s.Version, "an empty version keeps containerd's")
	require.NoError(t, apply(t, s, WithOCIVersion("1.0.0")))
	assert.Equal(t, "1.0.0", s.Version)
}

func TestCPUListRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		cpus []int
		list string
	}{
		{nil, ""},
		{[]int{1}, "1"},
		{[]int{0, 1, 2, 3}, "0-3"},
		{[]int{0, 2, 3, 4, 8, 10, 11}, "0,2-4,8,10-11"},
	} {
		assert.Equal(t, tc.list, FormatCPUList(tc.cpus))
		if tc.list != "" {
			got, err := ParseCPUList(tc.list)
			require.NoError(t, err)
			assert.Equal(t, tc.cpus, got)
		}
	}
}

func TestResourcesCPUSetGoesToTheSpecAndIsValidated(t *testing.T) {
	r := Resources{MemoryBytes: 1 << 20, CPUs: 1, Pids: 8, TmpBytes: 1 << 20, CPUSet: []int{1, 3}}
	assert.Equal(t, "1,3", LinuxResources(r).CPU.Cpus)
	r.CPUSet = nil
	assert.Empty(t, LinuxResources(r).CPU.Cpus, "no cpuset named: the cgroup keeps every CPU")
	r.CPUSet = []int{3, 1}
	assert.True(t, errdefs.IsInvalidArgument(r.validateCgroup()))
}
