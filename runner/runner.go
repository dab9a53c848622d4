package runner

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner/host"
)

// Labels put on every containerd object the runner creates, so that a
// restarted runner (or `sandbox-runner gc`) finds what a crashed one left.
const (
	LabelTask     = "io.sandbox-runner/task"
	LabelCreated  = "io.sandbox-runner/created"
	LabelOwner    = "io.sandbox-runner/owner"
	LabelOwnerPID = "io.sandbox-runner/owner-pid"
	// LabelOwnerStart is the owner process's start time, so that a reused
	// pid is not mistaken for a live owner.
	LabelOwnerStart = "io.sandbox-runner/owner-start"
)

// Defaults of the Runner's options.
const (
	DefaultNamespace   = host.DefaultNamespace
	DefaultSnapshotter = "overlayfs"
	DefaultStateDir    = "/var/lib/sandbox-runner"
	DefaultShim        = "io.containerd.runc.v2"
)

// How long the runner waits on teardown steps that should be instant.
const (
	// killWait bounds the wait for the exit after SIGKILL to all processes.
	killWait = 5 * time.Second
	// drainWait bounds the wait for the last output after the exit: the
	// shim closes the pipes when the last process holding them is gone.
	drainWait = 2 * time.Second
	// cleanupTimeout bounds the whole teardown of one task.
	cleanupTimeout = 30 * time.Second
	// createTimeout bounds the making of a container and its task, which
	// the caller's cancellation does not cut short (see create).
	createTimeout = 30 * time.Second
)

// Runner runs tasks in one containerd namespace.
type Runner struct {
	client *client.Client
	opts   options
	host   hostFacts
	// pid and start identify this process in owner labels.
	pid, start string

	ids  *identities
	cpus *cpuSets
	init string // the init binary's host path, or "" with initErr
	// initErr says why no init binary was found; tasks fail with it.
	initErr error
	// shimFront is the sandbox-runner-shim beside the init, the shim
	// binary containerd runs for crun and runc sandboxes, or "" for
	// containerd's runc shim itself (see findShimFront).
	shimFront string
	// ctrdAddress is containerd's socket, as the client dials it (see
	// groupAnnotations).
	ctrdAddress string
	// plainShim: containerd's shims answer a start with their address
	// alone (see shimAnswersPlainAddress).
	plainShimOnce sync.Once
	plainShim     bool

	mu     sync.Mutex
	images map[string]*imageInfo

	// runscMu guards runscConfig, the gVisor shim configuration last
	// written to the state dir.
	runscMu     sync.Mutex
	runscConfig []byte
}

type imageInfo struct {
	img client.Image
	env []string
}

// Option configures a Runner.
type Option func(*options)

type options struct {
	namespace   string
	snapshotter string
	stateDir    string
	catalog     images.Catalog
	log         *slog.Logger
	owner       string
	pull        func(ctx context.Context, ref string) error
	init        string
	uids        UIDRange
	oci         *OCIRuntimes
	maxRuns     int
}

// WithNamespace sets the containerd namespace every object lives in.
// Default DefaultNamespace.
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithSnapshotter sets the snapshotter images are unpacked into and
// task root file systems are made from. Default DefaultSnapshotter.
func WithSnapshotter(s string) Option { return func(o *options) { o.snapshotter = s } }

// WithStateDir sets the host directory for task dirs and output FIFOs.
// Default DefaultStateDir.
func WithStateDir(dir string) Option { return func(o *options) { o.stateDir = dir } }

// WithCatalog sets the runtime catalog. Default images.DefaultCatalog().
func WithCatalog(c images.Catalog) Option { return func(o *options) { o.catalog = c } }

// WithLogger sets where the runner logs. Default: nowhere.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithPull sets how a missing image is fetched: pull is called with the
// normalized reference and the namespace on ctx, and must leave the image
// in the store, unpacked (images.Pull does). Tasks then follow their Pull
// policy. Default: none, and every task runs as with images.PullNever.
func WithPull(pull func(ctx context.Context, ref string) error) Option {
	return func(o *options) { o.pull = pull }
}

