package service

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
)

// pistonDo sends one request to the service's Piston API, unauthenticated.
func pistonDo(t *testing.T, svc *Service, method, path, body string) answer {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	// What piston-client's fetch sends: a string body is text/plain.
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	rec := httptest.NewRecorder()
	svc.PistonHandler().ServeHTTP(rec, req)
	return answer{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
}

func newPistonService(t *testing.T, exec Executor, opts ...Option) *Service {
	t.Helper()
	svc, err := New(exec, opts...)
	require.NoError(t, err)
	return svc
}

// pistonMessage decodes Piston's error body, which holds exactly a message.
func pistonMessage(t *testing.T, a answer) string {
	t.Helper()
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(a.body), &doc), "%s", a)
	require.Len(t, doc, 1, "Piston's error body is {\"message\": ...} alone: %s", a)
	msg, ok := doc["message"].(string)
	require.True(t, ok, "%s", a)
	return msg
}

func TestPistonRuntimesNameTheCatalogAsPistonDoes(t *testing.T) {
	svc := newPistonService(t, &fakeExec{}, WithPistonVersions(map[string]string{"python": "3.11.2"}))
	a := pistonDo(t, svc, http.MethodGet, "/api/v2/runtimes", "")
	require.Equal(t, http.StatusOK, a.status, "%s", a)
	var got []map[string]any
	require.NoError(t, json.Unmarshal([]byte(a.body), &got))
	byLang := map[string]map[string]any{}
	for _, rt := range got {
		byLang[rt["language"].(string)] = rt
	}
	require.Len(t, byLang, len(images.DefaultCatalog()), "one entry per runtime: %s", a.body)

	assert.Equal(t, map[string]any{"language": "python", "version": "3.11.2", "aliases": []any{"py", "py3", "python3"}}, byLang["python"])
	assert.Equal(t, map[string]any{"language": "javascript", "version": "22.0.0", "aliases": []any{"node-javascript", "node-js", "js", "node"}, "runtime": "node"}, byLang["javascript"])
	assert.Equal(t, map[string]any{"language": "c++", "version": "14.0.0", "aliases": []any{"cpp", "g++"}, "runtime": "gcc"}, byLang["c++"])
	assert.Equal(t, map[string]any{"language": "c", "version": "14.0.0", "aliases": []any{"gcc"}, "runtime": "gcc"}, byLang["c"])
	assert.Equal(t, "8.0.0", byLang["csharp"]["version"])
	assert.Equal(t, "21.0.0", byLang["java"]["version"])
	// "sh" is the catalog's sh runtime, so it is not bash's alias here.
	assert.Equal(t, []any{}, byLang["bash"]["aliases"])
	assert.Equal(t, "sh", byLang["sh"]["language"])
}

func TestPistonVersionsMustBeVersionsOfKnownRuntimes(t *testing.T) {
	_, err := New(&fakeExec{}, WithPistonVersions(map[string]string{"python": "3.11"}))
	assert.ErrorContains(t, err, `piston version of runtime python: "3.11" is not a version such as 3.11.2`)
	_, err = New(&fakeExec{}, WithPistonVersions(map[string]string{"cobol": "1.0.0"}))
	assert.ErrorContains(t, err, "piston version of runtime cobol: no such runtime in the catalog")
}

func TestImageVersion(t *testing.T) {
	for ref, want := range map[string]string{
		"docker.io/library/python:3.11-slim":           "3.11.0",
		"docker.io/library/node:22-alpine":             "22.0.0",
		"mcr.microsoft.com/dotnet/sdk:8.0":             "8.0.0",
		"gcc:14.2.0":                                   "14.2.0",
		"localhost:5000/python:3.12.1.4@sha256:abc":    "3.12.1",
		"sandbox-runner.local/python:bookworm":         "0.0.0",
		"localhost:5000/python":                        "0.0.0",
		"docker.io/library/python@sha256:0123456789ab": "0.0.0",
	} {
		assert.Equal(t, want, ImageVersion(ref), ref)
	}
}

