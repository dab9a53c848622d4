package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Streams.
const (
	DefaultAckWait     = 30 * time.Second
	DefaultPresenceTTL = 15 * time.Second
	DefaultTaskTTL     = 24 * time.Hour
	DefaultResultTTL   = 24 * time.Hour
	DefaultDeadTTL     = 7 * 24 * time.Hour
	DefaultDuplicates  = 10 * time.Minute
)

// Streams are the settings of the fleet's streams, consumers and
// presence bucket. They only take effect when those are created: a
// worker or client that finds them uses them as they are.
type Streams struct {
	// Replicas is how many servers of a NATS cluster hold each stream,
	// consumer and the presence bucket: 3 on a cluster of three or
	// more, so that the fleet survives the loss of any one server.
	Replicas int
	// AckWait is how long a delivered task may go without a heartbeat
	// before it is delivered again.
	AckWait time.Duration
	// TaskTTL is how long a task may wait in the queue for a worker.
	TaskTTL time.Duration
	// ResultTTL is how long answers are kept, which is also how long a
	// task id is remembered as answered.
	ResultTTL time.Duration
	// DeadTTL is how long dead letters are kept.
	DeadTTL time.Duration
	// Duplicates is the window in which the streams drop a second
	// message with the same Nats-Msg-Id.
	Duplicates time.Duration
	// PresenceTTL is how long a worker's presence entry lives without a
	// refresh.
	PresenceTTL time.Duration
}

// DefaultStreams returns the default settings: one replica and the
// Default* durations.
func DefaultStreams() Streams {
	return Streams{
		Replicas: 1, AckWait: DefaultAckWait, TaskTTL: DefaultTaskTTL, ResultTTL: DefaultResultTTL,
		DeadTTL: DefaultDeadTTL, Duplicates: DefaultDuplicates, PresenceTTL: DefaultPresenceTTL,
	}
}

