package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/client"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/config"
	"github.com/sandbox-runner/sandbox-runner/runner/host"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// serveOptions is everything `serve` reads from its flags; each falls
// back to its environment variable (where it has one), then to the
// config file's [service] section, then to the built-in default.
type serveOptions struct {
	global        globalFlags
	registry      registryFlags
	socket        string
	socketGroup   string
	tcp           string
	tokenFile     string
	maxConcurrent int
	queue         int
	maxBody       string
	grace         string
	idleTimeout   string
	pool          []string
	poolInit      string
	probeInterval string
	pistonAddr    string
}

func runServe(ctx context.Context, args []string, std stdio) int {
	var o serveOptions
	fs := newFlagSet("serve", "[FLAGS]", std.err)
	fs.StringVar(&o.socket, "socket", "", "unix socket to listen on, unless systemd passes one (env SANDBOX_RUNNER_SOCKET; config socket; default "+service.DefaultSocket+")")
	fs.StringVar(&o.socketGroup, "socket-group", "", "group that may use the socket, which is mode 0660 (config socket_group; default: the process's group)")
	fs.StringVar(&o.tcp, "tcp", "", "also listen on this TCP address, e.g. 127.0.0.1:8080; needs --token-file (config tcp)")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token every TCP request must carry (config token_file)")
	fs.IntVar(&o.maxConcurrent, "max-concurrent", 0, "tasks that run at once (config max_concurrent; default: the number of CPUs)")
	fs.IntVar(&o.queue, "queue", 0, "tasks that may wait for a slot; more are refused with 429 (config queue; default 4 per slot)")
	fs.StringVar(&o.maxBody, "max-body", "", "cap on a request body, e.g. 32m (config max_body; default 32m)")
	fs.StringVar(&o.grace, "grace", "", "how long running tasks may finish after SIGTERM before they are killed (config grace; default 30s)")
	fs.StringVar(&o.idleTimeout, "idle-timeout", "", "how long an interactive session's client (GET /v1/exec/ws) may send nothing, not even a ping, and a streamed answer's read nothing, before its task is killed (config idle_timeout; default 1m)")
	fs.StringArrayVar(&o.pool, "pool", nil, "keep N created sandboxes ready for RUNTIME, as RUNTIME=N; repeatable (config [service.pool.runtimes]; default: no pool)")
	fs.StringVar(&o.poolInit, "pool-init", "", "the static sandbox-runner-init binary, PID 1 of every sandbox (same as the config's init; default: next to this binary)")
	fs.StringVar(&o.pistonAddr, "piston-addr", "", "also answer Piston's v2 API (POST /api/v2/execute, GET /api/v2/runtimes) on this host:port, such as 127.0.0.1:2000; without authentication, so a loopback address only, unless --token-file is given (config piston_addr)")
	fs.StringVar(&o.probeInterval, "probe-interval", "", "how often containerd is probed for /metrics' sandbox_runner_containerd_up (config probe_interval; default 5s)")
	o.registry.register(fs)
	o.global.register(fs)
	// The environment, then the config's [service], are the flags'
	// defaults: serve reads each setting from its flag alone.
	o.global.preload(args)
	var cfg config.Service
	if o.global.file != nil {
		cfg = o.global.file.Service
	}
	configDefaults(fs, map[string]string{
		"socket":         first(os.Getenv("SANDBOX_RUNNER_SOCKET"), cfg.Socket),
		"socket-group":   cfg.SocketGroup,
		"tcp":            cfg.TCP,
		"token-file":     cfg.TokenFile,
		"max-concurrent": nonZero(cfg.MaxConcurrent),
		"max-body":       cfg.MaxBody,
		"grace":          cfg.Grace,
		"idle-timeout":   cfg.IdleTimeout,
		"probe-interval": cfg.ProbeInterval,
		"piston-addr":    cfg.PistonAddr,
	})
	return runDaemon("serve", fs, &o.global, args, std, func(changed func(string) bool, log *slog.Logger) error {
		return o.serve(ctx, changed, log)
	})
}

