package runner

import (
	"context"
	"errors"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeTask is the smallest client.Task execute needs: its race branches
// (a cancellation during Start, a kill that fails, containerd lost while
// the task runs) are tested here without root or containerd. Methods it
// does not override panic through the nil embedded interface.
type fakeTask struct {
	client.Task
	exitC chan client.ExitStatus
	start func(context.Context) error
	kill  func(syscall.Signal) error
	// status answers Status; by default the task is there.
	status func() error
	kills  []syscall.Signal
	// deletes counts the options of each Delete; del answers it.
	deletes []int
	del     func() error
}

func newFakeTask() *fakeTask {
	f := &fakeTask{exitC: make(chan client.ExitStatus, 1)}
	f.start = func(context.Context) error { return nil }
	f.status = func() error { return nil }
	// By default a kill ends the task as the kernel would.
	f.kill = func(s syscall.Signal) error { f.exit(128+uint32(s), nil); return nil }
	return f
}

func (f *fakeTask) exit(code uint32, err error) {
	f.exitC <- *client.NewExitStatus(code, time.Now(), err)
}

func (f *fakeTask) Wait(context.Context) (<-chan client.ExitStatus, error) { return f.exitC, nil }
func (f *fakeTask) Start(ctx context.Context) error                        { return f.start(ctx) }
func (f *fakeTask) Kill(_ context.Context, s syscall.Signal, _ ...client.KillOpts) error {
	f.kills = append(f.kills, s)
	return f.kill(s)
}
func (f *fakeTask) Metrics(context.Context) (*types.Metric, error) {
	return nil, errors.New("no metrics in a fake")
}
func (f *fakeTask) IO() cio.IO { return nil }
func (f *fakeTask) Delete(_ context.Context, opts ...client.ProcessDeleteOpts) (*client.ExitStatus, error) {
	f.deletes = append(f.deletes, len(opts))
	if f.del != nil {
		return nil, f.del()
	}
	return nil, nil
}
func (f *fakeTask) Status(context.Context) (client.Status, error) {
	return client.Status{Status: client.Running}, f.status()
}

func executeFake(t *testing.T, ctx context.Context, f *fakeTask, timeout time.Duration) (*Stage, error) {
	t.Helper()
	r := &Runner{opts: options{namespace: "test", log: slog.New(slog.DiscardHandler)}}
	s := &sandbox{spec: sandboxSpec{id: "fake"}, task: f, streams: newStreams(1<<10, nil, nil, nil)}
	return r.execute(ctx, r.opts.log, s, timeout)
}

func TestExecuteReportsTheExit(t *testing.T) {
	f := newFakeTask()
	f.start = func(context.Context) error { f.exit(3, nil); return nil }
	st, err := executeFake(t, context.Background(), f, time.Minute)
	require.NoError(t, err)
	assert.Equal(t, OutcomeExited, st.Outcome)
	assert.Equal(t, 3, st.ExitCode)
	assert.Empty(t, f.kills)
}

// A task that exits 124 by itself before its deadline exited: only the
// init's exit after the deadline is a timeout.
func TestExecuteOwn124BeforeTheDeadlineIsAnExit(t *testing.T) {
	f := newFakeTask()
	f.start = func(context.Context) error { f.exit(124, nil); return nil }
	st, err := executeFake(t, context.Background(), f, time.Minute)
	require.NoError(t, err)
	assert.Equal(t, OutcomeExited, st.Outcome)
	assert.False(t, st.TimedOut)
}

func TestExecuteTimeoutKills(t *testing.T) {
	f := newFakeTask()
	st, err := executeFake(t, context.Background(), f, 20*time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, OutcomeTimedOut, st.Outcome)
	assert.Equal(t, ExitTimedOut, st.ExitCode)
	assert.Equal(t, []syscall.Signal{syscall.SIGKILL}, f.kills)
}

// The caller gives up while Start is on its way: the start may have gone
// through with only its answer lost, so the task is killed and reported
// cancelled.
func TestExecuteCancelDuringStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := newFakeTask()
	f.start = func(ctx context.Context) error {
		cancel()
		<-ctx.Done()
		return ctx.Err()
	}
	st, err := executeFake(t, ctx, f, time.Minute)
	require.NoError(t, err)
	assert.Equal(t, OutcomeCancelled, st.Outcome)
	assert.Equal(t, ExitCancelled, st.ExitCode)
	assert.Equal(t, []syscall.Signal{syscall.SIGKILL}, f.kills)
}

func TestExecuteStartFailureIsAnError(t *testing.T) {
	f := newFakeTask()
	f.start = func(context.Context) error { return errors.New("exec format error") }
	_, err := executeFake(t, context.Background(), f, time.Minute)
	require.ErrorContains(t, err, "starting task: exec format error")
}

