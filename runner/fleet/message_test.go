package fleet

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

func TestTaskRoundTrip(t *testing.T) {
	req := service.NewRequest(runner.Task{
		Runtime: "python",
		Files:   []runner.File{{Name: "main.py", Content: []byte("print(1)")}, {Name: "data.bin", Content: []byte{0, 0xff}}},
		Args:    []string{"-v"},
		Env:     []string{"A=b"},
		Limits:  runner.Limits{Memory: 256 << 20, CPUs: 0.5, CPUTime: 1500 * time.Millisecond},
		Outputs: []string{"/tmp/out/*.png"},
	}, []byte("stdin"))
	b, err := EncodeTask(Task{ID: "t-1", Request: req})
	require.NoError(t, err)
	got, err := DecodeTask(b)
	require.NoError(t, err)
	assert.Equal(t, "t-1", got.ID)
	again, err := json.Marshal(got)
	require.NoError(t, err)
	assert.JSONEq(t, string(b), string(again))

	task, err := service.TaskOf(&got.Request, runner.Limits{})
	require.NoError(t, err)
	assert.Equal(t, []byte{0, 0xff}, task.Files[1].Content)
	assert.Equal(t, int64(256<<20), task.Limits.Memory)
	assert.Equal(t, 1500*time.Millisecond, task.Limits.CPUTime, "the task message carries the CPU-time limit")
	assert.Equal(t, []string{"/tmp/out/*.png"}, task.Outputs, "and the output patterns")
	assert.Contains(t, string(b), `"cpu_time":"1.5s"`)
	assert.Contains(t, string(b), `"outputs":["/tmp/out/*.png"]`)
}

func TestTaskSchema(t *testing.T) {
	b, err := EncodeTask(Task{ID: "t-1", Request: service.Request{Runtime: "sh", Files: []service.File{{Content: "echo hi"}}}})
	require.NoError(t, err)
	assert.JSONEq(t, `{"id":"t-1","request":{"runtime":"sh","files":[{"content":"echo hi"}]}}`, string(b))
}

func TestEncodeTaskChecksID(t *testing.T) {
	_, err := EncodeTask(Task{ID: "a.b"})
	assert.True(t, errdefs.IsInvalidArgument(err), "%v", err)
}

func TestDecodeTaskRefuses(t *testing.T) {
	for _, c := range []struct {
		name, body, want, id string
	}{
		{"empty", "  ", "empty", ""},
		{"not JSON", "{", "task message", ""},
		{"unknown field", `{"id":"t-1","request":{},"reply":"x"}`, `unknown field "reply"`, ""},
		{"second value", `{"id":"t-1","request":{"runtime":"sh","files":[{"content":"x"}]}} {}`, "more than one", ""},
		{"no id", `{"request":{"runtime":"sh","files":[]}}`, "id: task id is empty", ""},
		{"id with a dot", `{"id":"a.b","request":{}}`, "letters, digits", ""},
		{"id too long", `{"id":"` + strings.Repeat("x", MaxIDLength+1) + `","request":{}}`, "at most 128", ""},
		{"no request", `{"id":"t-1"}`, "request: required", "t-1"},
		{"null request", `{"id":"t-1","request":null}`, "request: required", "t-1"},
		{"bad request field", `{"id":"t-1","request":{"runtime":"sh","files":"echo"}}`, "request: files: expected an array", "t-1"},
		{"unknown request field", `{"id":"t-1","request":{"runtime":"sh","network":true}}`, `request: unknown field "network"`, "t-1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := DecodeTask([]byte(c.body))
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.True(t, errors.Is(err, runner.ErrInvalidTask), "%v is not ErrInvalidTask", err)
			assert.Equal(t, service.KindInvalidInput, Kind(err))
			assert.Equal(t, c.id, got.ID, "the id is kept when it could be read")
		})
	}
}

