package service

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

func decodeBatch(t *testing.T, body string) (runner.Batch, error) {
	t.Helper()
	req, err := DecodeRequest([]byte(body))
	if err != nil {
		return runner.Batch{}, err
	}
	return BatchOf(req, runner.Limits{Timeout: 9 * time.Second, Memory: 128 << 20})
}

func TestBatchRequestDecodes(t *testing.T) {
	b, err := decodeBatch(t, `{"runtime": "c", "files": [{"content": "int main(){}"}], "args": ["all"],
		"limits": {"timeout": "2s", "compile_timeout": "20s"},
		"runs": [
			{"stdin": "1 2\n"},
			{"stdin": "AAEC", "stdin_encoding": "base64", "args": ["-v", "x y"], "limits": {"memory": "64m", "cpus": 0.5}},
			{"args": [], "limits": {"timeout": 1.5, "output_limit": 100}}
		]}`)
	require.NoError(t, err)
	assert.Equal(t, runner.Limits{Timeout: 2 * time.Second, CompileTimeout: 20 * time.Second, Memory: 128 << 20}, b.Limits,
		"the request's limits on the runtime's")
	assert.Nil(t, b.Stdin)
	assert.Equal(t, []string{"all"}, b.Args)
	require.Len(t, b.Runs, 3)

	assert.Equal(t, "1 2\n", string(readAll(b.Runs[0].Stdin)))
	assert.Nil(t, b.Runs[0].Args, "no args: the request's")
	assert.Equal(t, runner.Limits{}, b.Runs[0].Limits, "no limits: the request's")

	assert.Equal(t, []byte{0, 1, 2}, readAll(b.Runs[1].Stdin))
	assert.Equal(t, []string{"-v", "x y"}, b.Runs[1].Args)
	assert.Equal(t, runner.Limits{Memory: 64 << 20, CPUs: 0.5}, b.Runs[1].Limits, "only what the run gives")

	assert.Nil(t, b.Runs[2].Stdin)
	assert.Equal(t, []string{}, b.Runs[2].Args, "an empty list: no args at all")
	assert.Equal(t, runner.Limits{Timeout: 1500 * time.Millisecond, OutputLimit: 100}, b.Runs[2].Limits)
}

func TestBatchRequestRefusals(t *testing.T) {
	const head = `{"runtime": "c", "files": [{"content": "x"}], `
	for _, tc := range []struct{ body, want string }{
		{head + `"runs": []}`, "runs: empty: give at least one run"},
		{head + `"stdin": "x", "runs": [{}]}`, "stdin: a request with runs has no stdin of its own"},
		{head + `"runs": [{}, {}, {}, {"limits": {"memory": 0}}]}`, "runs[3].limits.memory: \"0\": give a size above zero"},
		{head + `"runs": [{}, {}, {}, {"limits": {"memory": "lots"}}]}`, "runs[3].limits.memory:"},
		{head + `"runs": [{"limits": {"timeout": "-1s"}}]}`, "runs[0].limits.timeout:"},
		{head + `"runs": [{"limits": {"cpus": "many"}}]}`, "runs[0].limits.cpus:"},
		{head + `"runs": [{"limits": {"pids": true}}]}`, "runs[0].limits.pids: expected a string or a number"},
		{head + `"runs": [{}, {"limits": {"compile_timeout": "5s"}}]}`, "runs[1].limits.compile_timeout: the compile stage runs once"},
		{head + `"runs": [{"limits": {"compile_memory": "1g"}}]}`, "runs[0].limits.compile_memory:"},
		{head + `"runs": [{"stdin": "!!", "stdin_encoding": "base64"}]}`, "runs[0].stdin: is not valid base64"},
		{head + `"runs": [{"stdin": "x", "stdin_encoding": "rot13"}]}`, "runs[0].stdin_encoding: \"rot13\" is not an encoding"},
		{head + `"runs": [{}, {}, {"args": ["a", "b\u0000"]}]}`, "runs[2].args[1]: holds a NUL byte"},
		{head + `"runs": [{"input": "x"}]}`, `unknown field "input"`},
		{head + `"runs": [{"args": "a b"}]}`, "runs.args: expected an array"},
		{head + `"runs": {"stdin": "x"}}`, "runs: expected an array"},
	} {
		_, err := decodeBatch(t, tc.body)
		require.Error(t, err, tc.body)
		assert.ErrorIs(t, err, runner.ErrInvalidTask, tc.body)
		assert.Contains(t, err.Error(), tc.want, tc.body)
	}
}

