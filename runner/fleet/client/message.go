package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/sandbox-runner/sandbox-runner/runner/api"
	svcclient "github.com/sandbox-runner/sandbox-runner/runner/service/client"
)

// Task is a task message: the request document of the service's
// POST /v1/exec, and the task's id.
//
//	{"id": "t-5d3c...", "request": {"runtime": "python", "files": [{"content": "print(1)"}]}}
//
// It is published on TaskSubject(request's runtime) with the id as its
// Nats-Msg-Id.
type Task struct {
	ID      string      `json:"id"`
	Request api.Request `json:"request"`
}

// taskJSON keeps the request raw, so that it is decoded by
// api.DecodeRequest with the service's own strictness and messages.
type taskJSON struct {
	ID      string          `json:"id"`
	Request json.RawMessage `json:"request"`
}

// EncodeTask returns the task message's body. It checks the id.
func EncodeTask(t Task) ([]byte, error) {
	if err := ValidateID(t.ID); err != nil {
		return nil, err
	}
	return json.Marshal(t)
}

// DecodeTask decodes a task message strictly: unknown fields, a second
// JSON value, a bad id or a bad request document are refused, with an
// error that names the field and is api.ErrInvalidTask. The task's
// id is returned when it could be read, even when the rest is bad, so
// that the failure can be answered.
func DecodeTask(body []byte) (Task, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return Task{}, invalidf("the task message is empty: send {\"id\": ..., \"request\": {...}}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var raw taskJSON
	if err := dec.Decode(&raw); err != nil {
		return Task{}, invalidf("task message: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Task{}, invalidf("the task message holds more than one JSON value")
	}
	if err := ValidateID(raw.ID); err != nil {
		return Task{}, invalidf("id: %v", strings.TrimSuffix(err.Error(), ": "+errdefs.ErrInvalidArgument.Error()))
	}
	t := Task{ID: raw.ID}
	if len(raw.Request) == 0 || string(raw.Request) == "null" {
		return t, invalidf("request: required: the request document of POST /v1/exec")
	}
	req, err := api.DecodeRequest(raw.Request)
	if err != nil {
		return t, fmt.Errorf("request: %w", err)
	}
	t.Request = *req
	return t, nil
}

// invalidError is a task message that cannot be decoded.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

func (e *invalidError) Is(target error) bool {
	return target == api.ErrInvalidTask || target == errdefs.ErrInvalidArgument
}

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// Answer is the one answer to a task, published on ResultSubject(id):
// the result document when the task ran (whatever it did), else the
// error that kept it from running, with its kind as the service names
// it (api.KindInvalidInput, ...).
//
//	{"task_id": "t-5d3c...", "worker": "host-a-4242", "deliveries": 1, "result": {...api.Result...}}
//	{"task_id": "t-5d3c...", "worker": "host-a-4242", "deliveries": 3, "error": "...", "kind": "image_not_found", "dead_lettered": true}
type Answer struct {
	TaskID string `json:"task_id"`
	// Worker is the id of the worker that answered.
	Worker string `json:"worker"`
	// Deliveries is how many times the task had been delivered when it
	// was answered: 1 unless an earlier attempt failed or its worker died.
	Deliveries int         `json:"deliveries"`
	Result     *api.Result `json:"result,omitempty"`
	// Batch is the result of a task whose request has runs (runs.go).
	Batch *api.BatchResult `json:"batch,omitempty"`
	Error string           `json:"error,omitempty"`
	Kind  string           `json:"kind,omitempty"`
	// DeadLettered is set when the task went to the dead-letter stream.
	DeadLettered bool `json:"dead_lettered,omitempty"`
	// Truncated is set when the result's output was cut further than its
	// output limit, to fit the NATS server's max payload.
	Truncated bool `json:"truncated,omitempty"`
}

// Err returns the answer's error, which matches the runner's sentinels
// of its kind with errors.Is, or nil when the task ran.
func (a *Answer) Err() error {
	if (a.Result != nil || a.Batch != nil) && a.Error == "" {
		return nil
	}
	msg := a.Error
	if msg == "" {
		msg = "the answer holds neither a result nor an error"
	}
	return &svcclient.Error{Kind: a.Kind, Message: msg}
}

// DecodeAnswer decodes an answer. It is lenient about unknown fields, so
// that a client reads the answers of newer workers.
func DecodeAnswer(b []byte) (*Answer, error) {
	var a Answer
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("decoding the answer: %w", err)
	}
	if a.Result == nil && a.Batch == nil && a.Error == "" {
		return nil, errors.New("decoding the answer: it holds neither a result nor an error")
	}
	return &a, nil
}

// Failure is a failed attempt at a task, kept on FailureSubject(id)
// (the last one only) so that the dead letter can say what went wrong
// even when the attempt that used up the deliveries died silently.
type Failure struct {
	TaskID     string    `json:"task_id"`
	Worker     string    `json:"worker"`
	Deliveries int       `json:"deliveries"`
	Error      string    `json:"error"`
	Kind       string    `json:"kind"`
	At         time.Time `json:"at"`
}

// Kind returns err's kind (api.KindOf): invalid_input, image_not_found,
// sandbox_unavailable, unavailable, cancelled, ...
func Kind(err error) string { return api.KindOf(err) }
