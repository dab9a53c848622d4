package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// maxInput bounds one --input file: a run's stdin is read whole (and a
// request to the service carries it whole).
const maxInput = runner.DefaultMaxFileSize

// batchFlags are exec's flags for running one program on many inputs.
type batchFlags struct {
	inputs   []string
	parallel int
}

func (b *batchFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&b.inputs, "input", nil, "a file whose content is one run's standard input; repeatable: the program is compiled once and run on each input, in a fresh sandbox each, and a result is printed per input")
	fs.IntVar(&b.parallel, "parallel", 1, "with --input, how many runs may go at once here (through the service: up to its max_concurrent)")
}

// batch turns task and the --input files into a batch.
func (o *execOptions) batch(task runner.Task, stdinGiven bool) (runner.Batch, [][]byte, error) {
	b := runner.Batch{Task: task, Parallel: o.runs.parallel}
	if stdinGiven {
		return b, nil, usageError("--stdin and --input given: each --input is one run's stdin; give the other input as an --input too")
	}
	if o.runs.parallel < 1 {
		return b, nil, usageError("--parallel %d: give 1 or more", o.runs.parallel)
	}
	// Each run has its own stdin: a piped one is not the batch's.
	b.Stdin = nil
	var stdins [][]byte
	for _, path := range o.runs.inputs {
		f, err := os.Open(path)
		if err != nil {
			return b, nil, usageError("--input: %v", err)
		}
		in, err := io.ReadAll(io.LimitReader(f, maxInput+1))
		f.Close()
		if err != nil {
			return b, nil, usageError("--input %s: %v", path, err)
		}
		if len(in) > maxInput {
			return b, nil, usageError("--input %s holds more than %d bytes: a run's input is read whole", path, maxInput)
		}
		stdins = append(stdins, in)
		b.Runs = append(b.Runs, runner.Run{Stdin: bytes.NewReader(in)})
	}
	return b, stdins, nil
}

// execBatch runs task on every --input: through the service when --via
// says so, else here, and prints a result per input.
func (o *execOptions) execBatch(ctx context.Context, task runner.Task, catalog images.Catalog, std stdio) int {
	b, stdins, err := o.batch(task, o.changed != nil && o.changed("stdin"))
	if err == nil {
		err = runner.ValidateBatch(b, catalog, o.global.file.MaxRuns)
	}
	if err != nil {
		return o.fail(std, err)
	}
	if code, done := o.batchVia(ctx, task, stdins, std); done {
		return code
	}
	r, catalog, closeConn, err := o.localRunner(ctx, task, catalog, std)
	if err != nil {
		return o.fail(std, err)
	}
	defer closeConn()
	res, err := r.RunBatch(ctx, b)
	if err != nil {
		return o.fail(std, withImageHint(err, task, catalog))
	}
	code, err := o.printBatch(std, res, r.Limits(task.Limits))
	if err != nil {
		return report(std.err, err)
	}
	return code
}

// viaClient returns the service's client when --via says a task goes
// there and one answers (as runVia decides), else nil with done false
// to run here, or done true with the exit status of a refusal.
func (o *execOptions) viaClient(ctx context.Context, std stdio) (c *service.Client, mode string, code int, done bool) {
	mode = o.via.mode
	switch mode {
	case viaDirect:
		return nil, mode, 0, false
	case viaAuto, viaService:
	default:
		return nil, mode, o.fail(std, usageError("--via %q: give auto, service or direct", mode)), true
	}
	var local []string
	for _, f := range localFlags {
		if o.changed != nil && o.changed(f) {
			local = append(local, "--"+f)
		}
	}
	for _, e := range localEnv {
		if os.Getenv(e) != "" {
			local = append(local, e)
		}
	}
	if len(local) > 0 {
		if mode == viaService {
			return nil, mode, o.fail(std, usageError("%s cannot be used with --via service: the service runs tasks on its own containerd; use --via direct", strings.Join(local, ", "))), true
		}
		return nil, mode, 0, false
	}
	c = service.NewClient(first(o.via.socket, os.Getenv("SANDBOX_RUNNER_SOCKET"), o.global.file.Service.Socket, service.DefaultSocket))
	if mode == viaAuto && !serviceAnswers(ctx, c) {
		return nil, mode, 0, false
	}
	return c, mode, 0, false
}

// batchVia sends the batch to the service when --via allows, as runVia
// does a task. done is false when it is to run here instead.
func (o *execOptions) batchVia(ctx context.Context, task runner.Task, stdins [][]byte, std stdio) (code int, done bool) {
	c, mode, code, done := o.viaClient(ctx, std)
	if c == nil {
		return code, done
	}
	task.Stdin = nil
	res, err := c.ExecBatch(ctx, service.NewBatchRequest(task, stdins))
	switch {
	case err != nil && mode == viaAuto && errors.Is(err, service.ErrUnreachable):
		return 0, false
	case err != nil:
		return o.fail(std, err), true
	}
	code, err = o.printBatch(std, res, task.Limits.Filled())
	if err != nil {
		return report(std.err, err), true
	}
	return code, true
}

// printBatch prints a batch's result: with --json the whole document;
// else the compiler's output when it failed, then per input a header
// line on stdout ("==> FILE <==", as head(1) prints many files), the
// run's stdout, its stderr on stderr, and how it ended when the exit
// status alone does not say. The exit status is the compile stage's
// when it failed, else the first run's that was not 0, else 0.
func (o *execOptions) printBatch(std stdio, res *runner.BatchResult, l runner.Limits) (int, error) {
	code := 0
	if res.CompileFailed && res.Compile != nil {
		code = res.Compile.ExitCode
	}
	for _, run := range res.Runs {
		if code == 0 && run.ExitCode != 0 {
			code = run.ExitCode
		}
	}
	if o.json {
		enc := json.NewEncoder(std.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return 0, fmt.Errorf("writing result: %w", err)
		}
		return code, nil
	}
	if res.CompileFailed {
		_, _ = std.out.Write(res.Compile.Stdout.Data)
		_, _ = std.err.Write(res.Compile.Stderr.Data)
		explain(std.err, &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeCompileFailed}, Compile: res.Compile}, l)
		fmt.Fprintf(std.err, "sandbox-runner: none of the %d inputs was run\n", len(res.Runs))
		return code, nil
	}
	for i, run := range res.Runs {
		if i > 0 {
			fmt.Fprintln(std.out)
		}
		fmt.Fprintf(std.out, "==> %s <==\n", o.runs.inputs[i])
		_, _ = std.out.Write(run.Stdout.Data)
		_, _ = std.err.Write(run.Stderr.Data)
		if run.Outcome == runner.OutcomeExited && run.ExitCode != 0 {
			fmt.Fprintf(std.err, "sandbox-runner: %s: exit status %d\n", o.runs.inputs[i], run.ExitCode)
		}
		explain(prefixed{std.err, o.runs.inputs[i] + ": "}, run, l)
	}
	return code, nil
}

// prefixed writes every line with a prefix; explain's lines name the
// input they are about.
type prefixed struct {
	w      io.Writer
	prefix string
}

func (p prefixed) Write(b []byte) (int, error) {
	const tag = "sandbox-runner: "
	out := bytes.ReplaceAll(b, []byte(tag), []byte(tag+p.prefix))
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}
