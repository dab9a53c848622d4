package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/config"
	"github.com/sandbox-runner/sandbox-runner/runner/fleet"
	"github.com/sandbox-runner/sandbox-runner/runner/host"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// workerOptions is everything `worker` reads from its flags; each falls
// back to the config file's [fleet] section, then to the default.
type workerOptions struct {
	global        globalFlags
	registry      registryFlags
	nats          natsFlags
	runtimes      []string
	maxConcurrent int
	maxDeliveries int
	replicas      int
	retryDelay    string
	grace         string
	ackWait       string
	presenceTTL   string
	metrics       string
	pool          []string
	poolInit      string
}

func runWorker(ctx context.Context, args []string, std stdio) int {
	var o workerOptions
	fs := newFlagSet("worker", "--nats URL [FLAGS]", std.err)
	o.nats.register(fs)
	fs.StringSliceVar(&o.runtimes, "runtimes", nil, "runtimes to take tasks of, e.g. python,node (config [fleet] runtimes; default: every runtime of the catalog)")
	fs.IntVar(&o.maxConcurrent, "max-concurrent", 0, "tasks run at once, and the most fetched (config [fleet] max_concurrent; default: the number of CPUs)")
	fs.IntVar(&o.maxDeliveries, "max-deliveries", 0, "deliveries of a task before it is dead-lettered; keep it the same on every worker (config [fleet] max_deliveries; default 5)")
	fs.StringVar(&o.retryDelay, "retry-delay", "", "how long a failed task waits before its next delivery, times its deliveries so far (config [fleet] retry_delay; default 1s)")
	fs.StringVar(&o.grace, "grace", "", "how long running tasks may finish after SIGTERM before they go back to the queue (config [fleet] grace; default 30s)")
	fs.StringVar(&o.ackWait, "ack-wait", "", "when creating the consumers: how long a task may go without a heartbeat before it is delivered again (config [fleet] ack_wait; default 30s)")
	fs.IntVar(&o.replicas, "replicas", 0, "when creating the streams: NATS servers holding each, 3 on a cluster (config [fleet] replicas; default 1)")
	fs.StringVar(&o.presenceTTL, "presence-ttl", "", "when creating the presence bucket: how long a worker's entry outlives its last refresh (config [fleet] presence_ttl; default 15s)")
	fs.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics (GET /metrics) on host:port or a unix socket path, unauthenticated: bind it to loopback or a private network (config [fleet] metrics; default: none)")
	fs.StringArrayVar(&o.pool, "pool", nil, "keep N created sandboxes ready for RUNTIME, as RUNTIME=N; repeatable (config [fleet.pool] runtimes; default: no pool)")
	fs.StringVar(&o.poolInit, "pool-init", "", "the static sandbox-runner-init binary PID 1 of every sandbox (config [fleet.pool] init, or the top-level init; default: next to this binary)")
	o.registry.register(fs)
	o.global.register(fs)
	// The config's [fleet] are the flags' defaults: the worker reads each
	// setting from its flag alone (but --runtimes, a list, below).
	o.global.preload(args)
	var cfg config.Fleet
	if o.global.file != nil {
		cfg = o.global.file.Fleet
	}
	configDefaults(fs, map[string]string{
		"max-concurrent": nonZero(cfg.MaxConcurrent),
		"max-deliveries": nonZero(cfg.MaxDeliveries),
		"retry-delay":    cfg.RetryDelay,
		"grace":          cfg.Grace,
		"metrics":        cfg.Metrics,
		"pool-init":      cfg.Pool.Init,
	})
	return runDaemon("worker", fs, &o.global, args, std, func(changed func(string) bool, log *slog.Logger) error {
		return o.work(ctx, changed, log)
	})
}

// fleetOptions settles the worker's settings: flags over [fleet].
func (o *workerOptions) fleetOptions(changed func(string) bool) ([]fleet.Option, error) {
	cfg := o.global.file.Fleet
	opts, err := streamOptions(cfg)
	if err != nil {
		return nil, err
	}
	// streamOptions applied [fleet]'s stream settings; the flags go on top.
	if changed("replicas") && o.replicas != 0 {
		opts = append(opts, fleet.WithReplicas(o.replicas))
	}
	opts = append(opts, fleet.WithCapacity(firstInt(changed("max-concurrent"), o.maxConcurrent, runtime.NumCPU())))
	if n := o.maxDeliveries; n != 0 {
		opts = append(opts, fleet.WithMaxDeliveries(n))
	}
	runtimes := o.runtimes
	if !changed("runtimes") {
		runtimes = cfg.Runtimes
	}
	if len(runtimes) > 0 {
		opts = append(opts, fleet.WithRuntimes(runtimes...))
	}
	for _, d := range []struct {
		flag, value string
		opt         func(time.Duration) fleet.Option
	}{
		{"retry-delay", o.retryDelay, fleet.WithRetryDelay},
		{"grace", o.grace, fleet.WithGrace},
		{"ack-wait", o.ackWait, fleet.WithAckWait},
		{"presence-ttl", o.presenceTTL, fleet.WithPresenceTTL},
	} {
		if d.value == "" {
			continue
		}
		v, err := runner.ParseDuration(d.value)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", d.flag, err)
		}
		opts = append(opts, d.opt(v))
	}
	return opts, nil
}