func TestPistonVersionRanges(t *testing.T) {
	v := func(s string) semver {
		sv, err := parseSemver(s)
		require.NoError(t, err)
		return sv
	}
	for _, c := range []struct {
		rng     string
		yes, no []string
	}{
		{"*", []string{"0.0.0", "3.11.2"}, nil},
		{"x", []string{"1.2.3"}, nil},
		{"3.11.2", []string{"3.11.2"}, []string{"3.11.3", "3.11.1", "3.12.2"}},
		{"=3.11.2", []string{"3.11.2"}, []string{"3.11.3"}},
		{"v3.11.2", []string{"3.11.2"}, []string{"3.11.3"}},
		{"3", []string{"3.0.0", "3.99.1"}, []string{"2.9.9", "4.0.0"}},
		{"3.x", []string{"3.0.0", "3.11.2"}, []string{"4.0.0"}},
		{"3.11", []string{"3.11.0", "3.11.9"}, []string{"3.12.0", "3.10.9"}},
		{"3.11.*", []string{"3.11.5"}, []string{"3.12.0"}},
		{"~3.11.2", []string{"3.11.2", "3.11.9"}, []string{"3.11.1", "3.12.0"}},
		{"~3", []string{"3.4.0"}, []string{"4.0.0"}},
		{"^3.1", []string{"3.1.0", "3.99.0"}, []string{"3.0.9", "4.0.0"}},
		{"^0.2.3", []string{"0.2.3", "0.2.9"}, []string{"0.3.0", "0.2.2"}},
		{"^0.0.3", []string{"0.0.3"}, []string{"0.0.4"}},
	} {
		r, err := parseVersionRange(c.rng)
		require.NoError(t, err, c.rng)
		for _, y := range c.yes {
			assert.True(t, r.matches(v(y)), "%s should select %s", c.rng, y)
		}
		for _, n := range c.no {
			assert.False(t, r.matches(v(n)), "%s should not select %s", c.rng, n)
		}
	}
	for _, bad := range []string{"latest", "3.x.1", "1.2.3.4", ">=3", "^", "3..1", "-1"} {
		_, err := parseVersionRange(bad)
		assert.Error(t, err, bad)
	}
}

func TestPistonExecuteMapsTheRequestOntoATask(t *testing.T) {
	exec := &fakeExec{}
	svc := newPistonService(t, exec, WithLimits(func(rt string) (runner.Limits, error) {
		return runner.Limits{Timeout: 10 * time.Second, Memory: 256 << 20, CompileMemory: 700 << 20}, nil
	}))
	a := pistonDo(t, svc, http.MethodPost, "/api/v2/execute", `{
		"language": "py", "version": "3.x",
		"files": [
			{"content": "print(input())"},
			{"name": "data.bin", "content": "AAEC/w==", "encoding": "base64"},
			{"content": "6869", "encoding": "hex"},
			{"name": "lib/util.py", "content": "x = 1", "encoding": "utf8"}
		],
		"stdin": "abc", "args": ["1", "two words"],
		"compile_timeout": 10000, "run_timeout": 1500, "run_cpu_time": 700,
		"compile_memory_limit": -1, "run_memory_limit": 104857600
	}`)
	require.Equal(t, http.StatusOK, a.status, "%s", a)
	seen := exec.seen()
	require.Len(t, seen, 1)
	task := seen[0]
	assert.Equal(t, "python", task.Runtime)
	require.Len(t, task.Files, 4)
	assert.Equal(t, runner.File{Name: "", Content: []byte("print(input())")}, task.Files[0], "the first file takes the runtime's name")
	assert.Equal(t, runner.File{Name: "data.bin", Content: []byte{0, 1, 2, 0xff}}, task.Files[1])
	assert.Equal(t, runner.File{Name: "file2.code", Content: []byte("hi")}, task.Files[2], "Piston's name for a file without one")
	assert.Equal(t, runner.File{Name: "lib/util.py", Content: []byte("x = 1")}, task.Files[3])
	stdin, err := io.ReadAll(task.Stdin)
	require.NoError(t, err)
	assert.Equal(t, "abc\n", string(stdin), "stdin ends with a newline, as Piston gives it")
	assert.Equal(t, []string{"1", "two words"}, task.Args)
	assert.Equal(t, 1500*time.Millisecond, task.Limits.Timeout)
	assert.Equal(t, 700*time.Millisecond, task.Limits.CPUTime, "run_cpu_time is the CPU-time limit")
	assert.Equal(t, 10*time.Second, task.Limits.CompileTimeout)
	assert.Equal(t, int64(100<<20), task.Limits.Memory)
	assert.Equal(t, int64(700<<20), task.Limits.CompileMemory, "-1 is the runtime's default")

	var resp map[string]any
	require.NoError(t, json.Unmarshal([]byte(a.body), &resp))
	assert.Equal(t, "python", resp["language"], "the language's name, not the alias")
	assert.Equal(t, "3.11.0", resp["version"])
	assert.NotContains(t, resp, "compile", "python has no compile stage")
}

