package service

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
)

// Defaults of the Service's options.
const (
	// DefaultMaxBody fits the runner's 16 MiB of files in base64 with
	// room for stdin.
	DefaultMaxBody = 32 << 20
	// DefaultGrace is how long running tasks may finish after shutdown
	// begins.
	DefaultGrace = 30 * time.Second
	// DefaultQueuePerSlot is the queue's length per slot when none is set.
	DefaultQueuePerSlot = 4
)

const (
	// bodyTimeout bounds reading one request body, so a slow client
	// cannot hold a connection forever; it is lifted before the task
	// runs, whose own timeout bounds it.
	bodyTimeout = time.Minute
	// retryAfter is what a 429 or 503 asks the client to wait, in seconds.
	retryAfter = 1
	// checkTimeout bounds one readiness check.
	checkTimeout = 3 * time.Second
)

// Executor runs tasks. *runner.Runner is one.
type Executor interface {
	Run(ctx context.Context, t runner.Task) (*runner.Result, error)
}

// Check is one readiness condition of GET /readyz. Run returns what it
// saw, or an error saying what is wrong.
type Check struct {
	Name string
	Run  func(ctx context.Context) (detail string, err error)
}

// Option configures a Service.
type Option func(*options)

type options struct {
	catalog       images.Catalog
	limits        func(runtime string) (runner.Limits, error)
	maxConcurrent int
	queue         int // -1: DefaultQueuePerSlot per slot
	maxBody       int64
	grace         time.Duration
	tokenSum      *[sha256.Size]byte
	log           *slog.Logger
	checks        []Check
	poolStats     func() []runner.PoolStats
	version       string
	sweeps        []sweepResult
	probe         func(ctx context.Context) error
	probeInterval time.Duration
	bgCleanup     func() uint64
	idle          time.Duration
	// pistonVersions are the runtimes' versions in Piston's API.
	pistonVersions map[string]string
	maxRuns        int
}

type sweepResult struct {
	rep runner.SweepReport
	err error
}

// WithCatalog sets the runtimes the service offers; it must be the
// executor's. Default images.DefaultCatalog().
func WithCatalog(c images.Catalog) Option { return func(o *options) { o.catalog = c } }

// WithLimits sets the limits a runtime's tasks get when the request
// leaves them out (zero fields take the runner's defaults). Default: the
// runner's defaults.
func WithLimits(f func(runtime string) (runner.Limits, error)) Option {
	return func(o *options) { o.limits = f }
}

// WithMaxConcurrent sets how many tasks run at once. Default the number
// of CPUs.
func WithMaxConcurrent(n int) Option { return func(o *options) { o.maxConcurrent = n } }

// WithQueue sets how many tasks may wait for a slot; 0 refuses every
// task that finds no free slot. Default DefaultQueuePerSlot per slot.
func WithQueue(n int) Option { return func(o *options) { o.queue = n } }

// WithMaxBody caps a request body in bytes. Default DefaultMaxBody.
func WithMaxBody(n int64) Option { return func(o *options) { o.maxBody = n } }

// WithGrace sets how long running tasks may finish once Serve's context
// is done, before they are cancelled. Default DefaultGrace.
func WithGrace(d time.Duration) Option { return func(o *options) { o.grace = d } }

// WithToken sets the bearer token every request on a listener other
// than a unix socket must carry. Default none, and then Serve refuses
// such listeners.
func WithToken(token string) Option {
	return func(o *options) {
		sum := sha256.Sum256([]byte(token))
		o.tokenSum = &sum
	}
}

// WithLogger sets where the service logs: a line per task and per
// refusal, and its start and stop. Default: nowhere.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithReadiness sets the checks of GET /readyz. Default none: ready
// whenever it answers.
func WithReadiness(checks ...Check) Option { return func(o *options) { o.checks = checks } }

// WithPoolStats makes GET /metrics report a warm pool's figures
// (sandbox_runner_pool_*), read from stats at every scrape; with a
// runner.Pool as the executor, stats is its Stats. Default none.
func WithPoolStats(stats func() []runner.PoolStats) Option {
	return func(o *options) { o.poolStats = stats }
}

// WithVersion sets the version label of sandbox_runner_build_info.
// Default "dev".
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// WithSweep records a sweep for leftovers (runner.Runner.Sweep) that ran
// before the service, such as the one at start-up, in /metrics
// (sandbox_runner_leftovers_*_total, sandbox_runner_sweeps_total): the
// leftovers it found and removed by kind, and whether it failed. It may
// be given more than once. Default none.
func WithSweep(rep runner.SweepReport, err error) Option {
	return func(o *options) { o.sweeps = append(o.sweeps, sweepResult{rep, err}) }
}

