package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

// execOptions is everything `exec` reads from its flags.
type execOptions struct {
	global      globalFlags
	runtime     string
	ociRuntime  string
	image       string
	code        string
	codeSet     bool
	files       []string
	stdinFile   string
	env         []string
	timeout     string
	compileTO   string
	memory      string
	compileMem  string
	cpus        float64
	pids        int64
	outputLimit string
	tmpSize     string
	cpuTime     string
	outputs     []string
	copyOut     string
	json        bool
	pull        string
	registry    registryFlags
	via         viaOptions // --via, --socket: see via.go
	interactive bool       // -i: see interactive.go
	runs        batchFlags // --input, --parallel: see runs.go

	// changed tells whether a flag was given; unset limits come from the
	// config file.
	changed func(name string) bool
}

// registerTask adds the flags that say what to run and with which limits.
// The limit flags show the runner's defaults, or the config file's
// [limits] where it sets them (read by globalFlags.preload): a runtime's
// own [runtimes.NAME.limits] still apply on top when a flag is not
// given. When runBy names another (a worker), they show none, and a
// limit not given is left to it.
func (o *execOptions) registerTask(fs *pflag.FlagSet, runBy string) {
	var conf api.WrittenLimits
	if o.global.file != nil && runBy == "" {
		conf = o.global.file.Limits
	}
	def := func(here string) (string, string) {
		if runBy == "" {
			return here, ""
		}
		return "", " (default: the " + runBy + "'s)"
	}
	// confDef is the default of the limit flag whose config value is v.
	confDef := func(v api.Limit, here string) (string, string) {
		if !v.IsZero() {
			return v.String(), ""
		}
		return def(here)
	}
	fs.StringVarP(&o.runtime, "runtime", "r", "", "runtime to run the code with (see 'sandbox-runner runtimes')")
	fs.StringVar(&o.ociRuntime, "oci-runtime", "", "OCI runtime to run the task under: crun, runc or runsc (gVisor) (default: the runtime's as configured, else the "+first(runBy, "host")+"'s default; see 'sandbox-runner check')")
	fs.StringVar(&o.image, "image", "", "image to run in, instead of the runtime's")
	fs.StringVarP(&o.code, "code", "c", "", "code to run, instead of a file")
	fs.StringArrayVarP(&o.files, "file", "f", nil, "a file to stage in /code; repeatable; the first is the entry point unless FILE is given")
	fs.StringVar(&o.stdinFile, "stdin", "", "file whose content is the task's standard input ('-' for this process's)")
	fs.StringArrayVarP(&o.env, "env", "e", nil, "environment variable KEY=VALUE, or KEY to pass this process's value; repeatable")
	v, note := confDef(conf.Timeout, "30s")
	fs.StringVar(&o.timeout, "timeout", v, "wall-clock limit, e.g. 30s, 2m, 1.5"+note)
	v, note = confDef(conf.CompileTimeout, "60s")
	fs.StringVar(&o.compileTO, "compile-timeout", v, "wall-clock limit of a compiled runtime's compile stage"+note)
	v, note = confDef(conf.Memory, "512m")
	fs.StringVar(&o.memory, "memory", v, "memory limit (no swap on top), e.g. 256m, 1g"+note)
	v, note = confDef(conf.CompileMemory, "1g")
	fs.StringVar(&o.compileMem, "compile-memory", v, "memory limit of a compiled runtime's compile stage; --memory when that is higher"+note)
	cpus, pids := runner.DefaultCPUs, int64(runner.DefaultPids)
	if runBy != "" {
		cpus, pids = 0, 0
	}
	// The config's values passed Apply when it was read.
	if l, err := conf.Apply(runner.Limits{}, nil); err == nil {
		if !conf.CPUs.IsZero() {
			cpus = l.CPUs
		}
		if !conf.Pids.IsZero() {
			pids = l.Pids
		}
	}
	fs.Float64Var(&o.cpus, "cpus", cpus, "CPU quota in CPUs, e.g. 0.5"+note)
	fs.Int64Var(&o.pids, "pids", pids, "limit on processes and threads"+note)
	v, note = confDef(conf.OutputLimit, "1m")
	fs.StringVar(&o.outputLimit, "output-limit", v, "cap on each of stdout and stderr; the rest is read and dropped"+note)
	v, note = confDef(conf.TmpSize, "64m")
	fs.StringVar(&o.tmpSize, "tmp-size", v, "size of the writable /tmp, and the largest file the task may write"+note)
	v, note = confDef(conf.CPUTime, "")
	if runBy == "" && v == "" {
		note = " (default: none, the wall clock alone)"
	}
	fs.StringVar(&o.cpuTime, "cpu-time", v, "CPU-time limit (user and system, all threads and processes), e.g. 2s; killed past it with status 152"+note)
	fs.StringArrayVar(&o.outputs, "output", nil, "glob pattern under /tmp (e.g. '/tmp/out/*.png') of files to return when the task ends; repeatable")
	fs.StringVar(&o.copyOut, "copy-out", "", "write the returned files (--output) below this directory, made if missing; existing files are never overwritten")
}

