package runner

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleStage() Stage {
	return Stage{
		Outcome:         OutcomeSignaled,
		ExitCode:        137,
		Signal:          "SIGKILL",
		TimedOut:        true,
		OOMKilled:       true,
		Cancelled:       true,
		PidsLimitHit:    true,
		OutputTruncated: true,
		Stdout:          Stream{Data: []byte("hello\n"), Dropped: 42},
		Stderr:          Stream{Data: []byte("\xff\xfe binary \x00"), Dropped: 0},
		Duration:        1234567891 * time.Nanosecond,
		Usage:           Usage{CPU: 987654321 * time.Nanosecond, MemoryPeak: 123 << 20},
	}
}

func sampleResult() Result {
	return Result{
		ID:      "sr-0123456789abcdef",
		Runtime: "python",
		Image:   "docker.io/library/python:3.11-slim",
		// The OCI runtime the task ran under.
		OCIRuntime: "crun",
		Stage:      sampleStage(),
	}
}

// assertSameStage compares stages, durations to the millisecond: they
// travel as milliseconds.
func assertSameStage(t *testing.T, want, got Stage) {
	t.Helper()
	assert.InDelta(t, float64(want.Duration), float64(got.Duration), float64(time.Millisecond))
	assert.InDelta(t, float64(want.Usage.CPU), float64(got.Usage.CPU), float64(time.Millisecond))
	got.Duration, got.Usage.CPU = want.Duration, want.Usage.CPU
	assert.Equal(t, want, got)
}

func TestResultJSONRoundTrip(t *testing.T) {
	want := sampleResult()
	b, err := json.Marshal(want)
	require.NoError(t, err)

	var got Result
	require.NoError(t, json.Unmarshal(b, &got))
	assertSameStage(t, want.Stage, got.Stage)
	want.Stage, got.Stage = Stage{}, Stage{}
	assert.Equal(t, want, got)
}

func TestResultJSONRoundTripWithCompile(t *testing.T) {
	want := sampleResult()
	compile := sampleStage()
	compile.Stdout.Data = []byte("main.c:1: error\n")
	compile.Duration = 2500 * time.Millisecond
	want.Compile = &compile
	b, err := json.Marshal(want)
	require.NoError(t, err)

	var got Result
	require.NoError(t, json.Unmarshal(b, &got))
	require.NotNil(t, got.Compile)
	assertSameStage(t, *want.Compile, *got.Compile)
	assertSameStage(t, want.Stage, got.Stage)
}

func TestResultJSONPointer(t *testing.T) {
	r := sampleResult()
	byValue, err := json.Marshal(r)
	require.NoError(t, err)
	byPointer, err := json.Marshal(&r)
	require.NoError(t, err)
	assert.JSONEq(t, string(byValue), string(byPointer))
}

func TestResultJSONKeys(t *testing.T) {
	b, err := json.Marshal(sampleResult())
	require.NoError(t, err)
	var doc map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &doc))

	assert.Equal(t, []string{
		"cancelled", "cpu_time_exceeded", "duration_ms", "exit_code", "id", "image", "oci_runtime", "oom_killed",
		"outcome", "output_truncated", "pids_limit_hit", "runtime", "signal", "stderr", "stdout",
		"timed_out", "usage",
	}, slices.Sorted(maps.Keys(doc)))

	var usage map[string]any
	require.NoError(t, json.Unmarshal(doc["usage"], &usage))
	assert.Equal(t, map[string]any{"cpu_ms": 987.654, "memory_peak_bytes": float64(123 << 20)}, usage)

	var ms float64
	require.NoError(t, json.Unmarshal(doc["duration_ms"], &ms))
	assert.Equal(t, 1234.567, ms)

	var stdout map[string]any
	require.NoError(t, json.Unmarshal(doc["stdout"], &stdout))
	assert.Equal(t, map[string]any{
		"data": "hello\n", "encoding": "utf-8", "truncated": true, "dropped_bytes": float64(42),
	}, stdout)
}

func TestStreamJSONEncoding(t *testing.T) {
	for _, tc := range []struct {
		name     string
		data     []byte
		encoding string
	}{
		{"ascii", []byte("plain text\n"), "utf-8"},
		{"multibyte utf-8", []byte("héllo, 世界 🙂"), "utf-8"},
		{"invalid utf-8", []byte{0xff, 'a', 0xc3}, "base64"},
		{"truncated rune", []byte("世")[:2], "base64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(Stream{Data: tc.data, Dropped: 3})
			require.NoError(t, err)
			var raw struct{ Encoding string }
			require.NoError(t, json.Unmarshal(b, &raw))
			assert.Equal(t, tc.encoding, raw.Encoding)

			var got Stream
			require.NoError(t, json.Unmarshal(b, &got))
			assert.Equal(t, tc.data, got.Data)
			assert.Equal(t, int64(3), got.Dropped)
		})
	}
}

func TestStreamJSONRejectsUnknownEncoding(t *testing.T) {
	var s Stream
	assert.Error(t, json.Unmarshal([]byte(`{"data":"x","encoding":"rot13"}`), &s))
	assert.Error(t, json.Unmarshal([]byte(`{"data":"!!","encoding":"base64"}`), &s))
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name      string
		st        Stage
		code      int
		oomKills  uint64
		outcome   Outcome
		exitCode  int
		signal    string
		oomKilled bool
	}{
		{name: "exit 0", code: 0, outcome: OutcomeExited, exitCode: 0},
		{name: "exit 3", code: 3, outcome: OutcomeExited, exitCode: 3},
		{name: "exit 128", code: 128, outcome: OutcomeExited, exitCode: 128},
		{name: "SIGKILL without OOM", code: 137, outcome: OutcomeSignaled, exitCode: 137, signal: "SIGKILL"},
		{name: "SIGKILL with OOM", code: 137, oomKills: 1, outcome: OutcomeOOMKilled, exitCode: 137, signal: "SIGKILL", oomKilled: true},
		{name: "OOM kill of a child, task exits 1", code: 1, oomKills: 2, outcome: OutcomeExited, exitCode: 1, oomKilled: true},
		{name: "SIGTERM", code: 143, outcome: OutcomeSignaled, exitCode: 143, signal: "SIGTERM"},
		{name: "timed out", st: Stage{TimedOut: true}, code: 137, outcome: OutcomeTimedOut, exitCode: ExitTimedOut, signal: "SIGKILL"},
		{name: "timed out with OOM counter", st: Stage{TimedOut: true}, code: 137, oomKills: 1, outcome: OutcomeTimedOut, exitCode: ExitTimedOut, signal: "SIGKILL", oomKilled: true},
		{name: "cancelled", st: Stage{Cancelled: true}, code: 137, outcome: OutcomeCancelled, exitCode: ExitCancelled, signal: "SIGKILL"},
		{name: "exit 255", code: 255, outcome: OutcomeExited, exitCode: 255},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.st
			classify(&res, tc.code, tc.oomKills)
			assert.Equal(t, tc.outcome, res.Outcome)
			assert.Equal(t, tc.exitCode, res.ExitCode)
			assert.Equal(t, tc.signal, res.Signal)
			assert.Equal(t, tc.oomKilled, res.OOMKilled)
		})
	}
}
