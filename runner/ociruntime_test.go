package runner

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	runc "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
)

// Mount tables as this kind of host has them.
const (
	mountsHybrid = `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
`
	mountsUnified = `25 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
`
	mountsLegacy = `31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
`
	versionCrun  = "crun version 1.8.1\ncommit: f8a096be\nrundir: /run/crun\nspec: 1.0.0\n+SYSTEMD +SELINUX +APPARMOR +CAP +SECCOMP +EBPF +YAJL\n"
	versionRunc  = "runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\nspec: 1.0.2-dev\ngo: go1.19.8\nlibseccomp: 2.5.4\n"
	versionRunsc = "runsc version release-20221219.0\nspec: 1.1.0-rc.1\n"
)

// fakeHost is a host with the given binaries (name -> --version output)
// and files.
func fakeHost(bins map[string]string, files map[string]string) probe {
	return probe{
		lookPath: func(name string) (string, error) {
			if _, ok := bins[name]; ok {
				return "/usr/bin/" + name, nil
			}
			return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
		},
		version: func(path string) ([]byte, error) {
			return []byte(bins[strings.TrimPrefix(path, "/usr/bin/")]), nil
		},
		readFile: func(name string) ([]byte, error) {
			if c, ok := files[name]; ok {
				return []byte(c), nil
			}
			return nil, fs.ErrNotExist
		},
	}
}

var allBins = map[string]string{"crun": versionCrun, "runc": versionRunc, "runsc": versionRunsc, runscShimBinary: ""}

func hybrid(controllers string) map[string]string {
	return map[string]string{"/proc/self/mountinfo": mountsHybrid, "/sys/fs/cgroup/unified/cgroup.controllers": controllers}
}

func TestCrunRefusedOnHybridHostWithCgroup2Controllers(t *testing.T) {
	p := fakeHost(allBins, hybrid("hugetlb\n"))
	rt := p.find("crun")
	assert.False(t, rt.Usable)
	assert.Contains(t, rt.Reason, "hybrid")
	assert.Contains(t, rt.Reason, "hugetlb")
	assert.Contains(t, rt.Fix, "mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb")
	assert.Equal(t, "crun version 1.8.1", rt.Version)

	o, err := newOCIRuntimes(p, "", nil)
	require.NoError(t, err)
	def, err := o.Default()
	require.NoError(t, err)
	assert.Equal(t, "runc", def.Name, "with crun unusable, runc is the default")
}

func TestCrunUsableOnceCgroup2HoldsNoController(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"hybrid, hugetlb moved": hybrid("\n"),
		"unified":               {"/proc/self/mountinfo": mountsUnified},
		"legacy":                {"/proc/self/mountinfo": mountsLegacy},
	} {
		t.Run(name, func(t *testing.T) {
			p := fakeHost(allBins, files)
			rt := p.find("crun")
			assert.True(t, rt.Usable, rt.Reason)
			o, err := newOCIRuntimes(p, "", nil)
			require.NoError(t, err)
			def, err := o.Default()
			require.NoError(t, err)
			assert.Equal(t, "crun", def.Name, "crun is the fastest, so the default")
		})
	}
}

func TestCrunUnusableWhenCgroupsCannotBeRead(t *testing.T) {
	rt := fakeHost(allBins, map[string]string{"/proc/self/mountinfo": mountsHybrid}).find("crun")
	assert.False(t, rt.Usable)
	assert.Contains(t, rt.Reason, "cannot tell")
}

func TestSpecVersionFollowsTheRuntime(t *testing.T) {
	p := fakeHost(allBins, hybrid(""))
	crun := p.find("crun")
	assert.Equal(t, "1.0.0", crun.SpecVersion)
	assert.Equal(t, "1.0.0", crun.ociVersion(), "crun 1.8.1 refuses containerd's %s", specs.Version)
	runc := p.find("runc")
	assert.Equal(t, "1.0.2-dev", runc.ociVersion())
	assert.Empty(t, OCIRuntime{SpecVersion: "9.0.0"}.ociVersion(), "a newer runtime keeps containerd's version")
	assert.Empty(t, OCIRuntime{}.ociVersion())
}

