//go:build linux

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// pistonClientDir holds the npm package piston-client (package.json and
// its lock), which `make deps` installs with npm ci.
const pistonClientDir = "piston"

// pistonCall is one call of drive.mjs.
type pistonCall struct {
	Op       string         `json:"op"`
	Language string         `json:"language,omitempty"`
	Code     string         `json:"code,omitempty"`
	Config   map[string]any `json:"config,omitempty"`
}

// pistonStage is Piston's "run" or "compile" object, as the client hands
// it over.
type pistonStage struct {
	Stdout  string  `json:"stdout"`
	Stderr  string  `json:"stderr"`
	Output  string  `json:"output"`
	Code    *int    `json:"code"`
	Signal  *string `json:"signal"`
	Status  *string `json:"status"`
	Message *string `json:"message"`
}

type pistonAnswer struct {
	Language string       `json:"language"`
	Version  string       `json:"version"`
	Run      pistonStage  `json:"run"`
	Compile  *pistonStage `json:"compile"`
	Message  string       `json:"message"`
	Success  *bool        `json:"success"`
	Error    string       `json:"error"`
}

// requireNode returns node and the installed client's directory. Where
// the suite must run (CI), a missing node or client fails the test.
func requireNode(t *testing.T) (node, dir string) {
	t.Helper()
	dir, err := filepath.Abs(pistonClientDir)
	require.NoError(t, err)
	node, err = exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", "piston-client", "package.json"))
	}
	if err != nil {
		msg := "the Piston client tests need node and the npm package piston-client: run make deps (it installs nodejs and npm, then npm ci in integration/piston): " + err.Error()
		if mustRun() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return node, dir
}

// drivePiston runs calls through piston-client against server.
// Each answer comes with the JSON the client returned and how long the
// call took.
func drivePiston(t *testing.T, node, dir, server string, calls ...pistonCall) ([]pistonAnswer, []json.RawMessage, []time.Duration) {
	t.Helper()
	in, err := json.Marshal(map[string]any{"server": server, "calls": calls})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "drive.mjs"))
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "node drive.mjs: %s", stderr.String())
	var raw []struct {
		Answer json.RawMessage `json:"answer"`
		MS     int64           `json:"ms"`
	}
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &raw), "%s", stdout.String())
	require.Len(t, raw, len(calls))
	var answers []pistonAnswer
	var docs []json.RawMessage
	var took []time.Duration
	for _, r := range raw {
		var a pistonAnswer
		_ = json.Unmarshal(r.Answer, &a) // runtimes() answers an array
		answers = append(answers, a)
		docs = append(docs, r.Answer)
		took = append(took, time.Duration(r.MS)*time.Millisecond)
	}
	return answers, docs, took
}