func (o *serveOptions) serve(ctx context.Context, changed func(string) bool, log *slog.Logger) error {
	cfg := o.global.file.Service
	listen := service.ListenConfig{
		Socket:      first(o.socket, service.DefaultSocket),
		SocketGroup: o.socketGroup,
		TCP:         o.tcp,
		Log:         log,
	}
	tokenFile := o.tokenFile
	catalog, err := o.global.file.Catalog()
	if err != nil {
		return err
	}
	opts := []service.Option{
		service.WithLogger(log),
		service.WithCatalog(catalog),
		service.WithLimits(o.global.file.TaskLimits),
		service.WithMaxRuns(o.global.file.MaxRuns),
		service.WithMaxConcurrent(firstInt(changed("max-concurrent"), o.maxConcurrent, runtime.NumCPU())),
	}
	switch {
	case changed("queue"):
		opts = append(opts, service.WithQueue(o.queue))
	case cfg.Queue != nil:
		opts = append(opts, service.WithQueue(*cfg.Queue))
	}
	if s := o.maxBody; s != "" {
		n, err := runner.ParseSize(s)
		if err != nil {
			return fmt.Errorf("--max-body: %w", err)
		}
		opts = append(opts, service.WithMaxBody(n))
	}
	if s := o.grace; s != "" {
		d, err := runner.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("--grace: %w", err)
		}
		opts = append(opts, service.WithGrace(d))
	}
	if s := o.idleTimeout; s != "" {
		d, err := runner.ParseDuration(s)
		if err == nil && d <= 0 {
			err = usageError("%q: give a duration above zero, e.g. 1m", s)
		}
		if err != nil {
			return fmt.Errorf("--idle-timeout: %w", err)
		}
		opts = append(opts, service.WithIdleTimeout(d))
	}
	var probeInterval time.Duration
	if s := o.probeInterval; s != "" {
		d, err := runner.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("--probe-interval: %w", err)
		}
		probeInterval = d
	}
	// Refused before anything is started: a TCP listener never runs
	// without authentication.
	if listen.TCP != "" && tokenFile == "" {
		return usageError("--tcp %s needs --token-file: every TCP request must carry the bearer token in it", listen.TCP)
	}
	// Piston's clients send no credentials: the API listens on a
	// loopback address, or on another with the token required.
	pistonAddr := o.pistonAddr
	if pistonAddr != "" {
		if err := service.CheckPistonAddr(pistonAddr, tokenFile != ""); err != nil {
			return usageError("--piston-addr: %v", err)
		}
	}
	if tokenFile != "" {
		token, err := service.ReadToken(tokenFile)
		if err != nil {
			return usageError("%v", err)
		}
		opts = append(opts, service.WithToken(token))
	}

	// The OCI runtimes are this host's: a default or a rule that cannot
	// run here is refused before anything starts.
	ocis, err := o.global.ociRuntimes()
	if err != nil {
		return err
	}
	if _, err := ocis.Default(); err != nil {
		return err
	}

	// A service talks to a containerd that is looked after (systemd's
	// containerd.service), never to a private one it would start itself.
	conn, err := host.Connect(ctx, host.ConnectOptions{Address: o.global.address, StateDir: o.global.stateDir, NoPrivate: true, Log: log})
	err = withConnectHint(err)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Runtimes whose image is absent use the one `images build` made,
	// as found now: after a build, restart to use it.
	if catalog, err = o.global.withLocalImages(ctx, conn.Client, catalog); err != nil {
		return err
	}
	// Piston's API gives each runtime a version: the config's, else the
	// one the tag of the image it runs in starts with.
	pistonVersions := map[string]string{}
	for name, rt := range catalog {
		pistonVersions[name] = service.ImageVersion(rt.Image)
	}
	for name, v := range cfg.PistonVersions {
		pistonVersions[name] = v
	}
	opts = append(opts, service.WithPistonVersions(pistonVersions))
	quietContainerd(o.global.logLevel)
	runnerOpts := append(o.global.runnerOptions(runnerLogger(log, o.global.logLevel), catalog),
		runner.WithPull(o.puller(conn.Client, log)), runner.WithOCIRuntimes(ocis))
	if o.poolInit != "" {
		runnerOpts = append(runnerOpts, runner.WithInit(o.poolInit))
	}
	r, err := runner.New(conn.Client, runnerOpts...)
	if err != nil {
		return err
	}
	checks, err := service.ReadinessChecks(conn.Client, o.global.namespace, catalog, o.global.file.Service.RequiredRuntimes)
	if err != nil {
		return fmt.Errorf("[service] required_runtimes: %w", err)
	}
	opts = append(opts, service.WithReadiness(checks...), service.WithVersion(version),
		service.WithContainerdProbe(service.ContainerdProbe(conn.Client), probeInterval))
	poolOpts, err := poolOptions(o.global.file, o.global.file.Service.Pool, "[service.pool]", o.pool)
	if err != nil {
		return err
	}

	// What a runner that died (this service, before a restart) left
	// behind is removed before the first task, and before the pool
	// makes its first sandboxes.
	rep, err := sweepLeftovers(ctx, r, log)
	if ctx.Err() != nil {
		return nil
	}
	opts = append(opts, service.WithSweep(rep, err))
	var exec service.Executor = r
	if poolOpts != nil {
		// The pool's own teardowns are off any task's path: counted here.
		var poolCleanupFailures atomic.Uint64
		pctx := runner.WithCleanupHook(ctx, func(error) { poolCleanupFailures.Add(1) })
		pool, drain, err := startPool(pctx, r, *poolOpts, log)
		if err != nil {
			return err
		}
		// Served tasks are done (finished or killed) when Serve returns;
		// then the idle sandboxes go.
		defer drain()
		exec = pool
		opts = append(opts, service.WithPoolStats(pool.Stats), service.WithCleanupFailures(poolCleanupFailures.Load))
	}
	svc, err := service.New(exec, opts...)
	if err != nil {
		return usageError("%v", err)
	}
	ls, err := service.Listen(listen)
	if err != nil {
		return err
	}
	if pistonAddr != "" {
		pl, err := service.ListenPiston(pistonAddr, tokenFile != "")
		if err != nil {
			for _, l := range ls {
				_ = l.Close()
			}
			return err
		}
		ls = append(ls, pl)
		log.Info("answering Piston's API", "address", pl.Addr().String(), "authentication", !service.IsLoopback(pl.Addr()))
	}
	log.Info("connected", "containerd", conn.Address, "version", conn.Version.Version, "namespace", o.global.namespace,
		"state_dir", o.global.stateDir)
	return svc.Serve(ctx, ls)
}