func TestPistonExecuteDefaults(t *testing.T) {
	exec := &fakeExec{}
	svc := newPistonService(t, exec, WithLimits(func(string) (runner.Limits, error) {
		return runner.Limits{Timeout: 7 * time.Second}, nil
	}))
	// What piston-client sends when it is given only code.
	a := pistonDo(t, svc, http.MethodPost, "/api/v2/execute", `{"language":"javascript","version":"22.0.0","files":[{"content":"console.log(1)"}],"stdin":"","args":[],"compile_timeout":10000,"run_timeout":3000,"compile_memory_limit":-1,"run_memory_limit":-1}`)
	require.Equal(t, http.StatusOK, a.status, "%s", a)
	a = pistonDo(t, svc, http.MethodPost, "/api/v2/execute", `{"language":"node","version":"*","files":[{"content":""}],"run_timeout":null,"run_memory_limit":0}`)
	require.Equal(t, http.StatusOK, a.status, "%s", a)
	seen := exec.seen()
	require.Len(t, seen, 2)
	assert.Equal(t, "node", seen[0].Runtime)
	assert.Equal(t, 3*time.Second, seen[0].Limits.Timeout)
	assert.Nil(t, seen[0].Stdin, "empty stdin: none at all")
	assert.Nil(t, seen[0].Args)
	assert.Equal(t, 7*time.Second, seen[1].Limits.Timeout, "null is the default")
	assert.Zero(t, seen[1].Limits.Memory, "0 is the default")
}