// TestPistonClientAgainstServe drives a real `serve --piston-addr` with
// the npm package piston-client 1.0.2, as a program written for Piston
// would: runtimes, a python and a C program with stdin and args, a
// compile error, a timeout, and an unknown language.
func TestPistonClientAgainstServe(t *testing.T) {
	debianEnv(t)
	node, dir := requireNode(t)
	addr := freePort(t)
	// The built images' tags name the Debian suite, not a version: the
	// config names python's; C's is 0.0.0, though the catalog's own
	// image, which is not there, is gcc:14.
	p := startServe(t, serveSetup{
		config: "[service]\npiston_addr = \"" + addr + "\"\npiston_versions = { python = \"3.11.2\" }\n",
		args:   []string{"--namespace", debianNamespace},
	})

	// stderr comes well after stdout, so "output" has them in that order.
	pyCode := "import sys, time\nname = sys.stdin.readline().strip()\nprint(f'hello {name}', sys.argv[1:], flush=True)\ntime.sleep(0.3)\nprint('to stderr', file=sys.stderr)\n"
	cCode := "#include <stdio.h>\nint main(int argc, char **argv) {\n  int n; if (scanf(\"%d\", &n) != 1) return 9;\n  printf(\"%d %s\\n\", n * 2, argc > 1 ? argv[1] : \"-\");\n  fprintf(stderr, \"done\\n\");\n  return 3;\n}\n"
	start := time.Now()
	answers, docs, took := drivePiston(t, node, dir, "http://"+addr,
		pistonCall{Op: "runtimes"},
		pistonCall{Op: "execute", Language: "python", Code: pyCode, Config: map[string]any{"stdin": "world", "args": []string{"a", "b c"}}},
		pistonCall{Op: "execute", Language: "c", Code: cCode, Config: map[string]any{"stdin": "21", "args": []string{"arg1"}}},
		pistonCall{Op: "execute", Language: "c", Code: "int main(void) { return undeclared; }\n", Config: map[string]any{"args": []string{}}},
		pistonCall{Op: "execute", Language: "python", Code: "while True:\n    pass\n", Config: map[string]any{"runTimeout": 1000, "args": []string{}}},
		pistonCall{Op: "execute", Language: "py", Code: "print(1)", Config: map[string]any{"version": "3.x", "args": []string{}}},
		pistonCall{Op: "execute", Language: "cobol", Code: "DISPLAY 'x'.", Config: map[string]any{"version": "*"}},
	)
	t.Logf("7 calls through piston-client in %s", time.Since(start).Round(time.Millisecond))

	t.Run("runtimes", func(t *testing.T) {
		var rts []map[string]any
		require.NoError(t, json.Unmarshal(docs[0], &rts), "%s", docs[0])
		byLang := map[string]map[string]any{}
		for _, rt := range rts {
			byLang[rt["language"].(string)] = rt
		}
		assert.Equal(t, map[string]any{"language": "python", "version": "3.11.2", "aliases": []any{"py", "py3", "python3"}}, byLang["python"])
		assert.Equal(t, map[string]any{"language": "c", "version": "0.0.0", "aliases": []any{"gcc"}, "runtime": "gcc"}, byLang["c"])
		assert.Contains(t, byLang, "javascript")
		assert.Contains(t, byLang, "c++")
	})
	t.Run("python with stdin and args", func(t *testing.T) {
		a := answers[1]
		t.Logf("the answer: %s", docs[1])
		assert.Equal(t, "python", a.Language)
		assert.Equal(t, "3.11.2", a.Version)
		assert.Nil(t, a.Compile, "python has no compile stage")
		assert.Equal(t, "hello world ['a', 'b c']\n", a.Run.Stdout, "%s", docs[1])
		assert.Equal(t, "to stderr\n", a.Run.Stderr)
		assert.Equal(t, "hello world ['a', 'b c']\nto stderr\n", a.Run.Output)
		require.NotNil(t, a.Run.Code, "%s", docs[1])
		assert.Equal(t, 0, *a.Run.Code)
		assert.Nil(t, a.Run.Signal)
	})
	t.Run("C with stdin, args and an exit status", func(t *testing.T) {
		a := answers[2]
		assert.Equal(t, "c", a.Language)
		require.NotNil(t, a.Compile, "%s", docs[2])
		require.NotNil(t, a.Compile.Code)
		assert.Equal(t, 0, *a.Compile.Code)
		assert.Equal(t, "42 arg1\n", a.Run.Stdout, "%s", docs[2])
		assert.Equal(t, "done\n", a.Run.Stderr)
		require.NotNil(t, a.Run.Code)
		assert.Equal(t, 3, *a.Run.Code)
		assert.Nil(t, a.Run.Signal)
		require.NotNil(t, a.Run.Status)
		assert.Equal(t, "RE", *a.Run.Status)
	})
	t.Run("compile error", func(t *testing.T) {
		a := answers[3]
		require.NotNil(t, a.Compile, "%s", docs[3])
		require.NotNil(t, a.Compile.Code)
		assert.NotEqual(t, 0, *a.Compile.Code)
		assert.Contains(t, a.Compile.Stderr, "undeclared", "%s", docs[3])
		assert.Equal(t, *a.Compile, a.Run, "as Piston, run repeats the failed compile stage")
	})
	t.Run("timeout", func(t *testing.T) {
		a := answers[4]
		assert.Nil(t, a.Run.Code, "%s", docs[4])
		require.NotNil(t, a.Run.Signal, "%s", docs[4])
		assert.Equal(t, "SIGKILL", *a.Run.Signal)
		require.NotNil(t, a.Run.Status)
		assert.Equal(t, "TO", *a.Run.Status)
		// run_timeout is 1000 ms: the call includes making and removing
		// the sandbox, not a default 3 s or 30 s timeout.
		assert.Greater(t, took[4], time.Second)
		assert.Less(t, took[4], 3*time.Second)
	})
	t.Run("alias and version range", func(t *testing.T) {
		a := answers[5]
		assert.Equal(t, "python", a.Language, "%s", docs[5])
		assert.Equal(t, "1\n", a.Run.Stdout)
	})
	t.Run("unknown language", func(t *testing.T) {
		assert.Equal(t, "cobol-* runtime is unknown", answers[6].Message, "%s", docs[6])
	})

	// A client that goes away cancels its task, which is killed and
	// removed.
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := doRequest(t, http.DefaultClient, ctx, http.MethodPost, "http://"+addr+"/api/v2/execute",
			`{"language":"python","version":"*","files":[{"content":"import time\ntime.sleep(60)"}],"run_timeout":60000}`, nil)
		errc <- err
	}()
	nsCtx := namespaces.WithNamespace(context.Background(), debianNamespace)
	require.Eventually(t, func() bool {
		ts, err := p.h.Client.TaskService().List(nsCtx, &tasksapi.ListTasksRequest{})
		require.NoError(t, err)
		return len(ts.Tasks) == 1 && ts.Tasks[0].Status == tasktypes.Status_RUNNING
	}, 30*time.Second, 20*time.Millisecond, "the task never ran")
	cancel()
	require.Error(t, <-errc)
	p.waitMetric(service.MetricTasks, "outcome", "cancelled", 1)
	p.waitMetric(service.MetricInFlight, "", "", 0)

	mfs := p.scrape()
	executed, _ := metric(t, mfs, service.MetricPistonRequests, "endpoint", "execute")
	assert.Equal(t, 7.0, executed)
	timedOut, _ := metric(t, mfs, service.MetricTasks, "outcome", "timed_out")
	assert.Equal(t, 1.0, timedOut)

	// Every task's containers and tasks are gone from the namespace.
	require.Equal(t, 0, p.stop())
	cs, err := p.h.Client.ContainerService().List(nsCtx)
	require.NoError(t, err)
	assert.Empty(t, cs)
	ts, err := p.h.Client.TaskService().List(nsCtx, &tasksapi.ListTasksRequest{})
	require.NoError(t, err)
	assert.Empty(t, ts.Tasks)
	assert.False(t, strings.Contains(p.stderr.String(), "cleanup failed"), "%s", p.stderr.String())
}