func TestVersionLess(t *testing.T) {
	assert.True(t, versionLess("1.0.0", "1.3.0"))
	assert.True(t, versionLess("1.0.2-dev", "1.1.0"))
	assert.False(t, versionLess("1.3.0", "1.3.0"))
	assert.False(t, versionLess("1.10.0", "1.9.0"))
}

func TestMissingOrSeccomplessRuntimesAreUnusable(t *testing.T) {
	p := fakeHost(map[string]string{"runc": "runc version 1.1.5\nspec: 1.0.2-dev\n", "crun": "crun version 1.8.1\n+CAP\n"}, hybrid(""))
	for _, name := range []string{"runc", "crun"} {
		rt := p.find(name)
		assert.False(t, rt.Usable, name)
		assert.Contains(t, rt.Reason, "without seccomp", name)
	}
	rt := p.find("runsc")
	assert.False(t, rt.Usable)
	assert.Equal(t, "runsc is not on PATH", rt.Reason)
	assert.Contains(t, rt.Fix, "make gvisor")

	o, err := newOCIRuntimes(p, "", nil)
	require.NoError(t, err)
	_, err = o.Default()
	assert.ErrorIs(t, err, ErrSandboxUnavailable)
}

func TestShimOptionsNameTheBinary(t *testing.T) {
	assert.Nil(t, OCIRuntime{}.shimOptions(""), "the zero runtime keeps the shim's own runc")
	opts, ok := fakeHost(allBins, hybrid("")).find("crun").shimOptions("").(*runc.Options)
	require.True(t, ok)
	assert.Equal(t, "/usr/bin/crun", opts.BinaryName)
}

func TestOCIRuntimeChoice(t *testing.T) {
	p := fakeHost(allBins, hybrid(""))
	o, err := newOCIRuntimes(p, "", map[string]OCIRuntimeRule{
		"python": {Default: "runsc"},
		"node":   {Allowed: []string{"runsc", "runc"}},
	})
	require.NoError(t, err)
	for _, c := range []struct{ task, runtime, want string }{
		{"", "sh", "crun"},
		{"runc", "sh", "runc"},
		{"runsc", "sh", "runsc"},
		{"", "python", "runsc"},
		{"runsc", "python", "runsc"},
		{"", "node", "runsc"},
		{"runc", "node", "runc"},
	} {
		rt, err := o.For(c.task, c.runtime)
		if assert.NoError(t, err, "%+v", c) {
			assert.Equal(t, c.want, rt.Name, "%+v", c)
		}
	}

	_, err = o.For("kata", "sh")
	assert.ErrorIs(t, err, ErrInvalidTask)
	assert.ErrorIs(t, err, errdefs.ErrInvalidArgument)
	assert.EqualError(t, err, `unknown OCI runtime "kata": give one of crun, runc, runsc (usable here)`)

	_, err = o.For("runc", "python")
	assert.ErrorIs(t, err, ErrInvalidTask)
	assert.EqualError(t, err, "OCI runtime runc is not allowed for runtime python by the configuration: give one of runsc")
	_, err = o.For("crun", "node")
	assert.ErrorIs(t, err, ErrInvalidTask)
}

func TestUnusableOCIRuntimeIsBadInput(t *testing.T) {
	o, err := newOCIRuntimes(fakeHost(allBins, hybrid("hugetlb")), "", nil)
	require.NoError(t, err)
	_, err = o.For("crun", "sh")
	assert.ErrorIs(t, err, ErrInvalidTask)
	assert.ErrorContains(t, err, "OCI runtime crun cannot run tasks on this host")
	assert.ErrorContains(t, err, "mount -t cgroup -o hugetlb")
	assert.ErrorContains(t, err, "usable here: runc, runsc")
}

func TestConfiguredOCIRuntimesAreCheckedUpFront(t *testing.T) {
	p := fakeHost(allBins, hybrid("hugetlb"))
	for _, c := range []struct {
		def   string
		rules map[string]OCIRuntimeRule
		want  string
	}{
		{"kata", nil, `default OCI runtime: unknown OCI runtime "kata"`},
		{"crun", nil, "default OCI runtime crun cannot run tasks on this host"},
		{"", map[string]OCIRuntimeRule{"python": {Default: "crun"}}, "runtime python crun cannot run tasks"},
		{"", map[string]OCIRuntimeRule{"python": {Allowed: []string{"gvisor"}}}, `runtime python: unknown OCI runtime "gvisor"`},
		{"", map[string]OCIRuntimeRule{"python": {Default: "runc", Allowed: []string{"runsc"}}}, "its OCI runtime runc is not among those it allows"},
	} {
		_, err := newOCIRuntimes(p, c.def, c.rules)
		assert.ErrorIs(t, err, ErrInvalidTask, "%+v", c)
		assert.ErrorContains(t, err, c.want)
	}
	o, err := newOCIRuntimes(p, "runc", nil)
	require.NoError(t, err)
	def, err := o.Default()
	require.NoError(t, err)
	assert.Equal(t, "runc", def.Name)
}