func runExec(ctx context.Context, args []string, std stdio) int {
	var o execOptions
	o.global.preload(args)
	fs := newFlagSet("exec", "--runtime NAME [FLAGS] [FILE | -c CODE | < CODE] [-- ARG...]", std.err)
	o.registerTask(fs, "")
	fs.BoolVar(&o.json, "json", false, "print one JSON result instead of streaming the task's output")
	fs.StringVar(&o.pull, "pull", string(images.PullMissing), "when to pull the image: missing, always or never")
	o.runs.register(fs)
	o.registry.register(fs)
	o.via.register(fs)
	o.registerInteractive(fs)
	o.global.register(fs)
	if code, ok := parse(fs, args, &o.global, std.out); !ok {
		return code
	}
	o.codeSet = fs.Changed("code")
	o.changed = fs.Changed

	catalog, err := o.global.file.Catalog()
	if err != nil {
		return o.fail(std, err)
	}
	task, err := o.task(fs.Args(), fs.ArgsLenAtDash(), std.in)
	if err == nil && len(o.runs.inputs) == 0 && fs.Changed("parallel") {
		err = usageError("--parallel without --input: it says how many inputs run at once")
	}
	if err == nil && len(o.runs.inputs) > 0 {
		// One program, many inputs (runs.go).
		return o.execBatch(ctx, task, catalog, std)
	}
	if err == nil {
		err = runner.Validate(task, catalog)
	}
	if err != nil {
		return o.fail(std, err)
	}
	// Through a running service instead, when --via allows (via.go).
	if code, done := o.runVia(ctx, &task, std); done {
		return code
	}
	r, catalog, closeConn, err := o.localRunner(ctx, task, catalog, std)
	if err != nil {
		return o.fail(std, err)
	}
	defer closeConn()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if !o.json {
		task.Stdout, task.Stderr = closeWatch{std.out, cancel}, closeWatch{std.err, cancel}
	}
	res, err := r.Run(ctx, task)
	if errors.Is(context.Cause(ctx), errOutputClosed) {
		// Run has killed and removed the task; nobody reads a report.
		return exitBrokenPipe
	}
	if err != nil {
		return o.fail(std, withImageHint(err, task, catalog))
	}
	return o.printResult(std, res, r.Limits(task.Limits), true)
}

// writeFiles writes the task's returned files below --copy-out, when it
// was given, and returns code, or the runner's failure status when a
// file could not be written.
func (o *execOptions) writeFiles(std stdio, res *runner.Result, code int) int {
	if o.copyOut == "" {
		return code
	}
	written, err := runner.CopyOut(o.copyOut, res.Files)
	if !o.json {
		fmt.Fprintf(std.err, "sandbox-runner: %d file(s) written to %s\n", len(written), o.copyOut)
	}
	if err != nil {
		return report(std.err, err)
	}
	return code
}

// errOutputClosed is why a task is cancelled when its output has no
// reader any more.
var errOutputClosed = errors.New("the output's reader went away")

// closeWatch passes writes through to w and cancels the task when w's
// reader is gone (EPIPE), as a pipe writer would die of SIGPIPE.
type closeWatch struct {
	w      io.Writer
	cancel context.CancelCauseFunc
}

func (c closeWatch) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if errors.Is(err, syscall.EPIPE) {
		c.cancel(errOutputClosed)
	}
	return n, err
}

