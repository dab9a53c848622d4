package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// streamConfigs returns the streams the fleet uses, as they are created.
func (o *options) streamConfigs() []jetstream.StreamConfig {
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
			Replicas:    o.replicas,
			MaxAge:      o.taskTTL,
			Duplicates:  o.duplicates,
			Discard:     jetstream.DiscardOld,
		}),
		dup(jetstream.StreamConfig{
			Name:              ResultStream,
			Description:       "sandbox-runner answers, one per task id, and each task's last failed attempt",
			Subjects:          []string{ResultSubjects, FailureSubjects},
			Retention:         jetstream.LimitsPolicy,
			Storage:           jetstream.FileStorage,
			Replicas:          o.replicas,
			MaxAge:            o.resultTTL,
			MaxMsgsPerSubject: 1,
			Duplicates:        o.duplicates,
			Discard:           jetstream.DiscardOld,
		}),
		dup(jetstream.StreamConfig{
			Name:        DeadStream,
			Description: "sandbox-runner dead letters: tasks that failed on every delivery, with the last error",
			Subjects:    []string{DeadSubjects},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    o.replicas,
			MaxAge:      o.deadTTL,
			Duplicates:  o.duplicates,
			Discard:     jetstream.DiscardOld,
		}),
	}
}

// ensureStreams creates the streams and the presence bucket that do not
// exist yet. Existing ones are used as they are: their settings belong
// to whoever created them, and a worker started with other flags must
// not change them under the others.
//
// A cluster that is still placing its peers (a node just started or
// stopped) refuses with "no suitable peers for placement": that is
// retried for up to clusterSettle, not a reason for a worker to exit.
func (o *options) ensureStreams(ctx context.Context, js jetstream.JetStream) error {
	deadline := time.Now().Add(clusterSettle)
	for {
		err := o.ensureStreamsOnce(ctx, js)
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

// clusterSettle bounds how long ensureStreams waits for a cluster to
// place a stream's replicas.
const clusterSettle = 30 * time.Second

// jsErrNoPeers is JetStream's "no suitable peers for placement".
const jsErrNoPeers jetstream.ErrorCode = 10005

func clusterSettling(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrNoPeers
}

func (o *options) ensureStreamsOnce(ctx context.Context, js jetstream.JetStream) error {
	for _, cfg := range o.streamConfigs() {
		if _, err := ensureStream(ctx, js, cfg); err != nil {
			return err
		}
	}
	_, err := o.ensureBucket(ctx, js)
	return err
}

func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, cfg.Name)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("looking up stream %s: %w", cfg.Name, natsError(err))
	}
	s, err = js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// Another worker made it first.
		s, err = js.Stream(ctx, cfg.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("creating stream %s: %w", cfg.Name, natsError(err))
	}
	return s, nil
}

func (o *options) ensureBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, WorkersBucket)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("looking up bucket %s: %w", WorkersBucket, natsError(err))
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      WorkersBucket,
		Description: "live sandbox-runner workers; an entry expires when its worker stops refreshing it",
		TTL:         o.presenceTTL,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    o.replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		kv, err = js.KeyValue(ctx, WorkersBucket)
	}
	if err != nil {
		return nil, fmt.Errorf("creating bucket %s: %w", WorkersBucket, natsError(err))
	}
	return kv, nil
}

// ensureConsumer returns runtime's durable consumer, creating it when
// it does not exist. The task stream's work-queue retention allows only
// consumers whose filters do not overlap: hence one consumer per
// runtime, shared by every worker that runs it.
func (o *options) ensureConsumer(ctx context.Context, s jetstream.Stream, runtime string) (jetstream.Consumer, error) {
	name := ConsumerName(runtime)
	c, err := s.Consumer(ctx, name)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("looking up consumer %s: %w", name, natsError(err))
	}
	c, err = s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "sandbox-runner workers that run " + runtime,
		FilterSubject: TaskSubject(runtime),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.ackWait,
		// Workers count deliveries themselves (WithMaxDeliveries) and
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
		return nil, fmt.Errorf("creating consumer %s: %w", name, natsError(err))
	}
	return c, nil
}

// natsError marks the errors that mean the server is out of reach as
// unavailable, so that callers tell them apart from refusals.
func natsError(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return err
	}
	return unavailable(err)
}
