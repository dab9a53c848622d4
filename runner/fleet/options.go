package fleet

import (
	"log/slog"
	"runtime"
	"time"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
	fclient "github.com/sandbox-runner/sandbox-runner/runner/fleet/client"
)

// Defaults of the options.
const (
	DefaultAckWait       = fclient.DefaultAckWait
	DefaultMaxDeliveries = 5
	DefaultRetryDelay    = time.Second
	DefaultGrace         = 30 * time.Second
	DefaultPresenceTTL   = fclient.DefaultPresenceTTL
	DefaultTaskTTL       = fclient.DefaultTaskTTL
	DefaultResultTTL     = fclient.DefaultResultTTL
	DefaultDeadTTL       = fclient.DefaultDeadTTL
	DefaultDuplicates    = fclient.DefaultDuplicates
	// DefaultPollWait is how long an idle worker waits for a task in one
	// pull request; with several runtimes it is shared among them.
	DefaultPollWait = 2 * time.Second
)

// Option configures a Worker or a Client. The stream options (replicas,
// TTLs, the ack wait) only take effect when the streams, consumers or
// bucket are created: a worker or client that finds them uses them as
// they are.
type Option func(*options)

type options struct {
	// Streams, consumers and the bucket, when they are created.
	streams fclient.Streams

	// The worker's own.
	catalog       images.Catalog
	limits        func(runtime string) (runner.Limits, error)
	runtimes      []string
	capacity      int
	maxDeliveries int
	retryDelay    time.Duration
	grace         time.Duration
	pollWait      time.Duration
	id            string
	version       string
	maxRuns       int

	log *slog.Logger
}

func defaultOptions() options {
	return options{
		streams:       fclient.DefaultStreams(),
		catalog:       images.DefaultCatalog(),
		limits:        func(string) (runner.Limits, error) { return runner.Limits{}, nil },
		capacity:      runtime.NumCPU(),
		maxDeliveries: DefaultMaxDeliveries,
		retryDelay:    DefaultRetryDelay,
		grace:         DefaultGrace,
		pollWait:      DefaultPollWait,
		version:       "dev",
		log:           slog.New(slog.DiscardHandler),
	}
}

// WithReplicas sets how many servers of a NATS cluster hold each stream,
// consumer and the presence bucket: 3 on a cluster of three or more, so
// that the fleet survives the loss of any one server. Default 1.
func WithReplicas(n int) Option { return func(o *options) { o.streams.Replicas = n } }

// WithAckWait sets the consumers' ack wait: how long a delivered task
// may go without a heartbeat before it is delivered again. Workers send
// a heartbeat every third of it. Default DefaultAckWait.
func WithAckWait(d time.Duration) Option { return func(o *options) { o.streams.AckWait = d } }

// WithTaskTTL sets how long a task may wait in the queue for a worker.
// Default DefaultTaskTTL.
func WithTaskTTL(d time.Duration) Option { return func(o *options) { o.streams.TaskTTL = d } }

// WithResultTTL sets how long answers are kept, which is also how long
// a task id is remembered as answered. Default DefaultResultTTL.
func WithResultTTL(d time.Duration) Option { return func(o *options) { o.streams.ResultTTL = d } }

// WithDeadTTL sets how long dead letters are kept. Default DefaultDeadTTL.
func WithDeadTTL(d time.Duration) Option { return func(o *options) { o.streams.DeadTTL = d } }

// WithDuplicates sets the window in which the streams drop a second
// message with the same Nats-Msg-Id. Default DefaultDuplicates.
func WithDuplicates(d time.Duration) Option { return func(o *options) { o.streams.Duplicates = d } }

// WithPresenceTTL sets how long a worker's presence entry lives without
// a refresh; workers refresh it every third of it. Default
// DefaultPresenceTTL.
func WithPresenceTTL(d time.Duration) Option { return func(o *options) { o.streams.PresenceTTL = d } }

// WithCatalog sets the runtimes a worker knows; it must be its
// executor's. Default images.DefaultCatalog().
func WithCatalog(c images.Catalog) Option { return func(o *options) { o.catalog = c } }

// WithLimits sets the limits a runtime's tasks get where the request
// leaves them out, as service.WithLimits. Default: the runner's.
func WithLimits(f func(runtime string) (runner.Limits, error)) Option {
	return func(o *options) { o.limits = f }
}

// WithRuntimes sets the runtimes a worker takes tasks of (aliases are
// resolved). Default: every runtime of its catalog.
func WithRuntimes(names ...string) Option { return func(o *options) { o.runtimes = names } }

// WithCapacity sets how many tasks a worker runs at once, which is also
// the most it fetches. Default the number of CPUs.
func WithCapacity(n int) Option { return func(o *options) { o.capacity = n } }

// WithMaxDeliveries sets how many times a task is delivered before it
// goes to the dead-letter stream. Keep it the same on every worker.
// Default DefaultMaxDeliveries.
func WithMaxDeliveries(n int) Option { return func(o *options) { o.maxDeliveries = n } }

// WithRetryDelay sets how long a failed task waits before it is
// delivered again, times the deliveries so far. Default DefaultRetryDelay.
func WithRetryDelay(d time.Duration) Option { return func(o *options) { o.retryDelay = d } }

// WithGrace sets how long running tasks may finish once a worker's
// context is done, before they are cancelled and given back to the
// queue. Default DefaultGrace.
func WithGrace(d time.Duration) Option { return func(o *options) { o.grace = d } }

// WithPollWait sets how long an idle worker's pull requests wait for
// tasks, shared among its runtimes. Default DefaultPollWait.
func WithPollWait(d time.Duration) Option { return func(o *options) { o.pollWait = d } }

// WithID sets the worker's id, the key of its presence entry. Default
// HOSTNAME-PID.
func WithID(id string) Option { return func(o *options) { o.id = id } }

// WithVersion sets the version a worker advertises. Default "dev".
func WithVersion(v string) Option { return func(o *options) { o.version = v } }

// WithLogger sets where a worker logs: its start and stop and a line per
// task. Default: nowhere.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }
