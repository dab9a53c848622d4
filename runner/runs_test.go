package runner

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
)

func TestLimitsMergeEveryField(t *testing.T) {
	base := Limits{Timeout: time.Second, CompileTimeout: time.Minute, Memory: 64 << 20, CompileMemory: 1 << 30,
		CPUs: 1, Pids: 10, OutputLimit: 100, TmpSize: 1 << 20}
	assert.Equal(t, base, base.Merge(Limits{}), "a run that sets nothing keeps the batch's limits")

	// Each field, set alone, replaces that field and no other: a field
	// added to Limits later is merged too.
	typ := reflect.TypeOf(Limits{})
	for i := range typ.NumField() {
		var over Limits
		f := reflect.ValueOf(&over).Elem().Field(i)
		switch f.Kind() {
		case reflect.Int64, reflect.Int:
			f.SetInt(12345)
		case reflect.Float64:
			f.SetFloat(0.25)
		default:
			t.Fatalf("field %s has a kind (%s) this test does not know", typ.Field(i).Name, f.Kind())
		}
		got := base.Merge(over)
		want := base
		reflect.ValueOf(&want).Elem().Field(i).Set(f)
		assert.Equal(t, want, got, "overriding %s", typ.Field(i).Name)
	}
}

func testBatch(runtime string, runs ...Run) *Batch {
	return &Batch{Task: Task{Runtime: runtime, Files: []File{{Content: []byte("x")}}, Args: []string{"default"},
		Limits: Limits{Memory: 256 << 20, Timeout: 5 * time.Second}}, Runs: runs}
}

func TestPrepareBatchMergesRunLimitsAndArgs(t *testing.T) {
	b := testBatch("c",
		Run{},
		Run{Args: []string{"mine"}, Limits: Limits{Memory: 128 << 20}},
		Run{Args: []string{}, Limits: Limits{Timeout: time.Second, TmpSize: 2 << 20}})
	p, runs, err := prepareBatch(b, images.DefaultCatalog(), testHost, DefaultMaxRuns)
	require.NoError(t, err)
	require.Len(t, runs, 3)
	assert.NotNil(t, p.compile)
	assert.Equal(t, "default", runs[0].args[len(runs[0].args)-1], "a run without args takes the batch's")
	assert.Equal(t, "mine", runs[1].args[len(runs[1].args)-1])
	assert.Equal(t, []string{"/tmp/main"}, runs[2].args, "an empty args list is no args at all")

	assert.Equal(t, int64(256<<20), runs[0].limits.Memory)
	assert.Equal(t, 5*time.Second, runs[0].limits.Timeout)
	assert.Equal(t, int64(128<<20), runs[1].limits.Memory, "the run's memory")
	assert.Equal(t, 5*time.Second, runs[1].limits.Timeout, "the batch's timeout")
	assert.Equal(t, time.Second, runs[2].limits.Timeout)
	assert.Equal(t, int64(2<<20), runs[2].limits.TmpSize)
	assert.Equal(t, int64(256<<20), runs[2].limits.Memory)
	for i, rp := range runs {
		assert.Equal(t, p.id+"-"+string(rune('0'+i)), rp.id, "run %d's id follows the batch's", i)
	}
}

