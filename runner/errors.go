package runner

import "github.com/sandbox-runner/sandbox-runner/runner/api"

// Sentinel errors callers tell apart with errors.Is; they are api's, so
// that an error a client gets back from a service or a worker matches
// the same ones (api.Sentinel).
var (
	// ErrInvalidTask marks a task that can never run as given. Fix the input.
	ErrInvalidTask = api.ErrInvalidTask
	// ErrSandboxUnavailable marks a host that cannot sandbox a task.
	ErrSandboxUnavailable = api.ErrSandboxUnavailable
	// ErrImageNotFound marks an image that is not in containerd's store.
	ErrImageNotFound = api.ErrImageNotFound
)
