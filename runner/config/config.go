// Package config reads sandbox-runner's configuration file
// (default /etc/sandbox-runner/config.toml): the containerd connection,
// registry settings, default limits, the runtime catalog's overrides and
// additions, and the service's settings.
//
// Decoding is strict: an unknown key is an error that names it and its
// line, so a typo never silently falls back to a default.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

// DefaultPath is where the config file is read from when none is given.
const DefaultPath = "/etc/sandbox-runner/config.toml"

// maxSize bounds the config file; a larger one is surely not a config.
const maxSize = 1 << 20

// File is the config file as written. Every field is optional; empty
// means the built-in default.
type File struct {
	// Address is the containerd socket.
	Address string `toml:"address"`
	// Namespace is the containerd namespace of everything the runner makes.
	Namespace string `toml:"namespace"`
	// Snapshotter unpacks images and makes task root file systems.
	Snapshotter string `toml:"snapshotter"`
	// StateDir holds task dirs and a private containerd.
	StateDir string `toml:"state_dir"`
	// Init is the static sandbox-runner-init binary, PID 1 of every
	// sandbox. Default: the one next to the sandbox-runner binary, else
	// /usr/local/libexec/sandbox-runner/sandbox-runner-init.
	Init string `toml:"init"`
	// UIDRange is the host uids tasks run as, one of its own for each
	// live task, "FIRST-LAST". Default "1500000000-1500065535".
	UIDRange string `toml:"uid_range"`
	// OCIRuntime is the OCI runtime (crun, runc, runsc) of tasks that
	// name none and whose runtime sets none. Default: the fastest usable
	// one of crun and runc.
	OCIRuntime string `toml:"oci_runtime"`
	// MaxRuns bounds the runs of one batch (the API's "runs", exec
	// --input). Default runner.DefaultMaxRuns.
	MaxRuns int `toml:"max_runs"`
	// Registry says how images are pulled.
	Registry Registry `toml:"registry"`
	// Limits are the defaults of every task.
	Limits Limits `toml:"limits"`
	// Runtimes override built-in runtimes field by field, or add new ones.
	Runtimes map[string]Runtime `toml:"runtimes"`
	// Service configures `sandbox-runner serve`.
	Service Service `toml:"service"`
	// Fleet configures `sandbox-runner worker`, `workers` and `submit`.
	Fleet Fleet `toml:"fleet"`
}

// Registry configures pulls.
type Registry struct {
	// ConfigPath is a directory of hosts.toml files in containerd's
	// certs.d layout (mirrors, plain HTTP, CAs). Default /etc/containerd/certs.d.
	ConfigPath string `toml:"config_path"`
	// DockerConfig is a Docker-style config.json with credentials.
	// Default $DOCKER_CONFIG/config.json, else ~/.docker/config.json.
	DockerConfig string `toml:"docker_config"`
}

// Limits are task limits as written (api.WrittenLimits, as requests and
// exec's flags write them): sizes like "512m" or a number of bytes,
// durations like "30s" or a number of seconds, CPUs like 0.5. A limit
// left out takes the default; 0 is refused, as everywhere.
type Limits = api.WrittenLimits

// Runtime is one catalog entry as written.
type Runtime struct {
	Image   string   `toml:"image"`
	File    string   `toml:"file"`
	Compile []string `toml:"compile"`
	Run     []string `toml:"run"`
	Env     []string `toml:"env"`
	Limits  Limits   `toml:"limits"`
	// OCIRuntime is the OCI runtime of the runtime's tasks that name
	// none. Set alone, it is the only one they may name.
	OCIRuntime string `toml:"oci_runtime"`
	// OCIRuntimes are the OCI runtimes the runtime's tasks may name.
	// Empty: only OCIRuntime when set, else any usable one.
	OCIRuntimes []string `toml:"oci_runtimes"`
}

