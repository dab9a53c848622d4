// Package client is the HTTP client of `sandbox-runner serve`: Exec,
// ExecStream, ExecBatch and Interactive send a task (an api.Request) to
// the service over its unix socket, or over TCP with its bearer token,
// and return its api.Result. It imports no containerd and nothing
// Linux-only, so a program on any OS builds with it;
// contrib/examples/client is one.
//
// Errors the service answers with are *Error, which matches the
// sentinels of its kind (api.ErrInvalidTask, errdefs.ErrUnavailable, ...)
// with errors.Is; a service nobody answers for is ErrUnreachable.
package client
