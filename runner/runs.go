package runner

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/oci"
	"github.com/sandbox-runner/sandbox-runner/runner/api"
	"github.com/sandbox-runner/sandbox-runner/runner/initcmd"
)

// DefaultMaxRuns bounds the runs of one batch unless WithMaxRuns says
// otherwise.
const DefaultMaxRuns = 64

// maxArtifacts bounds the entries at the top of a compile stage's /tmp
// that are handed on to the runs, each a bind mount of its own.
const maxArtifacts = 256

// OutcomeNotRun is the outcome of a run of a batch whose compile stage
// failed (api.OutcomeNotRun).
const OutcomeNotRun = api.OutcomeNotRun

// WithMaxRuns bounds how many runs one batch may have. Default
// DefaultMaxRuns.
func WithMaxRuns(n int) Option { return func(o *options) { o.maxRuns = n } }

// MaxRuns returns the most runs a batch may have.
func (r *Runner) MaxRuns() int { return maxRunsOr(r.opts.maxRuns) }

func maxRunsOr(n int) int {
	if n <= 0 {
		return DefaultMaxRuns
	}
	return n
}

// Batch is one program run on many inputs: a compiled runtime's compile
// stage runs once, then every run gets a fresh sandbox of its own, with
// its own identity, code dir and /tmp, in which what the compile stage
// left at the top of its /tmp is bound read-only at the same paths. A
// runtime that is not compiled just runs each input in a sandbox of its
// own. Task is the program: its Stdin must be nil (each run has its
// own), its Args are the default of runs that give none, its Limits the
// base that each run's limits override, and its Stdout and Stderr are
// ignored.
type Batch struct {
	Task
	Runs []Run
	// Parallel is how many runs may go at once; 0 or 1: one after
	// another, in order.
	Parallel int
	// Extra, when set, is asked for leave to start a run next to those
	// already going (the first run needs none): ok false means not now,
	// and the run waits for one of the batch's own to end. release gives
	// the leave back. The service hands out its free slots this way.
	Extra func() (release func(), ok bool)
}

// Run is one input of a Batch.
type Run struct {
	// Stdin is the run's standard input; nil: none.
	Stdin io.Reader
	// Args are appended to the runtime's command; nil: the batch's.
	Args []string
	// Limits override the batch's limits field by field: zero fields
	// keep the batch's. A run cannot set the compile stage's limits.
	Limits Limits
	// Stdout and Stderr, when set, receive the run's output as it is
	// produced, up to the output limit.
	Stdout, Stderr io.Writer
}

// BatchResult is what happened to a batch (api.BatchResult).
type BatchResult = api.BatchResult

// runTask is run i of b as a task of its own.
func (b *Batch) runTask(i int, id string) Task {
	t := b.Task
	run := b.Runs[i]
	t.ID, t.Stdin, t.Stdout, t.Stderr = id, run.Stdin, run.Stdout, run.Stderr
	if run.Args != nil {
		t.Args = run.Args
	}
	t.Limits = b.Task.Limits.Merge(run.Limits)
	return t
}

// runID is the id of run i of the batch whose id is id, or "" when the
// batch has none (each run then gets one).
func runID(id string, i int) string {
	if id == "" {
		return ""
	}
	return id + "-" + strconv.Itoa(i)
}

// prepareBatch checks b as Run checks a task, and each run as a task of
// its own, with errors that name the run.
func prepareBatch(b *Batch, catalog images.Catalog, host hostFacts, most int) (*prepared, []*prepared, error) {
	if n := len(b.Runs); n == 0 || n > most {
		return nil, nil, invalid("runs: %d given: give 1 to %d (the runner's max_runs)", n, most)
	}
	if b.Stdin != nil {
		return nil, nil, invalid("stdin: a batch has no stdin of its own: give each run's")
	}
	if b.Parallel < 0 {
		return nil, nil, invalid("parallel %d: give 0 or more", b.Parallel)
	}
	if len(b.Outputs) > 0 {
		return nil, nil, invalid("outputs: a batch returns no files: send a task with outputs on its own")
	}
	p, err := prepare(b.Task, catalog, host)
	if err != nil {
		return nil, nil, err
	}
	runs := make([]*prepared, len(b.Runs))
	for i, run := range b.Runs {
		if run.Limits.CompileTimeout != 0 || run.Limits.CompileMemory != 0 {
			return nil, nil, invalid("runs[%d].limits: the compile stage runs once for the whole batch: give its limits in the batch's limits", i)
		}
		id := runID(p.id, i)
		if b.ID == "" && p.compile == nil {
			id = ""
		}
		rp, err := prepare(b.runTask(i, id), catalog, host)
		if err != nil {
			return nil, nil, fmt.Errorf("runs[%d]: %w", i, err)
		}
		runs[i] = rp
	}
	return p, runs, nil
}

