package runner

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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
