package runner

import "github.com/sandbox-runner/sandbox-runner/runner/api"

// The result document is defined in api, where a client on any OS
// builds it; these aliases keep its runner names.

// Exit statuses with a fixed meaning, as timeout(1) and Docker use them.
const (
	// ExitTimedOut is the status of a task the wall-clock timeout killed.
	ExitTimedOut = api.ExitTimedOut
	// ExitCancelled is the status of a task whose caller gave up (Ctrl-C):
	// 128 + SIGINT, as a shell reports it.
	ExitCancelled = api.ExitCancelled
)

// Outcome says in one word how a task ended (api.Outcome).
type Outcome = api.Outcome

// The outcomes, exactly one per result.
const (
	OutcomeExited          = api.OutcomeExited
	OutcomeSignaled        = api.OutcomeSignaled
	OutcomeTimedOut        = api.OutcomeTimedOut
	OutcomeCPUTimeExceeded = api.OutcomeCPUTimeExceeded
	OutcomeOOMKilled       = api.OutcomeOOMKilled
	OutcomeCancelled       = api.OutcomeCancelled
	OutcomeCompileFailed   = api.OutcomeCompileFailed
)

// Result is what happened to one task: the one result document
// (api.Result).
type Result = api.Result

// Stage is what happened in one stage (compile or run) of a task
// (api.Stage).
type Stage = api.Stage

// Usage is what the task consumed (api.Usage).
type Usage = api.Usage

// Stream is one captured output stream (api.Stream).
type Stream = api.Stream