// ValidateBatch checks everything about b that can be checked without
// containerd, as RunBatch does first, with at most maxRuns runs (0:
// DefaultMaxRuns). Callers use it to refuse bad input before connecting.
func ValidateBatch(b Batch, catalog images.Catalog, maxRuns int) error {
	host, err := readHostFacts()
	if err != nil {
		return err
	}
	_, _, err = prepareBatch(&b, catalog, host, maxRunsOr(maxRuns))
	return err
}

// RunBatch runs b: the compile stage once, then every run in a fresh
// sandbox (see Batch). An error means the runner could not run the
// batch; what the program did is in the BatchResult. RunBatch removes
// everything it created before it returns, in every case.
func (r *Runner) RunBatch(ctx context.Context, b Batch) (*BatchResult, error) {
	res, err := r.runBatch(ctx, b, r.Run)
	return res, withEnded(ctx, err)
}

// RunBatch runs b as Runner.RunBatch does, with each run of a runtime
// that is not compiled in a pooled sandbox when one is ready.
func (p *Pool) RunBatch(ctx context.Context, b Batch) (*BatchResult, error) {
	res, err := p.r.runBatch(ctx, b, p.Run)
	return res, withEnded(ctx, err)
}

// runBatch is RunBatch with runOne running a run of a runtime that is
// not compiled.
func (r *Runner) runBatch(ctx context.Context, b Batch, runOne func(context.Context, Task) (*Result, error)) (*BatchResult, error) {
	p, runs, err := prepareBatch(&b, r.opts.catalog, r.host, r.MaxRuns())
	if err != nil {
		return nil, err
	}
	if p.oci, err = r.opts.oci.For(b.OCIRuntime, p.runtime.Name); err != nil {
		return nil, err
	}
	res := &BatchResult{ID: p.id, Runtime: p.runtime.Name, Image: p.image, OCIRuntime: p.oci.Name, Runs: make([]*Result, len(runs))}
	if p.compile == nil {
		err := r.eachRun(ctx, &b, res, func(ctx context.Context, i int) (*Result, error) {
			// Without an id of the batch's, a run may take a pooled
			// sandbox, which has its own.
			return runOne(ctx, b.runTask(i, runID(b.ID, i)))
		})
		return res, err
	}
	return res, r.compiledBatch(ctx, &b, p, runs, res)
}

// compiledBatch compiles once and runs each of runs with what the
// compile stage left in /tmp bound read-only.
func (r *Runner) compiledBatch(ctx context.Context, b *Batch, p *prepared, runs []*prepared, res *BatchResult) error {
	ctx = namespaces.WithNamespace(ctx, r.opts.namespace)
	log := r.opts.log.With("task", p.id, "runtime", p.runtime.Name, "runs", len(runs))
	info, err := r.image(ctx, p.image, b.Pull)
	if err != nil {
		return err
	}
	dir, err := r.newTaskDir(p.id)
	if err != nil {
		return err
	}
	defer func() {
		if err := dir.remove(); err != nil {
			log.Error("cleanup failed", "error", err)
		}
	}()
	if err := dir.writeCode(p.files); err != nil {
		return err
	}
	if err := dir.mountScratch(p.limits.TmpSize); err != nil {
		return err
	}
	env := taskEnv(info.env, p.env)
	cspec := sandboxSpec{id: p.id + compileSuffix, task: p.id, dir: dir, image: p.image, img: info.img, limits: p.limits, oci: p.oci, scratch: true}
	cspec.limits.Memory = p.limits.CompileMemory
	compile, err := r.runStage(ctx, log, cspec, initcmd.Command{Args: p.compile, Env: env}, p.limits.CompileTimeout, nil, nil, nil)
	if err != nil {
		return fmt.Errorf("compile stage: %w", err)
	}
	res.Compile = compile
	if compile.Outcome != OutcomeExited || compile.ExitCode != 0 {
		res.CompileFailed = true
		for i, rp := range runs {
			res.Runs[i] = notRun(res, rp.id, compile)
		}
		log.Info("compile failed: no run started", "outcome", compile.Outcome, "exit_code", compile.ExitCode)
		return nil
	}
	binds, err := artifacts(dir.scratch())
	if err != nil {
		return fmt.Errorf("handing the compiled program to the runs: %w", err)
	}
	return r.eachRun(ctx, b, res, func(ctx context.Context, i int) (*Result, error) {
		rp := runs[i]
		run := b.Runs[i]
		rdir, err := r.newTaskDir(rp.id)
		if err != nil {
			return nil, err
		}
		defer func() {
			if err := rdir.remove(); err != nil {
				log.Error("cleanup failed", "run", i, "error", err)
			}
		}()
		if err := rdir.writeCode(rp.files); err != nil {
			return nil, err
		}
		spec := sandboxSpec{id: rp.id, task: rp.id, dir: rdir, image: p.image, img: info.img, limits: rp.limits, oci: p.oci, binds: binds}
		stage, err := r.runStage(ctx, log.With("run", i), spec, initcmd.Command{Args: rp.args, Env: taskEnv(info.env, rp.env)},
			rp.limits.Timeout, run.Stdin, run.Stdout, run.Stderr)
		if err != nil {
			return nil, err
		}
		return &Result{ID: rp.id, Runtime: p.runtime.Name, Image: p.image, OCIRuntime: p.oci.Name, Stage: *stage}, nil
	})
}

