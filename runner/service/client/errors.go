package client

import (
	"slices"
	"time"

	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

// Error is an error answer from the service, as a Client returns it. It
// matches the sentinels of its kind with errors.Is (api.ErrInvalidTask,
// api.ErrImageNotFound, errdefs.ErrUnavailable, ...), so a caller
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
