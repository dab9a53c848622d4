package client

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"

	"github.com/containerd/errdefs"
)

// Streams, subjects and the presence bucket. They are fixed: every
// worker and client of a NATS account agree on them without
// configuration. Their settings are a [Streams].
const (
	// TaskStream holds the queued tasks, on TaskSubjects, with work-queue
	// retention: a task is gone once a worker acknowledges it.
	TaskStream = "SANDBOX_TASKS"
	// ResultStream holds the one answer per task (ResultSubjects) and the
	// last failed attempt per task (FailureSubjects), one message per
	// subject.
	ResultStream = "SANDBOX_RESULTS"
	// DeadStream holds dead letters: tasks that failed on every delivery.
	DeadStream = "SANDBOX_DEAD"
	// WorkersBucket is the key-value bucket of live workers.
	WorkersBucket = "sandbox_workers"

	// TaskSubjects, ResultSubjects, FailureSubjects and DeadSubjects are
	// the wildcards of the subjects TaskSubject, ResultSubject,
	// FailureSubject and DeadSubject return.
	TaskSubjects    = "sandbox.tasks.*"
	ResultSubjects  = "sandbox.results.*"
	FailureSubjects = "sandbox.failures.*"
	DeadSubjects    = "sandbox.dead.*"

	// consumerPrefix starts the name of a runtime's durable consumer.
	consumerPrefix = "tasks-"
)

// Headers of a dead letter, on top of the task message's own.
const (
	HeaderTaskID     = "Sandbox-Task-Id"
	HeaderError      = "Sandbox-Error"
	HeaderErrorKind  = "Sandbox-Error-Kind"
	HeaderDeliveries = "Sandbox-Deliveries"
	HeaderWorker     = "Sandbox-Worker"
	HeaderSubject    = "Sandbox-Subject"
)

// MaxIDLength bounds a task id.
const MaxIDLength = 128

var (
	// idPattern is what a task id may be: one subject token that is also
	// a key-value key and a file name, with nothing to escape.
	idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	// tokenPattern is what a runtime name must be to be a subject token
	// and part of a consumer name.
	tokenPattern = regexp.MustCompile(`^[A-Za-z0-9_+-]+$`)
)

// TaskSubject is the subject tasks of runtime are published on.
func TaskSubject(runtime string) string { return "sandbox.tasks." + runtime }

// ResultSubject is the subject of task id's answer.
func ResultSubject(id string) string { return "sandbox.results." + id }

// FailureSubject is the subject of task id's last failed attempt.
func FailureSubject(id string) string { return "sandbox.failures." + id }

// DeadSubject is the subject tasks of runtime are dead-lettered on.
func DeadSubject(runtime string) string { return "sandbox.dead." + runtime }

// ConsumerName is the durable consumer every worker that runs runtime
// shares.
func ConsumerName(runtime string) string { return consumerPrefix + runtime }

// NewTaskID returns a fresh random task id.
func NewTaskID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "t-" + hex.EncodeToString(b)
}

// ValidateID checks that id can name a task: 1 to MaxIDLength letters,
// digits, '-' and '_'.
func ValidateID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("task id is empty: %w", errdefs.ErrInvalidArgument)
	case len(id) > MaxIDLength:
		return fmt.Errorf("task id is %d bytes long, at most %d are allowed: %w", len(id), MaxIDLength, errdefs.ErrInvalidArgument)
	case !idPattern.MatchString(id):
		return fmt.Errorf("task id %q: use only letters, digits, '-' and '_': %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// ValidateRuntime checks that a runtime name can be a subject token.
func ValidateRuntime(name string) error {
	if name == "" || len(name) > 64 || !tokenPattern.MatchString(name) {
		return fmt.Errorf("runtime %q cannot be routed: a name of 1 to 64 letters, digits, '-', '_' and '+' is needed: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}
