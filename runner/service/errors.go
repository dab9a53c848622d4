package service

import (
	"net/http"
	"slices"
	"time"

	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

// Kinds of error a response's "kind" field holds: api's, the one
// vocabulary of every command's JSON.
const (
	KindInvalidInput       = api.KindInvalidInput
	KindImageNotFound      = api.KindImageNotFound
	KindSandboxUnavailable = api.KindSandboxUnavailable
	KindUnavailable        = api.KindUnavailable
	KindCancelled          = api.KindCancelled
	KindRunnerFailed       = api.KindRunnerFailed
	KindTooLarge           = api.KindTooLarge
	KindQueueFull          = api.KindQueueFull
	KindShuttingDown       = api.KindShuttingDown
	KindUnauthorized       = api.KindUnauthorized
	KindNotFound           = api.KindNotFound
	KindMethodNotAllowed   = api.KindMethodNotAllowed
	KindIdle               = api.KindIdle
)

// ErrorResponse is the body of every answer that is not a success.
type ErrorResponse struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

// classify returns the status and kind of an error from the runner.
func classify(err error) (int, string) {
	kind := api.KindOf(err)
	switch kind {
	case KindInvalidInput:
		return http.StatusBadRequest, kind
	case KindImageNotFound:
		// As Docker's API answers a missing image.
		return http.StatusNotFound, kind
	case KindSandboxUnavailable, KindUnavailable, KindCancelled:
		return http.StatusServiceUnavailable, kind
	case KindUnauthorized:
		return http.StatusUnauthorized, kind
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
func (e *Error) Is(target error) bool { return slices.Contains(api.Sentinel(e.Kind), target) }
