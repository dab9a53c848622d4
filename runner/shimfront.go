package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ShimName is the file name of the shim binary containerd runs for the
// runner's crun and runc sandboxes: containerd's runc shim, but for the
// cleanup containerd runs after every shim's connection closes, which it
// answers itself when the sandbox is gone (cmd/sandbox-runner-shim). It is
// installed beside the init.
const ShimName = "sandbox-runner-shim"

// findShimFront returns the sandbox-runner-shim beside init, or "" and why
// it cannot be used. containerd runs it as root, so it is used only when
// nobody but root can change it or its directory.
func findShimFront(init string) (string, error) {
	path := filepath.Join(filepath.Dir(init), ShimName)
	for _, p := range []string{path, filepath.Dir(path)} {
		st, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("no %s beside the init: build it with `make build` or install it with `make install`", ShimName)
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok {
			return "", fmt.Errorf("%s: no owner to check", p)
		}
		if sys.Uid != 0 || st.Mode().Perm()&0o022 != 0 {
			return "", fmt.Errorf("%s: containerd would run it as root, but someone other than root may change it (owner uid %d, mode %v): make root its owner and the only one who can write it", p, sys.Uid, st.Mode().Perm())
		}
		if p == path && !st.Mode().IsRegular() {
			return "", fmt.Errorf("%s is not a regular file", p)
		}
	}
	return path, nil
}

// shimFor is the containerd runtime (shim) of o's sandboxes: the runner's
// shim front for containerd's runc shim, when there is one.
func (r *Runner) shimFor(o OCIRuntime) string {
	if s := o.shim(); s != DefaultShim || r.shimFront == "" {
		return s
	}
	return r.shimFront
}