func TestNewBatchRequestRoundTrip(t *testing.T) {
	task := runner.Task{Runtime: "cpp", Files: []runner.File{{Name: "a.cpp", Content: []byte("x")}}, Args: []string{"q"},
		Limits: runner.Limits{Timeout: time.Second}}
	req := NewBatchRequest(task, [][]byte{[]byte("one\n"), nil, {0xff}})
	body, err := json.Marshal(req)
	require.NoError(t, err)
	b, err := decodeBatch(t, string(body))
	require.NoError(t, err)
	require.Len(t, b.Runs, 3)
	assert.Equal(t, "one\n", string(readAll(b.Runs[0].Stdin)))
	assert.Nil(t, b.Runs[1].Stdin)
	assert.Equal(t, []byte{0xff}, readAll(b.Runs[2].Stdin))
	assert.Equal(t, []string{"q"}, b.Args)
	assert.Equal(t, time.Second, b.Limits.Timeout)
}

func TestLimiterTryAcquireNeverJumpsTheQueue(t *testing.T) {
	l := newLimiter(2, 4, nil)
	rel1, ok := l.tryAcquire()
	require.True(t, ok, "a free slot")
	rel2, ok := l.tryAcquire()
	require.True(t, ok, "the second free slot")
	_, ok = l.tryAcquire()
	assert.False(t, ok, "no slot free")

	// A task waits for a slot: a freed slot is its, not a batch's.
	got := make(chan func())
	go func() {
		rel, err := l.acquire(context.Background())
		assert.NoError(t, err)
		got <- rel
	}()
	require.Eventually(t, func() bool { _, w := l.counts(); return w == 1 }, 5*time.Second, time.Millisecond)
	_, ok = l.tryAcquire()
	assert.False(t, ok, "a task waits")
	rel1()
	rel3 := <-got
	rel2()
	rel3()
	l.close()
	_, ok = l.tryAcquire()
	assert.False(t, ok, "shutting down")
}

// fakeBatchExec runs batches as fakeExec runs tasks, counting the runs
// that go at once.
type fakeBatchExec struct {
	fakeExec
	mu      sync.Mutex
	batches []runner.Batch
}

func (f *fakeBatchExec) RunBatch(ctx context.Context, b runner.Batch) (*runner.BatchResult, error) {
	f.mu.Lock()
	f.batches = append(f.batches, b)
	f.mu.Unlock()
	res := &runner.BatchResult{ID: "b1", Runtime: b.Runtime, Image: "img", Compile: &runner.Stage{Outcome: runner.OutcomeExited}}
	for i, run := range b.Runs {
		in, _ := io.ReadAll(run.Stdin)
		res.Runs = append(res.Runs, &runner.Result{ID: "b1-" + string(rune('0'+i)), Runtime: b.Runtime,
			Stage: runner.Stage{Outcome: runner.OutcomeExited, ExitCode: i, Stdout: runner.Stream{Data: in}, Duration: time.Millisecond}})
	}
	return res, nil
}

func TestExecBatchAnswersEveryRunInOrder(t *testing.T) {
	fe := &fakeBatchExec{}
	ts := startService(t, fe, WithMaxConcurrent(3), WithMaxRuns(4), WithLimits(func(string) (runner.Limits, error) {
		return runner.Limits{Memory: 128 << 20}, nil
	}))
	a := ts.post(t, `{"runtime": "c", "files": [{"content": "x"}], "runs": [{"stdin": "a"}, {"stdin": "b"}, {"stdin": "c"}]}`)
	require.Equal(t, http.StatusOK, a.status, "%s", a)
	var res runner.BatchResult
	require.NoError(t, json.Unmarshal([]byte(a.body), &res))
	require.Len(t, res.Runs, 3)
	for i, want := range []string{"a", "b", "c"} {
		assert.Equal(t, want, string(res.Runs[i].Stdout.Data))
		assert.Equal(t, i, res.Runs[i].ExitCode)
	}
	assert.Equal(t, "b1", a.header.Get("X-Sandbox-Runner-Task"))
	assert.Empty(t, fe.seen(), "a batch is not run as a task")
	require.Len(t, fe.batches, 1)
	assert.Equal(t, 3, fe.batches[0].Parallel, "runs may go in parallel up to max_concurrent")
	assert.NotNil(t, fe.batches[0].Extra, "further runs ask the limiter for a free slot")
	assert.Equal(t, int64(128<<20), fe.batches[0].Limits.Memory)

	mfs := ts.scrape(t)
	assert.Equal(t, 3.0, metricValue(t, mfs, MetricRuns, "outcome", "exited"))
	assert.Equal(t, 0.0, metricValue(t, mfs, MetricRuns, "outcome", "not_run"))
	assert.Equal(t, 0.0, metricValue(t, mfs, MetricTasks, "outcome", "exited"), "a batch's runs are not tasks")

	// Over the bound: refused by name, nothing run.
	a = ts.post(t, `{"runtime": "c", "files": [{"content": "x"}], "runs": [{}, {}, {}, {}, {}]}`)
	require.Equal(t, http.StatusBadRequest, a.status, "%s", a)
	assert.Contains(t, a.errorDoc(t).Error, "runs: 5 given: give 1 to 4")
	a = ts.post(t, `{"runtime": "c", "files": [{"content": "x"}], "runs": [{}, {"limits": {"memory": "1k"}}]}`)
	require.Equal(t, http.StatusBadRequest, a.status, "%s", a)
	assert.Contains(t, a.errorDoc(t).Error, "runs[1]: memory limit 1024 bytes is too small")
	assert.Len(t, fe.batches, 1)
	assert.Equal(t, 2.0, metricValue(t, ts.scrape(t), MetricRejected, "reason", RejectInvalid))
}