func TestPrepareBatchRefuses(t *testing.T) {
	cat := images.DefaultCatalog()
	for _, tc := range []struct {
		name  string
		batch *Batch
		most  int
		want  string
	}{
		{"no runs", testBatch("c"), DefaultMaxRuns, "runs: 0 given: give 1 to 64"},
		{"over the bound", testBatch("c", make([]Run, 4)...), 3, "runs: 4 given: give 1 to 3"},
		{"stdin of the batch", func() *Batch {
			b := testBatch("python", Run{})
			b.Stdin = strings.NewReader("x")
			return b
		}(), DefaultMaxRuns, "stdin: a batch has no stdin of its own"},
		{"compile limits in a run", testBatch("c", Run{}, Run{Limits: Limits{CompileTimeout: time.Second}}), DefaultMaxRuns,
			"runs[1].limits: the compile stage runs once"},
		{"a run's limit out of range", testBatch("python", Run{}, Run{}, Run{Limits: Limits{Memory: 1 << 20}}), DefaultMaxRuns,
			"runs[2]: memory limit 1048576 bytes is too small"},
		{"a run's tmp over its memory", testBatch("python", Run{Limits: Limits{TmpSize: 512 << 20}}), DefaultMaxRuns,
			"runs[0]: tmp size"},
		{"the batch's own limits", func() *Batch {
			b := testBatch("python", Run{})
			b.Limits.Pids = -1
			return b
		}(), DefaultMaxRuns, "pids limit -1 out of range"},
		{"negative parallel", func() *Batch {
			b := testBatch("python", Run{})
			b.Parallel = -1
			return b
		}(), DefaultMaxRuns, "parallel -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := prepareBatch(tc.batch, cat, testHost, tc.most)
			requireInvalid(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestValidateBatchDefaultBound(t *testing.T) {
	b := testBatch("python", make([]Run, DefaultMaxRuns)...)
	require.NoError(t, ValidateBatch(*b, images.DefaultCatalog(), 0))
	b.Runs = append(b.Runs, Run{})
	requireInvalid(t, ValidateBatch(*b, images.DefaultCatalog(), 0))
	require.NoError(t, ValidateBatch(*b, images.DefaultCatalog(), DefaultMaxRuns+1))
}

func TestEachRunKeepsOrderAndBoundsParallel(t *testing.T) {
	var r Runner
	for _, tc := range []struct {
		name     string
		parallel int
		extra    int // leaves Extra grants
		want     int // most runs at once
	}{
		{"one after another", 0, 10, 1},
		{"parallel without extra leave", 4, 0, 1},
		{"parallel, extra leave for two more", 4, 2, 3},
		{"parallel bounded by Parallel", 3, 10, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var granted, now, most atomic.Int32
			released := atomic.Int32{}
			b := &Batch{Runs: make([]Run, 12), Parallel: tc.parallel}
			b.Extra = func() (func(), bool) {
				if int(granted.Load()) >= tc.extra {
					return nil, false
				}
				granted.Add(1)
				return func() { released.Add(1) }, true
			}
			res := &BatchResult{ID: "b", Runs: make([]*Result, len(b.Runs))}
			err := r.eachRun(context.Background(), b, res, func(_ context.Context, i int) (*Result, error) {
				n := now.Add(1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				time.Sleep(10 * time.Millisecond)
				now.Add(-1)
				return &Result{ID: "run" + string(rune('a'+i))}, nil
			})
			require.NoError(t, err)
			for i, out := range res.Runs {
				assert.Equal(t, "run"+string(rune('a'+i)), out.ID, "results are in the order of the runs")
			}
			assert.Equal(t, int32(tc.want), most.Load(), "most runs at once")
			assert.Equal(t, granted.Load(), released.Load(), "every extra leave is given back")
		})
	}
}

func TestEachRunStopsAtTheFirstError(t *testing.T) {
	var r Runner
	b := &Batch{Runs: make([]Run, 5)}
	res := &BatchResult{ID: "b", Runs: make([]*Result, len(b.Runs))}
	boom := errors.New("boom")
	var started []int
	var mu sync.Mutex
	err := r.eachRun(context.Background(), b, res, func(_ context.Context, i int) (*Result, error) {
		mu.Lock()
		started = append(started, i)
		mu.Unlock()
		if i == 1 {
			return nil, boom
		}
		return &Result{}, nil
	})
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "runs[1]: boom")
	assert.Equal(t, []int{0, 1}, started, "no run starts after a failure")
}

func TestEachRunCancelledBeforeStart(t *testing.T) {
	var r Runner
	b := &Batch{Runs: make([]Run, 3)}
	res := &BatchResult{ID: "b", Runs: make([]*Result, len(b.Runs))}
	ctx, cancel := context.WithCancel(context.Background())
	err := r.eachRun(ctx, b, res, func(_ context.Context, i int) (*Result, error) {
		cancel()
		return &Result{ID: "ran", Stage: Stage{Outcome: OutcomeExited}}, nil
	})
	require.NoError(t, err)
	assert.Equal(t, OutcomeExited, res.Runs[0].Outcome)
	for _, out := range res.Runs[1:] {
		assert.Equal(t, OutcomeCancelled, out.Outcome)
		assert.Equal(t, ExitCancelled, out.ExitCode)
	}
	assert.Equal(t, "b-2", res.Runs[2].ID)
}

func TestNotRunCarriesTheCompilersStatus(t *testing.T) {
	b := &BatchResult{ID: "b", Runtime: "c", Image: "img"}
	res := notRun(b, "b-0", &Stage{Outcome: OutcomeExited, ExitCode: 1})
	assert.Equal(t, OutcomeNotRun, res.Outcome)
	assert.Equal(t, 1, res.ExitCode)
	assert.Equal(t, "c", res.Runtime)
	res = notRun(b, "b-0", &Stage{Outcome: OutcomeCancelled, ExitCode: ExitCancelled, Cancelled: true})
	assert.Equal(t, OutcomeCancelled, res.Outcome)
	assert.True(t, res.Cancelled)
}

func TestPrepareBatchRefusesOutputs(t *testing.T) {
	b := testBatch("sh", Run{})
	b.Outputs = []string{"/tmp/out/*"}
	_, _, err := prepareBatch(b, images.DefaultCatalog(), testHost, DefaultMaxRuns)
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrInvalidTask))
	assert.Contains(t, err.Error(), "outputs: a batch returns no files")
}

// A run whose making the caller's cancellation cut short fails with
// the context's error; it is a cancelled run, not a failed batch.
func TestEachRunCancelledWhileARunIsMade(t *testing.T) {
	var r Runner
	b := &Batch{Runs: make([]Run, 3)}
	res := &BatchResult{ID: "b", Runs: make([]*Result, len(b.Runs))}
	ctx, cancel := context.WithCancel(context.Background())
	err := r.eachRun(ctx, b, res, func(ctx context.Context, i int) (*Result, error) {
		if i == 0 {
			return &Result{ID: "ran", Stage: Stage{Outcome: OutcomeExited}}, nil
		}
		cancel()
		return nil, fmt.Errorf("creating task: %w", ctx.Err())
	})
	require.NoError(t, err)
	assert.Equal(t, OutcomeExited, res.Runs[0].Outcome)
	for _, out := range res.Runs[1:] {
		assert.Equal(t, OutcomeCancelled, out.Outcome)
		assert.Equal(t, ExitCancelled, out.ExitCode)
	}
}
