package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// WorkerInfo is a worker's presence entry in WorkersBucket, under its
// id. The bucket's TTL removes it when the worker stops refreshing it;
// a worker that stops cleanly deletes it at once.
type WorkerInfo struct {
	ID       string   `json:"id"`
	Host     string   `json:"host"`
	PID      int      `json:"pid"`
	Runtimes []string `json:"runtimes"`
	Capacity int      `json:"capacity"`
	InFlight int      `json:"in_flight"`
	Version  string   `json:"version"`
	// Server is the NATS server the worker is connected to.
	Server  string    `json:"server,omitempty"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	// Draining is set once the worker stopped taking tasks.
	Draining bool `json:"draining,omitempty"`
}

// ListWorkers returns the live workers, by id. No bucket means no
// worker has ever run: an empty list.
//
// The keys are read from the bucket's stream state, not with a key
// watcher: a watcher is a consumer to create on the stream's leader,
// which on a cluster that just lost a server can time out for a while.
func ListWorkers(ctx context.Context, js jetstream.JetStream) ([]WorkerInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	kv, err := js.KeyValue(ctx, WorkersBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", WorkersBucket, NATSError(err))
	}
	s, err := js.Stream(ctx, "KV_"+WorkersBucket)
	if err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", WorkersBucket, NATSError(err))
	}
	prefix := "$KV." + WorkersBucket + "."
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return nil, fmt.Errorf("listing workers: %w", NATSError(err))
	}
	var out []WorkerInfo
	for subject := range info.State.Subjects {
		key := strings.TrimPrefix(subject, prefix)
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue // deleted, or gone since it was listed
		}
		if err != nil {
			return nil, fmt.Errorf("reading worker %s: %w", key, NATSError(err))
		}
		var w WorkerInfo
		if err := json.Unmarshal(e.Value(), &w); err != nil {
			// A newer worker's entry might not decode: show what we can.
			w = WorkerInfo{ID: key, Updated: e.Created()}
		}
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b WorkerInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// PresenceKey turns a worker id into a key the bucket takes.
func PresenceKey(id string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '=':
			return r
		}
		return '_'
	}, id)
}
