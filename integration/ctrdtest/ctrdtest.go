// Package ctrdtest starts a private containerd for the integration tests
// and the benchmarks: a child of the test process, which takes it along
// when it dies.
package ctrdtest

import (
	"context"
	"errors"
	"os/exec"
	"syscall"
	"time"

	"github.com/sandbox-runner/sandbox-runner/runner/host"
)

// Daemon is a containerd this process started; Stop ends it.
type Daemon struct {
	*host.Daemon
	cmd    *exec.Cmd
	exited <-chan error
}

// StartDaemon starts a containerd in dir (its config, root, state, socket
// and log all under it) as a child of this process, and waits until it
// serves. SANDBOX_RUNNER_CONTAINERD_BIN picks the binary, as for the
// runner's own private containerd.
func StartDaemon(ctx context.Context, dir string) (*Daemon, error) {
	d := host.NewDaemon(dir)
	cmd, exited, err := d.Start(ctx, func(c *exec.Cmd) {
		// A harness that dies takes its daemon with it.
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	})
	if err != nil {
		return nil, err
	}
	return &Daemon{Daemon: d, cmd: cmd, exited: exited}, nil
}

// Stop ends the daemon: SIGTERM, then SIGKILL after a grace period. The
// tasks' shims outlive it, as they would any containerd restart; delete
// the tasks first.
func (d *Daemon) Stop() error {
	if d == nil || d.cmd == nil {
		return errors.New("daemon was not started by this process")
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
	return nil
}
