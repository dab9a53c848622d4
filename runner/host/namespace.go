package host

import (
	"fmt"

	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/errdefs"
)

// DefaultNamespace is the containerd namespace the runner works in when
// none is given.
const DefaultNamespace = "sandbox-runner"

// reservedNamespaces are the containerd namespaces other programs own on
// a shared daemon, with their owner. The runner refuses to work in them:
// its sweep removes the leases it finds in its namespace, and its image
// commands add and delete image records there, which in Docker's
// namespace would break Docker.
var reservedNamespaces = map[string]string{
	"moby":         "Docker",
	"plugins.moby": "Docker's plugins",
	"k8s.io":       "Kubernetes (the CRI plugin)",
}

// ValidateNamespace returns an invalid-argument error when ns is not a
// valid containerd namespace, or is one another program owns (Docker's
// "moby" and "plugins.moby", the CRI plugin's "k8s.io"). Every entry
// point checks the namespace with it before talking to containerd.
func ValidateNamespace(ns string) error {
	if owner, ok := reservedNamespaces[ns]; ok {
		return fmt.Errorf("namespace %q belongs to %s: sandbox-runner works only in a namespace of its own (default %q): %w",
			ns, owner, DefaultNamespace, errdefs.ErrInvalidArgument)
	}
	if err := identifiers.Validate(ns); err != nil {
		return fmt.Errorf("namespace %q: %w", ns, err)
	}
	return nil
}
