// Package service is sandbox-runner's long-lived HTTP service: the API
// that other programs use to run tasks. Its wire types are runner/api's
// and its client is runner/service/client (which `sandbox-runner exec
// --via` uses); both build on any OS, and this package keeps aliases of
// them (Request, Message, Error, NewClient) under their old names.
//
// A [Service] answers on the listeners it is given (a unix socket, made
// by [Listen] or passed by systemd, and optionally TCP, where every
// request must carry a bearer token):
//
//	POST /v1/exec      a Request in, the runner.Result document out
//	GET  /v1/runtimes  the catalog, with each runtime's default limits
//	GET  /healthz      the process answers
//	GET  /readyz       containerd answers, seccomp works, images are there
//	GET  /metrics      Prometheus text, from a registry of its own
//
// At most a fixed number of tasks run at once; a bounded queue holds the
// next ones, first come first served, and a request that finds the queue
// full gets 429 with Retry-After at once. A request's context is its
// task's: a client that hangs up cancels the task, which the runner kills
// and removes. [Service.Serve] stops on its context: it refuses new and
// queued tasks, lets running ones finish for a grace period, then cancels
// them, and returns once each was cleaned up.
//
// Nothing here logs unless given a logger, and nothing exits.
package service
