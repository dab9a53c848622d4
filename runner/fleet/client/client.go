package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

const (
	// headerRoom is what a task message's headers may take of the
	// server's max payload.
	headerRoom = 1024
	// waitPoll is how often Wait looks for the answer without being
	// woken: an answer published while it was disconnected wakes nobody.
	waitPoll = 2 * time.Second
	// submitTimeout bounds the retries of a task's publish.
	submitTimeout = 30 * time.Second
)

// opTimeout bounds each request to the server.
const opTimeout = 5 * time.Second

// Client submits tasks to the fleet and waits for their answers.
type Client struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	o   Streams
	log *slog.Logger

	ensureOnce sync.Once
	ensureErr  error
}

// Option configures a Client.
type Option func(*options)

type options struct {
	streams Streams
	log     *slog.Logger
}

// WithStreams sets the settings of the streams and the presence bucket,
// which the first Submit creates if no worker made them yet. Default
// DefaultStreams().
func WithStreams(s Streams) Option { return func(o *options) { o.streams = s } }

// WithLogger sets where the client logs the retries of a publish or a
// wait. Default: nowhere.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// New returns a client that talks to the fleet through nc.
func New(nc *nats.Conn, opts ...Option) (*Client, error) {
	o := options{streams: DefaultStreams(), log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.streams.Validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return &Client{nc: nc, js: js, o: o.streams, log: o.log}, nil
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
	c.ensureOnce.Do(func() { c.ensureErr = c.o.Ensure(ctx, c.js) })
	if c.ensureErr != nil {
		return c.ensureErr
	}
	// A publish whose acknowledgement was lost (its server went down) is
	// sent again: the task id as Nats-Msg-Id makes that harmless.
	deadline := time.Now().Add(submitTimeout)
	for pause := 100 * time.Millisecond; ; pause = min(2*pause, 2*time.Second) {
		pctx, cancel := context.WithTimeout(ctx, opTimeout)
		m := &nats.Msg{Subject: TaskSubject(t.Request.Runtime), Data: b, Header: nats.Header{}}
		_, err := c.js.PublishMsg(pctx, m, jetstream.WithMsgID(t.ID), jetstream.WithExpectStream(TaskStream))
		cancel()
		var apiErr *jetstream.APIError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &apiErr), ctx.Err() != nil, time.Now().After(deadline):
			return fmt.Errorf("queueing task %s: %w", t.ID, NATSError(err))
		}
		c.log.Warn("queueing a task failed; retrying", "task", t.ID, "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

// Wait waits for task id's answer until ctx is done; see Watch.
func (c *Client) Wait(ctx context.Context, id string) (*Answer, error) {
	w, err := c.Watch(id)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	return w.Wait(ctx)
}

// Run submits a task and waits for its answer, watching for it from
// before the task is queued.
func (c *Client) Run(ctx context.Context, t Task) (*Answer, error) {
	w, err := c.Watch(t.ID)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	if err := c.Submit(ctx, t); err != nil {
		return nil, err
	}
	return w.Wait(ctx)
}

// Watch starts watching for task id's answer. Start it before the task
// is submitted: a fast answer is then seen at once, rather than at the
// next look (every 2s).
func (c *Client) Watch(id string) (*Watch, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	w := &Watch{c: c, id: id, wake: make(chan *nats.Msg, 1)}
	var err error
	if w.sub, err = c.nc.ChanSubscribe(ResultSubject(id), w.wake); err != nil {
		return nil, fmt.Errorf("watching for task %s's answer: %w", id, NATSError(err))
	}
	// The server knows of the subscription once this returns; its
	// cluster learns of it a moment later.
	if err := c.nc.FlushTimeout(opTimeout); err != nil {
		c.log.Warn("flushing the subscription to an answer", "task", id, "error", err)
	}
	return w, nil
}

// Watch is a wait for one task's answer.
type Watch struct {
	c       *Client
	id      string
	sub     *nats.Subscription
	wake    chan *nats.Msg
	results jetstream.Stream
}

// Close ends the watch.
func (w *Watch) Close() { _ = w.sub.Unsubscribe() }

// Wait waits for the answer until ctx is done. It reads the answer
// stored in the result stream, so it finds one published before the
// watch began, and goes on through reconnections to other servers.
// Messages on the answer's subject only wake it up: one the stream
// refused (a second answer) is never taken for the answer.
func (w *Watch) Wait(ctx context.Context) (*Answer, error) {
	c := w.c
	pause := waitPoll
	for {
		// Each request has a timeout of its own: one lost while the
		// server that had it went down must not hold the wait.
		rctx, cancel := context.WithTimeout(ctx, opTimeout)
		var err error
		if w.results == nil {
			w.results, err = c.js.Stream(rctx, ResultStream)
			if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) && ctx.Err() == nil {
				c.log.Warn("opening the result stream", "error", err)
			}
		}
		if w.results != nil {
			m, err := w.results.GetLastMsgForSubject(rctx, ResultSubject(w.id))
			switch {
			case err == nil:
				cancel()
				return DecodeAnswer(m.Data)
			case errors.Is(err, jetstream.ErrMsgNotFound):
			case ctx.Err() == nil:
				c.log.Warn("looking up an answer", "task", w.id, "error", err)
			}
		}
		cancel()
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for task %s: %w", w.id, context.Cause(ctx))
		case <-w.wake:
			// On a cluster the message reaches subscribers before the
			// stream has stored it: look again soon, then less often.
			pause = 20 * time.Millisecond
		case <-time.After(pause):
			pause = min(2*pause, waitPoll)
		}
	}
}

// Workers returns the live workers.
func (c *Client) Workers(ctx context.Context) ([]WorkerInfo, error) {
	return ListWorkers(ctx, c.js)
}

// NewTask returns a task with a fresh id for a request.
func NewTask(req api.Request) Task { return Task{ID: NewTaskID(), Request: req} }
