package oci

import (
	"runtime"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// capabilityGated are syscalls containerd's default profile allows only when
// the bounding set holds the capability named. chroot matters most here:
// CAP_SYS_CHROOT is in containerd's default bounding set, so chroot being
// allowed is how a profile built before the capabilities were dropped shows.
var capabilityGated = map[string]string{
	"chroot":            "CAP_SYS_CHROOT",
	"mount":             "CAP_SYS_ADMIN",
	"umount2":           "CAP_SYS_ADMIN",
	"unshare":           "CAP_SYS_ADMIN",
	"setns":             "CAP_SYS_ADMIN",
	"sethostname":       "CAP_SYS_ADMIN",
	"setdomainname":     "CAP_SYS_ADMIN",
	"fsopen":            "CAP_SYS_ADMIN",
	"open_tree":         "CAP_SYS_ADMIN",
	"bpf":               "CAP_SYS_ADMIN or CAP_BPF",
	"perf_event_open":   "CAP_SYS_ADMIN or CAP_PERFMON",
	"open_by_handle_at": "CAP_DAC_READ_SEARCH",
	"reboot":            "CAP_SYS_BOOT",
	"init_module":       "CAP_SYS_MODULE",
	"finit_module":      "CAP_SYS_MODULE",
	"acct":              "CAP_SYS_PACCT",
	"kcmp":              "CAP_SYS_PTRACE",
	"pidfd_getfd":       "CAP_SYS_PTRACE",
	"iopl":              "CAP_SYS_RAWIO",
	"settimeofday":      "CAP_SYS_TIME",
	"clock_settime":     "CAP_SYS_TIME",
	"vhangup":           "CAP_SYS_TTY_CONFIG",
	"mbind":             "CAP_SYS_NICE",
	"syslog":            "CAP_SYSLOG or CAP_SYS_ADMIN",
}

// allowRules returns, for each syscall name, the allow rules that name it.
func allowRules(p *specs.LinuxSeccomp) map[string][]specs.LinuxSyscall {
	rules := map[string][]specs.LinuxSyscall{}
	for _, sc := range p.Syscalls {
		if sc.Action != specs.ActAllow {
			continue
		}
		for _, n := range sc.Names {
			rules[n] = append(rules[n], sc)
		}
	}
	return rules
}

func TestSeccompDefaultProfile(t *testing.T) {
	p := generate(t, validConfig()).Linux.Seccomp
	require.NotNil(t, p)
	assert.Equal(t, specs.ActErrno, p.DefaultAction)
	assert.NotEmpty(t, p.Architectures)
	assert.Contains(t, allowRules(p), "read", "the profile is an allow-list, not empty")
}

func TestSeccompAdmitsOnlyTheNativeArchitecture(t *testing.T) {
	arch, ok := nativeArch[runtime.GOARCH]
	if !ok {
		t.Skipf("no native seccomp architecture known for %s", runtime.GOARCH)
	}
	p := generate(t, validConfig()).Linux.Seccomp
	require.NotNil(t, p)
	assert.Equal(t, []specs.Arch{arch}, p.Architectures, "compat ABIs (i386, x32, arm) are not admitted")
	assert.Greater(t, len(seccomp.DefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}).Architectures), 1,
		"containerd's own profile admits the compat ABIs, which is what this narrows")
}

func TestSeccompProfileIsTheNoCapabilityOne(t *testing.T) {
	p := generate(t, validConfig()).Linux.Seccomp
	require.NotNil(t, p)
	allowed := allowRules(p)
	for name, capability := range capabilityGated {
		assert.NotContains(t, allowed, name, "%s needs %s, which the task does not have", name, capability)
	}
}

func TestSeccompCloneCannotCreateNamespaces(t *testing.T) {
	p := generate(t, validConfig()).Linux.Seccomp
	require.NotNil(t, p)

	clone := allowRules(p)["clone"]
	require.Len(t, clone, 1)
	require.Len(t, clone[0].Args, 1)
	arg := clone[0].Args[0]
	assert.Equal(t, specs.OpMaskedEqual, arg.Op)
	assert.Zero(t, arg.ValueTwo)
	for _, flag := range []uint64{syscall.CLONE_NEWNS, syscall.CLONE_NEWUSER, syscall.CLONE_NEWNET, syscall.CLONE_NEWPID} {
		assert.NotZero(t, arg.Value&flag, "clone flag %#x must be masked out", flag)
	}

	// clone3's flags live behind a pointer seccomp cannot read, so the
	// no-CAP_SYS_ADMIN profile makes it fail with ENOSYS and libc falls
	// back to clone.
	var clone3 *specs.LinuxSyscall
	for i, sc := range p.Syscalls {
		for _, n := range sc.Names {
			if n == "clone3" {
				clone3 = &p.Syscalls[i]
			}
		}
	}
	require.NotNil(t, clone3)
	assert.Equal(t, specs.ActErrno, clone3.Action)
	require.NotNil(t, clone3.ErrnoRet)
	assert.Equal(t, uint(syscall.ENOSYS), *clone3.ErrnoRet)
}

// The profile depends on when it is built; this proves the test above would
// catch Options running seccomp before the capabilities are dropped.
func TestSeccompBuiltBeforeCapabilityDropAllowsChroot(t *testing.T) {
	s := defaultSpec(t)
	require.Contains(t, s.Process.Capabilities.Bounding, "CAP_SYS_CHROOT")
	require.NoError(t, apply(t, s, seccomp.WithDefaultProfile(), WithNoCapabilities()))
	assert.Contains(t, allowRules(s.Linux.Seccomp), "chroot")
}

func TestSeccompOnSpecWithoutCapabilities(t *testing.T) {
	s := &specs.Spec{}
	require.NoError(t, apply(t, s, WithDefaultSeccomp()))
	require.NotNil(t, s.Linux.Seccomp)
	assert.NotContains(t, allowRules(s.Linux.Seccomp), "mount")
	assert.Nil(t, s.Process, "the seccomp option leaves the process alone")
}
