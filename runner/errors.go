package runner

import "errors"

// Sentinel errors callers tell apart with errors.Is. Errors that carry an
// errdefs class (invalid argument, not found, unavailable) wrap that class
// as well, so errdefs.IsInvalidArgument and friends work on them too.
var (
	// ErrInvalidTask marks a task that can never run as given: bad file
	// names, limits out of range, an unknown runtime. Fix the input.
	ErrInvalidTask = errors.New("invalid task")
	// ErrSandboxUnavailable marks a host that cannot sandbox a task (no
	// seccomp, no cgroup controller, no containerd). The task was refused,
	// never run unconfined; `sandbox-runner check` says what to fix.
	ErrSandboxUnavailable = errors.New("sandbox unavailable")
	// ErrImageNotFound marks an image that is not in containerd's store.
	ErrImageNotFound = errors.New("image not found")
)