// DefaultProbeInterval is how often a probe set with WithContainerdProbe
// runs when no interval is given.
const DefaultProbeInterval = 5 * time.Second

// WithContainerdProbe makes Serve call probe every interval (0:
// DefaultProbeInterval), bounded by a few seconds, and report in
// /metrics whether containerd answered (sandbox_runner_containerd_up)
// and how long the call took. ContainerdProbe makes one. Default none:
// the metrics are absent.
func WithContainerdProbe(probe func(ctx context.Context) error, interval time.Duration) Option {
	return func(o *options) { o.probe, o.probeInterval = probe, interval }
}

// ContainerdProbe is a cheap call to a containerd client for
// WithContainerdProbe: its version.
func ContainerdProbe(c interface {
	Version(ctx context.Context) (client.Version, error)
}) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := c.Version(ctx)
		return err
	}
}

// WithCleanupFailures adds the failed teardowns counted outside the
// service's tasks, such as a warm pool's (made with a context from
// runner.WithCleanupHook), to sandbox_runner_cleanup_failures_total; f
// is read at every scrape. Default none: only the tasks' own teardowns.
func WithCleanupFailures(f func() uint64) Option { return func(o *options) { o.bgCleanup = f } }

// Service is the HTTP API in front of an Executor.
type Service struct {
	exec    Executor
	opts    options
	lim     *limiter
	metrics *metrics
	handler http.Handler
	// draining is set once shutdown began: /readyz says so.
	draining atomic.Bool
	prober   *prober
	// modes counts tasks by how they are answered (stream.go).
	modes *prometheus.CounterVec
	// sessions are the interactive sessions (ws.go) under way.
	sessions sessionCount
	// piston is Piston's API, served on a PistonListener.
	piston *piston
}

// New returns a Service that runs tasks with exec.
func New(exec Executor, opts ...Option) (*Service, error) {
	o := options{
		catalog:       images.DefaultCatalog(),
		limits:        func(string) (runner.Limits, error) { return runner.Limits{}, nil },
		maxConcurrent: runtime.NumCPU(),
		queue:         -1,
		maxBody:       DefaultMaxBody,
		grace:         DefaultGrace,
		log:           slog.New(slog.DiscardHandler),
		version:       "dev",
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.queue < 0 {
		o.queue = DefaultQueuePerSlot * o.maxConcurrent
	}
	switch {
	case exec == nil:
		return nil, errors.New("service: no executor")
	case o.maxConcurrent < 1:
		return nil, fmt.Errorf("max concurrent tasks %d: give at least 1", o.maxConcurrent)
	case o.maxBody < 1:
		return nil, fmt.Errorf("max body %d: give at least 1 byte", o.maxBody)
	case o.grace < 0:
		return nil, fmt.Errorf("grace period %s: give zero or more", o.grace)
	case o.probeInterval < 0:
		return nil, fmt.Errorf("containerd probe interval %s: give zero (the default) or more", o.probeInterval)
	case o.idle < 0:
		return nil, fmt.Errorf("idle timeout %s: give zero (the default) or more", o.idle)
	}
	if o.probeInterval == 0 {
		o.probeInterval = DefaultProbeInterval
	}
	s := &Service{exec: exec, opts: o, metrics: newMetrics(metricsConfig{
		slots: o.maxConcurrent, queue: o.queue, runtimes: o.catalog.Names(), version: o.version,
		probe: o.probe != nil, background: o.bgCleanup,
	})}
	for _, sw := range o.sweeps {
		s.metrics.sweep(sw.rep, sw.err)
	}
	if o.probe != nil {
		s.prober = &prober{probe: o.probe, interval: o.probeInterval, m: s.metrics, log: o.log}
	}
	if o.poolStats != nil {
		if err := s.metrics.registry.Register(newPoolCollector(o.poolStats)); err != nil {
			return nil, fmt.Errorf("registering the pool's metrics: %w", err)
		}
	}
	s.modes = newModeCounter(s.metrics.registry)
	s.lim = newLimiter(o.maxConcurrent, o.queue, s.metrics.limiterChanged)
	if err := s.newPiston(); err != nil {
		return nil, err
	}
	s.handler = s.withPiston(s.routes())
	return s, nil
}

// Handler returns the API. Requests through it are not authenticated:
// Serve adds that for listeners that need it.
func (s *Service) Handler() http.Handler { return s.handler }

func (s *Service) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/exec", allow(http.MethodPost, s.handleExec))
	mux.Handle("/v1/exec/ws", allow(http.MethodGet, s.handleWS))
	mux.Handle("/v1/runtimes", allow(http.MethodGet, s.handleRuntimes))
	mux.Handle("/healthz", allow(http.MethodGet, s.handleHealth))
	mux.Handle("/readyz", allow(http.MethodGet, s.handleReady))
	mux.Handle("/metrics", allow(http.MethodGet, promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}).ServeHTTP))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, KindNotFound, fmt.Sprintf("no such endpoint %s: see /v1/exec, /v1/exec/ws, /v1/runtimes, /healthz, /readyz, /metrics", r.URL.Path))
	})
	return s.authenticate(mux)
}