// notRun is the result of a run that never started because the compile
// stage failed (or was cancelled).
func notRun(b *BatchResult, id string, compile *Stage) *Result {
	res := &Result{ID: id, Runtime: b.Runtime, Image: b.Image, OCIRuntime: b.OCIRuntime}
	res.Outcome, res.ExitCode = OutcomeNotRun, compile.ExitCode
	if compile.Cancelled {
		res.Outcome, res.Cancelled = OutcomeCancelled, true
	}
	return res
}

// cancelledRun is the result of a run the caller's cancellation kept
// from starting.
func cancelledRun(b *BatchResult, id string) *Result {
	res := &Result{ID: id, Runtime: b.Runtime, Image: b.Image, OCIRuntime: b.OCIRuntime}
	res.Outcome, res.ExitCode, res.Cancelled = OutcomeCancelled, ExitCancelled, true
	return res
}

// eachRun runs every run of b with one, in order, up to b.Parallel at a
// time: the first on the batch's own leave, each further one alongside
// only when b.Extra grants it. The results go into res.Runs. After a
// failure no further run starts, those going are cancelled, and the
// first error is returned; runs the caller's cancellation kept from
// starting are reported cancelled.
func (r *Runner) eachRun(ctx context.Context, b *Batch, res *BatchResult, one func(context.Context, int) (*Result, error)) error {
	parallel := max(b.Parallel, 1)
	caller := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// free holds the leaves not in use; each run gives its own back.
	free := make(chan func(), parallel)
	free <- func() {}
	held := 1
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for i := range b.Runs {
		var leave func()
		select {
		case leave = <-free:
		default:
			if held < parallel && b.Extra != nil {
				if release, ok := b.Extra(); ok {
					leave, held = release, held+1
				}
			}
			if leave == nil {
				select {
				case leave = <-free:
				case <-ctx.Done():
				}
			}
		}
		if leave == nil || ctx.Err() != nil {
			if leave != nil {
				free <- leave
			}
			for j := i; j < len(b.Runs); j++ {
				res.Runs[j] = cancelledRun(res, runID(res.ID, j))
			}
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { free <- leave }()
			out, err := one(ctx, i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil && ended(caller) != nil {
				// The caller gave up while this run was being made or
				// started: it is cancelled like the others, not a
				// failure of the batch.
				res.Runs[i] = cancelledRun(res, runID(res.ID, i))
				return
			}
			if err != nil {
				if first == nil {
					first = fmt.Errorf("runs[%d]: %w", i, err)
					cancel(first)
				}
				return
			}
			res.Runs[i] = out
		}()
	}
	wg.Wait()
	for range held {
		(<-free)()
	}
	if first != nil {
		return first
	}
	for i, out := range res.Runs {
		if out == nil {
			// Cancelled before it started, with no error of its own.
			res.Runs[i] = cancelledRun(res, runID(res.ID, i))
		}
	}
	return nil
}

// artifacts makes what a compile stage left in scratch (its /tmp)
// read-only and root's, readable and executable by any task identity,
// and returns the binds that put its top-level files and directories at
// the same paths in a run's /tmp. The compile stage's sandbox is gone,
// so nothing changes the tree meanwhile; links are never followed.
// Symbolic links and special files at the top are not handed on.
func artifacts(scratch string) ([]oci.Bind, error) {
	var binds []oci.Bind
	err := filepath.WalkDir(scratch, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == scratch {
			return nil
		}
		if err := os.Lchown(p, 0, 0); err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := os.FileMode(0o444)
		if d.IsDir() || info.Mode()&0o111 != 0 {
			mode = 0o555
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
		if filepath.Dir(p) == scratch && (d.IsDir() || d.Type().IsRegular()) {
			binds = append(binds, oci.Bind{Source: p, Destination: path.Join(oci.ScratchDir, d.Name())})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(binds) > maxArtifacts {
		return nil, fmt.Errorf("the compile stage left %d entries in /tmp: at most %d can be handed to the runs; build into fewer files or a directory", len(binds), maxArtifacts)
	}
	slices.SortFunc(binds, func(a, b oci.Bind) int {
		switch {
		case a.Destination < b.Destination:
			return -1
		case a.Destination > b.Destination:
			return 1
		}
		return 0
	})
	return binds, nil
}
