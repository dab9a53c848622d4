package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/oci"
	"github.com/sandbox-runner/sandbox-runner/runner/initcmd"
)

// Labels put on every containerd object the runner creates, so that a
// restarted runner (or `sandbox-runner gc`) finds what a crashed one left.
const (
	LabelTask     = "io.sandbox-runner/task"
	LabelCreated  = "io.sandbox-runner/created"
	LabelOwner    = "io.sandbox-runner/owner"
	LabelOwnerPID = "io.sandbox-runner/owner-pid"
	// LabelOwnerStart is the owner process's start time, so that a reused
	// pid is not mistaken for a live owner.
	LabelOwnerStart = "io.sandbox-runner/owner-start"
)

// Defaults of the Runner's options.
const (
	DefaultNamespace   = "sandbox-runner"
	DefaultSnapshotter = "overlayfs"
	DefaultStateDir    = "/var/lib/sandbox-runner"
	DefaultShim        = "io.containerd.runc.v2"
)

// How long the runner waits on teardown steps that should be instant.
const (
	// killWait bounds the wait for the exit after SIGKILL to all processes.
	killWait = 5 * time.Second
	// drainWait bounds the wait for the last output after the exit: the
	// shim closes the pipes when the last process holding them is gone.
	drainWait = 2 * time.Second
	// cleanupTimeout bounds the whole teardown of one task.
	cleanupTimeout = 30 * time.Second
	// createTimeout bounds the making of a container and its task, which
	// the caller's cancellation does not cut short (see create).
	createTimeout = 30 * time.Second
)

// Runner runs tasks in one containerd namespace.
type Runner struct {
	client *client.Client
	opts   options
	host   hostFacts
	// pid and start identify this process in owner labels.
	pid, start string

	ids  *identities
	cpus *cpuSets
	init string // the init binary's host path, or "" with initErr
	// initErr says why no init binary was found; tasks fail with it.
	initErr error

	mu     sync.Mutex
	images map[string]*imageInfo

	// runscMu guards runscConfig, the gVisor shim configuration last
	// written to the state dir.
	runscMu     sync.Mutex
	runscConfig []byte
}

type imageInfo struct {
	img client.Image
	env []string
}

// Option configures a Runner.
type Option func(*options)

type options struct {
	namespace   string
	snapshotter string
	stateDir    string
	catalog     images.Catalog
	log         *slog.Logger
	owner       string
	pull        func(ctx context.Context, ref string) error
	init        string
	uids        UIDRange
	oci         *OCIRuntimes
	maxRuns     int
}

// WithNamespace sets the containerd namespace every object lives in.
// Default DefaultNamespace.
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithSnapshotter sets the snapshotter images are unpacked into and
// task root file systems are made from. Default DefaultSnapshotter.
func WithSnapshotter(s string) Option { return func(o *options) { o.snapshotter = s } }

// WithStateDir sets the host directory for staged files and output FIFOs.
// Default DefaultStateDir.
func WithStateDir(dir string) Option { return func(o *options) { o.stateDir = dir } }

// WithCatalog sets the runtime catalog. Default images.DefaultCatalog().
func WithCatalog(c images.Catalog) Option { return func(o *options) { o.catalog = c } }

// WithLogger sets where the runner logs. Default: nowhere.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithPull sets how a missing image is fetched: pull is called with the
// normalized reference and the namespace on ctx, and must leave the image
// in the store, unpacked (images.Pull does). Tasks then follow their Pull
// policy. Default: none, and every task runs as with images.PullNever.
func WithPull(pull func(ctx context.Context, ref string) error) Option {
	return func(o *options) { o.pull = pull }
}

// WithInit sets the host path of the static sandbox-runner-init binary,
// PID 1 of every sandbox. Default: the first of FindInit's places that
// holds one.
func WithInit(path string) Option { return func(o *options) { o.init = path } }

// WithUIDRange sets the host uids (and gids) tasks run as, one of its own
// for each task. Default DefaultUIDBase and DefaultUIDCount.
func WithUIDRange(u UIDRange) Option { return func(o *options) { o.uids = u } }

// WithOwner sets the owner label on what the runner creates. Default
// "HOSTNAME/PID".
func WithOwner(owner string) Option { return func(o *options) { o.owner = owner } }

