package runner

import (
	"context"
	"errors"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// cleanup is a stack of undo steps, run last-in first-out.
type cleanup struct{ steps []func(context.Context) error }

func (c *cleanup) add(f func(context.Context) error) { c.steps = append(c.steps, f) }

func (c *cleanup) run(ctx context.Context) error {
	var errs []error
	for i := len(c.steps) - 1; i >= 0; i-- {
		errs = append(errs, retryUnavailable(ctx, c.steps[i]))
	}
	err := errors.Join(errs...)
	if err != nil {
		ReportCleanupFailure(ctx, err)
	}
	return err
}

// retryUnavailable runs step until it succeeds, fails for another reason
// than containerd being unreachable, or ctx ends: a containerd that
// restarts under a task comes back within seconds, and cleaning up then
// beats leaving the task for the next sweep.
func retryUnavailable(ctx context.Context, step func(context.Context) error) error {
	wait := 100 * time.Millisecond
	for {
		err := step(ctx)
		if err == nil || !unavailable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
			wait = min(wait*2, 2*time.Second)
		}
	}
}

// unavailable tells whether err says containerd could not be reached,
// as a gRPC status or as an errdefs class.
func unavailable(err error) bool {
	if errdefs.IsUnavailable(err) {
		return true
	}
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.Unavailable
}

func ignoreNotFound(err error) error {
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}