// task turns the flags and arguments into a runner.Task. dash is the
// index of the first argument after "--", or -1.
func (o *execOptions) task(args []string, dash int, stdin io.Reader) (runner.Task, error) {
	t := runner.Task{Runtime: o.runtime, Image: o.image, OCIRuntime: o.ociRuntime}
	if t.OCIRuntime != "" && !slices.Contains(runner.OCIRuntimeNames, t.OCIRuntime) {
		return t, usageError("--oci-runtime %q: give one of %s", t.OCIRuntime, strings.Join(runner.OCIRuntimeNames, ", "))
	}
	pull, err := images.ParsePullPolicy(o.pull)
	if err != nil {
		return t, usageError("--pull: %v", strings.TrimSuffix(err.Error(), ": "+errdefs.ErrInvalidArgument.Error()))
	}
	t.Pull = pull
	before, after := args, []string(nil)
	if dash >= 0 {
		before, after = args[:dash], args[dash:]
	}
	if len(before) > 1 {
		return t, usageError("unexpected argument %q: give one FILE, and put the task's arguments after --", before[1])
	}
	t.Args = after

	if t.Limits, err = o.limits(); err != nil {
		return t, err
	}
	if err := o.checkOutputs(); err != nil {
		return t, err
	}
	t.Outputs = o.outputs
	for _, e := range o.env {
		if !strings.Contains(e, "=") {
			v, ok := os.LookupEnv(e)
			if !ok {
				continue
			}
			e += "=" + v
		}
		t.Env = append(t.Env, e)
	}

	codeFromStdin := false
	switch {
	case o.codeSet && len(before) > 0:
		return t, usageError("both -c and FILE %q given: give one of them", before[0])
	case o.codeSet:
		t.Files = append(t.Files, runner.File{Content: []byte(o.code)})
	case len(before) == 1 && before[0] == "-":
		codeFromStdin = true
	case len(before) == 1:
		f, err := readFile(before[0])
		if err != nil {
			return t, err
		}
		t.Files = append(t.Files, f)
	case len(o.files) == 0:
		if isTerminal(stdin) {
			return t, usageError("no code given: pass a FILE, -c CODE, --file FILE, or pipe the code in")
		}
		codeFromStdin = true
	}
	if codeFromStdin {
		b, err := io.ReadAll(io.LimitReader(stdin, runner.DefaultMaxFileSize+1))
		if err != nil {
			return t, fmt.Errorf("reading code from stdin: %w", err)
		}
		if len(b) == 0 {
			return t, usageError("no code given: stdin is empty; pass a FILE, -c CODE, --file FILE, or pipe the code in")
		}
		t.Files = append(t.Files, runner.File{Content: b})
	}
	for _, path := range o.files {
		f, err := readFile(path)
		if err != nil {
			return t, err
		}
		t.Files = append(t.Files, f)
	}

	if o.interactive {
		return t, o.interactiveStdin(&t, stdin, codeFromStdin)
	}
	switch {
	case o.stdinFile == "-":
		if codeFromStdin {
			return t, usageError("--stdin - and code on stdin given: stdin can only be one of them")
		}
		t.Stdin = stdin
	case o.stdinFile != "":
		f, err := os.Open(o.stdinFile)
		if err != nil {
			return t, usageError("--stdin: %v", err)
		}
		// The process exits soon after the task; the file goes with it.
		t.Stdin = f
	case !codeFromStdin && !isTerminal(stdin):
		t.Stdin = stdin
	}
	return t, nil
}

// limits returns the config file's limits for the runtime, with the
// flags that were given on top: one api.WrittenLimits, checked by the
// same Apply as the config's and a request's.
func (o *execOptions) limits() (runner.Limits, error) {
	l, err := o.global.file.TaskLimits(o.runtime)
	if err != nil {
		return l, err
	}
	return o.writtenLimits().Apply(l, api.FlagName)
}

// writtenLimits are the limit flags that were given, as written.
func (o *execOptions) writtenLimits() api.WrittenLimits {
	set := func(name string) bool { return o.changed != nil && o.changed(name) }
	var w api.WrittenLimits
	for _, f := range []struct {
		flag, value string
		dst         *api.Limit
	}{
		{"timeout", o.timeout, &w.Timeout},
		{"compile-timeout", o.compileTO, &w.CompileTimeout},
		{"memory", o.memory, &w.Memory},
		{"compile-memory", o.compileMem, &w.CompileMemory},
		{"output-limit", o.outputLimit, &w.OutputLimit},
		{"tmp-size", o.tmpSize, &w.TmpSize},
		{"cpu-time", o.cpuTime, &w.CPUTime},
	} {
		if set(f.flag) {
			*f.dst = api.LimitString(f.value)
		}
	}
	if set("cpus") {
		w.CPUs = api.LimitFloat(o.cpus)
	}
	if set("pids") {
		w.Pids = api.LimitInt(o.pids)
	}
	return w
}

