package runner

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type recordedStep struct {
	stage string
	step  Step
}

type stepRecorder struct{ steps []recordedStep }

func (r *stepRecorder) ObserveStep(stage string, step Step, d time.Duration) {
	r.steps = append(r.steps, recordedStep{stage, step})
}

func TestObserveNamesTheStage(t *testing.T) {
	rec := &stepRecorder{}
	ctx := WithObserver(context.Background(), rec)
	observe(ctx, "t1"+compileSuffix, StepCreate, time.Now())
	observe(ctx, "t1", StepTeardown, time.Now())
	assert.Equal(t, []recordedStep{{StageCompile, StepCreate}, {StageRun, StepTeardown}}, rec.steps)
}

func TestObserveWithoutObserverIsANoOp(t *testing.T) {
	observe(context.Background(), "t1", StepCreate, time.Now())
	observe(WithObserver(context.Background(), nil), "t1", StepCreate, time.Now())
}

func TestCleanupHookHearsFailedTeardowns(t *testing.T) {
	var heard []error
	ctx := WithCleanupHook(context.Background(), func(err error) { heard = append(heard, err) })
	boom := errors.New("boom")

	var ok cleanup
	ok.add(func(context.Context) error { return nil })
	require.NoError(t, ok.run(ctx))
	assert.Empty(t, heard, "a teardown that worked is not reported")

	var bad cleanup
	bad.add(func(context.Context) error { return nil })
	bad.add(func(context.Context) error { return boom })
	err := bad.run(ctx)
	require.ErrorIs(t, err, boom)
	require.Len(t, heard, 1, "one report per failed teardown")
	assert.ErrorIs(t, heard[0], boom)

	require.Error(t, bad.run(context.Background()), "without a hook it still fails")
	assert.Len(t, heard, 1)
}