func TestAnswerErr(t *testing.T) {
	ok := &Answer{TaskID: "t", Result: &runner.Result{}}
	assert.NoError(t, ok.Err())
	for kind, sentinel := range map[string]error{
		service.KindInvalidInput:       runner.ErrInvalidTask,
		service.KindImageNotFound:      runner.ErrImageNotFound,
		service.KindSandboxUnavailable: runner.ErrSandboxUnavailable,
	} {
		err := (&Answer{TaskID: "t", Error: "boom", Kind: kind}).Err()
		assert.ErrorIs(t, err, sentinel, kind)
		assert.EqualError(t, err, "boom")
	}
}

func TestDecodeAnswer(t *testing.T) {
	a, err := DecodeAnswer([]byte(`{"task_id":"t","worker":"w","deliveries":2,"result":{"id":"sr-1","image":"i","outcome":"exited","exit_code":3,
		"stdout":{"data":"AP8=","encoding":"base64"},"stderr":{"data":"e"},"usage":{"cpu_ms":1.5},"duration_ms":12,"new_field":1}}`))
	require.NoError(t, err)
	assert.Equal(t, 2, a.Deliveries)
	assert.Equal(t, 3, a.Result.ExitCode)
	assert.Equal(t, []byte{0, 0xff}, a.Result.Stdout.Data)
	_, err = DecodeAnswer([]byte(`{"task_id":"t"}`))
	assert.Error(t, err)
}

func TestEncodeAnswerFitsTheLimit(t *testing.T) {
	res := &runner.Result{ID: "sr-1", Stage: runner.Stage{
		Outcome: runner.OutcomeExited,
		Stdout:  runner.Stream{Data: []byte(strings.Repeat("é", 20000))},
		Stderr:  runner.Stream{Data: []byte(strings.Repeat("x", 1000)), Dropped: 5},
	}}
	a := Answer{TaskID: "t", Result: res}
	full, err := encodeAnswer(a, 1<<20)
	require.NoError(t, err)
	whole, err := DecodeAnswer(full)
	require.NoError(t, err)
	assert.False(t, whole.Truncated)
	assert.Len(t, whole.Result.Stdout.Data, 40000)

	b, err := encodeAnswer(a, 8000)
	require.NoError(t, err)
	assert.LessOrEqual(t, len(b), 8000)
	got, err := DecodeAnswer(b)
	require.NoError(t, err)
	assert.True(t, got.Truncated)
	assert.True(t, got.Result.OutputTruncated)
	assert.True(t, utf8.Valid(got.Result.Stdout.Data), "text is cut between characters")
	assert.Equal(t, int64(40000), int64(len(got.Result.Stdout.Data))+got.Result.Stdout.Dropped, "every byte is kept or counted")
	assert.Equal(t, int64(1005), int64(len(got.Result.Stderr.Data))+got.Result.Stderr.Dropped)
	assert.Len(t, res.Stdout.Data, 40000, "the caller's result is left alone")

	_, err = encodeAnswer(a, 100)
	assert.Error(t, err, "nothing left to cut")
}

func TestEncodeAnswerCutsReturnedFilesToo(t *testing.T) {
	big := []byte(strings.Repeat("\xff", 30000))
	res := &runner.Result{ID: "sr-1", Stage: runner.Stage{Outcome: runner.OutcomeExited},
		Files: []runner.OutputFile{{Name: "small.txt", Content: []byte("ok"), Size: 2}, {Name: "big.bin", Content: big, Size: 30000}}}
	b, err := encodeAnswer(Answer{TaskID: "t", Result: res}, 8000)
	require.NoError(t, err)
	assert.LessOrEqual(t, len(b), 8000)
	got, err := DecodeAnswer(b)
	require.NoError(t, err)
	assert.True(t, got.Truncated)
	assert.True(t, got.Result.FilesTruncated)
	assert.False(t, got.Result.OutputTruncated, "no output was cut")
	require.Len(t, got.Result.Files, 2)
	assert.Equal(t, runner.OutputFile{Name: "small.txt", Content: []byte("ok"), Size: 2}, got.Result.Files[0])
	assert.True(t, got.Result.Files[1].Truncated)
	assert.Equal(t, int64(30000), got.Result.Files[1].Size, "the whole size is still said")
	assert.Less(t, len(got.Result.Files[1].Content), 6000)
	assert.Len(t, res.Files[1].Content, 30000, "the caller's result is left alone")
	assert.False(t, res.Files[1].Truncated)
}

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"t-1", "A_b-9", strings.Repeat("x", MaxIDLength)} {
		assert.NoError(t, ValidateID(ok), ok)
	}
	for _, bad := range []string{"", "a.b", "a*", "a>", "a b", "ü", strings.Repeat("x", MaxIDLength+1)} {
		assert.Error(t, ValidateID(bad), bad)
	}
	assert.NoError(t, ValidateID(NewTaskID()))
}

