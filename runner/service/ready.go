package service

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
)

// ReadinessChecks are the checks of GET /readyz for a runner on c: the
// daemon answers, the kernel has seccomp, and the images of the
// required runtimes are in the store of namespace.
func ReadinessChecks(c *client.Client, namespace string, catalog images.Catalog, required []string) ([]Check, error) {
	type need struct{ runtime, ref string }
	var needs []need
	for _, name := range required {
		rt, err := catalog.Lookup(name)
		if err != nil {
			return nil, fmt.Errorf("required runtime: %w", err)
		}
		ref, err := images.Normalize(rt.Image)
		if err != nil {
			return nil, fmt.Errorf("required runtime %s: %w", name, err)
		}
		needs = append(needs, need{name, ref})
	}
	return []Check{
		{Name: "containerd", Run: func(ctx context.Context) (string, error) {
			v, err := c.Version(ctx)
			if err != nil {
				return "", fmt.Errorf("containerd does not answer: %w", err)
			}
			return "containerd " + v.Version, nil
		}},
		{Name: "seccomp", Run: func(context.Context) (string, error) {
			if err := runner.SeccompAvailable(); err != nil {
				return "", err
			}
			return "kernel seccomp filters available", nil
		}},
		{Name: "images", Run: func(ctx context.Context) (string, error) {
			ctx = namespaces.WithNamespace(ctx, namespace)
			var missing, have []string
			for _, n := range needs {
				_, err := c.ImageService().Get(ctx, n.ref)
				switch {
				case errdefs.IsNotFound(err):
					missing = append(missing, fmt.Sprintf("%s (runtime %s)", n.ref, n.runtime))
				case err != nil:
					return "", fmt.Errorf("looking up %s: %w", n.ref, err)
				default:
					have = append(have, n.ref)
				}
			}
			if len(missing) > 0 {
				return "", errors.New("not in containerd's store: " + strings.Join(missing, ", ") + "; import them with `sandbox-runner images import`")
			}
			if len(have) == 0 {
				return "no runtime is required (service.required_runtimes)", nil
			}
			return "present: " + strings.Join(have, ", "), nil
		}},
	}, nil
}
