package service

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/containerd/errdefs"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

// Kinds of error a response's "kind" field holds. The first five are the
// ones `sandbox-runner exec --json` prints too.
const (
	KindInvalidInput       = "invalid_input"
	KindImageNotFound      = "image_not_found"
	KindSandboxUnavailable = "sandbox_unavailable"
	KindCancelled          = "cancelled"
	KindRunnerFailed       = "runner_failed"
	KindTooLarge           = "too_large"
	KindQueueFull          = "queue_full"
	KindShuttingDown       = "shutting_down"
	KindUnauthorized       = "unauthorized"
	KindNotFound           = "not_found"
	KindMethodNotAllowed   = "method_not_allowed"
	// KindIdle ends an interactive session whose client sent nothing for
	// the idle timeout.
	KindIdle = "idle"
)

// ErrorResponse is the body of every answer that is not a success.
type ErrorResponse struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

// classify returns the status and kind of an error from the runner.
func classify(err error) (int, string) {
	switch {
	case errors.Is(err, runner.ErrInvalidTask), errdefs.IsInvalidArgument(err):
		return http.StatusBadRequest, KindInvalidInput
	case errors.Is(err, runner.ErrImageNotFound):
		// As Docker's API answers a missing image.
		return http.StatusNotFound, KindImageNotFound
	case errors.Is(err, runner.ErrSandboxUnavailable), errdefs.IsUnavailable(err):
		return http.StatusServiceUnavailable, KindSandboxUnavailable
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, KindCancelled
	default:
		return http.StatusInternalServerError, KindRunnerFailed
	}
}

// Error is an error answer from the service, as a Client returns it. It
// matches the sentinels of its kind with errors.Is (runner.ErrInvalidTask,
// runner.ErrImageNotFound, errdefs.ErrUnavailable, ...), so a caller
// handles it as it would the same error from a local runner.
type Error struct {
	// Status is the HTTP status.
	Status  int
	Kind    string
	Message string
	// RetryAfter is the wait the service asked for, with a 429 or 503.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

// Is reports whether the error is of target's class.
func (e *Error) Is(target error) bool {
	switch e.Kind {
	case KindInvalidInput, KindTooLarge:
		return target == runner.ErrInvalidTask || target == errdefs.ErrInvalidArgument
	case KindImageNotFound:
		return target == runner.ErrImageNotFound || target == errdefs.ErrNotFound
	case KindSandboxUnavailable:
		return target == runner.ErrSandboxUnavailable || target == errdefs.ErrUnavailable
	case KindQueueFull, KindShuttingDown:
		return target == errdefs.ErrUnavailable
	case KindCancelled:
		return target == context.Canceled
	case KindUnauthorized:
		return target == errdefs.ErrPermissionDenied
	}
	return false
}
