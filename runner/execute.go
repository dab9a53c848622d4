package runner

import (
	"context"
	"fmt"
	"log/slog"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/sandbox-runner/sandbox-runner/runner/initcmd"
)

// execute starts a claimed sandbox, enforces its timeout and the caller's
// cancellation, and reads its verdict, usage and output.
func (r *Runner) execute(ctx context.Context, log *slog.Logger, c *sandbox, timeout time.Duration) (*Stage, error) {
	task, st := c.task, c.streams
	if st.stdin != nil {
		done := make(chan struct{})
		defer close(done)
		// The shim holds the task's end of stdin open until told to close
		// it, so the task sees end-of-file only through CloseIO.
		go func() {
			select {
			case <-st.stdin.eof:
				_ = task.CloseIO(context.WithoutCancel(ctx), client.WithStdinCloser)
			case <-done:
			}
		}()
	}

	// Wait before Start, so not even an instant exit is missed; on a
	// context the caller cannot cancel, so the exit is still seen after
	// a cancellation kills the task.
	exitC, err := task.Wait(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("waiting on task: %w", err)
	}
	// The CPU-time budget counts from the start: a pooled sandbox's
	// making is not the task's.
	var cpu *cpuWatch
	if c.limits.CPUTime > 0 {
		if cpu, err = newCPUWatch(r.cgroupPath(c.spec.id), c.limits.CPUTime, r.host.cpus, task.Pid()); err != nil {
			return nil, err
		}
		defer cpu.close()
	}
	start := time.Now()
	stage := &Stage{}
	if err := c.start(ctx); err != nil {
		if ended(ctx) == nil {
			if shimGone(context.WithoutCancel(ctx), task) {
				return nil, fmt.Errorf("%w: the task's shim died while the task was started, so its outcome is unknown; containerd removed the task: %w", ErrShimLost, err)
			}
			return nil, fmt.Errorf("starting task: %w", err)
		}
		// The caller gave up while the task was being started: the
		// start may have gone through with only its answer lost, so the
		// task is killed and reported cancelled like any other.
		stage.Cancelled = true
	}
	// A sandbox started ahead: its init writes its exit status into the
	// status FIFO as it exits, milliseconds before the shim has reaped it
	// and containerd passed the exit on.
	var statusC <-chan int
	if c.status != nil {
		statusC = readStatus(c.status)
	}
	fromInit := false

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	// An interactive caller's signals reach the task while it runs.
	defer forwardSignals(ctx, log, task, c.spec.id)()
	var status client.ExitStatus
	exited := false
	for waiting := !stage.Cancelled; waiting; {
		waiting = false
		select {
		case status = <-exitC:
			exited = true
		case code, ok := <-statusC:
			statusC = nil
			if !ok {
				// The init ended without a word: killed, or a shim's
				// cleanup killed it. containerd's exit tells.
				waiting = true
				break
			}
			status = *client.NewExitStatus(uint32(code), time.Now(), nil)
			exited, fromInit = true, true
		case <-timer.C:
			stage.TimedOut = true
		case <-ctx.Done():
			stage.Cancelled = true
		case <-cpu.C():
			if !cpu.check() {
				waiting = true
				break
			}
			stage.CPUTimeExceeded = true
			log.Info("CPU-time limit passed", "container", c.spec.id, "limit", c.limits.CPUTime, "used", cpu.used, "before_start", cpu.base)
			// Killed at once, by this process: the kill below goes
			// through the runtime, which takes tens of milliseconds
			// the task would spend running.
			if err := cpu.kill(); err != nil {
				log.Warn("killing the task at its CPU-time limit", "container", c.spec.id, "error", err)
			}
		}
	}
	if exited {
		// The init kills the task itself initGrace after the deadline;
		// it wins only when this process was held up.
		stage.TimedOut = status.ExitCode() == initcmd.ExitDeadline && time.Since(start) >= timeout
	} else {
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killWait)
		status, err = killAll(kctx, task, exitC)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	stage.Duration = time.Since(start)
	if err := status.Error(); err != nil {
		if unavailable(err) {
			return nil, fmt.Errorf("lost containerd while the task ran, so its outcome is unknown; it is killed and removed once containerd is back: %w", err)
		}
		if shimGone(context.WithoutCancel(ctx), task) {
			// The exit containerd reports is its cleanup's, not the
			// task's.
			return nil, fmt.Errorf("%w: the task's shim died while the task ran, so its outcome is unknown; containerd removed the task: %w", ErrShimLost, err)
		}
		return nil, fmt.Errorf("waiting on task: %w", err)
	}
	c.exited = true
	if fromInit {
		c.pendingExit = exitC
	}

	// The counters live in the task's cgroup, which goes with the task.
	afterExit := time.Now()
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killWait)
	var oomKills uint64
	var usage Usage
	// Straight from the cgroup, where this process can see it: the
	// shim's metrics are the same counters a round trip away (two, with
	// containerd), and gVisor's shim reports none once the task exited.
	oomKills, usage, err = readCgroupUsage(r.cgroupPath(c.spec.id))
	if err != nil && c.spec.oci.Name != OCIRuntimeRunsc {
		oomKills, usage, err = readUsage(mctx, task)
	}
	cancel()
	if err != nil {
		log.Warn("reading task usage", "container", c.spec.id, "error", err)
	}
	stage.Usage = usage
	if cpu != nil && err == nil && !stage.TimedOut && !stage.Cancelled && cpu.over(usage.CPU) {
		// Exited between two polls, past its limit: judged by what it used.
		stage.CPUTimeExceeded = true
	}
	stage.PidsLimitHit = pidsLimitHit(r.cgroupPath(c.spec.id))
	drain(task.IO(), drainWait)
	if fromInit {
		// The output came through the shim: a shim that died before
		// the copy was done lost part of it, which containerd's exit
		// would have said. It is the task's shim while it runs.
		if _, alive := c.shim.running(); !alive {
			return nil, fmt.Errorf("%w: the task's shim died as the task ended, so its output may be cut short", ErrShimLost)
		}
	}

	stage.Stdout.Data, stage.Stdout.Dropped = st.stdout.result()
	stage.Stderr.Data, stage.Stderr.Dropped = st.stderr.result()
	stage.OutputTruncated = stage.Stdout.Truncated() || stage.Stderr.Truncated()
	classify(stage, int(status.ExitCode()), oomKills)
	log.Info("stage done", "container", c.spec.id, "outcome", stage.Outcome, "exit_code", stage.ExitCode, "duration", stage.Duration,
		"after_exit", time.Since(afterExit))
	return stage, nil
}

