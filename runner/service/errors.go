package service

import (
	"net/http"

	"github.com/sandbox-runner/sandbox-runner/runner/api"
	"github.com/sandbox-runner/sandbox-runner/runner/service/client"
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

// ErrorResponse is the body of every answer that is not a success
// (api.ErrorResponse).
type ErrorResponse = api.ErrorResponse

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

// Error is an error answer from the service, as a Client returns it
// (client.Error); the service builds the same for its answers.
type Error = client.Error