// puller pulls a task's missing image, logging it.
func (o *serveOptions) puller(c *client.Client, log *slog.Logger) func(context.Context, string) error {
	opts := o.registry.pullOptions(&o.global)
	return func(ctx context.Context, ref string) error {
		log.Info("pulling image", "image", ref)
		start := time.Now()
		img, err := images.Pull(ctx, c, ref, opts)
		if err != nil {
			log.Warn("pulling image failed", "image", ref, "error", err)
			return err
		}
		log.Info("pulled image", "image", img.Name(), "digest", img.Target().Digest.String(), "took_ms", time.Since(start).Milliseconds())
		return nil
	}
}

// serviceLogger logs JSON lines, which journald and log shippers take
// as they are, unless a person is watching the terminal.
func serviceLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError("--log-level %q: give debug, info, warn or error", level)
	}
	hopts := &slog.HandlerOptions{Level: l, ReplaceAttr: durationsAsText}
	if isTerminalWriter(w) {
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, hopts)), nil
}

// runnerLogger is the service's logger for the runner, which logs a
// line per stage at info: the service's line per task says it all, so
// the runner's own are only kept for debugging.
func runnerLogger(log *slog.Logger, level string) *slog.Logger {
	if level == "debug" {
		return log
	}
	return slog.New(minLevel{log.Handler(), slog.LevelWarn})
}

// minLevel drops records below level.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.level}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.level}
}

// firstInt returns the flag's value when it was given, else the first
// non-zero of the others.
func firstInt(flagSet bool, flag int, others ...int) int {
	if flagSet {
		return flag
	}
	for _, v := range others {
		if v != 0 {
			return v
		}
	}
	return 0
}

// startPool starts r's warm pool; drain, once the pool's tasks are done,
// destroys its idle sandboxes.
func startPool(ctx context.Context, r *runner.Runner, o runner.PoolOptions, log *slog.Logger) (_ *runner.Pool, drain func(), _ error) {
	pool, err := r.NewPool(ctx, o)
	if err != nil {
		return nil, nil, usageError("%v", err)
	}
	drain = func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := pool.Close(cctx); err != nil {
			log.Error("draining the warm pool", "error", err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(o.Runtimes)) {
		rt := o.Runtimes[name]
		// What the sandboxes are made with, defaults filled in.
		l := r.Limits(rt.Limits)
		oci := rt.OCIRuntime
		if oci == "" {
			oci = "the runtime's default"
		}
		log.Info("warm pool", "runtime", name, "size", rt.Size, "oci_runtime", oci,
			"memory", formatSize(l.Memory), "cpus", l.CPUs, "pids", l.Pids, "tmp_size", formatSize(l.TmpSize))
	}
	return pool, drain, nil
}

// poolOptions reads a warm pool's settings: the --pool flags over the
// config's section cfg (the service's [service.pool], a worker's
// [fleet.pool]). It returns nil when no runtime is pooled.
func poolOptions(file *config.File, cfg config.Pool, section string, pool []string) (*runner.PoolOptions, error) {
	sizes := map[string]int{}
	for name, n := range cfg.Runtimes {
		sizes[name] = n
	}
	if len(pool) > 0 {
		sizes = map[string]int{}
		for _, p := range pool {
			name, n, ok := strings.Cut(p, "=")
			size, err := strconv.Atoi(n)
			if !ok || name == "" || err != nil || size < 0 {
				return nil, usageError("--pool %q: give RUNTIME=N, such as python=2", p)
			}
			sizes[name] = size
		}
	}
	po := runner.PoolOptions{Runtimes: map[string]runner.PoolRuntime{}, ShimGroup: cfg.ShimGroup}
	for name, n := range sizes {
		if n == 0 {
			continue
		}
		limits, err := file.TaskLimits(name)
		if err != nil {
			return nil, err
		}
		po.Runtimes[name] = runner.PoolRuntime{Size: n, Limits: limits}
	}
	if len(po.Runtimes) == 0 {
		return nil, nil
	}
	if cfg.MaxIdle != "" {
		d, err := runner.ParseDuration(cfg.MaxIdle)
		if err != nil {
			return nil, fmt.Errorf("%s max_idle: %w", section, err)
		}
		po.MaxIdle = d
	}
	return &po, nil
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// durationsAsText writes a duration as "1.5s" rather than the JSON
// handler's integer nanoseconds.
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}