// Validate checks the settings.
func (o Streams) Validate() error {
	switch {
	case o.Replicas < 1 || o.Replicas > 5:
		return fmt.Errorf("replicas %d: give 1 to 5: %w", o.Replicas, errdefs.ErrInvalidArgument)
	case o.AckWait < 100*time.Millisecond:
		return fmt.Errorf("ack wait %s: give at least 100ms: %w", o.AckWait, errdefs.ErrInvalidArgument)
	case o.PresenceTTL < time.Second:
		return fmt.Errorf("presence TTL %s: give at least 1s: %w", o.PresenceTTL, errdefs.ErrInvalidArgument)
	case o.TaskTTL < 0 || o.ResultTTL < 0 || o.DeadTTL < 0 || o.Duplicates < 0:
		return fmt.Errorf("TTLs and the duplicate window cannot be negative: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// Configs returns the streams the fleet uses, as they are created.
func (o Streams) Configs() []jetstream.StreamConfig {
	dup := func(ttl jetstream.StreamConfig) jetstream.StreamConfig {
		// The duplicate window may not be longer than what is kept.
		if ttl.MaxAge > 0 && ttl.Duplicates > ttl.MaxAge {
			ttl.Duplicates = ttl.MaxAge
		}
		return ttl
	}
	return []jetstream.StreamConfig{
		dup(jetstream.StreamConfig{
			Name:        TaskStream,
			Description: "sandbox-runner tasks, one subject per runtime; a task is removed once a worker acknowledges it",
			Subjects:    []string{TaskSubjects},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			MaxAge:      o.TaskTTL,
			Duplicates:  o.Duplicates,
			Discard:     jetstream.DiscardOld,
		}),
		dup(jetstream.StreamConfig{
			Name:              ResultStream,
			Description:       "sandbox-runner answers, one per task id, and each task's last failed attempt",
			Subjects:          []string{ResultSubjects, FailureSubjects},
			Retention:         jetstream.LimitsPolicy,
			Storage:           jetstream.FileStorage,
			Replicas:          o.Replicas,
			MaxAge:            o.ResultTTL,
			MaxMsgsPerSubject: 1,
			Duplicates:        o.Duplicates,
			Discard:           jetstream.DiscardOld,
		}),
		dup(jetstream.StreamConfig{
			Name:        DeadStream,
			Description: "sandbox-runner dead letters: tasks that failed on every delivery, with the last error",
			Subjects:    []string{DeadSubjects},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
			MaxAge:      o.DeadTTL,
			Duplicates:  o.Duplicates,
			Discard:     jetstream.DiscardOld,
		}),
	}
}

// Ensure creates the streams and the presence bucket that do not
// exist yet. Existing ones are used as they are: their settings belong
// to whoever created them, and a worker started with other flags must
// not change them under the others.
//
// A cluster that is still placing its peers (a node just started or
// stopped) refuses with "no suitable peers for placement": that is
// retried for up to clusterSettle, not a reason for a worker to exit.
func (o Streams) Ensure(ctx context.Context, js jetstream.JetStream) error {
	deadline := time.Now().Add(clusterSettle)
	for {
		err := o.ensureOnce(ctx, js)
		if err == nil || !clusterSettling(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// clusterSettle bounds how long Ensure waits for a cluster to
// place a stream's replicas.
const clusterSettle = 30 * time.Second

// jsErrNoPeers is JetStream's "no suitable peers for placement".
const jsErrNoPeers jetstream.ErrorCode = 10005

func clusterSettling(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrNoPeers
}

func (o Streams) ensureOnce(ctx context.Context, js jetstream.JetStream) error {
	for _, cfg := range o.Configs() {
		if _, err := ensureStream(ctx, js, cfg); err != nil {
			return err
		}
	}
	_, err := o.EnsureBucket(ctx, js)
	return err
}

func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, cfg.Name)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("looking up stream %s: %w", cfg.Name, NATSError(err))
	}
	s, err = js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// Another worker made it first.
		s, err = js.Stream(ctx, cfg.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("creating stream %s: %w", cfg.Name, NATSError(err))
	}
	return s, nil
}

// EnsureBucket returns the presence bucket, creating it when it does not
// exist.
func (o Streams) EnsureBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, WorkersBucket)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("looking up bucket %s: %w", WorkersBucket, NATSError(err))
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      WorkersBucket,
		Description: "live sandbox-runner workers; an entry expires when its worker stops refreshing it",
		TTL:         o.PresenceTTL,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		kv, err = js.KeyValue(ctx, WorkersBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("creating bucket %s: %w", WorkersBucket, NATSError(err))
	}
	return kv, nil
}

// EnsureConsumer returns runtime's durable consumer, creating it when
// it does not exist. The task stream's work-queue retention allows only
// consumers whose filters do not overlap: hence one consumer per
// runtime, shared by every worker that runs it.
func (o Streams) EnsureConsumer(ctx context.Context, s jetstream.Stream, runtime string) (jetstream.Consumer, error) {
	name := ConsumerName(runtime)
	c, err := s.Consumer(ctx, name)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("looking up consumer %s: %w", name, NATSError(err))
	}
	c, err = s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "sandbox-runner workers that run " + runtime,
		FilterSubject: TaskSubject(runtime),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		// Workers count deliveries themselves (fleet.WithMaxDeliveries) and
		// dead-letter a task past the limit, even one whose every
		// worker died: a server-side limit would leave it stuck in the
		// queue with nobody to say so.
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
		MaxAckPending: -1,
		// Replicas 0: as many as the stream has.
	})
	if err != nil {
		return nil, fmt.Errorf("creating consumer %s: %w", name, NATSError(err))
	}
	return c, nil
}

// NATSError marks the errors that mean the server is out of reach as
// unavailable, so that callers tell them apart from refusals.
func NATSError(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return err
	}
	return unavailable(err)
}
