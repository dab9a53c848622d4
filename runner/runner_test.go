package runner

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEndedSeesAPassedDeadlineBeforeItsTimer(t *testing.T) {
	assert.NoError(t, ended(context.Background()))

	// A deadline in the past ends the context at once; one that passes
	// while nothing runs the timer must be seen all the same, which a
	// context whose deadline is reported but never enforced stands for.
	ctx := deadlineOnly{Context: context.Background(), d: time.Now().Add(-time.Millisecond)}
	assert.NoError(t, ctx.Err())
	assert.ErrorIs(t, ended(ctx), context.DeadlineExceeded)

	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, ended(cctx), context.Canceled)
}

func TestWithEndedNamesTheCallersContext(t *testing.T) {
	remote := errors.New("starting task: context deadline exceeded: unknown")
	ctx := deadlineOnly{Context: context.Background(), d: time.Now().Add(-time.Millisecond)}
	err := withEnded(ctx, remote)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, remote)

	assert.Same(t, remote, withEnded(context.Background(), remote), "a live context leaves the error alone")
	assert.NoError(t, withEnded(ctx, nil))
	already := errors.Join(remote, context.DeadlineExceeded)
	assert.Same(t, already, withEnded(ctx, already), "an error that names the deadline is not wrapped twice")
}

// deadlineOnly reports a deadline that no timer enforces.
type deadlineOnly struct {
	context.Context
	d time.Time
}

func (c deadlineOnly) Deadline() (time.Time, bool) { return c.d, true }

func TestNewRefusesDockersNamespace(t *testing.T) {
	_, err := New(nil, WithNamespace("moby"), WithStateDir(t.TempDir()))
	require.Error(t, err)
	assert.True(t, errdefs.IsInvalidArgument(err), "%v", err)
}
