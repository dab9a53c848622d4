package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/spf13/pflag"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/config"
	"github.com/sandbox-runner/sandbox-runner/runner/host"
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
	// exitBrokenPipe is exec's status when whoever read its output went
	// away (`| head`): the task is killed and removed, and the status is
	// a pipe writer's killed by SIGPIPE, 128+13.
	exitBrokenPipe = 141
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
		{"images", "build, pull, import, list and remove runtime images", runImages},
		{"runtimes", "list the runtimes and their images", runRuntimes},
		{"gc", "remove what crashed runners left behind", runGC},
		{"serve", "run the HTTP service other programs send tasks to", runServe},
		{"status", "print a running service's success metrics against the deployment targets", runStatus},
		{"worker", "take tasks from NATS JetStream as one of a fleet of workers", runWorker},
		{"workers", "list the live workers of a fleet", runWorkers},
		{"submit", "queue code for a fleet of workers and wait for its result", runSubmit},
		{"version", "print the version", runVersion},
	}
}

func run(ctx context.Context, args []string, std stdio) int {
	if len(args) == 0 {
		usage(std.err)
		return exitUsage
	}
	if args[0] == "help" && len(args) > 1 {
		// "help exec" is "exec --help"; "help images build", "images build --help".
		args = append(args[1:], "--help")
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
	fmt.Fprintf(std.err, "sandbox-runner: unknown command %q%s\n\n", args[0], suggestCommand(args))
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
// Each takes, in this order: the flag, its environment variable, the
// config file, the built-in default.
type globalFlags struct {
	configPath  string
	address     string
	namespace   string
	snapshotter string
	stateDir    string
	logLevel    string
	// ociRuntime is the default OCI runtime: $SANDBOX_RUNNER_OCI_RUNTIME,
	// else the config's oci_runtime, else the fastest usable one.
	ociRuntime string

	// file is the config file, read by preload or load; filePath is
	// where preload read it from.
	file      *config.File
	filePath  string
	preloaded bool
	// uids is the config's uid_range, zero for the default.
	uids runner.UIDRange
}

func (g *globalFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&g.configPath, "config", "", "config file (env SANDBOX_RUNNER_CONFIG; default "+config.DefaultPath+", if it exists)")
	fs.StringVar(&g.address, "address", "",
		"containerd socket (env CONTAINERD_ADDRESS); default: "+host.DefaultAddress+", else a private containerd under --state-dir")
	fs.StringVar(&g.namespace, "namespace", "",
		"containerd namespace for everything the runner creates (env SANDBOX_RUNNER_NAMESPACE; default "+runner.DefaultNamespace+")")
	fs.StringVar(&g.snapshotter, "snapshotter", "", "containerd snapshotter (env CONTAINERD_SNAPSHOTTER; default "+runner.DefaultSnapshotter+")")
	fs.StringVar(&g.stateDir, "state-dir", "",
		"directory for task dirs and a private containerd (env SANDBOX_RUNNER_STATE_DIR; default "+runner.DefaultStateDir+")")
	fs.StringVar(&g.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
}

// preload reads the config file before the flags are parsed, so that
// its values can be the flags' defaults and --help shows them, as
// nerdctl's do: the file a --config in args names, else
// $SANDBOX_RUNNER_CONFIG's, else config.DefaultPath's. A file that does
// not load is left for load to report once the flags are parsed.
func (g *globalFlags) preload(args []string) {
	path := first(configArg(args), os.Getenv("SANDBOX_RUNNER_CONFIG"))
	if f, err := config.Load(path); err == nil {
		g.file, g.filePath, g.preloaded = f, path, true
	}
}

// configArg is the value of the last --config in args (the one pflag
// keeps), before any "--".
func configArg(args []string) string {
	path := ""
	for i, a := range args {
		switch {
		case a == "--":
			return path
		case a == "--config" && i+1 < len(args):
			path = args[i+1]
		case strings.HasPrefix(a, "--config="):
			path = strings.TrimPrefix(a, "--config=")
		}
	}
	return path
}

// configDefaults makes values, by flag name, the defaults of fs's flags,
// as nerdctl does with its config file: --help shows them, and a flag
// not given has them, so that the command reads one value per setting
// instead of a chain of fallbacks. Call it once the flags are registered
// and before they are parsed; an empty value keeps the flag's own
// default. Only for flags whose Set replaces the value (not slices).
func configDefaults(fs *pflag.FlagSet, values map[string]string) {
	for name, v := range values {
		f := fs.Lookup(name)
		if v == "" || f == nil {
			continue
		}
		if f.Value.Set(v) == nil {
			f.DefValue = v
		}
	}
}

// nonZero is n as a flag value, or "" for 0 (left to the flag's default).
func nonZero(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

// load reads the config file, unless preload read the same one, and
// settles every global setting.
func (g *globalFlags) load() error {
	path := first(g.configPath, os.Getenv("SANDBOX_RUNNER_CONFIG"))
	f := g.file
	if !g.preloaded || g.filePath != path {
		var err error
		if f, err = config.Load(path); err != nil {
			return err
		}
	}
	g.file = f
	var err error
	// "unix:///run/containerd/containerd.sock", as ctr and nerdctl take it.
	g.address = strings.TrimPrefix(first(g.address, os.Getenv("CONTAINERD_ADDRESS"), f.Address), "unix://")
	g.namespace = first(g.namespace, os.Getenv("SANDBOX_RUNNER_NAMESPACE"), f.Namespace, runner.DefaultNamespace)
	g.snapshotter = first(g.snapshotter, os.Getenv("CONTAINERD_SNAPSHOTTER"), f.Snapshotter, runner.DefaultSnapshotter)
	g.stateDir = first(g.stateDir, os.Getenv("SANDBOX_RUNNER_STATE_DIR"), f.StateDir, runner.DefaultStateDir)
	if f.UIDRange != "" {
		if g.uids, err = runner.ParseUIDRange(f.UIDRange); err != nil {
			return fmt.Errorf("%w: uid_range: %w", errdefs.ErrInvalidArgument, err)
		}
	}
	g.ociRuntime = first(os.Getenv("SANDBOX_RUNNER_OCI_RUNTIME"), f.OCIRuntime)
	// Refused before any command talks to containerd: nothing may reach
	// Docker's "moby" namespace, not even `images ls`.
	return host.ValidateNamespace(g.namespace)
}

// first returns the first non-empty value.
func first(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

func (g *globalFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usageError("--log-level %q: give debug, info, warn or error", g.logLevel)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), nil
}

func (g *globalFlags) connect(ctx context.Context, log *slog.Logger) (*host.Connection, error) {
	conn, err := host.Connect(ctx, host.ConnectOptions{Address: g.address, StateDir: g.stateDir, Log: log})
	return conn, withConnectHint(err)
}

// withConnectHint adds to a Connect error that found no containerd what
// a person can do about it.
func withConnectHint(err error) error {
	var nc *host.NoContainerdError
	if !errors.As(err, &nc) {
		return err
	}
	if nc.Given {
		return fmt.Errorf("%w\nhint: is containerd running and listening on %s? Check `systemctl status containerd`, or leave --address and CONTAINERD_ADDRESS unset to let sandbox-runner find or start one", err, nc.Address)
	}
	return fmt.Errorf("%w\nhint: start containerd (`systemctl start containerd`) or allow a private one", err)
}

// withLocalImages points each runtime whose image is not in the store at
// the image `images build` made for it, if any (images.WithLocalImages).
func (g *globalFlags) withLocalImages(ctx context.Context, c *client.Client, cat images.Catalog) (images.Catalog, error) {
	return images.WithLocalImages(namespaces.WithNamespace(ctx, g.namespace), c, cat)
}

// ociRuntimes is how the runner picks each task's OCI runtime: the
// default, and the config's rules per runtime. A name that is unknown
// or not usable here is bad input.
func (g *globalFlags) ociRuntimes() (*runner.OCIRuntimes, error) {
	return runner.NewOCIRuntimes(g.ociRuntime, g.file.OCIRuntimeRules(),
		runner.WithVersionCache(filepath.Join(g.stateDir, "cache")))
}

func (g *globalFlags) runnerOptions(log *slog.Logger, catalog images.Catalog) []runner.Option {
	opts := []runner.Option{
		runner.WithNamespace(g.namespace),
		runner.WithSnapshotter(g.snapshotter),
		runner.WithStateDir(g.stateDir),
		runner.WithCatalog(catalog),
		runner.WithLogger(log),
	}
	if init := first(g.file.Init, g.file.Service.Pool.Init); init != "" {
		opts = append(opts, runner.WithInit(init))
	}
	if g.uids != (runner.UIDRange{}) {
		opts = append(opts, runner.WithUIDRange(g.uids))
	}
	if g.file.MaxRuns > 0 {
		opts = append(opts, runner.WithMaxRuns(g.file.MaxRuns))
	}
	return opts
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name, args string, w io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(w)
	fs.SortFlags = false
	fs.Usage = func() {
		// parse points the output at stdout for --help.
		fmt.Fprintf(fs.Output(), "%s\n\nFlags:\n%s", wrapWords("Usage: sandbox-runner "+name+" "+args, helpWidth, "    "),
			fs.FlagUsagesWrapped(helpWidth))
	}
	return fs
}

// helpWidth is where --help wraps.
const helpWidth = 80

// wrapWords breaks s at spaces outside brackets into lines of at most
// width columns where it can, the lines after the first indented by
// indent.
func wrapWords(s string, width int, indent string) string {
	var words []string
	depth := 0
	for _, f := range strings.Fields(s) {
		if depth > 0 {
			words[len(words)-1] += " " + f
		} else {
			words = append(words, f)
		}
		depth += strings.Count(f, "[") - strings.Count(f, "]")
	}
	var b strings.Builder
	line := 0
	for i, w := range words {
		switch {
		case i == 0:
		case line+1+len(w) > width:
			b.WriteString("\n" + indent)
			line = len(indent)
		default:
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	return b.String()
}

// parse parses args into fs and, when g is not nil, loads the config;
// ok is false when the command should return code right away (help
// asked for, bad flags, a bad config file). When the command has --json
// and it was asked for, the refusal is also written to out as the same
// JSON error document a failed task gets, so that a script reading
// stdout always gets one.
func parse(fs *pflag.FlagSet, args []string, g *globalFlags, out io.Writer) (code int, ok bool) {
	// Help asked for is the command's output: stdout, exit 0.
	errOut := fs.Output()
	fs.SetOutput(out)
	err := fs.Parse(args)
	fs.SetOutput(errOut)
	if err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK, false
		}
		// With ContinueOnError, pflag reports nothing itself. A flag
		// known from docker run gets what to do instead.
		if hint := flagHint(fs, args); hint != "" {
			err = errors.New(hint)
		}
		fmt.Fprintf(fs.Output(), "sandbox-runner: %v\nRun 'sandbox-runner %s --help' for its flags.\n", err, fs.Name())
		if jsonRequested(fs, args) {
			writeJSONError(out, usageError("%v", err))
		}
		return exitUsage, false
	}
	if g != nil {
		if err := g.load(); err != nil {
			if jsonRequested(fs, args) {
				writeJSONError(out, err)
			}
			return report(fs.Output(), err), false
		}
	}
	return 0, true
}

// jsonRequested tells whether the command has --json and args ask for
// it: parsed, or written before an argument parsing stopped at.
func jsonRequested(fs *pflag.FlagSet, args []string) bool {
	f := fs.Lookup("json")
	if f == nil {
		return false
	}
	if f.Changed {
		return f.Value.String() == "true"
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--json" {
			return true
		}
		if v, ok := strings.CutPrefix(a, "--json="); ok {
			b, err := strconv.ParseBool(v)
			return err == nil && b
		}
	}
	return false
}

// writeJSONError writes err as the JSON document --json prints when a
// command fails before it has a result.
func writeJSONError(w io.Writer, err error) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(struct {
		Error    string `json:"error"`
		Kind     string `json:"kind"`
		ExitCode int    `json:"exit_code"`
	}{Error: strings.TrimSuffix(err.Error(), ": "+errUsage.Error()), Kind: errorKind(err), ExitCode: exitCode(err)})
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

// sweepLeftovers removes what runners that died left behind, saying so;
// a sweep that fails is no reason not to go on. It returns the sweep's
// report and error for the metrics.
func sweepLeftovers(ctx context.Context, r *runner.Runner, log *slog.Logger) (runner.SweepReport, error) {
	rep, err := r.Sweep(ctx, false)
	switch {
	case err != nil:
		log.Warn("sweeping leftovers", "error", err)
	case rep.Total() > 0:
		log.Warn("removed what a dead runner left behind", "tasks", rep.Tasks, "containers", rep.Containers,
			"snapshots", rep.Snapshots, "leases", rep.Leases, "dirs", rep.Dirs, "mounts", rep.Mounts)
	}
	return rep, err
}

// runDaemon finishes the flags of a long-running command (serve, worker)
// and runs it: it logs a line per task, at info, as JSON when stderr is
// not a terminal, and takes no arguments.
func runDaemon(name string, fs *pflag.FlagSet, g *globalFlags, args []string, std stdio,
	run func(changed func(string) bool, log *slog.Logger) error) int {
	fs.Lookup("address").Usage = "containerd socket (env CONTAINERD_ADDRESS; default " + host.DefaultAddress + "); " +
		name + " never starts a private containerd"
	g.logLevel = "info"
	fs.Lookup("log-level").DefValue = "info"
	if code, ok := parse(fs, args, g, std.out); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return report(std.err, usageError("%s takes no arguments, got %q", name, fs.Arg(0)))
	}
	log, err := serviceLogger(std.err, g.logLevel)
	if err != nil {
		return report(std.err, err)
	}
	logContainerdTo(log)
	if err := run(fs.Changed, log); err != nil {
		log.Error(name+" failed", "error", err)
		return report(std.err, err)
	}
	return exitOK
}
