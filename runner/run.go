package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	"github.com/sandbox-runner/sandbox-runner/oci"
	"github.com/sandbox-runner/sandbox-runner/runner/initcmd"
)

// Run runs t in a fresh container and returns what happened. An error
// means the runner could not run the task or lost track of it; whatever
// the task itself did (exit codes, timeouts, OOM kills, compile errors,
// the caller's cancellation) is a Result. Run removes everything it
// created before it returns, in every case.
func (r *Runner) Run(ctx context.Context, t Task) (*Result, error) {
	p, err := prepare(t, r.opts.catalog, r.host)
	if err != nil {
		return nil, err
	}
	if p.oci, err = r.opts.oci.For(t.OCIRuntime, p.runtime.Name); err != nil {
		return nil, err
	}
	res, err := r.run(ctx, t, p)
	return res, withEnded(ctx, err)
}

// ended returns ctx's error once it has ended, and also once its deadline
// has passed but the timer that ends it has not fired yet: containerd and
// the shim hold copies of the deadline, and their "context deadline
// exceeded", which arrives as a plain error, can beat that timer.
func ended(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// withEnded makes an error that came while ctx ended carry ctx's error,
// so that a caller can tell its own cancellation from a failure.
func withEnded(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	cerr := ended(ctx)
	if cerr == nil || errors.Is(err, cerr) {
		return err
	}
	return fmt.Errorf("%w (%w)", err, cerr)
}

// run is Run for a task already prepared as p: a sandbox per stage, each
// made and claimed at once.
func (r *Runner) run(ctx context.Context, t Task, p *prepared) (*Result, error) {
	ctx = namespaces.WithNamespace(ctx, r.opts.namespace)
	log := r.opts.log.With("task", p.id, "runtime", p.runtime.Name)

	info, err := r.image(ctx, p.image, t.Pull)
	if err != nil {
		return nil, err
	}
	dir, err := r.newTaskDir(p.id)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := dir.remove(); err != nil {
			log.Error("cleanup failed", "error", err)
		}
	}()
	if err := dir.writeCode(p.files); err != nil {
		return nil, err
	}

	res := &Result{ID: p.id, Runtime: p.runtime.Name, Image: p.image, OCIRuntime: p.oci.Name}
	spec := sandboxSpec{id: p.id, task: p.id, dir: dir, image: p.image, img: info.img, limits: p.limits, oci: p.oci, groups: p.groups}
	env := taskEnv(info.env, p.env)
	if p.compile != nil || len(p.outputs) > 0 {
		// The stages share /tmp: a tmpfs of the task's size, mounted on
		// the host so it outlives the compile stage's container, and the
		// run stage's, whose files are returned.
		if err := dir.mountScratch(p.limits.TmpSize); err != nil {
			return nil, err
		}
		spec.scratch = true
	}
	if p.compile != nil {
		cspec := spec
		cspec.id = p.id + compileSuffix
		// The compile stage has its own memory limit: compilers need
		// more than the programs they build.
		cspec.limits.Memory = p.limits.CompileMemory
		// The CPU-time limit is the run stage's: a compiler is bounded by
		// the compile timeout.
		cspec.limits.CPUTime = 0
		compile, err := r.runStage(ctx, log, cspec, initcmd.Command{Args: p.compile, Env: env},
			p.limits.CompileTimeout, nil, t.Stdout, t.Stderr)
		if err != nil {
			return nil, fmt.Errorf("compile stage: %w", err)
		}
		res.Compile = compile
		if compile.Outcome != OutcomeExited || compile.ExitCode != 0 {
			res.Outcome, res.ExitCode = OutcomeCompileFailed, compile.ExitCode
			// A compiler killed for memory is said so at the top level
			// too, even when its driver (g++) exited with an error.
			res.OOMKilled, res.PidsLimitHit = compile.OOMKilled, compile.PidsLimitHit
			if compile.Cancelled {
				res.Outcome, res.Cancelled = OutcomeCancelled, true
			}
			log.Info("compile failed", "outcome", compile.Outcome, "exit_code", compile.ExitCode)
			return res, nil
		}
	}
	run, err := r.runStage(ctx, log, spec, initcmd.Command{Args: p.args, Env: env},
		p.limits.Timeout, t.Stdin, t.Stdout, t.Stderr)
	if err != nil {
		return nil, err
	}
	res.Stage = *run
	if len(p.outputs) > 0 {
		// The run stage's sandbox is gone: nothing writes to /tmp now.
		if res.Files, res.FilesTruncated, err = collectOutputs(dir.scratch(), p.outputs, p.limits); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// compileSuffix names a task's compile-stage container.
const compileSuffix = ".compile"

// runStage runs one stage of a task in a sandbox made for it and claimed
// at once, and removes the sandbox before it returns.
func (r *Runner) runStage(ctx context.Context, log *slog.Logger, spec sandboxSpec, cmd initcmd.Command,
	timeout time.Duration, stdin io.Reader, stdout, stderr io.Writer) (*Stage, error) {
	s, leave, err := r.newGroupedSandbox(ctx, log, spec)
	if err != nil {
		return nil, err
	}
	defer s.destroy(ctx, log)
	// Before the sandbox goes: its group then takes no new sandbox, so
	// none joins a shim about to exit with its last one.
	defer leave()
	if err := s.claim(ctx, taskCommand(cmd, timeout), spec.limits, stdin, stdout, stderr); err != nil {
		return nil, err
	}
	return r.execute(ctx, log, s, timeout)
}

// shimGrouper hands sandboxes shim groups to join: several sandboxes
// served by one runc shim process, which saves starting one per sandbox.
type shimGrouper interface {
	// join returns the annotations that make a sandbox under o join a
	// group, leave, to call before that sandbox is removed, and, for the
	// group's first sandbox, started, to call once it is made or failed
	// to be (the others wait for it in join); nil annotations for a shim
	// of its own.
	join(ctx context.Context, o OCIRuntime) (annotations map[string]string, leave func(), started func(ok bool))
}

// newGroupedSandbox is newSandbox, in a shim group when spec.groups gives
// one. A sandbox that fails to join its group (its shim died) is made
// again with a shim of its own: a task does not fail for a group.
func (r *Runner) newGroupedSandbox(ctx context.Context, log *slog.Logger, spec sandboxSpec) (*sandbox, func(), error) {
	leave, started := func() {}, func(bool) {}
	if spec.groups != nil {
		if annotations, l, st := spec.groups.join(ctx, spec.oci); annotations != nil {
			spec.annotations, leave = annotations, l
			if st != nil {
				started = st
			}
		}
	}
	s, err := r.newSandbox(ctx, log, spec)
	started(err == nil)
	if err != nil && spec.annotations != nil && ended(ctx) == nil {
		leave()
		log.Warn("making a sandbox in a shim group failed; making it with a shim of its own", "container", spec.id, "error", err)
		spec.annotations, leave = nil, func() {}
		s, err = r.newSandbox(ctx, log, spec)
	}
	if err != nil {
		leave()
		return nil, nil, err
	}
	return s, leave, nil
}

// initGrace is how long after the runner's own deadline the init kills
// the task itself: the runner's kill comes first and the verdict is the
// runner's, unless no runner is alive to give it.
const initGrace = 250 * time.Millisecond

// taskCommand is cmd as the init runs it: in /tmp, killed by the init
// itself initGrace after the stage's timeout.
func taskCommand(cmd initcmd.Command, timeout time.Duration) initcmd.Command {
	cmd.Dir = oci.ScratchDir
	cmd.Deadline = timeout + initGrace
	return cmd
}

// taskEnv is the task's whole environment: the image's, then the
// runtime's and the task's, with a PATH and a HOME when none is set (the
// task's uid has no home in the image's /etc/passwd).
func taskEnv(image, task []string) []string {
	env := append(append([]string(nil), image...), task...)
	var path, home bool
	for _, e := range env {
		path = path || strings.HasPrefix(e, "PATH=")
		home = home || strings.HasPrefix(e, "HOME=")
	}
	if !path {
		env = append(env, oci.DefaultPATH)
	}
	if !home {
		env = append(env, "HOME="+oci.ScratchDir)
	}
	return env
}

// purge removes whatever containerd holds under id: the task (killed),
// the container and the snapshot, as the sweep does.
func (r *Runner) purge(ctx context.Context, id string) error {
	container, err := r.client.LoadContainer(ctx, id)
	if err == nil {
		_, _, err := removeContainer(ctx, container)
		return err
	}
	if !errdefs.IsNotFound(err) {
		return err
	}
	return ignoreNotFound(r.client.SnapshotService(r.opts.snapshotter).Remove(ctx, id))
}