func TestPistonExecuteRefusesBadRequestsInPistonsShape(t *testing.T) {
	exec := &fakeExec{}
	svc := newPistonService(t, exec)
	for _, c := range []struct{ body, want string }{
		{``, "the request body is empty"},
		{`[]`, "must be a JSON object"},
		{`{"version":"*","files":[{"content":"x"}]}`, "language is required as a string"},
		{`{"language":3,"version":"*","files":[]}`, "language: expected a string, got number"},
		{`{"language":"python","files":[{"content":"x"}]}`, "version is required as a string"},
		{`{"language":"python","version":"*"}`, "files is required as an array"},
		{`{"language":"python","version":"*","files":[]}`, "files: give at least one file"},
		{`{"language":"python","version":"*","files":[{"name":"a.py"}]}`, "files[0].content is required as a string"},
		{`{"language":"cobol","version":"*","files":[{"content":"x"}]}`, "cobol-* runtime is unknown"},
		{`{"language":"python","version":"2.x","files":[{"content":"x"}]}`, "python-2.x runtime is unknown"},
		{`{"language":"python","version":"latest","files":[{"content":"x"}]}`, `version: "latest": give *, an exact version`},
		{`{"language":"python","version":"*","files":[{"content":"x","encoding":"latin1"}]}`, `files[0].encoding: "latin1" is not an encoding: give utf8 (the default), base64 or hex`},
		{`{"language":"python","version":"*","files":[{"content":"zz","encoding":"hex"}]}`, "files[0].content: is not valid hex"},
		{`{"language":"python","version":"*","files":[{"content":"!!","encoding":"base64"}]}`, "files[0].content: is not valid base64"},
		{`{"language":"python","version":"*","files":[{"content":"x"}],"run_timeout":"3000"}`, "run_timeout: expected a number, got string"},
		{`{"language":"python","version":"*","files":[{"content":"x"}],"run_timeout":-1}`, "run_timeout: -1: give milliseconds above zero"},
		{`{"language":"python","version":"*","files":[{"content":"x"}],"compile_timeout":1e12}`, "compile_timeout: 1e+12: give milliseconds above zero"},
		{`{"language":"python","version":"*","files":[{"content":"x"}],"run_memory_limit":-2}`, "run_memory_limit: -2: give a whole number of bytes above zero, or -1"},
		{`{"language":"python","version":"*","files":[{"content":"x"}],"compile_memory_limit":1.5}`, "compile_memory_limit: 1.5: give a whole number of bytes"},
		{`{"language":"python","version":"*","files":[{"content":"x"}],"run_memory_limit":1024}`, "memory"},
		{`{"language":"python","version":"*","files":[{"content":"x"}],"compile_cpu_time":1000}`, "compile_cpu_time: 1000: the compile stage has no CPU-time limit"},
		{`{"language":"python","version":"*","files":[{"content":"x"}],"run_cpu_time":-5}`, "run_cpu_time: -5: give milliseconds"},
		{`{"language":"python","version":"*","files":[{"content":"x"}],"args":["a\u0000b"]}`, "args[0]: holds a NUL byte"},
		{`{"language":"python","version":"*","files":[{"content":"x"}],"args":[1]}`, "args: expected a string, got number"},
		{`{"language":"python","version":"*","files":[{"name":"../x.py","content":"x"}]}`, "../x.py"},
		{`{"language":"python","version":"*","files":[{"content":"x"}],"stdout":"y"}`, `unknown field "stdout"`},
		{`{"language":"python","version":"*","files":[{"content":"x"}]} {}`, "more than one JSON value"},
	} {
		a := pistonDo(t, svc, http.MethodPost, "/api/v2/execute", c.body)
		assert.Equal(t, http.StatusBadRequest, a.status, "%s: %s", c.body, a)
		assert.Contains(t, pistonMessage(t, a), c.want, c.body)
	}
	assert.Empty(t, exec.seen(), "nothing ran")

	a := pistonDo(t, svc, http.MethodGet, "/api/v2/execute", "")
	assert.Equal(t, http.StatusMethodNotAllowed, a.status)
	assert.Equal(t, "GET /api/v2/execute: use POST", pistonMessage(t, a))
	a = pistonDo(t, svc, http.MethodPost, "/api/v2/runtimes", "")
	assert.Equal(t, http.StatusMethodNotAllowed, a.status)
	a = pistonDo(t, svc, http.MethodGet, "/v1/exec", "")
	assert.Equal(t, http.StatusNotFound, a.status)
	assert.Contains(t, pistonMessage(t, a), "answers Piston's POST /api/v2/execute and GET /api/v2/runtimes")
}

// stageResult writes chunks to the task's streams, as a real task's
// output arrives.
func stageResult(task runner.Task, chunks [][2]string) {
	for _, c := range chunks {
		w := task.Stdout
		if c[0] == "err" {
			w = task.Stderr
		}
		_, _ = io.WriteString(w, c[1])
	}
}