// checkOutputs checks --output and --copy-out before anything runs.
func (o *execOptions) checkOutputs() error {
	if len(o.outputs) > runner.MaxOutputPatterns {
		return usageError("%d --output patterns given: at most %d are allowed", len(o.outputs), runner.MaxOutputPatterns)
	}
	for _, p := range o.outputs {
		if err := runner.CheckOutputPattern(p); err != nil {
			return fmt.Errorf("--output: %w", err)
		}
	}
	if o.copyOut == "" {
		return nil
	}
	if len(o.outputs) == 0 {
		return usageError("--copy-out %s: name the files to copy with --output PATTERN", o.copyOut)
	}
	if st, err := os.Lstat(o.copyOut); err == nil && !st.IsDir() {
		return usageError("--copy-out %s is not a directory: give a directory, or a path to make one at", o.copyOut)
	}
	return nil
}

func readFile(path string) (runner.File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return runner.File{}, usageError("code file: %v", err)
	}
	if !st.Mode().IsRegular() {
		return runner.File{}, usageError("code file %s is not a regular file", path)
	}
	if st.Size() > runner.DefaultMaxFileSize {
		return runner.File{}, usageError("code file %s holds %d bytes: at most %d are allowed", path, st.Size(), runner.DefaultMaxFileSize)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return runner.File{}, usageError("code file: %v", err)
	}
	return runner.File{Name: filepath.Base(path), Content: b, Executable: st.Mode()&0o111 != 0}, nil
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// fail reports err, as a JSON document too when --json was given, so a
// program reading stdout always gets one document.
func (o *execOptions) fail(std stdio, err error) int {
	if o.json {
		writeJSONError(std.out, err)
	}
	return report(std.err, err)
}

// withImageHint adds to a missing or unreachable image of a runtime that
// `images build` can make how to get it without a registry.
func withImageHint(err error, t runner.Task, cat images.Catalog) error {
	if !errors.Is(err, runner.ErrImageNotFound) && !errors.Is(err, images.ErrRegistryUnreachable) {
		return err
	}
	rt, lerr := cat.Lookup(t.Runtime)
	if lerr != nil || t.Image != "" {
		// An image asked for by name: the error says how to get it.
		return err
	}
	if rt.Local == "" {
		return fmt.Errorf("%w; or run in another image: --image REF (with --pull never for one only in the store)", err)
	}
	return fmt.Errorf("%w; or, with no registry, build it from this host's Debian mirror: `sandbox-runner images build %s`", err, rt.Name)
}

// errorKind is err's kind in the JSON every command prints (api.KindOf);
// a usage error is invalid input.
func errorKind(err error) string {
	if exitCode(err) == exitUsage {
		return api.KindInvalidInput
	}
	return api.KindOf(err)
}

