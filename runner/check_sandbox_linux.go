package runner

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// checkInit reports where the init of every sandbox is, or why there is
// none.
func checkInitFinding() Finding {
	path, err := FindInit()
	if err == nil {
		err = checkInit(path)
	}
	if err != nil {
		return Finding{Name: "init", Detail: err.Error(),
			Fix: "run `make build` (next to bin/sandbox-runner) or `make install`, or set init in the config"}
	}
	return Finding{Name: "init", OK: true, Detail: path}
}

// checkShimFinding reports which shim binary containerd runs for crun and
// runc sandboxes: sandbox-runner-shim beside the init, or, with a warning,
// containerd's runc shim itself.
func checkShimFinding() Finding {
	f := Finding{Name: "shim", OK: true}
	init, err := FindInit()
	if err == nil {
		var path string
		if path, err = findShimFront(init); err == nil {
			f.Detail = path + ", in front of containerd's runc shim"
			return f
		}
	}
	f.Warning = true
	f.Detail = "containerd's runc shim, run directly: each sandbox's teardown takes about 30 ms more (" + err.Error() + ")"
	f.Fix = "run `make build` (next to bin/sandbox-runner) or `make install`"
	return f
}

// checkOOMScore reports whether this process can make a task's OOM score
// adjustment a floor the task cannot lower: that takes CAP_SYS_RESOURCE.
// Without it tasks still start at 1000, first in line when the host runs
// out of memory, but may lower it: a warning, not a failure.
func checkOOMScore() Finding {
	f := Finding{Name: "oom score", OK: true}
	if hasCapability(unix.CAP_SYS_RESOURCE) {
		f.Detail = "tasks get oom_score_adj 1000, which they cannot lower"
		return f
	}
	f.Warning = true
	f.Detail = "tasks get oom_score_adj 1000 but can lower it: this process lacks CAP_SYS_RESOURCE, which makes it a floor"
	f.Fix = "run sandbox-runner as root with CAP_SYS_RESOURCE (the systemd units grant it)"
	return f
}

// hasCapability tells whether this process has capability c in its
// effective set.
func hasCapability(c int) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "CapEff:"); ok {
			eff, err := strconv.ParseUint(strings.TrimSpace(rest), 16, 64)
			return err == nil && eff&(1<<uint(c)) != 0
		}
	}
	return false
}