func TestOCIRuntimesLookOnce(t *testing.T) {
	p := fakeHost(allBins, hybrid(""))
	calls := 0
	version := p.version
	p.version = func(path string) ([]byte, error) { calls++; return version(path) }
	o, err := newOCIRuntimes(p, "", nil)
	require.NoError(t, err)
	for range 3 {
		_, err := o.For("", "sh")
		require.NoError(t, err)
	}
	assert.Equal(t, 1, calls, "only crun, the default, is looked at, and once")
}

func TestValidateOCIRuntime(t *testing.T) {
	o, err := newOCIRuntimes(fakeHost(allBins, hybrid("")), "", map[string]OCIRuntimeRule{"python": {Default: "runsc"}})
	require.NoError(t, err)
	cat := images.DefaultCatalog()
	assert.NoError(t, o.ValidateOCIRuntime(Task{Runtime: "python"}, cat))
	err = o.ValidateOCIRuntime(Task{Runtime: "python", OCIRuntime: "runc"}, cat)
	assert.True(t, errors.Is(err, ErrInvalidTask), "%v", err)
}

func TestRunscNeedsGVisorsShim(t *testing.T) {
	// Debian's runsc package alone: runsc, no shim.
	rt := fakeHost(map[string]string{"runsc": versionRunsc}, hybrid("")).find("runsc")
	assert.False(t, rt.Usable)
	assert.Equal(t, "runsc version release-20221219.0", rt.Version)
	assert.Contains(t, rt.Reason, "containerd-shim-runsc-v1 is not on PATH")
	assert.Contains(t, rt.Reason, "Debian's runsc packages do not ship it")
	assert.Contains(t, rt.Fix, "make gvisor")
	assert.Contains(t, rt.Fix, "containerd's PATH")

	rt = fakeHost(allBins, hybrid("")).find("runsc")
	require.True(t, rt.Usable, rt.Reason)
	assert.Equal(t, "/usr/bin/containerd-shim-runsc-v1", rt.Shim)
	assert.Equal(t, "/usr/bin/runsc", rt.Path)
}

func TestRunscRunsUnderGVisorsShim(t *testing.T) {
	p := fakeHost(allBins, hybrid(""))
	runsc, crun := p.find("runsc"), p.find("crun")
	assert.Equal(t, RunscShim, runsc.shim())
	assert.Equal(t, DefaultShim, crun.shim())

	opts, ok := runsc.shimOptions("/var/lib/sandbox-runner/runsc.toml").(*runtimeoptions.Options)
	require.True(t, ok, "gVisor's shim reads CRI's runtime options")
	assert.Equal(t, "/var/lib/sandbox-runner/runsc.toml", opts.ConfigPath)

	config := string(runsc.runscConfig())
	assert.Contains(t, config, `binary_name = "/usr/bin/runsc"`)
	assert.Contains(t, config, `network = "none"`, "loopback only, never the host's network")
	assert.Contains(t, config, `oci-seccomp = "true"`, "the spec's seccomp profile applies inside gVisor too")

	spec := &specs.Spec{}
	for _, opt := range runsc.specOpts() {
		require.NoError(t, opt(t.Context(), nil, nil, spec))
	}
	assert.Equal(t, "sandbox", spec.Annotations["io.kubernetes.cri.container-type"], "gVisor's shim gives stdio only to a sandbox's root")
	spec = &specs.Spec{}
	for _, opt := range crun.specOpts() {
		require.NoError(t, opt(t.Context(), nil, nil, spec))
	}
	assert.Empty(t, spec.Annotations)

	assert.Equal(t, int64(32+runscPidsOverhead), runsc.hostPids(32))
	assert.Equal(t, int64(32), crun.hostPids(32))
}
