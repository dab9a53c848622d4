package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/fleet"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// submitOptions are submit's own flags; the task's are exec's.
type submitOptions struct {
	exec execOptions
	nats natsFlags
	id   string
	wait string
}

func runSubmit(ctx context.Context, args []string, std stdio) int {
	var o submitOptions
	e := &o.exec
	fs := newFlagSet("submit", "--nats URL --runtime NAME [FLAGS] [FILE | -c CODE | < CODE] [-- ARG...]", std.err)
	o.nats.register(fs)
	fs.StringVar(&o.id, "id", "", "the task's id (letters, digits, '-', '_'): a task submitted again with the same id gets the first one's answer; default: a fresh one")
	fs.StringVar(&o.wait, "wait", "", "give up waiting for the answer after this long (exit 125); the task stays queued (default: wait as long as it takes)")
	// The task's flags are exec's, read by exec's own code; a limit not
	// given is left to the worker (its config's, then the runner's).
	e.registerTask(fs, "worker")
	fs.BoolVar(&e.json, "json", false, "print the JSON result instead of the task's output")
	fs.StringVar(&e.pull, "pull", string(images.PullMissing), "when the worker pulls the image: missing, always or never")
	fs.StringVar(&e.global.configPath, "config", "", "config file (env SANDBOX_RUNNER_CONFIG; default /etc/sandbox-runner/config.toml, if it exists)")
	fs.StringVar(&e.global.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	if code, ok := parse(fs, args, &e.global, std.out); !ok {
		return code
	}
	e.codeSet = fs.Changed("code")
	e.changed = fs.Changed
	code, err := o.submit(ctx, fs.Args(), fs.ArgsLenAtDash(), std)
	if err != nil {
		return e.fail(std, err)
	}
	return code
}

// submit queues the task and waits for its answer; an error is the
// runner's exit status as exec reports it.
func (o *submitOptions) submit(ctx context.Context, args []string, dash int, std stdio) (int, error) {
	e := &o.exec
	cfg := e.global.file.Fleet
	log, err := e.global.logger(std.err)
	if err != nil {
		return 0, err
	}
	task, err := e.task(args, dash, std.in)
	if err != nil {
		return 0, err
	}
	// The subject is the runtime's own name, not an alias. A runtime this
	// host does not know may still be one the workers know.
	catalog, err := e.global.file.Catalog()
	if err != nil {
		return 0, err
	}
	if rt, err := catalog.Lookup(task.Runtime); err == nil && rt.Name != "" {
		task.Runtime = rt.Name
	}
	if err := fleet.ValidateRuntime(task.Runtime); err != nil {
		return 0, err
	}
	var stdin []byte
	if task.Stdin != nil {
		if stdin, err = io.ReadAll(io.LimitReader(task.Stdin, maxViaStdin+1)); err != nil {
			return 0, fmt.Errorf("reading stdin: %w", err)
		}
		if len(stdin) > maxViaStdin {
			return 0, usageError("stdin holds more than %d bytes: a task message carries it whole", maxViaStdin)
		}
	}
	req := service.NewRequest(task, stdin)
	// Checked as a worker will check it, but against no host's limits:
	// those are the worker's to judge.
	if _, err := service.TaskOf(&req, runner.Limits{}); err != nil {
		return 0, err
	}
	id := o.id
	if id == "" {
		id = fleet.NewTaskID()
	}
	if err := fleet.ValidateID(id); err != nil {
		return 0, err
	}
	var wait time.Duration
	if o.wait != "" {
		if wait, err = runner.ParseDuration(o.wait); err != nil {
			return 0, fmt.Errorf("--wait: %w", err)
		}
	}

	streamOpts, err := streamOptions(cfg)
	if err != nil {
		return 0, err
	}
	host, _ := os.Hostname()
	nc, err := o.nats.connect(cfg, "sandbox-runner submit "+host)
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	client, err := fleet.NewClient(nc, append(streamOpts, fleet.WithLogger(log))...)
	if err != nil {
		return 0, err
	}
	if ws, err := client.Workers(ctx); err == nil && !anyRuns(ws, task.Runtime) {
		fmt.Fprintf(std.err, "sandbox-runner: no live worker runs %s now; the task waits in the queue until one does\n", task.Runtime)
	}
	watch, err := client.Watch(id)
	if err != nil {
		return 0, err
	}
	defer watch.Close()
	if err := client.Submit(ctx, fleet.Task{ID: id, Request: req}); err != nil {
		return 0, err
	}
	log.Info("task queued", "task", id, "subject", fleet.TaskSubject(task.Runtime))

	wctx := ctx
	if wait > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	ans, err := watch.Wait(wctx)
	switch {
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return 0, fmt.Errorf("no answer to task %s within %s; it stays queued and will still run", id, wait)
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(std.err, "sandbox-runner: stopped waiting; task %s stays queued and will still run\n", id)
		return runner.ExitCancelled, nil
	case err != nil:
		return 0, err
	}
	if err := ans.Err(); err != nil {
		return 0, err
	}
	res := ans.Result
	if ans.Truncated {
		fmt.Fprintln(std.err, "sandbox-runner: the output was cut further to fit the NATS server's max_payload")
	}
	return e.printResult(std, res, task.Limits.Filled(), false), nil
}

// anyRuns tells whether a live worker takes tasks of runtime.
func anyRuns(ws []fleet.WorkerInfo, runtime string) bool {
	for _, w := range ws {
		if !w.Draining && slices.Contains(w.Runtimes, runtime) {
			return true
		}
	}
	return false
}