// explain tells a person on stderr what the exit status alone does not.
func explain(w io.Writer, res *runner.Result, l runner.Limits) {
	if c := res.Compile; c != nil && res.Outcome == runner.OutcomeCompileFailed {
		switch c.Outcome {
		case runner.OutcomeTimedOut:
			fmt.Fprintf(w, "sandbox-runner: compile stage timed out after %s; killed\n", l.CompileTimeout)
		case runner.OutcomeOOMKilled:
			fmt.Fprintf(w, "sandbox-runner: compile stage killed: out of memory (limit %s, --compile-memory)\n", formatSize(l.CompileMemory))
		default:
			if c.OOMKilled {
				fmt.Fprintf(w, "sandbox-runner: compilation failed: the compiler ran out of memory (limit %s, --compile-memory); the code did not run\n",
					formatSize(l.CompileMemory))
				break
			}
			fmt.Fprintf(w, "sandbox-runner: compilation failed (exit status %d); the code did not run\n", c.ExitCode)
		}
		return
	}
	switch res.Outcome {
	case runner.OutcomeTimedOut:
		fmt.Fprintf(w, "sandbox-runner: timed out after %s; killed\n", l.Timeout)
	case runner.OutcomeCPUTimeExceeded:
		limit := ""
		if l.CPUTime > 0 {
			limit = " of " + l.CPUTime.String()
		}
		fmt.Fprintf(w, "sandbox-runner: CPU time over its limit%s (used %s); killed\n", limit, res.Usage.CPU.Round(time.Millisecond))
	case runner.OutcomeOOMKilled:
		fmt.Fprintf(w, "sandbox-runner: killed: out of memory (limit %s)\n", formatSize(l.Memory))
	case runner.OutcomeCancelled:
		fmt.Fprintln(w, "sandbox-runner: cancelled; killed")
	case runner.OutcomeSignaled:
		fmt.Fprintf(w, "sandbox-runner: ended by %s\n", res.Signal)
	}
	for _, s := range []struct {
		name string
		st   runner.Stream
	}{{"stdout", res.Stdout}, {"stderr", res.Stderr}} {
		if s.st.Truncated() {
			fmt.Fprintf(w, "sandbox-runner: %s truncated: %d bytes over --output-limit dropped\n", s.name, s.st.Dropped)
		}
	}
	if res.PidsLimitHit {
		fmt.Fprintf(w, "sandbox-runner: the task hit its limit of %d processes and threads (--pids): a fork or thread creation failed\n", l.Pids)
	}
	if c := res.Compile; c != nil && c.PidsLimitHit {
		fmt.Fprintf(w, "sandbox-runner: the compile stage hit its limit of %d processes and threads (--pids)\n", l.Pids)
	}
	if res.FilesTruncated {
		// The caps are the runner's config's, which may be a service's.
		fmt.Fprintln(w, "sandbox-runner: returned files truncated: a file was cut or left out at the caps on returned files ([limits] output_files and output_files_size)")
	}
}

func formatSize(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

// puller pulls a task's image for the runner, saying so on w: the image
// is fetched on first use (or every time with --pull always).
func (o *execOptions) puller(c *client.Client, policy images.PullPolicy, w io.Writer) func(context.Context, string) error {
	opts := o.registry.pullOptions(&o.global)
	quietContainerd(o.global.logLevel)
	return func(ctx context.Context, ref string) error {
		why := "is not in containerd's store"
		if policy == images.PullAlways {
			why = "is pulled on every run (--pull always)"
		}
		fmt.Fprintf(w, "sandbox-runner: image %s %s; pulling it\n", ref, why)
		if o.json {
			// stderr only says what happens; no progress to clutter it.
			_, err := images.Pull(ctx, c, ref, opts)
			return err
		}
		img, took, err := pullOne(ctx, c, ref, opts, w)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "sandbox-runner: pulled %s (%s) in %s\n", img.Name(), img.Target().Digest, took.Round(time.Millisecond))
		return nil
	}
}

// localRunner connects to containerd and makes the runner a task runs on
// here: the OCI runtime judged for this host before anything starts, the
// catalog with the locally built images, and what a killed runner left
// swept away (it leaves its tasks running; the next one removes them).
// It returns the catalog the runner uses, and what closes the connection.
func (o *execOptions) localRunner(ctx context.Context, task runner.Task, catalog images.Catalog, std stdio) (*runner.Runner, images.Catalog, func(), error) {
	ocis, err := o.global.ociRuntimes()
	if err == nil {
		err = ocis.ValidateOCIRuntime(task, catalog)
	}
	if err != nil {
		return nil, catalog, nil, err
	}
	log, err := o.global.logger(std.err)
	if err != nil {
		return nil, catalog, nil, err
	}
	conn, err := o.global.connect(ctx, log)
	if err != nil {
		return nil, catalog, nil, err
	}
	if task.Pull != images.PullAlways {
		if catalog, err = o.global.withLocalImages(ctx, conn.Client, catalog); err != nil {
			conn.Close()
			return nil, catalog, nil, err
		}
	}
	opts := append(o.global.runnerOptions(log, catalog), runner.WithPull(o.puller(conn.Client, task.Pull, std.err)), runner.WithOCIRuntimes(ocis))
	r, err := runner.New(conn.Client, opts...)
	if err != nil {
		conn.Close()
		return nil, catalog, nil, err
	}
	sweepLeftovers(ctx, r, log)
	return r, catalog, func() { conn.Close() }, nil
}
