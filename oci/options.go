package oci

import (
	"fmt"
	"math"
	"path"
	"strings"

	ctrdoci "github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
)

// Options validates cfg, fills its defaults and returns the spec options
// that harden one task, in the order they must run.
//
// The list does not include a base spec: the caller passes it to
// client.WithNewSpec, which starts from containerd's default spec. Seccomp
// comes last because containerd derives its allow-list from the bounding
// capability set, which must already be empty by then.
//
// Every error satisfies errdefs.IsInvalidArgument and names the field.
func Options(cfg Config) ([]ctrdoci.SpecOpts, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return []ctrdoci.SpecOpts{
		WithIsolatedNamespaces(),
		WithNoCapabilities(),
		ctrdoci.WithNoNewPrivileges,
		WithUser(cfg.UID, cfg.GID),
		WithOOMScoreAdj(DefaultOOMScore),
		ctrdoci.WithRootFSReadonly(),
		WithMaskedPaths(),
		WithResources(cfg.Resources),
		WithRlimits(cfg.Resources),
		WithMounts(cfg),
		WithProcess(cfg),
		WithDefaultSeccomp(),
	}, nil
}

// withDefaults is the one place where zero values become defaults; every
// option that takes a Config or Resources goes through it, so options used
// on their own behave as they do inside Options.
func (c Config) withDefaults() Config {
	if c.UID == 0 {
		c.UID = DefaultUID
	}
	if c.GID == 0 {
		c.GID = DefaultGID
	}
	if c.Cwd == "" {
		c.Cwd = ScratchDir
	}
	if c.Hostname == "" {
		c.Hostname = DefaultHostname
	}
	if !hasPATH(c.Env) {
		c.Env = append(c.Env[:len(c.Env):len(c.Env)], DefaultPATH)
	}
	c.Resources = c.Resources.withDefaults()
	return c
}

func (r Resources) withDefaults() Resources {
	if r.ShmBytes == 0 {
		r.ShmBytes = DefaultShmBytes
	}
	if r.NoFile == 0 {
		r.NoFile = DefaultNoFile
	}
	return r
}

func hasPATH(env []string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			return true
		}
	}
	return false
}

func (c Config) validate() error {
	if err := c.validateProcess(); err != nil {
		return err
	}
	if err := c.validateCodeSource(); err != nil {
		return err
	}
	return c.Resources.validate()
}

func (c Config) validateProcess() error {
	if len(c.Args) == 0 || c.Args[0] == "" {
		return invalid("Args is empty, set the command to run")
	}
	for _, e := range c.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return invalid("Env entry %q is not KEY=VALUE", e)
		}
	}
	if c.Cwd != "" && !path.IsAbs(c.Cwd) {
		return invalid("Cwd %q is not absolute, use a path such as %s", c.Cwd, ScratchDir)
	}
	return nil
}

func (c Config) validateCodeSource() error {
	// A relative source would resolve against the shim's working
	// directory, not the caller's: never what was meant.
	if c.CodeSource != "" && !path.IsAbs(c.CodeSource) {
		return invalid("CodeSource %q is not absolute, pass an absolute host path", c.CodeSource)
	}
	if c.ScratchSource != "" && !path.IsAbs(c.ScratchSource) {
		return invalid("ScratchSource %q is not absolute, pass an absolute host path", c.ScratchSource)
	}
	for _, b := range c.ReadOnlyBinds {
		if !path.IsAbs(b.Source) || !path.IsAbs(b.Destination) {
			return invalid("ReadOnlyBinds entry %q -> %q: both paths must be absolute", b.Source, b.Destination)
		}
	}
	return nil
}

// minCPUs is the smallest CPU share the kernel accepts: it refuses a CFS
// quota under 1ms, which would otherwise surface only when the task starts.
const minCPUs = 1000.0 / DefaultCPUPeriod

func (r Resources) validate() error {
	if err := r.validateCgroup(); err != nil {
		return err
	}
	return r.validateScratch()
}

func (r Resources) validateCgroup() error {
	if r.MemoryBytes <= 0 {
		return invalid("Resources.MemoryBytes is %d, set a memory limit in bytes (> 0)", r.MemoryBytes)
	}
	// Written so that NaN fails too.
	if !(r.CPUs >= minCPUs) || math.IsInf(r.CPUs, 0) || r.CPUs > math.MaxInt64/DefaultCPUPeriod {
		return invalid("Resources.CPUs is %v, set a finite CPU limit of at least %v", r.CPUs, minCPUs)
	}
	if r.Pids <= 0 {
		return invalid("Resources.Pids is %d, set a process limit (> 0)", r.Pids)
	}
	for i, cpu := range r.CPUSet {
		if cpu < 0 || i > 0 && cpu <= r.CPUSet[i-1] {
			return invalid("Resources.CPUSet is %v, list CPU numbers (>= 0) in increasing order", r.CPUSet)
		}
	}
	return nil
}

func (r Resources) validateScratch() error {
	if r.TmpBytes <= 0 {
		return invalid("Resources.TmpBytes is %d, set the /tmp size in bytes (> 0)", r.TmpBytes)
	}
	if r.ShmBytes < 0 {
		return invalid("Resources.ShmBytes is %d, set it >= 0 (0 means %d)", r.ShmBytes, DefaultShmBytes)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errdefs.ErrInvalidArgument}, args...)...)
}