// allow answers 405 in JSON to methods other than method (and HEAD for GET).
func allow(method string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, KindMethodNotAllowed, fmt.Sprintf("%s %s: use %s", r.Method, r.URL.Path, method))
			return
		}
		h(w, r)
	})
}

// needsTokenKey marks the context of a connection whose requests must
// carry the token: any but a unix socket's.
type needsTokenKey struct{}

func (s *Service) connContext(ctx context.Context, c net.Conn) context.Context {
	if ctx, ok := pistonContext(ctx, c); ok {
		// Piston's API authenticates its own way (withPiston).
		return ctx
	}
	if c.LocalAddr().Network() != "unix" {
		return context.WithValue(ctx, needsTokenKey{}, true)
	}
	return ctx
}

func (s *Service) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(needsTokenKey{}) == nil {
			next.ServeHTTP(w, r)
			return
		}
		if !s.tokenOK(r.Header.Get("Authorization")) {
			s.metrics.rejected.WithLabelValues(RejectUnauthorized).Inc()
			s.opts.log.Warn("request refused: no valid bearer token", "remote", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="sandbox-runner"`)
			writeError(w, http.StatusUnauthorized, KindUnauthorized, "this listener needs an Authorization: Bearer TOKEN header with the service's token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// tokenOK compares in constant time: both sides are hashed first, so
// neither the token's bytes nor its length leak through timing.
func (s *Service) tokenOK(header string) bool {
	if s.opts.tokenSum == nil {
		return false
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(sum[:], s.opts.tokenSum[:]) == 1
}

func (s *Service) handleExec(w http.ResponseWriter, r *http.Request) {
	if wantsStream(r) {
		s.handleStream(w, r)
		return
	}
	received := time.Now()
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(received.Add(bodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.maxBody))
	// Lifted before the task runs: once the body is read, the server
	// watches the connection to cancel the request when the client
	// hangs up, and a deadline there would cancel it too.
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.reject(w, r, RejectTooLarge, http.StatusRequestEntityTooLarge, KindTooLarge,
				fmt.Sprintf("the request body is larger than %d bytes, the service's max body (max_body)", tooLarge.Limit))
			return
		}
		s.reject(w, r, RejectInvalid, http.StatusBadRequest, KindInvalidInput, fmt.Sprintf("reading the request body: %v", err))
		return
	}
	req, err := DecodeRequest(body)
	if err == nil && req.Runs != nil {
		s.handleBatch(w, r, req, received)
		return
	}
	var task runner.Task
	if err == nil {
		task, err = s.task(req)
	}
	if err != nil {
		s.reject(w, r, RejectInvalid, http.StatusBadRequest, KindInvalidInput, err.Error())
		return
	}
	// The task's id comes with its result: a pooled sandbox has its own
	// already. Until then the request has an id of its own, for the logs.
	res, e := s.runAdmitted(r.Context(), r, task, admission{received: received, mode: ModeBuffered})
	if e != nil {
		writeErrorOf(w, e)
		return
	}
	w.Header().Set("X-Sandbox-Runner-Task", res.ID)
	writeJSON(w, http.StatusOK, res)
}

func (s *Service) runtimeLabel(name string) string { return runtimeLabel(s.opts.catalog, name) }

// task turns a request into a task with the runtime's default limits,
// checked as the runner will check it.
// decode reads a single task's request: a streamed answer or an
// interactive session runs one task, never a batch.
func (s *Service) decode(body []byte) (runner.Task, error) {
	req, err := DecodeRequest(body)
	if err != nil {
		return runner.Task{}, err
	}
	if req.Runs != nil {
		return runner.Task{}, fmt.Errorf("runs: a batch is answered as one document: send it to POST /v1/exec without Accept: %s, not as a stream or a session", ContentTypeNDJSON)
	}
	return s.task(req)
}

func (s *Service) task(req *Request) (runner.Task, error) {
	var err error
	var base runner.Limits
	if _, lerr := s.opts.catalog.Lookup(req.Runtime); lerr == nil && req.Runtime != "" {
		if base, err = s.opts.limits(req.Runtime); err != nil {
			return runner.Task{}, err
		}
	}
	task, err := TaskOf(req, base)
	if err != nil {
		return task, err
	}
	return task, runner.Validate(task, s.opts.catalog)
}

// errShutdownCancel is the cause of a task cancelled because the grace
// period ran out.
var errShutdownCancel = errors.New("shutdown: grace period over")

func cancelCause(ctx context.Context) string {
	if errors.Is(context.Cause(ctx), errShutdownCancel) {
		return "shutdown"
	}
	return "client"
}

func (s *Service) reject(w http.ResponseWriter, r *http.Request, reason string, status int, kind, msg string) {
	s.metrics.rejected.WithLabelValues(reason).Inc()
	s.opts.log.Info("request refused", "reason", reason, "status", status, "error", msg, "remote", r.RemoteAddr)
	writeError(w, status, kind, msg)
}

// RuntimeInfo is one entry of GET /v1/runtimes.
type RuntimeInfo struct {
	Name    string   `json:"name"`
	Image   string   `json:"image"`
	File    string   `json:"file"`
	Compile []string `json:"compile,omitempty"`
	Run     []string `json:"run"`
	// Limits are what a task gets when its request leaves them out.
	Limits Limits `json:"limits"`
}

// RuntimesResponse is the body of GET /v1/runtimes.
type RuntimesResponse struct {
	Runtimes []RuntimeInfo `json:"runtimes"`
}

func (s *Service) handleRuntimes(w http.ResponseWriter, _ *http.Request) {
	out := RuntimesResponse{Runtimes: []RuntimeInfo{}}
	for _, name := range s.opts.catalog.Names() {
		rt := s.opts.catalog[name]
		l, err := s.opts.limits(name)
		if err != nil {
			writeError(w, http.StatusInternalServerError, KindRunnerFailed, err.Error())
			return
		}
		out.Runtimes = append(out.Runtimes, RuntimeInfo{
			Name: name, Image: rt.Image, File: rt.FileName, Compile: rt.Compile, Run: rt.Run,
			Limits: limitsDoc(l.Filled()),
		})
	}
	writeJSON(w, http.StatusOK, out)
}

// limitsDoc writes limits as a request would give them.
func limitsDoc(l runner.Limits) Limits {
	return Limits{
		Timeout:        LimitString(l.Timeout.String()),
		CompileTimeout: LimitString(l.CompileTimeout.String()),
		Memory:         LimitInt(l.Memory),
		CompileMemory:  LimitInt(l.CompileMemory),
		CPUs:           LimitFloat(l.CPUs),
		Pids:           LimitInt(l.Pids),
		OutputLimit:    LimitInt(l.OutputLimit),
		TmpSize:        LimitInt(l.TmpSize),
	}
}

func (s *Service) handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// ReadyResponse is the body of GET /readyz.
type ReadyResponse struct {
	Ready  bool             `json:"ready"`
	Checks []runner.Finding `json:"checks"`
}

func (s *Service) handleReady(w http.ResponseWriter, r *http.Request) {
	out := ReadyResponse{Ready: true, Checks: []runner.Finding{}}
	if s.draining.Load() {
		out.Ready = false
		out.Checks = append(out.Checks, runner.Finding{Name: "service", Detail: "shutting down"})
	}
	for _, c := range s.opts.checks {
		ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
		detail, err := c.Run(ctx)
		cancel()
		f := runner.Finding{Name: c.Name, OK: err == nil, Detail: detail}
		if err != nil {
			f.Detail = err.Error()
			out.Ready = false
		}
		out.Checks = append(out.Checks, f)
	}
	status := http.StatusOK
	if !out.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, KindRunnerFailed, fmt.Sprintf("encoding the answer: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, kind, msg string) {
	b, _ := json.Marshal(ErrorResponse{Error: msg, Kind: kind})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