// Service configures `sandbox-runner serve`.
type Service struct {
	// Socket is the unix socket the API listens on.
	Socket string `toml:"socket"`
	// SocketGroup owns the socket (mode 0660); empty keeps root's group.
	SocketGroup string `toml:"socket_group"`
	// TCP is an address to listen on as well, such as "127.0.0.1:8080";
	// it needs TokenFile.
	TCP string `toml:"tcp"`
	// TokenFile holds the bearer token TCP clients must send.
	TokenFile string `toml:"token_file"`
	// MaxConcurrent is how many tasks run at once.
	MaxConcurrent int `toml:"max_concurrent"`
	// Queue is how many tasks may wait for a slot; more get 429. Absent
	// means four per slot; 0 refuses every task that finds no free slot.
	Queue *int `toml:"queue"`
	// MaxBody caps a request body, e.g. "32m".
	MaxBody string `toml:"max_body"`
	// Grace is how long in-flight tasks may finish after SIGTERM.
	Grace string `toml:"grace"`
	// IdleTimeout is how long an interactive session's client may send
	// nothing, or a streamed answer's read nothing, e.g. "1m".
	IdleTimeout string `toml:"idle_timeout"`
	// ProbeInterval is how often containerd is probed for the metrics'
	// sandbox_runner_containerd_up, e.g. "5s".
	ProbeInterval string `toml:"probe_interval"`
	// RequiredRuntimes are the runtimes whose images must be in
	// containerd's store for GET /readyz to answer ready.
	RequiredRuntimes []string `toml:"required_runtimes"`
	// PistonAddr, when set, is a host:port to answer Piston's v2 API on
	// (POST /api/v2/execute, GET /api/v2/runtimes), such as
	// "127.0.0.1:2000": a loopback address, or any with TokenFile.
	PistonAddr string `toml:"piston_addr"`
	// PistonVersions are the versions Piston's API gives runtimes, by
	// runtime name; others take their image tag's.
	PistonVersions map[string]string `toml:"piston_versions"`
	// Pool is the warm pool of created, not yet started sandboxes.
	Pool Pool `toml:"pool"`
}

// Pool configures the service's warm pool.
type Pool struct {
	// Runtimes maps a runtime to how many sandboxes to keep ready for it;
	// its sandboxes are made with the runtime's limits. Empty: no pool.
	Runtimes map[string]int `toml:"runtimes"`
	// Init is the old place of the top-level init, still read.
	Init string `toml:"init"`
	// MaxIdle is how long a sandbox may wait before it is recycled.
	MaxIdle string `toml:"max_idle"`
	// ShimGroup is how many sandboxes of a runtime share one containerd
	// shim; 0: runner.DefaultShimGroup, 1: a shim each.
	ShimGroup int `toml:"shim_group"`
}

// Fleet configures the commands that talk to a fleet of workers through
// NATS JetStream. The stream settings (ack_wait, replicas and the TTLs)
// take effect when the first worker or submit creates the streams.
type Fleet struct {
	// NATS is one or more server URLs, comma-separated.
	NATS string `toml:"nats"`
	// Creds is a NATS credentials file.
	Creds string `toml:"creds"`
	// TLSCA, TLSCert and TLSKey are PEM files: the CAs of the servers'
	// certificates, and a client certificate with its key.
	TLSCA   string `toml:"tls_ca"`
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// Runtimes are the runtimes a worker takes tasks of; empty: all.
	Runtimes []string `toml:"runtimes"`
	// MaxConcurrent is how many tasks a worker runs at once.
	MaxConcurrent int `toml:"max_concurrent"`
	// MaxDeliveries is how many times a task is delivered before it is
	// dead-lettered.
	MaxDeliveries int `toml:"max_deliveries"`
	// RetryDelay is how long a failed task waits, times its deliveries.
	RetryDelay string `toml:"retry_delay"`
	// Grace is how long running tasks may finish after SIGTERM.
	Grace string `toml:"grace"`
	// Metrics is where a worker serves Prometheus metrics: host:port, or
	// a unix socket's path. Empty: nowhere.
	Metrics string `toml:"metrics"`
	// AckWait is how long a task may go without a heartbeat before it is
	// delivered again.
	AckWait string `toml:"ack_wait"`
	// Replicas is how many NATS servers hold each stream.
	Replicas int `toml:"replicas"`
	// PresenceTTL is how long a worker's entry outlives its last refresh.
	PresenceTTL string `toml:"presence_ttl"`
	// TaskTTL is how long a task may wait for a worker.
	TaskTTL string `toml:"task_ttl"`
	// ResultTTL is how long answers are kept.
	ResultTTL string `toml:"result_ttl"`
	// Pool is the worker's warm pool, as the service's.
	Pool Pool `toml:"pool"`
}

