package oci

import (
	"context"
	"slices"

	"github.com/containerd/containerd/v2/core/containers"
	ctrdoci "github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// WithProcess sets what the task runs: cfg's args, its environment (with
// DefaultPATH added when it sets no PATH), its working directory (default
// ScratchDir) and its hostname (default DefaultHostname).
//
// The environment replaces the base spec's rather than merging with it, so
// that what the task sees is exactly what the caller passed. There is no
// terminal: the runner captures output through pipes, byte-capped.
// Empty args, a malformed env entry or a relative cwd give an error
// satisfying errdefs.IsInvalidArgument.
func WithProcess(cfg Config) ctrdoci.SpecOpts {
	return func(_ context.Context, _ ctrdoci.Client, _ *containers.Container, s *specs.Spec) error {
		if err := cfg.validateProcess(); err != nil {
			return err
		}
		cfg = cfg.withDefaults()
		setProcess(s)
		s.Process.Args = slices.Clone(cfg.Args)
		s.Process.Env = slices.Clone(cfg.Env)
		s.Process.Cwd = cfg.Cwd
		s.Process.Terminal = false
		s.Process.ConsoleSize = nil
		s.Hostname = cfg.Hostname
		for k, v := range cfg.Annotations {
			if s.Annotations == nil {
				s.Annotations = map[string]string{}
			}
			s.Annotations[k] = v
		}
		return nil
	}
}
