package fleet_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/fleet"
	"github.com/sandbox-runner/sandbox-runner/runner/fleet/fleettest"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// batchExec runs a batch's runs one by one through fakeExec, as "echo"
// tasks of their stdin.
type batchExec struct{ *fakeExec }

func (b batchExec) RunBatch(ctx context.Context, batch runner.Batch) (*runner.BatchResult, error) {
	res := &runner.BatchResult{ID: runner.NewID(), Runtime: batch.Runtime}
	for _, run := range batch.Runs {
		in, _ := io.ReadAll(run.Stdin)
		t := batch.Task
		t.Files = []runner.File{{Content: []byte("echo " + string(in))}}
		r, err := b.Run(ctx, t)
		if err != nil {
			return nil, err
		}
		res.Runs = append(res.Runs, r)
	}
	return res, nil
}

func TestWorkerRunsABatch(t *testing.T) {
	srv := fleettest.Start(t)
	exec := batchExec{newFakeExec()}
	startWorker(t, srv.URL, exec, fleet.WithMaxRuns(3))
	c := newClient(t, srv.URL)
	ctx := context.Background()

	task := runner.Task{Runtime: "sh", Files: []runner.File{{Content: []byte("ignored")}}}
	req := service.NewBatchRequest(task, [][]byte{[]byte("a"), []byte("b"), []byte("c")})
	require.NoError(t, c.Submit(ctx, fleet.Task{ID: "b-1", Request: req}))
	a := wait(t, c, "b-1", 30*time.Second)
	require.NoError(t, a.Err())
	assert.Nil(t, a.Result)
	require.NotNil(t, a.Batch)
	require.Len(t, a.Batch.Runs, 3)
	for i, want := range []string{"a\n", "b\n", "c\n"} {
		assert.Equal(t, want, string(a.Batch.Runs[i].Stdout.Data))
	}
	assert.Equal(t, 0, exec.count("ignored"), "a batch is never run as one task")

	// Over the worker's bound: refused as bad input, dead-lettered.
	req = service.NewBatchRequest(task, make([][]byte, 4))
	require.NoError(t, c.Submit(ctx, fleet.Task{ID: "b-2", Request: req}))
	a = wait(t, c, "b-2", 30*time.Second)
	require.Error(t, a.Err())
	assert.Equal(t, service.KindInvalidInput, a.Kind)
	assert.Contains(t, a.Error, "runs: 4 given: give 1 to 3")
}
