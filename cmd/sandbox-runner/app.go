package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/spf13/pflag"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

// version is stamped at build time with -X main.version=...
var version = "dev"

// Exit statuses of the runner itself. A task's own status passes through
// unchanged; 124 and 130 are a timeout and a cancellation (see runner).
const (
	exitOK = 0
	// exitFailed is a check that found problems.
	exitFailed = 1
	// exitUsage is bad input: flags, limits, file names, runtimes.
	exitUsage = 2
	// exitRunner is the runner failing to run the task, as Docker's 125.
	exitRunner = 125
)

type stdio struct {
	in       io.Reader
	out, err io.Writer
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, std stdio) int
}

func commands() []command {
	return []command{
		{"exec", "run code in a fresh sandbox and exit with its status", runExec},
		{"check", "check that this host can sandbox tasks, and say what to fix", runCheck},
		{"images", "import, list and remove runtime images", runImages},
		{"runtimes", "list the runtimes and their images", runRuntimes},
		{"gc", "remove what crashed runners left behind", runGC},
		{"version", "print the version", runVersion},
	}
}

func run(ctx context.Context, args []string, std stdio) int {
	if len(args) == 0 {
		usage(std.err)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(std.out)
		return exitOK
	case "-v", "--version":
		return runVersion(ctx, nil, std)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], std)
		}
	}
	fmt.Fprintf(std.err, "sandbox-runner: unknown command %q\n\n", args[0])
	usage(std.err)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: sandbox-runner COMMAND [FLAGS]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Runs untrusted code in a fresh, hardened container per task, through containerd.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'sandbox-runner COMMAND --help' for a command's flags.")
}

// globalFlags are the flags every command that talks to containerd has.
type globalFlags struct {
	address     string
	namespace   string
	snapshotter string
	stateDir    string
	logLevel    string
}

func (g *globalFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&g.address, "address", os.Getenv("CONTAINERD_ADDRESS"),
		"containerd socket (env CONTAINERD_ADDRESS); default: "+runner.DefaultAddress+", else a private containerd under --state-dir")
	fs.StringVar(&g.namespace, "namespace", envOr("SANDBOX_RUNNER_NAMESPACE", runner.DefaultNamespace),
		"containerd namespace for everything the runner creates (env SANDBOX_RUNNER_NAMESPACE)")
	fs.StringVar(&g.snapshotter, "snapshotter", envOr("CONTAINERD_SNAPSHOTTER", runner.DefaultSnapshotter),
		"containerd snapshotter (env CONTAINERD_SNAPSHOTTER)")
	fs.StringVar(&g.stateDir, "state-dir", envOr("SANDBOX_RUNNER_STATE_DIR", runner.DefaultStateDir),
		"directory for staged files and a private containerd (env SANDBOX_RUNNER_STATE_DIR)")
	fs.StringVar(&g.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func (g *globalFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usageError("--log-level %q: give debug, info, warn or error", g.logLevel)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), nil
}

func (g *globalFlags) connect(ctx context.Context, log *slog.Logger) (*runner.Connection, error) {
	return runner.Connect(ctx, runner.ConnectOptions{Address: g.address, StateDir: g.stateDir, Log: log})
}

func (g *globalFlags) runnerOptions(log *slog.Logger) []runner.Option {
	return []runner.Option{
		runner.WithNamespace(g.namespace),
		runner.WithSnapshotter(g.snapshotter),
		runner.WithStateDir(g.stateDir),
		runner.WithLogger(log),
	}
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name, args string, w io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(w)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(w, "Usage: sandbox-runner %s %s\n\nFlags:\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args into fs; ok is false when the command should return
// code right away (help asked for, or bad flags).
func parse(fs *pflag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return 0, true
}

// errUsage marks errors in what the user typed.
var errUsage = errors.New("usage")

func usageError(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errUsage)
}

// exitCode maps an error from the runner or the CLI to an exit status.
func exitCode(err error) int {
	switch {
	case errors.Is(err, errUsage), errdefs.IsInvalidArgument(err):
		return exitUsage
	case errors.Is(err, context.Canceled):
		return runner.ExitCancelled
	default:
		return exitRunner
	}
}

// report prints err for a person and returns its exit status.
func report(w io.Writer, err error) int {
	msg := strings.TrimSuffix(err.Error(), ": "+errUsage.Error())
	fmt.Fprintf(w, "sandbox-runner: %s\n", msg)
	return exitCode(err)
}
