package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// registerInteractive adds exec's -i.
func (o *execOptions) registerInteractive(fs *pflag.FlagSet) {
	fs.BoolVarP(&o.interactive, "interactive", "i", false,
		"pass this process's stdin to the task as it comes, a terminal's too, and keep it open until it ends (Ctrl-D); through the service, an interactive session (GET /v1/exec/ws)")
}

// interactiveStdin makes this process's stdin the task's, for -i.
func (o *execOptions) interactiveStdin(t *runner.Task, stdin io.Reader, codeFromStdin bool) error {
	switch {
	case codeFromStdin:
		return usageError("-i passes stdin to the task, so the code cannot come on stdin: give FILE or -c CODE")
	case o.stdinFile != "":
		return usageError("-i and --stdin both given: -i passes this process's stdin; drop one of them")
	}
	t.Stdin = stdin
	return nil
}

// runInteractive runs task in an interactive session of the service c
// talks to: the task's stdin is this process's, sent as it comes rather
// than whole. done is false when the task is to run here instead (the
// service went away before anything was sent).
func (o *execOptions) runInteractive(ctx context.Context, c *service.Client, task *runner.Task, std stdio, mode string) (code int, done bool) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var stdout, stderr io.Writer = closeWatch{std.out, cancel}, closeWatch{std.err, cancel}
	if o.json {
		stdout, stderr = io.Discard, io.Discard
	}
	res, err := c.Interactive(ctx, service.NewRequest(*task, nil), task.Stdin, stdout, stderr, nil)
	switch {
	case err != nil && mode == viaAuto && errors.Is(err, service.ErrUnreachable):
		return 0, false
	case errors.Is(context.Cause(ctx), errOutputClosed):
		// The service has killed the task; nobody reads a report.
		return exitBrokenPipe, true
	case err != nil:
		return o.fail(std, err), true
	}
	if o.json {
		enc := json.NewEncoder(std.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return report(std.err, fmt.Errorf("writing result: %w", err)), true
		}
		return res.ExitCode, true
	}
	explain(std.err, res, task.Limits.Filled())
	return res.ExitCode, true
}
