package runner

import (
	"errors"

	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

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

// ErrShimLost marks a task whose containerd shim died while it ran (a
// crash, the OOM killer, a kill): containerd cleans the task up and
// reports an exit that is not the task's, so the runner gives no verdict.
// It is a runner failure (api.KindRunnerFailed): the task may be retried.
var ErrShimLost = errors.New("shim lost")
