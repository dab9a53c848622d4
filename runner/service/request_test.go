package service

import (
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
)

func decodeTask(t *testing.T, body string) (runner.Task, error) {
	t.Helper()
	req, err := DecodeRequest([]byte(body))
	if err != nil {
		return runner.Task{}, err
	}
	return TaskOf(req, runner.Limits{})
}

func TestDecodeRequestFull(t *testing.T) {
	task, err := decodeTask(t, `{
		"runtime": "python",
		"image": "example.test/python:3",
		"files": [
			{"name": "main.py", "content": "print(input())"},
			{"name": "data.bin", "content": "AAEC/w==", "encoding": "base64"},
			{"name": "run.sh", "content": "echo", "encoding": "utf-8", "executable": true}
		],
		"stdin": "aGkK", "stdin_encoding": "base64",
		"args": ["a", "b c"],
		"env": {"B": "2", "A": "1=one"},
		"pull": "never",
		"limits": {"timeout": "1m30s", "compile_timeout": 90, "memory": "256m", "cpus": 0.5,
		           "pids": "64", "output_limit": 4096, "tmp_size": "2m", "cpu_time": 2.5},
		"outputs": ["/tmp/out/*.png", "/tmp/result.json"]
	}`)
	require.NoError(t, err)
	assert.Equal(t, "python", task.Runtime)
	assert.Equal(t, "example.test/python:3", task.Image)
	assert.Equal(t, images.PullNever, task.Pull)
	assert.Equal(t, []runner.File{
		{Name: "main.py", Content: []byte("print(input())")},
		{Name: "data.bin", Content: []byte{0, 1, 2, 0xff}},
		{Name: "run.sh", Content: []byte("echo"), Executable: true},
	}, task.Files)
	stdin, err := io.ReadAll(task.Stdin)
	require.NoError(t, err)
	assert.Equal(t, "hi\n", string(stdin))
	assert.Equal(t, []string{"a", "b c"}, task.Args)
	assert.Equal(t, []string{"A=1=one", "B=2"}, task.Env, "sorted by name")
	assert.Equal(t, runner.Limits{
		Timeout: 90 * time.Second, CompileTimeout: 90 * time.Second, Memory: 256 << 20, CPUs: 0.5,
		Pids: 64, OutputLimit: 4096, TmpSize: 2 << 20, CPUTime: 2500 * time.Millisecond,
	}, task.Limits)
	assert.Equal(t, []string{"/tmp/out/*.png", "/tmp/result.json"}, task.Outputs)
}

func TestDecodeRequestLimitsKeepDefaultsWhenLeftOut(t *testing.T) {
	req, err := DecodeRequest([]byte(`{"runtime": "sh", "files": [{"content": "true"}], "limits": {"memory": "64m", "timeout": null}}`))
	require.NoError(t, err)
	base := runner.Limits{Timeout: 5 * time.Second, Memory: 1 << 30, Pids: 32}
	task, err := TaskOf(req, base)
	require.NoError(t, err)
	assert.Equal(t, runner.Limits{Timeout: 5 * time.Second, Memory: 64 << 20, Pids: 32}, task.Limits)
	assert.Nil(t, task.Stdin, "no stdin given")
	assert.Equal(t, "", task.Files[0].Name, "the runner names the entry file")
}

func TestDecodeRequestRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"empty body", ``, "the request body is empty"},
		{"malformed", `{"runtime": "sh",`, "malformed JSON"},
		{"syntax error", `{"runtime" "sh"}`, "malformed JSON at byte"},
		{"not an object", `["sh"]`, "must be a JSON object, not array"},
		{"two values", `{"runtime": "sh", "files": [{"content": "x"}]} {}`, "more than one JSON value"},
		{"trailing garbage", `{"runtime": "sh", "files": [{"content": "x"}]} x`, "more than one JSON value"},
		{"unknown field", `{"runtime": "sh", "files": [{"content": "x"}], "memory": "1g"}`, `unknown field "memory"`},
		{"unknown nested field", `{"runtime": "sh", "files": [{"content": "x", "mode": 7}]}`, `unknown field "mode"`},
		{"unknown limit", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"disk": "1g"}}`, `unknown field "disk"`},
		{"wrong type", `{"runtime": 7, "files": [{"content": "x"}]}`, "runtime: expected a string, got number"},
		{"wrong nested type", `{"runtime": "sh", "files": [{"content": 7}]}`, "files.content: expected a string, got number"},
		{"env as list", `{"runtime": "sh", "files": [{"content": "x"}], "env": ["A=1"]}`, "env: expected an object, got array"},
		{"bad pull policy", `{"runtime": "sh", "files": [{"content": "x"}], "pull": "sometimes"}`, `pull: "sometimes": give "missing"`},
		{"no runtime", `{"files": [{"content": "x"}]}`, "runtime: required"},
		{"unknown OCI runtime", `{"runtime": "sh", "files": [{"content": "x"}], "oci_runtime": "kata"}`, `oci_runtime: unknown OCI runtime "kata": give one of crun, runc, runsc`},
		{"no files", `{"runtime": "sh"}`, "files: required"},
		{"empty files", `{"runtime": "sh", "files": []}`, "files: required"},
		{"bad encoding", `{"runtime": "sh", "files": [{"content": "x", "encoding": "hex"}]}`, `files[0].encoding: "hex" is not an encoding`},
		{"bad base64", `{"runtime": "sh", "files": [{"content": "x"}, {"name": "b", "content": "!!", "encoding": "base64"}]}`, "files[1].content: is not valid base64"},
		{"bad stdin base64", `{"runtime": "sh", "files": [{"content": "x"}], "stdin": "%", "stdin_encoding": "base64"}`, "stdin: is not valid base64"},
		{"bad stdin encoding", `{"runtime": "sh", "files": [{"content": "x"}], "stdin_encoding": "latin1"}`, `stdin_encoding: "latin1" is not an encoding`},
		{"NUL in arg", `{"runtime": "sh", "files": [{"content": "x"}], "args": ["ok", "a\u0000b"]}`, "args[1]: holds a NUL byte"},
		{"empty env name", `{"runtime": "sh", "files": [{"content": "x"}], "env": {"": "x"}}`, "env: a variable has an empty name"},
		{"= in env name", `{"runtime": "sh", "files": [{"content": "x"}], "env": {"A=B": "x"}}`, `env["A=B"]: a variable name cannot hold '='`},
		{"NUL in env value", `{"runtime": "sh", "files": [{"content": "x"}], "env": {"A": "\u0000"}}`, `env["A"]: the value holds a NUL byte`},
		{"bad size", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"memory": "12qb"}}`, `limits.memory: size "12qb"`},
		{"fractional bytes", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"memory": 1.5}}`, "limits.memory: 1.5: give a whole number of bytes"},
		{"zero size", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"tmp_size": 0}}`, "limits.tmp_size: \"0\": give a size above zero"},
		{"negative size", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"output_limit": "-1"}}`, "limits.output_limit:"},
		{"bad duration", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"timeout": "soon"}}`, `limits.timeout: duration "soon"`},
		{"zero duration", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"timeout": 0}}`, "limits.timeout: \"0\": give a duration above zero"},
		{"negative duration", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"compile_timeout": "-1s"}}`, "limits.compile_timeout: \"-1s\": give a duration above zero"},
		{"bool limit", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"timeout": true}}`, "limits.timeout: expected a string or a number"},
		{"object limit", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"memory": {"mb": 1}}}`, "limits.memory: expected a string or a number"},
		{"bad cpus", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"cpus": "lots"}}`, `limits.cpus: "lots": give a number of CPUs`},
		{"zero cpus", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"cpus": 0}}`, "limits.cpus:"},
		{"fractional pids", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"pids": 1.5}}`, `limits.pids: "1.5": give a whole number`},
		{"negative pids", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"pids": -3}}`, "limits.pids:"},
		{"zero cpu time", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"cpu_time": 0}}`, "limits.cpu_time: \"0\": give a duration above zero"},
		{"negative cpu time", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"cpu_time": "-1s"}}`, "limits.cpu_time:"},
		{"bad cpu time", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"cpu_time": "lots"}}`, `limits.cpu_time: duration "lots"`},
		{"cpu time over max", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"cpu_time": "25h"}}`, `limits.cpu_time: "25h": give at most 24h0m0s`},
		{"bool cpu time", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"cpu_time": false}}`, "limits.cpu_time: expected a string or a number"},
		{"outputs not a list", `{"runtime": "sh", "files": [{"content": "x"}], "outputs": "/tmp/a"}`, "outputs: expected an array"},
		{"output outside /tmp", `{"runtime": "sh", "files": [{"content": "x"}], "outputs": ["/tmp/a", "/etc/passwd"]}`, `outputs[1]: output pattern "/etc/passwd" is not under /tmp`},
		{"output with ..", `{"runtime": "sh", "files": [{"content": "x"}], "outputs": ["/tmp/../etc/*"]}`, `outputs[0]: output pattern "/tmp/../etc/*" holds a ".." part`},
		{"relative output", `{"runtime": "sh", "files": [{"content": "x"}], "outputs": ["out/*.png"]}`, `outputs[0]:`},
		{"bad output pattern", `{"runtime": "sh", "files": [{"content": "x"}], "outputs": ["/tmp/[x"]}`, `outputs[0]:`},
		{"too many outputs", `{"runtime": "sh", "files": [{"content": "x"}], "outputs": ["/tmp/1","/tmp/2","/tmp/3","/tmp/4","/tmp/5","/tmp/6","/tmp/7","/tmp/8","/tmp/9","/tmp/10","/tmp/11","/tmp/12","/tmp/13","/tmp/14","/tmp/15","/tmp/16","/tmp/17","/tmp/18","/tmp/19","/tmp/20","/tmp/21","/tmp/22","/tmp/23","/tmp/24","/tmp/25","/tmp/26","/tmp/27","/tmp/28","/tmp/29","/tmp/30","/tmp/31","/tmp/32","/tmp/33"]}`, "outputs: 33 patterns given: at most 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeTask(t, tc.body)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "json: ", "the decoder's prefix is not for clients")
			assert.True(t, errors.Is(err, runner.ErrInvalidTask), "%v is not ErrInvalidTask", err)
			assert.True(t, errdefs.IsInvalidArgument(err), "%v is not an invalid argument", err)
		})
	}
}

func TestNewRequestRoundTrip(t *testing.T) {
	task := runner.Task{
		Runtime: "sh", Image: "example.test/sh:1", Pull: images.PullAlways, OCIRuntime: "runsc",
		Files: []runner.File{{Content: []byte("echo hi")}, {Name: "blob", Content: []byte{0xff, 0}, Executable: true}},
		Args:  []string{"x"},
		Env:   []string{"A=1", "B=x=y"},
		Limits: runner.Limits{Timeout: 1500 * time.Millisecond, CompileTimeout: time.Minute, Memory: 64 << 20,
			CPUs: 0.25, Pids: 16, OutputLimit: 100, TmpSize: 1 << 20, CPUTime: 750 * time.Millisecond},
		Outputs: []string{"/tmp/out/*.png", "/tmp/log.txt"},
	}
	req := NewRequest(task, []byte("in\n"))
	b, err := json.Marshal(req)
	require.NoError(t, err)
	back, err := DecodeRequest(b)
	require.NoError(t, err, "%s", b)
	got, err := TaskOf(back, runner.Limits{})
	require.NoError(t, err)
	stdin, _ := io.ReadAll(got.Stdin)
	assert.Equal(t, "in\n", string(stdin))
	got.Stdin = nil
	assert.Equal(t, task, got)
}

func TestNewRequestLeavesZeroLimitsOut(t *testing.T) {
	b, err := json.Marshal(NewRequest(runner.Task{Runtime: "sh", Files: []runner.File{{Content: []byte("x")}}}, nil))
	require.NoError(t, err)
	assert.JSONEq(t, `{"runtime": "sh", "files": [{"content": "x"}]}`, string(b))
}

// FuzzDecodeRequest feeds arbitrary bodies to the decoder: it must never
// panic, every refusal must be ErrInvalidTask, and what it accepts must
// survive encoding and decoding again unchanged.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{"runtime": "sh", "files": [{"content": "echo hi"}]}`,
		`{"runtime": "python", "files": [{"name": "a.py", "content": "AAE=", "encoding": "base64", "executable": true}],
		  "stdin": "x", "args": ["1"], "env": {"A": "B"},
		  "limits": {"timeout": "30s", "memory": 1048576, "cpus": "0.5", "pids": 6.4e1, "tmp_size": "1g"}}`,
		`{"limits": {"timeout": 1e400}}`,
		`{"runtime": "sh", "files": [{"content": "x"}], "limits": {"memory": "-0"}}`,
		`{"Runtime": "sh", "FILES": []}`,
		`[]`, `null`, `"x"`, `{} {}`, `{"files": [null]}`,
		// Empty collections, which re-encode as left out.
		`{"runtime": "a", "files": [{}], "args": [], "env": {}, "limits": {}}`,
		`{"runtime": "a", "files": [{"content": "", "encoding": "base64"}], "stdin_encoding": "utf-8"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(checkRoundTrip)
}

// checkRoundTrip asserts that a body is refused as invalid input, or
// accepted again, as the same task, once re-encoded.
func checkRoundTrip(t *testing.T, body []byte) {
	req, err := DecodeRequest(body)
	if err != nil {
		if !errors.Is(err, runner.ErrInvalidTask) {
			t.Fatalf("refusal %v is not ErrInvalidTask", err)
		}
		return
	}
	task, err := TaskOf(req, runner.Limits{})
	if err != nil {
		if !errors.Is(err, runner.ErrInvalidTask) {
			t.Fatalf("refusal %v is not ErrInvalidTask", err)
		}
		return
	}
	again, err := json.Marshal(req)
	if err != nil {
		t.Fatalf("re-encoding an accepted request: %v", err)
	}
	req2, err := DecodeRequest(again)
	if err != nil {
		t.Fatalf("decoding %s again: %v", again, err)
	}
	task2, err := TaskOf(req2, runner.Limits{})
	if err != nil {
		t.Fatalf("%s is refused the second time: %v", again, err)
	}
	stdin1, stdin2 := readAll(task.Stdin), readAll(task2.Stdin)
	task.Stdin, task2.Stdin = nil, nil
	assert.Equal(t, task, task2)
	assert.Equal(t, stdin1, stdin2)
}

func readAll(r io.Reader) []byte {
	if r == nil {
		return nil
	}
	b, _ := io.ReadAll(r)
	return b
}
