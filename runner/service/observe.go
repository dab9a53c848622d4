package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
)

// prober probes containerd every interval for the metrics, and logs
// when the answer changes.
type prober struct {
	probe    func(ctx context.Context) error
	interval time.Duration
	m        *metrics
	log      *slog.Logger
	// down is the last probe's verdict.
	down atomic.Bool
}

// start probes once, so that the first scrape sees containerd's state
// rather than a default, then every interval until the returned
// function is called, which waits for the loop to end.
func (p *prober) start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	p.once(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(p.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				p.once(ctx)
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// once calls the probe, bounded by checkTimeout or the interval,
// whichever is shorter, and records the answer.
func (p *prober) once(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, min(checkTimeout, p.interval))
	defer cancel()
	start := time.Now()
	err := p.probe(pctx)
	if ctx.Err() != nil {
		// Stopping: not containerd's fault.
		return
	}
	p.m.probed(time.Since(start), err)
	if was := p.down.Swap(err != nil); was != (err != nil) {
		if err != nil {
			p.log.Warn("containerd does not answer", "error", err)
		} else {
			p.log.Info("containerd answers again")
		}
	}
}

// Metrics are the figures GET /metrics serves, for a runner that takes
// its tasks from elsewhere than the service's API, such as a fleet
// worker: wrap its executor with Executor and serve Handler. The names
// are the service's, so contrib/prometheus's rules and the dashboard
// apply as they are.
type Metrics struct {
	m       *metrics
	catalog images.Catalog
	prober  *prober
	running atomic.Int64
}

// NewMetrics returns the metrics of a runner configured by the options
// that concern them: WithCatalog (the runtime label's values),
// WithMaxConcurrent (sandbox_runner_slots), WithVersion, WithSweep,
// WithContainerdProbe, WithCleanupFailures, WithPoolStats and
// WithLogger. Others are ignored.
func NewMetrics(opts ...Option) (*Metrics, error) {
	o := options{catalog: images.DefaultCatalog(), version: "dev", log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	if o.probeInterval < 0 {
		return nil, errors.New("containerd probe interval: give zero (the default) or more")
	}
	if o.probeInterval == 0 {
		o.probeInterval = DefaultProbeInterval
	}
	m := &Metrics{catalog: o.catalog, m: newMetrics(metricsConfig{
		slots: o.maxConcurrent, runtimes: o.catalog.Names(), version: o.version,
		probe: o.probe != nil, background: o.bgCleanup,
	})}
	for _, sw := range o.sweeps {
		m.m.sweep(sw.rep, sw.err)
	}
	if o.poolStats != nil {
		if err := m.m.registry.Register(newPoolCollector(o.poolStats)); err != nil {
			return nil, err
		}
	}
	if o.probe != nil {
		m.prober = &prober{probe: o.probe, interval: o.probeInterval, m: m.m, log: o.log}
	}
	return m, nil
}

// Handler serves the metrics as Prometheus text.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.m.registry, promhttp.HandlerOpts{})
}

// StartProbe probes containerd now and then every interval, when
// WithContainerdProbe was given, until the returned function is called.
func (m *Metrics) StartProbe() (stop func()) {
	if m.prober == nil {
		return func() {}
	}
	return m.prober.start()
}

// Executor returns exec with every task it runs counted: by outcome and
// runtime, its stages' durations, the limits it hit, what it used, and
// its failed teardowns. A task whose context ends before it does counts
// as cancelled.
func (m *Metrics) Executor(exec Executor) Executor {
	return countingExecutor{m: m, inner: exec, Executor: executorFunc(func(ctx context.Context, t runner.Task) (*runner.Result, error) {
		rt := runtimeLabel(m.catalog, t.Runtime)
		m.m.inFlight.Set(float64(m.running.Add(1)))
		defer func() { m.m.inFlight.Set(float64(m.running.Add(-1))) }()
		times := &taskTimes{m: m.m}
		tctx := runner.WithCleanupHook(runner.WithObserver(ctx, times), func(error) { m.m.cleanupFailed.Add(1) })
		started := time.Now()
		res, err := exec.Run(tctx, t)
		m.m.taskDuration.Observe(time.Since(started).Seconds())
		switch {
		case err != nil && ctx.Err() != nil:
			m.m.tasks.WithLabelValues(string(runner.OutcomeCancelled), rt).Inc()
		case err != nil:
			m.m.tasks.WithLabelValues(OutcomeError, rt).Inc()
		default:
			times.observeResult(res)
			m.m.tasks.WithLabelValues(string(res.Outcome), rt).Inc()
			m.m.observeResult(rt, res)
		}
		return res, err
	})}
}

type executorFunc func(ctx context.Context, t runner.Task) (*runner.Result, error)

func (f executorFunc) Run(ctx context.Context, t runner.Task) (*runner.Result, error) {
	return f(ctx, t)
}

// runtimeLabel is the catalog's name for a task's runtime, aliases
// resolved, so that a runtime has one series whatever it was called.
func runtimeLabel(c images.Catalog, name string) string {
	if _, ok := c[name]; ok {
		return name
	}
	if target, ok := c.Aliases()[name]; ok {
		return target
	}
	return name
}

// Serve answers GET /metrics (and GET /healthz) on l until ctx is done,
// then closes it. It serves figures only, without authentication.
func (m *Metrics) Serve(ctx context.Context, l net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", allow(http.MethodGet, m.Handler().ServeHTTP))
	mux.Handle("/healthz", allow(http.MethodGet, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, KindNotFound, fmt.Sprintf("no such endpoint %s: see /metrics, /healthz", r.URL.Path))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving metrics on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

// ListenMetrics listens on addr for Metrics.Serve: host:port, or a unix
// socket's path (anything with a slash), mode 0660, replacing a stale
// socket.
func ListenMetrics(addr string) (net.Listener, error) {
	if !strings.Contains(addr, "/") {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("metrics address %s: %w", addr, err)
		}
		return l, nil
	}
	if st, err := os.Lstat(addr); err == nil && st.Mode().Type() == os.ModeSocket {
		if c, err := net.Dial("unix", addr); err == nil {
			c.Close()
			return nil, fmt.Errorf("metrics socket %s: another process is listening on it", addr)
		}
		_ = os.Remove(addr)
	}
	l, err := net.Listen("unix", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics socket %s: %w", addr, err)
	}
	if err := os.Chmod(addr, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("metrics socket %s: %w", addr, err)
	}
	return l, nil
}