func TestPistonResultsInPistonsShape(t *testing.T) {
	for _, c := range []struct {
		name     string
		language string
		run      func(ctx context.Context, t runner.Task) (*runner.Result, error)
		want     string
	}{
		{"exited", "python", func(ctx context.Context, task runner.Task) (*runner.Result, error) {
			stageResult(task, [][2]string{{"out", "a\n"}, {"err", "b\n"}, {"out", "c\n"}})
			return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeExited, Duration: 12 * time.Millisecond,
				Stdout: runner.Stream{Data: []byte("a\nc\n")}, Stderr: runner.Stream{Data: []byte("b\n")},
				Usage: runner.Usage{CPU: 5 * time.Millisecond, MemoryPeak: 4096}}}, nil
		}, `{"language":"python","version":"3.11.0","run":{"stdout":"a\nc\n","stderr":"b\n","output":"a\nb\nc\n","code":0,"signal":null,"message":null,"status":null,"memory":4096,"cpu_time":5,"wall_time":12}}`},
		{"non-zero exit", "python", func(ctx context.Context, task runner.Task) (*runner.Result, error) {
			return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeExited, ExitCode: 3}}, nil
		}, `{"language":"python","version":"3.11.0","run":{"stdout":"","stderr":"","output":"","code":3,"signal":null,"message":"Exited with error status 3","status":"RE","memory":null,"cpu_time":0,"wall_time":0}}`},
		{"timed out", "python", func(ctx context.Context, task runner.Task) (*runner.Result, error) {
			return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeTimedOut, TimedOut: true, ExitCode: runner.ExitTimedOut}}, nil
		}, `{"language":"python","version":"3.11.0","run":{"stdout":"","stderr":"","output":"","code":null,"signal":"SIGKILL","message":"Time limit exceeded (wall clock)","status":"TO","memory":null,"cpu_time":0,"wall_time":0}}`},
		{"cpu time", "python", func(ctx context.Context, task runner.Task) (*runner.Result, error) {
			return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeCPUTimeExceeded, CPUTimeExceeded: true, ExitCode: 152}}, nil
		}, `{"language":"python","version":"3.11.0","run":{"stdout":"","stderr":"","output":"","code":null,"signal":"SIGKILL","message":"Time limit exceeded (CPU time)","status":"TO","memory":null,"cpu_time":0,"wall_time":0}}`},
		{"signaled", "python", func(ctx context.Context, task runner.Task) (*runner.Result, error) {
			return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeSignaled, Signal: "SIGSEGV", ExitCode: 139}}, nil
		}, `{"language":"python","version":"3.11.0","run":{"stdout":"","stderr":"","output":"","code":null,"signal":"SIGSEGV","message":"Caught fatal signal 11","status":"SG","memory":null,"cpu_time":0,"wall_time":0}}`},
		{"oom", "python", func(ctx context.Context, task runner.Task) (*runner.Result, error) {
			return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeOOMKilled, OOMKilled: true, Signal: "SIGKILL", ExitCode: 137}}, nil
		}, `{"language":"python","version":"3.11.0","run":{"stdout":"","stderr":"","output":"","code":null,"signal":"SIGKILL","message":"Out of memory: killed at the memory limit","status":"SG","memory":null,"cpu_time":0,"wall_time":0}}`},
		{"output cut", "python", func(ctx context.Context, task runner.Task) (*runner.Result, error) {
			return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeExited, Stdout: runner.Stream{Data: []byte("y"), Dropped: 9}}}, nil
		}, `{"language":"python","version":"3.11.0","run":{"stdout":"y","stderr":"","output":"","code":0,"signal":null,"message":"stdout length exceeded","status":"OL","memory":null,"cpu_time":0,"wall_time":0}}`},
		{"compiled", "c", func(ctx context.Context, task runner.Task) (*runner.Result, error) {
			o := runner.ObserverOf(ctx)
			o.ObserveStep(runner.StageCompile, runner.StepCreate, 0)
			stageResult(task, [][2]string{{"err", "warning\n"}})
			o.ObserveStep(runner.StageCompile, runner.StepTeardown, 0)
			stageResult(task, [][2]string{{"out", "42\n"}})
			return &runner.Result{
				Compile: &runner.Stage{Outcome: runner.OutcomeExited, Stderr: runner.Stream{Data: []byte("warning\n")}},
				Stage:   runner.Stage{Outcome: runner.OutcomeExited, Stdout: runner.Stream{Data: []byte("42\n")}},
			}, nil
		}, `{"language":"c","version":"14.0.0","run":{"stdout":"42\n","stderr":"","output":"42\n","code":0,"signal":null,"message":null,"status":null,"memory":null,"cpu_time":0,"wall_time":0},"compile":{"stdout":"","stderr":"warning\n","output":"warning\n","code":0,"signal":null,"message":null,"status":null,"memory":null,"cpu_time":0,"wall_time":0}}`},
		{"compile failed", "c", func(ctx context.Context, task runner.Task) (*runner.Result, error) {
			o := runner.ObserverOf(ctx)
			o.ObserveStep(runner.StageCompile, runner.StepCreate, 0)
			stageResult(task, [][2]string{{"err", "error: x\n"}})
			o.ObserveStep(runner.StageCompile, runner.StepTeardown, 0)
			return &runner.Result{
				Compile: &runner.Stage{Outcome: runner.OutcomeExited, ExitCode: 1, Stderr: runner.Stream{Data: []byte("error: x\n")}},
				Stage:   runner.Stage{Outcome: runner.OutcomeCompileFailed, ExitCode: 1},
			}, nil
		}, `{"language":"c","version":"14.0.0","run":{"stdout":"","stderr":"error: x\n","output":"error: x\n","code":1,"signal":null,"message":"Exited with error status 1","status":"RE","memory":null,"cpu_time":0,"wall_time":0},"compile":{"stdout":"","stderr":"error: x\n","output":"error: x\n","code":1,"signal":null,"message":"Exited with error status 1","status":"RE","memory":null,"cpu_time":0,"wall_time":0}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			svc := newPistonService(t, &fakeExec{run: c.run})
			a := pistonDo(t, svc, http.MethodPost, "/api/v2/execute", `{"language":"`+c.language+`","version":"*","files":[{"content":"x"}]}`)
			require.Equal(t, http.StatusOK, a.status, "%s", a)
			assert.JSONEq(t, c.want, a.body)
		})
	}
}

func TestPistonRunnerFailuresKeepPistonsShape(t *testing.T) {
	svc := newPistonService(t, &fakeExec{run: func(context.Context, runner.Task) (*runner.Result, error) {
		return nil, runner.ErrSandboxUnavailable
	}})
	a := pistonDo(t, svc, http.MethodPost, "/api/v2/execute", `{"language":"python","version":"*","files":[{"content":"x"}]}`)
	assert.Equal(t, http.StatusServiceUnavailable, a.status)
	assert.Equal(t, runner.ErrSandboxUnavailable.Error(), pistonMessage(t, a))
}

func TestPistonAddressMustBeLoopbackWithoutAToken(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:2000", "127.1.2.3:2000", "[::1]:2000", "localhost:2000"} {
		assert.NoError(t, CheckPistonAddr(addr, false), addr)
	}
	for _, addr := range []string{"0.0.0.0:2000", ":2000", "[::]:2000", "192.0.2.1:2000"} {
		err := CheckPistonAddr(addr, false)
		assert.ErrorContains(t, err, addr+" is not a loopback address: Piston's API has no authentication", addr)
		assert.NoError(t, CheckPistonAddr(addr, true), addr)
	}
	assert.ErrorContains(t, CheckPistonAddr("127.0.0.1", false), `"127.0.0.1": give host:port, such as 127.0.0.1:2000`)
	_, err := ListenPiston("0.0.0.0:0", false)
	assert.ErrorContains(t, err, "not a loopback address")
}

// startPiston serves svc's API on a unix socket and Piston's on a
// listener of its own, at addr.
func startPiston(t *testing.T, exec Executor, addr string, haveToken bool, opts ...Option) (*testServer, string) {
	t.Helper()
	pl, err := ListenPiston(addr, haveToken)
	require.NoError(t, err)
	ts := startServiceOn(t, exec, []net.Listener{pl}, opts...)
	_, port, err := net.SplitHostPort(pl.Addr().String())
	require.NoError(t, err)
	return ts, "http://127.0.0.1:" + port
}

func httpDo(t *testing.T, ctx context.Context, method, url, body string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func TestPistonListenerOnLoopbackNeedsNoToken(t *testing.T) {
	exec := &fakeExec{}
	ts, base := startPiston(t, exec, "127.0.0.1:0", false)
	a := httpDo(t, context.Background(), http.MethodPost, base+"/api/v2/execute", `{"language":"python","version":"*","files":[{"content":"x"}]}`)
	require.Equal(t, http.StatusOK, a.status, "%s", a)
	// The listener answers Piston's API only; the socket does not answer it.
	a = httpDo(t, context.Background(), http.MethodPost, base+"/v1/exec", `{"runtime":"python","files":[{"content":"x"}]}`)
	assert.Equal(t, http.StatusNotFound, a.status)
	assert.Equal(t, http.StatusNotFound, ts.get(t, "/api/v2/runtimes").status)
	assert.Len(t, exec.seen(), 1)

	mfs := ts.scrape(t)
	assert.Equal(t, 1.0, seriesValue(t, mfs, MetricPistonRequests, map[string]string{"endpoint": "execute", "code": "200"}))
	assert.Equal(t, 1.0, seriesValue(t, mfs, MetricPistonRequests, map[string]string{"endpoint": "other", "code": "404"}))
	assert.Equal(t, 1.0, seriesValue(t, mfs, MetricTasks, map[string]string{"outcome": "exited", "runtime": "python"}))
}

func TestPistonListenerOffLoopbackNeedsTheToken(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(token, []byte("s3cret\n"), 0o600))
	exec := &fakeExec{}
	// Every address of the host: not loopback, though the test reaches
	// it through 127.0.0.1.
	ts, base := startPiston(t, exec, "0.0.0.0:0", true, WithToken("s3cret"))
	body := `{"language":"python","version":"*","files":[{"content":"x"}]}`
	a := httpDo(t, context.Background(), http.MethodPost, base+"/api/v2/execute", body)
	assert.Equal(t, http.StatusUnauthorized, a.status, "%s", a)
	assert.Contains(t, pistonMessage(t, a), "needs an Authorization: Bearer TOKEN header")
	a = httpDo(t, context.Background(), http.MethodGet, base+"/api/v2/runtimes", "", "Authorization", "Bearer wrong")
	assert.Equal(t, http.StatusUnauthorized, a.status, "%s", a)
	assert.Empty(t, exec.seen())

	a = httpDo(t, context.Background(), http.MethodPost, base+"/api/v2/execute", body, "Authorization", "Bearer s3cret")
	assert.Equal(t, http.StatusOK, a.status, "%s", a)
	assert.Len(t, exec.seen(), 1)
	assert.Equal(t, 2.0, seriesValue(t, ts.scrape(t), MetricRejected, map[string]string{"reason": RejectUnauthorized}))
}

func TestServeRefusesAPistonListenerOffLoopbackWithoutAToken(t *testing.T) {
	l, err := net.Listen("tcp", "0.0.0.0:0")
	require.NoError(t, err)
	svc := newPistonService(t, &fakeExec{})
	err = svc.Serve(context.Background(), []net.Listener{&PistonListener{Listener: l}})
	assert.ErrorContains(t, err, "needs a bearer token")
}

func TestPistonClientGoneCancelsTheTask(t *testing.T) {
	started, cancelled := make(chan struct{}), make(chan struct{})
	exec := &fakeExec{run: func(ctx context.Context, task runner.Task) (*runner.Result, error) {
		close(started)
		res, err := blockUntilCancelled(ctx, task)
		close(cancelled)
		return res, err
	}}
	ts, base := startPiston(t, exec, "127.0.0.1:0", false)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v2/execute",
		strings.NewReader(`{"language":"bash","version":"*","files":[{"content":"sleep 100"}]}`))
	require.NoError(t, err)
	_, err = http.DefaultClient.Do(req)
	require.Error(t, err)
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the task was not cancelled when its client went away")
	}
	require.Eventually(t, func() bool {
		v := seriesValue(t, ts.scrape(t), MetricTasks, map[string]string{"outcome": "cancelled", "runtime": "bash"})
		return v == 1
	}, 5*time.Second, 20*time.Millisecond)
}
