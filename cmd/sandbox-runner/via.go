package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// Values of exec's --via.
const (
	viaAuto    = "auto"
	viaService = "service"
	viaDirect  = "direct"
)

// maxViaStdin is the most stdin a task sent to the service may have: a
// request carries it whole. More runs here, where it is streamed.
const maxViaStdin = runner.DefaultMaxFileSize

// pingTimeout bounds the check that a service answers on its socket.
const pingTimeout = 2 * time.Second

// viaOptions are exec's --via and --socket: whether a task goes to a
// running service (`sandbox-runner serve`) instead of running here.
type viaOptions struct {
	mode   string
	socket string
}

func (v *viaOptions) register(fs *pflag.FlagSet) {
	fs.StringVar(&v.mode, "via", viaAuto, "where the task runs: auto (through the service when its socket answers, else here), service, or direct")
	fs.StringVar(&v.socket, "socket", "", "the service's socket (env SANDBOX_RUNNER_SOCKET; config [service] socket; default "+service.DefaultSocket+")")
}

// localFlags are exec's flags, and localEnv the variables, that pick a
// containerd or its settings: the service has its own, so a task given
// them runs here.
var (
	localFlags = []string{"address", "namespace", "snapshotter", "state-dir", "registry-config"}
	localEnv   = []string{"CONTAINERD_ADDRESS", "SANDBOX_RUNNER_NAMESPACE", "CONTAINERD_SNAPSHOTTER", "SANDBOX_RUNNER_STATE_DIR"}
)

// runVia runs task through the service when --via says so and one
// answers. done is false when the task is to run here instead; task's
// stdin is then as it was.
func (o *execOptions) runVia(ctx context.Context, task *runner.Task, std stdio) (code int, done bool) {
	c, mode, code, done := o.viaClient(ctx, std)
	if c == nil {
		return code, done
	}
	if o.interactive {
		// Stdin goes as it comes: an interactive session (interactive.go).
		return o.runInteractive(ctx, c, task, std, mode)
	}

	var stdin []byte
	if task.Stdin != nil {
		b, err := io.ReadAll(io.LimitReader(task.Stdin, maxViaStdin+1))
		if err != nil {
			return o.fail(std, fmt.Errorf("reading stdin: %w", err)), true
		}
		if len(b) > maxViaStdin {
			if mode == viaService {
				return o.fail(std, usageError("stdin holds more than %d bytes and a request to the service carries it whole: use --via direct", maxViaStdin)), true
			}
			task.Stdin = io.MultiReader(bytes.NewReader(b), task.Stdin)
			return 0, false
		}
		stdin = b
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req := service.NewRequest(*task, stdin)
	var res *runner.Result
	var err error
	if o.json {
		res, err = c.Exec(ctx, req)
	} else {
		// The output as it comes, as a direct run prints it.
		res, err = c.ExecStream(ctx, req, closeWatch{std.out, cancel}, closeWatch{std.err, cancel})
	}
	switch {
	case errors.Is(context.Cause(ctx), errOutputClosed):
		// The service kills the task when the request goes away.
		return exitBrokenPipe, true
	case err != nil && mode == viaAuto && errors.Is(err, service.ErrUnreachable):
		// Gone since it answered: nothing was sent, so run here.
		if task.Stdin != nil {
			task.Stdin = bytes.NewReader(stdin)
		}
		return 0, false
	case errors.Is(err, context.Canceled) && !o.json:
		// The service kills the task when the request goes away.
		fmt.Fprintln(std.err, "sandbox-runner: cancelled; killed")
		return runner.ExitCancelled, true
	case err != nil:
		return o.fail(std, err), true
	}
	// Without --json, the output was streamed as it came.
	return o.printResult(std, res, task.Limits.Filled(), true), true
}

// printResult is how exec, exec --via and submit end: the JSON document
// with --json, else the task's output unless it was streamed as it came
// (the compile stage's, then the run's, as a direct run streams them)
// and the line that explains how the task ended; then the files
// --copy-out asked for. It returns the exit status.
func (o *execOptions) printResult(std stdio, res *runner.Result, limits runner.Limits, streamed bool) int {
	if o.json {
		enc := json.NewEncoder(std.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return report(std.err, fmt.Errorf("writing result: %w", err))
		}
		return o.writeFiles(std, res, res.ExitCode)
	}
	if !streamed {
		for _, st := range []*runner.Stage{res.Compile, &res.Stage} {
			if st != nil {
				_, _ = std.out.Write(st.Stdout.Data)
				_, _ = std.err.Write(st.Stderr.Data)
			}
		}
	}
	explain(std.err, res, limits)
	return o.writeFiles(std, res, res.ExitCode)
}

// serviceAnswers tells whether a service answers on c's socket.
func serviceAnswers(ctx context.Context, c *service.Client) bool {
	st, err := os.Stat(c.Socket())
	if err != nil || st.Mode().Type() != fs.ModeSocket {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	return c.Ping(pctx) == nil
}