// WithInit sets the host path of the static sandbox-runner-init binary,
// PID 1 of every sandbox. Default: the first of FindInit's places that
// holds one.
func WithInit(path string) Option { return func(o *options) { o.init = path } }

// WithUIDRange sets the host uids (and gids) tasks run as, one of its own
// for each task. Default DefaultUIDBase and DefaultUIDCount.
func WithUIDRange(u UIDRange) Option { return func(o *options) { o.uids = u } }

// WithOwner sets the owner label on what the runner creates. Default
// "HOSTNAME/PID".
func WithOwner(owner string) Option { return func(o *options) { o.owner = owner } }

// New returns a Runner that uses c. It refuses a host that cannot sandbox
// tasks (no seccomp) with ErrSandboxUnavailable rather than run them
// unconfined.
func New(c *client.Client, opts ...Option) (*Runner, error) {
	hostname, _ := os.Hostname()
	o := options{
		namespace:   DefaultNamespace,
		snapshotter: DefaultSnapshotter,
		stateDir:    DefaultStateDir,
		log:         slog.New(slog.DiscardHandler),
		owner:       fmt.Sprintf("%s/%d", hostname, os.Getpid()),
		uids:        UIDRange{First: DefaultUIDBase, Count: DefaultUIDCount},
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.catalog == nil {
		o.catalog = images.DefaultCatalog()
	}
	if err := host.ValidateNamespace(o.namespace); err != nil {
		return nil, err
	}
	if err := SeccompAvailable(); err != nil {
		return nil, err
	}
	if err := o.withOCIRuntimes(); err != nil {
		return nil, err
	}
	if missing := host.MissingControllers(); len(missing) > 0 {
		return nil, fmt.Errorf("%w: cgroup controllers %s are missing, so limits cannot be enforced: refusing to run tasks", ErrSandboxUnavailable, strings.Join(missing, ", "))
	}
	host, err := readHostFacts()
	if err != nil {
		return nil, err
	}
	if err := o.uids.check(); err != nil {
		return nil, err
	}
	if err := o.uids.overlaps("/etc"); err != nil {
		return nil, err
	}
	for _, d := range []string{o.stateDir, filepath.Join(o.stateDir, "tasks")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("creating state dir: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(o.stateDir, idsDir), 0o700); err != nil {
		return nil, fmt.Errorf("creating state dir: %w", err)
	}
	pid, start := processIdentity()
	r := &Runner{client: c, opts: o, host: host, pid: pid, start: start, images: map[string]*imageInfo{},
		ids:  &identities{dir: filepath.Join(o.stateDir, idsDir), r: o.uids, owner: pid + " " + start},
		cpus: newCPUSets()}
	r.ctrdAddress = containerdAddress(c)
	r.init, r.initErr = o.init, nil
	if r.init == "" {
		r.init, r.initErr = FindInit()
	}
	if r.initErr == nil {
		r.initErr = checkInit(r.init)
	}
	if r.initErr == nil {
		var why error
		if r.shimFront, why = findShimFront(r.init); why != nil {
			o.log.Warn("sandboxes run containerd's runc shim directly, without "+ShimName+", which spares each sandbox's teardown about 30 ms", "reason", why)
		}
	}
	return r, nil
}

// initBinary returns the init's host path, or why there is none.
func (r *Runner) initBinary() (string, error) { return r.init, r.initErr }

// Limits returns l with the runner's defaults in place of zero fields, as
// Run applies them.
func (r *Runner) Limits(l Limits) Limits {
	full, _ := withDefaults(l, r.host)
	return full
}

// Namespace returns the containerd namespace the runner works in.
func (r *Runner) Namespace() string { return r.opts.namespace }

// Catalog returns the runtime catalog.
func (r *Runner) Catalog() images.Catalog { return r.opts.catalog }