func TestExecBatchWithoutBatchExecutor(t *testing.T) {
	ts := startService(t, &fakeExec{})
	a := ts.post(t, `{"runtime": "c", "files": [{"content": "x"}], "runs": [{}]}`)
	assert.Equal(t, http.StatusNotImplemented, a.status, "%s", a)
	assert.True(t, strings.HasPrefix(a.errorDoc(t).Error, "runs:"))
}

func TestMetricsExecutorRunsAndCountsBatches(t *testing.T) {
	m, err := NewMetrics()
	require.NoError(t, err)
	wrapped := m.Executor(&fakeBatchExec{})
	bx, ok := wrapped.(BatchExecutor)
	require.True(t, ok, "a worker's counted executor still runs batches")
	res, err := bx.RunBatch(context.Background(), runner.Batch{Task: runner.Task{Runtime: "python"},
		Runs: []runner.Run{{Stdin: strings.NewReader("a")}, {Stdin: strings.NewReader("b")}}})
	require.NoError(t, err)
	require.Len(t, res.Runs, 2)
	mfs := scrapeHandler(t, m.Handler())
	assert.Equal(t, 2.0, metricValue(t, mfs, MetricRuns, "outcome", "exited"))

	_, err = m.Executor(&fakeExec{}).(BatchExecutor).RunBatch(context.Background(), runner.Batch{Runs: []runner.Run{{}}})
	assert.ErrorIs(t, err, runner.ErrInvalidTask, "an executor without batches says so")
}

// FuzzDecodeBatchRequest: a body with runs is refused as invalid input,
// or accepted again, as the same batch, once re-encoded.
func FuzzDecodeBatchRequest(f *testing.F) {
	for _, seed := range []string{
		`{"runtime": "c", "files": [{"content": "x"}], "runs": [{"stdin": "1", "args": ["a"], "limits": {"memory": "64m", "timeout": 2}}]}`,
		`{"runtime": "c", "files": [{"content": "x"}], "runs": [{"args": []}, {"args": null}, {"stdin": "AA==", "stdin_encoding": "base64"}]}`,
		`{"runtime": "c", "files": [{"content": "x"}], "runs": [{"limits": {"compile_memory": "1g"}}]}`,
		`{"runtime": "c", "files": [{"content": "x"}], "stdin": "x", "runs": [{}]}`,
		`{"runtime": "c", "files": [{"content": "x"}], "runs": []}`,
		`{"runs": [null, {}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeRequest(body)
		if err != nil || req.Runs == nil {
			return
		}
		b, err := BatchOf(req, runner.Limits{})
		if err != nil {
			if !errors.Is(err, runner.ErrInvalidTask) {
				t.Fatalf("refusal %v is not ErrInvalidTask", err)
			}
			return
		}
		again, err := json.Marshal(req)
		require.NoError(t, err)
		req2, err := DecodeRequest(again)
		require.NoError(t, err, "decoding %s again", again)
		b2, err := BatchOf(req2, runner.Limits{})
		require.NoError(t, err, "%s is refused the second time", again)
		require.Len(t, b2.Runs, len(b.Runs))
		for i := range b.Runs {
			assert.Equal(t, readAll(b.Runs[i].Stdin), readAll(b2.Runs[i].Stdin))
			b.Runs[i].Stdin, b2.Runs[i].Stdin = nil, nil
		}
		b.Stdin, b2.Stdin = nil, nil
		assert.Equal(t, b, b2)
	})
}