func (o *workerOptions) work(ctx context.Context, changed func(string) bool, log *slog.Logger) error {
	catalog, err := o.global.file.Catalog()
	if err != nil {
		return err
	}
	fopts, err := o.fleetOptions(changed)
	if err != nil {
		return err
	}
	fopts = append(fopts, fleet.WithCatalog(catalog), fleet.WithLimits(o.global.file.TaskLimits), fleet.WithMaxRuns(o.global.file.MaxRuns),
		fleet.WithLogger(log), fleet.WithVersion(version))
	// No NATS server is a config error: say so (exit 2, which the
	// systemd unit does not restart on) before waiting for containerd.
	hostname, _ := os.Hostname()
	copts, err := o.nats.options(o.global.file.Fleet, "sandbox-runner worker "+hostname)
	if err != nil {
		return err
	}

	ocis, err := o.global.ociRuntimes()
	if err != nil {
		return err
	}
	if _, err := ocis.Default(); err != nil {
		return err
	}

	// As the service: a worker uses a containerd that is looked after,
	// never a private one of its own.
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
	quietContainerd(o.global.logLevel)
	puller := (&serveOptions{global: o.global, registry: o.registry}).puller(conn.Client, log)
	runnerOpts := append(o.global.runnerOptions(runnerLogger(log, o.global.logLevel), catalog), runner.WithPull(puller), runner.WithOCIRuntimes(ocis))
	if init := o.poolInit; init != "" {
		runnerOpts = append(runnerOpts, runner.WithInit(init))
	}
	r, err := runner.New(conn.Client, runnerOpts...)
	if err != nil {
		return err
	}
	poolOpts, err := poolOptions(o.global.file, o.global.file.Fleet.Pool, "[fleet.pool]", o.pool)
	if err != nil {
		return err
	}
	// What a worker that died (this one, before a restart) left behind
	// goes before the first task, and before the pool makes its first
	// sandboxes: its tasks went back to the queue.
	rep, sweepErr := sweepLeftovers(ctx, r, log)
	if ctx.Err() != nil {
		return nil
	}
	var exec service.Executor = r
	if poolOpts != nil {
		pool, drain, err := startPool(ctx, r, *poolOpts, log)
		if err != nil {
			return err
		}
		// The worker's tasks are done (finished, or back in the queue)
		// when Run returns; then the idle sandboxes go.
		defer drain()
		exec = pool
	}
	if addr := o.metrics; addr != "" {
		capacity := firstInt(changed("max-concurrent"), o.maxConcurrent, runtime.NumCPU())
		m, err := service.NewMetrics(service.WithCatalog(catalog), service.WithMaxConcurrent(capacity),
			service.WithVersion(version), service.WithSweep(rep, sweepErr), service.WithLogger(log),
			service.WithContainerdProbe(service.ContainerdProbe(conn.Client), 0))
		if err != nil {
			return err
		}
		l, err := service.ListenMetrics(addr)
		if err != nil {
			return err
		}
		defer m.StartProbe()()
		mctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		served := make(chan struct{})
		go func() {
			defer close(served)
			if err := m.Serve(mctx, l); err != nil {
				log.Error("metrics listener failed", "error", err)
			}
		}()
		// The figures stay readable until the last task is drained.
		defer func() {
			stop()
			<-served
		}()
		exec = m.Executor(exec)
		log.Info("serving metrics", "address", l.Addr().String())
	}

	nc, err := fleet.Connect(copts)
	if err != nil {
		return err
	}
	defer nc.Close()
	w, err := fleet.NewWorker(nc, exec, fopts...)
	if err != nil {
		return err
	}
	log.Info("connected", "containerd", conn.Address, "namespace", o.global.namespace, "nats", nc.ConnectedUrlRedacted())
	return w.Run(ctx)
}