func TestValidateRuntime(t *testing.T) {
	for _, ok := range []string{"python", "c++", "node_22", "x-1"} {
		assert.NoError(t, ValidateRuntime(ok), ok)
	}
	for _, bad := range []string{"", "a.b", "*", ">", "py thon", strings.Repeat("x", 65)} {
		assert.Error(t, ValidateRuntime(bad), bad)
	}
}

func TestSubjects(t *testing.T) {
	assert.Equal(t, "sandbox.tasks.python", TaskSubject("python"))
	assert.Equal(t, "python", runtimeOf(TaskSubject("python")))
	assert.Equal(t, "sandbox.results.t-1", ResultSubject("t-1"))
	assert.Equal(t, "sandbox.dead.sh", DeadSubject("sh"))
	assert.Equal(t, "tasks-sh", ConsumerName("sh"))
	assert.Equal(t, "host_example_com-12", presenceKey("host.example.com-12"))
}

func TestBatchTaskRoundTrip(t *testing.T) {
	req := service.NewBatchRequest(runner.Task{Runtime: "cpp", Files: []runner.File{{Content: []byte("int main(){}")}}},
		[][]byte{[]byte("1 2\n"), {0xff}})
	b, err := EncodeTask(Task{ID: "t-1", Request: req})
	require.NoError(t, err)
	got, err := DecodeTask(b)
	require.NoError(t, err)
	batch, err := service.BatchOf(&got.Request, runner.Limits{})
	require.NoError(t, err)
	require.Len(t, batch.Runs, 2)

	_, err = DecodeTask([]byte(`{"id": "t-1", "request": {"runtime": "c", "files": [{"content": "x"}], "runs": [{"stdin": 5}]}}`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "runs.stdin")
}

func TestEncodeBatchAnswerFitsTheLimit(t *testing.T) {
	res := &runner.BatchResult{ID: "sr-1", Compile: &runner.Stage{Stderr: runner.Stream{Data: []byte(strings.Repeat("w", 3000))}}}
	for range 3 {
		res.Runs = append(res.Runs, &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeExited,
			Stdout: runner.Stream{Data: []byte(strings.Repeat("é", 5000))}}})
	}
	a := Answer{TaskID: "t", Batch: res}
	whole, err := encodeAnswer(a, 1<<20)
	require.NoError(t, err)
	got, err := DecodeAnswer(whole)
	require.NoError(t, err)
	require.NoError(t, got.Err())
	assert.False(t, got.Truncated)

	b, err := encodeAnswer(a, 12000)
	require.NoError(t, err)
	assert.LessOrEqual(t, len(b), 12000)
	got, err = DecodeAnswer(b)
	require.NoError(t, err)
	assert.True(t, got.Truncated)
	for _, run := range got.Batch.Runs {
		assert.True(t, utf8.Valid(run.Stdout.Data))
		assert.Equal(t, int64(10000), int64(len(run.Stdout.Data))+run.Stdout.Dropped, "every byte is kept or counted")
		assert.True(t, run.OutputTruncated)
	}
	assert.Len(t, res.Runs[0].Stdout.Data, 10000, "the caller's result is left alone")
	assert.Len(t, res.Compile.Stderr.Data, 3000, "the caller's result is left alone")
}
