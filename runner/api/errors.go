// Package api holds what the service, the fleet and their clients say to
// each other: the request (Request, with limits as written,
// WrittenLimits, and their one Apply), the result document (Result,
// BatchResult), the messages of a streamed answer and of an interactive
// session, and the error kinds with the sentinels they stand for. The
// runner and the service keep aliases of these types under their old
// names. It imports no containerd client and no Linux-only package, so a
// client builds on any OS (`make lint` checks it for darwin).
package api

import (
	"context"
	"errors"

	"github.com/containerd/errdefs"
)

// Sentinel errors callers tell apart with errors.Is. Errors that carry an
// errdefs class (invalid argument, not found, unavailable) wrap that class
// as well, so errdefs.IsInvalidArgument and friends work on them too.
var (
	// ErrInvalidTask marks a task that can never run as given: bad file
	// names, limits out of range, an unknown runtime. Fix the input.
	ErrInvalidTask = errors.New("invalid task")
	// ErrSandboxUnavailable marks a host that cannot sandbox a task (no
	// seccomp, no cgroup controller, no init). The task was refused,
	// never run unconfined; `sandbox-runner check` says what to fix.
	ErrSandboxUnavailable = errors.New("sandbox unavailable")
	// ErrImageNotFound marks an image that is not in containerd's store.
	ErrImageNotFound = errors.New("image not found")
)

// The kinds of error, the "kind" of every JSON error document: the
// service's answers, the fleet's dead letters and failures, and the
// CLI's --json. Each command maps them to its own status at its edge
// (HTTP status, exit status) and nowhere else.
const (
	// KindInvalidInput: the request, flags or config can never work as
	// given; the message names what to fix.
	KindInvalidInput = "invalid_input"
	// KindImageNotFound: the image is not in the store, the registry has
	// no such reference, or none for this platform.
	KindImageNotFound = "image_not_found"
	// KindSandboxUnavailable: this host cannot sandbox a task (`check`
	// says why); nothing ran.
	KindSandboxUnavailable = "sandbox_unavailable"
	// KindUnavailable: something the command needs did not answer:
	// containerd, the service, the fleet's NATS, a registry.
	KindUnavailable = "unavailable"
	// KindUnauthorized: a token, credentials or a registry login was
	// refused or missing.
	KindUnauthorized = "unauthorized"
	// KindCancelled: the caller gave up (a signal, a client gone).
	KindCancelled = "cancelled"
	// KindRunnerFailed: anything else; the message says what.
	KindRunnerFailed = "runner_failed"

	// Kinds only the service answers with.
	KindTooLarge         = "too_large"
	KindQueueFull        = "queue_full"
	KindShuttingDown     = "shutting_down"
	KindNotFound         = "not_found" // no such endpoint
	KindMethodNotAllowed = "method_not_allowed"
	// KindIdle ends an interactive session whose client sent nothing for
	// the idle timeout.
	KindIdle = "idle"
)

// KindOf returns the kind of err: the one place an error's class becomes
// a name.
func KindOf(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.Canceled):
		return KindCancelled
	case errors.Is(err, ErrInvalidTask), errdefs.IsInvalidArgument(err):
		return KindInvalidInput
	case errors.Is(err, ErrImageNotFound), errdefs.IsNotFound(err):
		return KindImageNotFound
	case errors.Is(err, ErrSandboxUnavailable):
		return KindSandboxUnavailable
	case errdefs.IsUnavailable(err):
		return KindUnavailable
	case errdefs.IsPermissionDenied(err), errdefs.IsUnauthorized(err):
		return KindUnauthorized
	default:
		return KindRunnerFailed
	}
}

// Sentinel returns the errors an error of kind matches with errors.Is, so
// that a caller handles an error answered by a service or a worker as it
// would the same error from a local runner.
func Sentinel(kind string) []error {
	switch kind {
	case KindInvalidInput, KindTooLarge:
		return []error{ErrInvalidTask, errdefs.ErrInvalidArgument}
	case KindImageNotFound:
		return []error{ErrImageNotFound, errdefs.ErrNotFound}
	case KindSandboxUnavailable:
		return []error{ErrSandboxUnavailable, errdefs.ErrUnavailable}
	case KindUnavailable, KindQueueFull, KindShuttingDown:
		return []error{errdefs.ErrUnavailable}
	case KindCancelled:
		return []error{context.Canceled}
	case KindUnauthorized:
		return []error{errdefs.ErrPermissionDenied, errdefs.ErrUnauthenticated}
	}
	return nil
}
