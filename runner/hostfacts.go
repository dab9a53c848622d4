package runner

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// SeccompAvailable returns nil when the kernel can confine tasks with
// seccomp filters, and an ErrSandboxUnavailable error saying so otherwise.
func SeccompAvailable() error {
	// The filter mode exists when /proc/sys/kernel/seccomp/actions_avail
	// lists its actions (Linux 4.14+); PR_GET_SECCOMP fails with EINVAL on
	// kernels built without seccomp at all.
	if _, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("%w: the kernel has no seccomp (CONFIG_SECCOMP): refusing to run tasks unconfined", ErrSandboxUnavailable)
	}
	b, err := os.ReadFile("/proc/sys/kernel/seccomp/actions_avail")
	if err != nil || len(b) == 0 {
		return fmt.Errorf("%w: the kernel has no seccomp filters (CONFIG_SECCOMP_FILTER): refusing to run tasks unconfined", ErrSandboxUnavailable)
	}
	return nil
}

func readHostFacts() (hostFacts, error) {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return hostFacts{}, fmt.Errorf("reading host memory: %w", err)
	}
	return hostFacts{cpus: runtime.NumCPU(), memory: int64(si.Totalram) * int64(si.Unit)}, nil
}
