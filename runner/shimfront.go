package runner

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"google.golang.org/grpc"
)

// ShimName is the file name of the shim binary containerd runs for the
// runner's crun and runc sandboxes: containerd's runc shim, but for two
// calls it answers itself (cmd/sandbox-runner-shim): the cleanup
// containerd runs after every shim's connection closes, when the sandbox
// is gone, and the start of a sandbox joining a running shim group. It is
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

// The annotations that let sandbox-runner-shim answer the start of a
// sandbox joining a running shim group itself: the group's socket, and
// the containerd address it was computed from, which the shim checks
// against the one containerd gives it.
const (
	annotationShimSocket  = "io.sandbox-runner/shim-socket"
	annotationShimAddress = "io.sandbox-runner/shim-address"
)

// shimSocketDir is where the runc shim puts its sockets (containerd's
// default state dir, then "s").
const shimSocketDir = "/run/containerd/s"

// groupAnnotations are the spec annotations of a sandbox in shim group:
// the runc shim's group, and, when the runner knows containerd's address,
// the group's socket as the runc shim computes it (SocketAddress: the
// SHA-256 of the address, the namespace and the group).
func (r *Runner) groupAnnotations(group string) map[string]string {
	a := map[string]string{shimGroupAnnotation: group}
	if r.ctrdAddress != "" && r.shimAnswersPlainAddress() {
		d := sha256.Sum256([]byte(filepath.Join(r.ctrdAddress, r.opts.namespace, group)))
		a[annotationShimAddress] = r.ctrdAddress
		a[annotationShimSocket] = fmt.Sprintf("unix://%s/%x", shimSocketDir, d)
	}
	return a
}

// shimAnswersPlainAddress tells whether a shim's start answers with its
// address alone, which sandbox-runner-shim answers with for a group it
// joins: containerd 1.x's shims do, as containerd 1.x expects (the task
// API v2). containerd 2.x's runc shim answers with a bootstrap message
// and serves the task API v3 alone; under containerd 2.x the runner does
// not name the group's socket, and every start goes to the runc shim.
// containerd is asked once.
func (r *Runner) shimAnswersPlainAddress() bool {
	r.plainShimOnce.Do(func() {
		if r.client == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		v, err := r.client.Version(ctx)
		if err != nil {
			r.opts.log.Warn("asking containerd its version; sandboxes joining a shim group start through the runc shim", "error", err)
			return
		}
		r.plainShim = containerdMajor(v.Version) == "1"
	})
	return r.plainShim
}

// containerdMajor is the major version of containerd version v ("1.6.20~ds1",
// "v2.4.2").
func containerdMajor(v string) string {
	major, _, _ := strings.Cut(strings.TrimPrefix(v, "v"), ".")
	return major
}

// containerdAddress is the socket path c dials, or "" when it is not a
// unix socket the client dialed itself.
func containerdAddress(c *client.Client) string {
	if c == nil {
		return ""
	}
	conn, ok := c.Conn().(*grpc.ClientConn)
	if !ok {
		return ""
	}
	path, ok := strings.CutPrefix(conn.Target(), "unix://")
	if !ok || !filepath.IsAbs(path) {
		return ""
	}
	return path
}
