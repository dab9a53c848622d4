package fleet

import (
	"context"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sandbox-runner/sandbox-runner/runner/api"
	fclient "github.com/sandbox-runner/sandbox-runner/runner/fleet/client"
)

// The fleet's submit side (task and answer messages, subjects, streams,
// presence, connecting, the Client) is runner/fleet/client, which builds
// on any OS; these aliases keep its names here, beside the Worker.

// Streams, subjects and the presence bucket (fleet/client's).
const (
	TaskStream      = fclient.TaskStream
	ResultStream    = fclient.ResultStream
	DeadStream      = fclient.DeadStream
	WorkersBucket   = fclient.WorkersBucket
	TaskSubjects    = fclient.TaskSubjects
	ResultSubjects  = fclient.ResultSubjects
	FailureSubjects = fclient.FailureSubjects
	DeadSubjects    = fclient.DeadSubjects
)

// Headers of a dead letter, on top of the task message's own.
const (
	HeaderTaskID     = fclient.HeaderTaskID
	HeaderError      = fclient.HeaderError
	HeaderErrorKind  = fclient.HeaderErrorKind
	HeaderDeliveries = fclient.HeaderDeliveries
	HeaderWorker     = fclient.HeaderWorker
	HeaderSubject    = fclient.HeaderSubject
)

// MaxIDLength bounds a task id.
const MaxIDLength = fclient.MaxIDLength

type (
	// Task is a task message (fleet/client's).
	Task = fclient.Task
	// Answer is the one answer to a task (fleet/client's).
	Answer = fclient.Answer
	// Failure is a failed attempt at a task (fleet/client's).
	Failure = fclient.Failure
	// WorkerInfo is a worker's presence entry (fleet/client's).
	WorkerInfo = fclient.WorkerInfo
	// ConnectOptions say how to reach NATS (fleet/client's).
	ConnectOptions = fclient.ConnectOptions
	// Client submits tasks to the fleet and waits for their answers
	// (fleet/client's).
	Client = fclient.Client
	// Watch is a wait for one task's answer (fleet/client's).
	Watch = fclient.Watch
)

// TaskSubject is the subject tasks of runtime are published on.
func TaskSubject(runtime string) string { return fclient.TaskSubject(runtime) }

// ResultSubject is the subject of task id's answer.
func ResultSubject(id string) string { return fclient.ResultSubject(id) }

// FailureSubject is the subject of task id's last failed attempt.
func FailureSubject(id string) string { return fclient.FailureSubject(id) }

// DeadSubject is the subject tasks of runtime are dead-lettered on.
func DeadSubject(runtime string) string { return fclient.DeadSubject(runtime) }

// ConsumerName is the durable consumer every worker that runs runtime
// shares.
func ConsumerName(runtime string) string { return fclient.ConsumerName(runtime) }

// NewTaskID returns a fresh random task id.
func NewTaskID() string { return fclient.NewTaskID() }

// ValidateID checks that id can name a task.
func ValidateID(id string) error { return fclient.ValidateID(id) }

// ValidateRuntime checks that a runtime name can be a subject token.
func ValidateRuntime(name string) error { return fclient.ValidateRuntime(name) }

// EncodeTask returns the task message's body. It checks the id.
func EncodeTask(t Task) ([]byte, error) { return fclient.EncodeTask(t) }

// DecodeTask decodes a task message strictly (fleet/client's).
func DecodeTask(body []byte) (Task, error) { return fclient.DecodeTask(body) }

// DecodeAnswer decodes an answer (fleet/client's).
func DecodeAnswer(b []byte) (*Answer, error) { return fclient.DecodeAnswer(b) }

// Kind returns err's kind (api.KindOf).
func Kind(err error) string { return api.KindOf(err) }

// NewTask returns a task with a fresh id for a request.
func NewTask(req api.Request) Task { return fclient.NewTask(req) }

// Connect connects to NATS (fleet/client's).
func Connect(o ConnectOptions) (*nats.Conn, error) { return fclient.Connect(o) }

// ListWorkers returns the live workers, by id (fleet/client's).
func ListWorkers(ctx context.Context, js jetstream.JetStream) ([]WorkerInfo, error) {
	return fclient.ListWorkers(ctx, js)
}

// NewClient returns a client that talks to the fleet through nc. Of the
// options, only those of the streams and bucket (created when the first
// task is submitted, if no worker made them yet) and WithLogger apply.
func NewClient(nc *nats.Conn, opts ...Option) (*Client, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	return fclient.New(nc, fclient.WithStreams(o.streams), fclient.WithLogger(o.log))
}

// runtimeOf returns the runtime token of a task subject.
func runtimeOf(subject string) string {
	if i := strings.LastIndexByte(subject, '.'); i >= 0 {
		return subject[i+1:]
	}
	return subject
}

func natsError(err error) error { return fclient.NATSError(err) }

func presenceKey(id string) string { return fclient.PresenceKey(id) }

// invalidf is a task message that cannot be run as it is: a FieldError
// of no field, which is api.ErrInvalidTask and errdefs' invalid
// argument.
func invalidf(format string, args ...any) error {
	return &api.FieldError{Msg: fmt.Sprintf(format, args...)}
}
