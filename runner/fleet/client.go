package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

const (
	// headerRoom is what a task message's headers may take of the
	// server's max payload.
	headerRoom = 1024
	// waitPoll is how often Wait looks for the answer without being
	// woken: an answer published while it was disconnected wakes nobody.
	waitPoll = 2 * time.Second
)

// Client submits tasks to the fleet and waits for their answers.
type Client struct {
	nc *nats.Conn
	js jetstream.JetStream
	o  options

	ensureOnce sync.Once
	ensureErr  error
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
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return &Client{nc: nc, js: js, o: o}, nil
}

// JetStream returns the client's JetStream context.
func (c *Client) JetStream() jetstream.JetStream { return c.js }

// Submit queues a task on the subject of its request's runtime, with its
// id as Nats-Msg-Id: a task submitted twice within the duplicate window
// is queued once, and one submitted again later is answered with the
// answer it already has, if that is still kept. A task larger than the
// server's max payload is refused as invalid input.
func (c *Client) Submit(ctx context.Context, t Task) error {
	if err := ValidateRuntime(t.Request.Runtime); err != nil {
		return err
	}
	b, err := EncodeTask(t)
	if err != nil {
		return err
	}
	if limit := c.nc.MaxPayload() - headerRoom; int64(len(b)) > limit {
		return fmt.Errorf("the task message is %d bytes, and the NATS server takes at most %d (its max_payload, less room for headers): send smaller files or raise max_payload: %w",
			len(b), limit, errdefs.ErrInvalidArgument)
	}
	c.ensureOnce.Do(func() { c.ensureErr = c.o.ensureStreams(ctx, c.js) })
	if c.ensureErr != nil {
		return c.ensureErr
	}
	m := &nats.Msg{Subject: TaskSubject(t.Request.Runtime), Data: b, Header: nats.Header{}}
	if _, err := c.js.PublishMsg(ctx, m, jetstream.WithMsgID(t.ID), jetstream.WithExpectStream(TaskStream)); err != nil {
		return fmt.Errorf("queueing task %s: %w", t.ID, natsError(err))
	}
	return nil
}

// Wait waits for task id's answer until ctx is done. It reads the answer
// stored in the result stream, so it finds one published before it was
// called, and goes on through reconnections to other servers. Messages
// on the answer's subject only wake it up: one the stream refused (a
// second answer) is never taken for the answer.
func (c *Client) Wait(ctx context.Context, id string) (*Answer, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	wake := make(chan *nats.Msg, 1)
	sub, err := c.nc.ChanSubscribe(ResultSubject(id), wake)
	if err != nil {
		return nil, fmt.Errorf("watching for task %s's answer: %w", id, natsError(err))
	}
	defer func() { _ = sub.Unsubscribe() }()
	var results jetstream.Stream
	for {
		if results == nil {
			results, err = c.js.Stream(ctx, ResultStream)
			if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) && ctx.Err() == nil {
				c.o.log.Warn("opening the result stream", "error", err)
			}
		}
		if results != nil {
			m, err := results.GetLastMsgForSubject(ctx, ResultSubject(id))
			switch {
			case err == nil:
				return DecodeAnswer(m.Data)
			case errors.Is(err, jetstream.ErrMsgNotFound):
			case ctx.Err() == nil:
				c.o.log.Warn("looking up an answer", "task", id, "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for task %s: %w", id, context.Cause(ctx))
		case <-wake:
		case <-time.After(waitPoll):
		}
	}
}

// Run submits a task and waits for its answer.
func (c *Client) Run(ctx context.Context, t Task) (*Answer, error) {
	if err := c.Submit(ctx, t); err != nil {
		return nil, err
	}
	return c.Wait(ctx, t.ID)
}

// Workers returns the live workers.
func (c *Client) Workers(ctx context.Context) ([]WorkerInfo, error) {
	return ListWorkers(ctx, c.js)
}

// NewTask returns a task with a fresh id for a request.
func NewTask(req service.Request) Task { return Task{ID: NewTaskID(), Request: req} }