// Load reads the config file at path. A missing file at DefaultPath is
// no error (the defaults apply); a missing file anywhere else is.
func Load(path string) (*File, error) {
	if path == "" {
		path = DefaultPath
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && path == DefaultPath {
			return &File{}, nil
		}
		if errors.Is(err, os.ErrNotExist) {
			// A file the user named and that is not there is bad input,
			// not a failure of the runner.
			return nil, fmt.Errorf("config file %s does not exist: give an existing file, or leave --config and SANDBOX_RUNNER_CONFIG unset to read %s when it exists: %w",
				path, DefaultPath, errdefs.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	c, err := Decode(f)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Decode reads a config from r, rejecting unknown keys and bad values
// with the line they are on.
func Decode(r io.Reader) (*File, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSize {
		return nil, fmt.Errorf("config is larger than %d bytes: %w", maxSize, errdefs.ErrInvalidArgument)
	}
	var c File
	// The unmarshaler interface lets a limit be a string or a number
	// (api.Limit.UnmarshalTOML).
	dec := toml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields().EnableUnmarshalerInterface()
	if err := dec.Decode(&c); err != nil {
		return nil, describe(err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// describe turns a decoding error into one that names the key and line.
func describe(err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var msgs []string
		for _, e := range strict.Errors {
			line, _ := e.Position()
			msgs = append(msgs, fmt.Sprintf("line %d: unknown key %q", line, strings.Join(e.Key(), ".")))
		}
		return fmt.Errorf("%s: %w", strings.Join(msgs, "; "), errdefs.ErrInvalidArgument)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, col := de.Position()
		return fmt.Errorf("line %d, column %d: %s: %w", line, col, strings.TrimPrefix(de.Error(), "toml: "), errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
}

func (c *File) validate() error {
	if err := checkOCIRuntime("oci_runtime", c.OCIRuntime); err != nil {
		return err
	}
	for _, name := range sortedKeys(c.Runtimes) {
		rt := c.Runtimes[name]
		if err := checkOCIRuntime("[runtimes."+name+"] oci_runtime", rt.OCIRuntime); err != nil {
			return err
		}
		for _, o := range rt.OCIRuntimes {
			if err := checkOCIRuntime("[runtimes."+name+"] oci_runtimes", o); err != nil {
				return err
			}
		}
		if rt.OCIRuntime != "" && len(rt.OCIRuntimes) > 0 && !slices.Contains(rt.OCIRuntimes, rt.OCIRuntime) {
			return fmt.Errorf("[runtimes.%s] oci_runtime %q is not among its oci_runtimes %q: add it there: %w", name, rt.OCIRuntime, rt.OCIRuntimes, errdefs.ErrInvalidArgument)
		}
	}
	if _, err := c.Limits.Apply(runner.Limits{}, limitsKey("")); err != nil {
		return err
	}
	for _, name := range sortedKeys(c.Runtimes) {
		rt := c.Runtimes[name]
		if _, err := rt.Limits.Apply(runner.Limits{}, limitsKey(name)); err != nil {
			return err
		}
		for _, e := range rt.Env {
			if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
				return fmt.Errorf("[runtimes.%s] env entry %q is not KEY=VALUE: %w", name, e, errdefs.ErrInvalidArgument)
			}
		}
	}
	for _, d := range []struct{ key, value string }{{"service.max_body", c.Service.MaxBody}} {
		if d.value != "" {
			if _, err := runner.ParseSize(d.value); err != nil {
				return fmt.Errorf("%s: %w", d.key, err)
			}
		}
	}
	if c.Service.Grace != "" {
		if _, err := runner.ParseDuration(c.Service.Grace); err != nil {
			return fmt.Errorf("service.grace: %w", err)
		}
	}
	if c.Service.IdleTimeout != "" {
		if d, err := runner.ParseDuration(c.Service.IdleTimeout); err != nil {
			return fmt.Errorf("service.idle_timeout: %w", err)
		} else if d <= 0 {
			return fmt.Errorf("service.idle_timeout %q: give a duration above zero, e.g. \"1m\": %w", c.Service.IdleTimeout, errdefs.ErrInvalidArgument)
		}
	}
	if err := c.Service.Pool.validate("service.pool"); err != nil {
		return err
	}
	if err := c.Fleet.Pool.validate("fleet.pool"); err != nil {
		return err
	}
	if c.MaxRuns < 0 {
		return fmt.Errorf("max_runs %d cannot be negative: give 1 or more, or leave it out for %d: %w", c.MaxRuns, runner.DefaultMaxRuns, errdefs.ErrInvalidArgument)
	}
	if c.Service.MaxConcurrent < 0 || (c.Service.Queue != nil && *c.Service.Queue < 0) {
		return fmt.Errorf("service.max_concurrent and service.queue cannot be negative: %w", errdefs.ErrInvalidArgument)
	}
	return c.Fleet.validate()
}

func (p Pool) validate(key string) error {
	if p.MaxIdle != "" {
		if _, err := runner.ParseDuration(p.MaxIdle); err != nil {
			return fmt.Errorf("%s.max_idle: %w", key, err)
		}
	}
	for name, n := range p.Runtimes {
		if n < 0 {
			return fmt.Errorf("%s.runtimes.%s: %d is negative: %w", key, name, n, errdefs.ErrInvalidArgument)
		}
	}
	if p.ShimGroup < 0 {
		return fmt.Errorf("%s.shim_group cannot be negative: %w", key, errdefs.ErrInvalidArgument)
	}
	return nil
}

func (f *Fleet) validate() error {
	for _, d := range []struct{ key, value string }{
		{"fleet.retry_delay", f.RetryDelay}, {"fleet.grace", f.Grace}, {"fleet.ack_wait", f.AckWait},
		{"fleet.presence_ttl", f.PresenceTTL}, {"fleet.task_ttl", f.TaskTTL}, {"fleet.result_ttl", f.ResultTTL},
	} {
		if d.value != "" {
			if _, err := runner.ParseDuration(d.value); err != nil {
				return fmt.Errorf("%s: %w", d.key, err)
			}
		}
	}
	if f.MaxConcurrent < 0 || f.MaxDeliveries < 0 || f.Replicas < 0 {
		return fmt.Errorf("fleet.max_concurrent, fleet.max_deliveries and fleet.replicas cannot be negative: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// limitsKey spells a limit's key as the file does: "[limits] memory",
// or "[runtimes.python.limits] memory" for a runtime's.
func limitsKey(runtime string) func(string) string {
	table := "[limits]"
	if runtime != "" {
		table = "[runtimes." + runtime + ".limits]"
	}
	return func(key string) string { return table + " " + key }
}

// Catalog returns the built-in catalog with the file's runtimes applied:
// a known runtime's fields are overridden one by one, a new runtime must
// name at least its image, file and run command.
func (c *File) Catalog() (images.Catalog, error) {
	cat := images.DefaultCatalog()
	for _, name := range sortedKeys(c.Runtimes) {
		w := c.Runtimes[name]
		rt, known := cat[name]
		rt.Name = name
		if w.Image != "" {
			rt.Image = w.Image
		}
		if w.File != "" {
			rt.FileName = w.File
		}
		if w.Compile != nil {
			rt.Compile = w.Compile
		}
		if w.Run != nil {
			rt.Run = w.Run
		}
		if w.Env != nil {
			rt.Env = w.Env
		}
		if !known {
			var missing []string
			for _, f := range []struct {
				key string
				ok  bool
			}{{"image", rt.Image != ""}, {"file", rt.FileName != ""}, {"run", len(rt.Run) > 0}} {
				if !f.ok {
					missing = append(missing, f.key)
				}
			}
			if len(missing) > 0 {
				return nil, fmt.Errorf("[runtimes.%s] is a new runtime and needs %s: %w", name, strings.Join(missing, ", "), errdefs.ErrInvalidArgument)
			}
		}
		if _, err := images.Normalize(rt.Image); err != nil {
			return nil, fmt.Errorf("[runtimes.%s] image: %w", name, err)
		}
		cat[name] = rt
	}
	return cat, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TaskLimits returns the limits a task of runtime gets before any
// per-task override: [limits], then [runtimes.NAME.limits], over the
// runner's defaults (zero fields).
func (c *File) TaskLimits(runtime string) (runner.Limits, error) {
	l, err := c.Limits.Apply(runner.Limits{}, limitsKey(""))
	if err != nil {
		return l, err
	}
	if _, own := c.Runtimes[runtime]; !own {
		// "csharp" takes [runtimes.dotnet.limits].
		if target, ok := images.DefaultCatalog().Aliases()[runtime]; ok {
			runtime = target
		}
	}
	if rt, ok := c.Runtimes[runtime]; ok {
		if l, err = rt.Limits.Apply(l, limitsKey(runtime)); err != nil {
			return l, err
		}
	}
	return l, nil
}

// checkOCIRuntime refuses a name that is no known OCI runtime; whether
// this host can use it is the runner's to say.
func checkOCIRuntime(key, name string) error {
	if name != "" && !slices.Contains(runner.OCIRuntimeNames, name) {
		return fmt.Errorf("%s: unknown OCI runtime %q: give one of %s: %w", key, name, strings.Join(runner.OCIRuntimeNames, ", "), errdefs.ErrInvalidArgument)
	}
	return nil
}

// OCIRuntimeRules returns what [runtimes.NAME] oci_runtime and
// oci_runtimes say, per runtime, for runner.NewOCIRuntimes.
func (c *File) OCIRuntimeRules() map[string]runner.OCIRuntimeRule {
	rules := map[string]runner.OCIRuntimeRule{}
	for name, rt := range c.Runtimes {
		if rt.OCIRuntime == "" && len(rt.OCIRuntimes) == 0 {
			continue
		}
		rules[name] = runner.OCIRuntimeRule{Default: rt.OCIRuntime, Allowed: rt.OCIRuntimes}
	}
	return rules
}
