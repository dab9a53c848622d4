package oci

import (
	"context"

	"github.com/containerd/containerd/v2/core/containers"
	ctrdoci "github.com/containerd/containerd/v2/pkg/oci"
)

// WithOCIVersion writes version as the spec's ociVersion, or leaves the
// one containerd wrote when version is empty.
//
// containerd's client writes the runtime-spec version it was built with
// (1.3.0 for containerd 2.4), and some runtimes refuse a version newer
// than they know: crun 1.8.1 answers "unknown version specified" to
// anything but 1.0.x. The spec this package builds uses nothing newer
// than runtime-spec 1.0, so writing the version the chosen runtime
// declares (`crun --version` says "spec: 1.0.0") is true to its content.
func WithOCIVersion(version string) ctrdoci.SpecOpts {
	return func(_ context.Context, _ ctrdoci.Client, _ *containers.Container, s *ctrdoci.Spec) error {
		if version != "" {
			s.Version = version
		}
		return nil
	}
}