// cgroupPath is the task's cgroup, as containerd would name it, set
// explicitly so the runner can read counters containerd does not report.
func (r *Runner) cgroupPath(id string) string {
	return "/" + r.opts.namespace + "/" + id
}

// classify sets the outcome, exit code and signal from the exit status.
func classify(res *Stage, code int, oomKills uint64) {
	res.ExitCode = code
	if code > 128 && code < 128+65 {
		res.Signal = unix.SignalName(syscall.Signal(code - 128))
	}
	res.OOMKilled = oomKills > 0
	switch {
	case res.TimedOut:
		res.Outcome, res.ExitCode = OutcomeTimedOut, ExitTimedOut
	case res.Cancelled:
		res.Outcome, res.ExitCode = OutcomeCancelled, ExitCancelled
	case res.CPUTimeExceeded:
		res.Outcome, res.ExitCode = OutcomeCPUTimeExceeded, ExitCPUTimeExceeded
	case res.OOMKilled && code == 128+int(syscall.SIGKILL):
		res.Outcome = OutcomeOOMKilled
	case res.Signal != "":
		res.Outcome = OutcomeSignaled
	default:
		res.Outcome = OutcomeExited
	}
}

// killAll sends SIGKILL to every process of the task and waits for the
// exit. The task has its own pid namespace, so killing its init would do;
// killing all of them also covers a runtime that shares one.
func killAll(ctx context.Context, task client.Task, exitC <-chan client.ExitStatus) (client.ExitStatus, error) {
	if err := task.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		// The task may have exited just now; the exit tells.
		select {
		case st := <-exitC:
			return st, nil
		default:
		}
		return client.ExitStatus{}, fmt.Errorf("killing task: %w", err)
	}
	select {
	case st := <-exitC:
		return st, nil
	case <-ctx.Done():
		return client.ExitStatus{}, fmt.Errorf("task did not exit after SIGKILL: %w", ctx.Err())
	}
}

// drain waits up to d for the output copiers to finish, then closes the
// pipes, so a wedged shim can never hang the runner.
func drain(iop cio.IO, d time.Duration) {
	if iop == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		iop.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		iop.Cancel()
		iop.Close()
	}
}

// shimGoneWait bounds how long shimGone waits for containerd to notice a
// dead shim.
const shimGoneWait = 2 * time.Second

// shimGone tells whether task went with its shim: containerd, told by the
// shim's socket closing, removes the task, which takes it a moment.
func shimGone(ctx context.Context, task client.Task) bool {
	deadline := time.Now().Add(shimGoneWait)
	for {
		_, err := task.Status(ctx)
		switch {
		case err == nil:
			return false
		case errdefs.IsNotFound(err):
			return true
		case unavailable(err) || !time.Now().Before(deadline):
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
}