// The task's shim dies: the wait fails and containerd removes the task,
// at once or a moment later. That is no verdict but ErrShimLost.
func TestExecuteShimDiesWhileTheTaskRuns(t *testing.T) {
	for _, after := range []int{0, 3} {
		f := newFakeTask()
		asked := 0
		f.status = func() error {
			if asked++; asked > after {
				return errdefs.ErrNotFound
			}
			return status.Error(codes.Unknown, "ttrpc: closed")
		}
		f.start = func(context.Context) error {
			f.exit(client.UnknownExitStatus, status.Error(codes.Unknown, "ttrpc: closed"))
			return nil
		}
		_, err := executeFake(t, context.Background(), f, time.Minute)
		require.ErrorIs(t, err, ErrShimLost, "removed after %d asks", after)
	}
}

// The shim dies while the task is started: the answer is lost with it.
func TestExecuteShimDiesDuringStart(t *testing.T) {
	f := newFakeTask()
	f.start = func(context.Context) error { return status.Error(codes.Unknown, "ttrpc: closed") }
	f.status = func() error { return errdefs.ErrNotFound }
	_, err := executeFake(t, context.Background(), f, time.Minute)
	require.ErrorIs(t, err, ErrShimLost)
}

// A wait that fails while the task is still there is not a lost shim.
func TestExecuteWaitFailureWithTheTaskThere(t *testing.T) {
	f := newFakeTask()
	f.start = func(context.Context) error {
		f.exit(client.UnknownExitStatus, errors.New("something else"))
		return nil
	}
	_, err := executeFake(t, context.Background(), f, time.Minute)
	require.ErrorContains(t, err, "waiting on task: something else")
	assert.NotErrorIs(t, err, ErrShimLost)
}

// A kill that fails while the task still runs is the runner losing track
// of it: an error, not a verdict.
func TestExecuteFailedKill(t *testing.T) {
	f := newFakeTask()
	f.kill = func(syscall.Signal) error { return errors.New("shim gone") }
	_, err := executeFake(t, context.Background(), f, 10*time.Millisecond)
	require.ErrorContains(t, err, "killing task: shim gone")
}

// A kill that fails because the task exited meanwhile gives the exit.
func TestExecuteKillRacingTheExit(t *testing.T) {
	f := newFakeTask()
	f.kill = func(syscall.Signal) error { f.exit(0, nil); return errors.New("process already finished") }
	st, err := executeFake(t, context.Background(), f, 10*time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, OutcomeTimedOut, st.Outcome, "the deadline passed first")
}

func TestExecuteLostContainerd(t *testing.T) {
	f := newFakeTask()
	f.start = func(context.Context) error {
		f.exit(client.UnknownExitStatus, status.Error(codes.Unavailable, "connection refused"))
		return nil
	}
	_, err := executeFake(t, context.Background(), f, time.Minute)
	require.ErrorContains(t, err, "lost containerd while the task ran")
}

// A task whose exit was seen is deleted as it is, without a kill of
// every process (one more run of the OCI runtime); any other, and one
// whose plain delete fails, is killed and deleted.
func TestDeleteSandboxTaskKillsOnlyWhatMayRun(t *testing.T) {
	ctx := context.Background()
	exited := newFakeTask()
	require.NoError(t, deleteSandboxTask(ctx, exited, true))
	assert.Equal(t, []int{0}, exited.deletes, "deleted with no kill")

	unknown := newFakeTask()
	require.NoError(t, deleteSandboxTask(ctx, unknown, false))
	assert.Equal(t, []int{1}, unknown.deletes, "deleted with WithProcessKill")

	stuck := newFakeTask()
	fail := true
	stuck.del = func() error {
		if fail {
			fail = false
			return errdefs.ErrFailedPrecondition
		}
		return nil
	}
	require.NoError(t, deleteSandboxTask(ctx, stuck, true))
	assert.Equal(t, []int{0, 1}, stuck.deletes, "killed and deleted when the plain delete fails")
}

// execute marks a sandbox whose task's exit it saw, and no other.
func TestExecuteMarksTheExit(t *testing.T) {
	r := &Runner{opts: options{namespace: "test", log: slog.New(slog.DiscardHandler)}}
	f := newFakeTask()
	f.start = func(context.Context) error { f.exit(0, nil); return nil }
	s := &sandbox{spec: sandboxSpec{id: "fake"}, task: f, streams: newStreams(1<<10, nil, nil, nil)}
	_, err := r.execute(context.Background(), r.opts.log, s, time.Minute)
	require.NoError(t, err)
	assert.True(t, s.exited)

	lost := newFakeTask()
	lost.start = func(context.Context) error { return errors.New("ttrpc: closed") }
	s = &sandbox{spec: sandboxSpec{id: "fake"}, task: lost, streams: newStreams(1<<10, nil, nil, nil)}
	_, err = r.execute(context.Background(), r.opts.log, s, time.Minute)
	require.Error(t, err)
	assert.False(t, s.exited)
}