// New returns a Runner that uses c. It refuses a host that cannot sandbox
// tasks (no seccomp) with ErrSandboxUnavailable rather than run them
// unconfined.
func New(c *client.Client, opts ...Option) (*Runner, error) {
	hostname, _ := os.Hostname()
	o := options{
		namespace:   DefaultNamespace,
		snapshotter: DefaultSnapshotter,
		stateDir:    DefaultStateDir,
		log:         slog.New(slog.DiscardHandler),
		owner:       fmt.Sprintf("%s/%d", hostname, os.Getpid()),
		uids:        UIDRange{First: DefaultUIDBase, Count: DefaultUIDCount},
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.catalog == nil {
		o.catalog = images.DefaultCatalog()
	}
	if err := ValidateNamespace(o.namespace); err != nil {
		return nil, err
	}
	if err := SeccompAvailable(); err != nil {
		return nil, err
	}
	if err := o.withOCIRuntimes(); err != nil {
		return nil, err
	}
	if missing := missingControllers(); len(missing) > 0 {
		return nil, fmt.Errorf("%w: cgroup controllers %s are missing, so limits cannot be enforced: refusing to run tasks", ErrSandboxUnavailable, strings.Join(missing, ", "))
	}
	host, err := readHostFacts()
	if err != nil {
		return nil, err
	}
	if err := o.uids.check(); err != nil {
		return nil, err
	}
	if err := o.uids.overlaps("/etc"); err != nil {
		return nil, err
	}
	for _, d := range []string{o.stateDir, filepath.Join(o.stateDir, "tasks")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("creating state dir: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(o.stateDir, idsDir), 0o700); err != nil {
		return nil, fmt.Errorf("creating state dir: %w", err)
	}
	pid, start := processIdentity()
	r := &Runner{client: c, opts: o, host: host, pid: pid, start: start, images: map[string]*imageInfo{},
		ids:  &identities{dir: filepath.Join(o.stateDir, idsDir), r: o.uids, owner: pid + " " + start},
		cpus: newCPUSets()}
	r.init, r.initErr = o.init, nil
	if r.init == "" {
		r.init, r.initErr = FindInit()
	}
	if r.initErr == nil {
		r.initErr = checkInit(r.init)
	}
	return r, nil
}

// initBinary returns the init's host path, or why there is none.
func (r *Runner) initBinary() (string, error) { return r.init, r.initErr }

// Limits returns l with the runner's defaults in place of zero fields, as
// Run applies them.
func (r *Runner) Limits(l Limits) Limits {
	full, _ := withDefaults(l, r.host)
	return full
}

// Namespace returns the containerd namespace the runner works in.
func (r *Runner) Namespace() string { return r.opts.namespace }

// Catalog returns the runtime catalog.
func (r *Runner) Catalog() images.Catalog { return r.opts.catalog }

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

// idPattern leaves room for compileSuffix within containerd's limit.
var idPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$`)

// NewID returns a fresh random task id.
func NewID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "sr-" + hex.EncodeToString(b)
}

// prepared is a task checked and resolved, ready to create.
type prepared struct {
	id      string
	compile []string
	runtime images.Runtime
	image   string
	files   []File
	limits  Limits
	args    []string
	env     []string
	oci     OCIRuntime
	outputs []string
}

// Validate checks everything about t that can be checked without
// containerd: the runtime is in catalog, the limits are in range for this
// host, the files and environment are well-formed. Run does the same
// first; callers use Validate to refuse bad input before connecting.
func Validate(t Task, catalog images.Catalog) error {
	host, err := readHostFacts()
	if err != nil {
		return err
	}
	_, err = prepare(t, catalog, host)
	return err
}

// prepare checks everything about t that can be checked without touching
// containerd, so bad input fails before anything is created.
func prepare(t Task, catalog images.Catalog, host hostFacts) (*prepared, error) {
	rt, err := catalog.Lookup(t.Runtime)
	if err != nil {
		return nil, &invalidError{msg: err.Error()}
	}
	limits, err := withDefaults(t.Limits, host)
	if err != nil {
		return nil, err
	}
	files := append([]File(nil), t.Files...)
	if len(files) > 0 && files[0].Name == "" {
		files[0].Name = rt.FileName
	}
	if err := checkFiles(files); err != nil {
		return nil, err
	}
	if err := checkOutputs(t.Outputs); err != nil {
		return nil, err
	}
	for _, e := range t.Env {
		if k, _, ok := cutEnv(e); !ok || k == "" {
			return nil, invalid("environment entry %q is not KEY=VALUE", e)
		}
	}
	id := t.ID
	if id == "" {
		id = NewID()
	} else if !idPattern.MatchString(id) {
		return nil, invalid("task id %q: use 1 to 64 letters, digits, '_' or '-', starting with a letter or digit", id)
	}
	ref := t.Image
	if ref == "" {
		ref = rt.Image
	}
	name, err := images.Normalize(ref)
	if err != nil {
		return nil, &invalidError{msg: err.Error()}
	}
	entry, _ := cleanName(files[0].Name)
	vars := images.Vars{File: path.Join(oci.CodeDir, entry), MemoryBytes: limits.Memory}
	return &prepared{
		id:      id,
		runtime: rt,
		image:   name,
		files:   files,
		limits:  limits,
		compile: rt.CompileCommand(images.Vars{File: vars.File, MemoryBytes: limits.CompileMemory}),
		args:    rt.Command(vars, t.Args),
		env:     append(append([]string(nil), rt.Env...), t.Env...),
		outputs: slices.Clone(t.Outputs),
	}, nil
}

func cutEnv(e string) (string, string, bool) {
	for i := 0; i < len(e); i++ {
		if e[i] == '=' {
			return e[:i], e[i+1:], true
		}
	}
	return e, "", false
}

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
	spec := sandboxSpec{id: p.id, task: p.id, dir: dir, image: p.image, img: info.img, limits: p.limits, oci: p.oci}
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
	s, err := r.newSandbox(ctx, log, spec)
	if err != nil {
		return nil, err
	}
	defer s.destroy(ctx, log)
	if err := s.claim(ctx, taskCommand(cmd, timeout), spec.limits, stdin, stdout, stderr); err != nil {
		return nil, err
	}
	return r.execute(ctx, log, s, timeout)
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
	if err := task.Start(ctx); err != nil {
		if ended(ctx) == nil {
			return nil, fmt.Errorf("starting task: %w", err)
		}
		// The caller gave up while the task was being started: the
		// start may have gone through with only its answer lost, so the
		// task is killed and reported cancelled like any other.
		stage.Cancelled = true
	}

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
			// The init kills the task itself initGrace after the
			// deadline; it wins only when this process was held up.
			stage.TimedOut = status.ExitCode() == initcmd.ExitDeadline && time.Since(start) >= timeout
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
	if !exited {
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
		return nil, fmt.Errorf("waiting on task: %w", err)
	}

	// The counters live in the task's cgroup, which goes with the task.
	afterExit := time.Now()
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killWait)
	var oomKills uint64
	var usage Usage
	if c.spec.oci.Name == OCIRuntimeRunsc {
		oomKills, usage, err = readCgroupUsage(r.cgroupPath(c.spec.id))
	} else {
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

// image returns the unpacked image ref and its environment, from a cache
// after the first time. Following policy, it pulls the image with the
// runner's puller when it is missing (or every time), and says on the
// not-found error how to get it otherwise.
func (r *Runner) image(ctx context.Context, ref string, policy images.PullPolicy) (*imageInfo, error) {
	policy, err := images.ParsePullPolicy(string(policy))
	if err != nil {
		return nil, &invalidError{msg: err.Error()}
	}
	if policy == images.PullAlways && r.opts.pull == nil {
		return nil, invalid("pull policy %q: this runner cannot pull images", policy)
	}
	if policy != images.PullAlways {
		r.mu.Lock()
		info, ok := r.images[ref]
		r.mu.Unlock()
		if ok {
			return info, nil
		}
	}
	var img client.Image
	if policy != images.PullAlways {
		img, err = images.Ensure(ctx, r.client, ref, r.opts.snapshotter)
	}
	if r.opts.pull != nil && (policy == images.PullAlways || (policy == images.PullMissing && errdefs.IsNotFound(err))) {
		if perr := r.pullOwned(ctx, ref); perr != nil {
			if errdefs.IsNotFound(perr) {
				return nil, fmt.Errorf("%w: %w", ErrImageNotFound, perr)
			}
			return nil, perr
		}
		img, err = images.Ensure(ctx, r.client, ref, r.opts.snapshotter)
	}
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("%w: %w", ErrImageNotFound, err)
		}
		return nil, err
	}
	spec, err := img.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading config of %s: %w", ref, err)
	}
	// Only the environment is taken from the image: its user, volumes,
	// ports and entrypoint never loosen the sandbox.
	info := &imageInfo{img: img, env: spec.Config.Env}
	r.mu.Lock()
	r.images[ref] = info
	r.mu.Unlock()
	return info, nil
}

// pullOwned pulls ref under a lease this process owns: a pull can take
// long, and no other runner's sweep may take its content away meanwhile.
func (r *Runner) pullOwned(ctx context.Context, ref string) error {
	ctx, done, err := OwnedLease(ctx, r.client)
	if err != nil {
		return err
	}
	defer done()
	return r.opts.pull(ctx, ref)
}

func (r *Runner) forgetImage(ref string) {
	r.mu.Lock()
	delete(r.images, ref)
	r.mu.Unlock()
}

// cleanup is a stack of undo steps, run last-in first-out.
type cleanup struct{ steps []func(context.Context) error }

func (c *cleanup) add(f func(context.Context) error) { c.steps = append(c.steps, f) }

func (c *cleanup) run(ctx context.Context) error {
	var errs []error
	for i := len(c.steps) - 1; i >= 0; i-- {
		errs = append(errs, retryUnavailable(ctx, c.steps[i]))
	}
	err := errors.Join(errs...)
	if err != nil {
		ReportCleanupFailure(ctx, err)
	}
	return err
}

// retryUnavailable runs step until it succeeds, fails for another reason
// than containerd being unreachable, or ctx ends: a containerd that
// restarts under a task comes back within seconds, and cleaning up then
// beats leaving the task for the next sweep.
func retryUnavailable(ctx context.Context, step func(context.Context) error) error {
	wait := 100 * time.Millisecond
	for {
		err := step(ctx)
		if err == nil || !unavailable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
			wait = min(wait*2, 2*time.Second)
		}
	}
}

// unavailable tells whether err says containerd could not be reached,
// as a gRPC status or as an errdefs class.
func unavailable(err error) bool {
	if errdefs.IsUnavailable(err) {
		return true
	}
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.Unavailable
}

func ignoreNotFound(err error) error {
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}
