package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// echoExec answers every task with its code on stdout, its stdin on
// stderr, and exit status 3, and remembers the tasks.
type echoExec struct {
	mu    sync.Mutex
	tasks []runner.Task
}

func (e *echoExec) Run(_ context.Context, t runner.Task) (*runner.Result, error) {
	e.mu.Lock()
	e.tasks = append(e.tasks, t)
	e.mu.Unlock()
	var stdin []byte
	if t.Stdin != nil {
		stdin, _ = io.ReadAll(t.Stdin)
	}
	return &runner.Result{ID: runner.NewID(), Runtime: t.Runtime, Stage: runner.Stage{
		Outcome: runner.OutcomeExited, ExitCode: 3,
		Stdout: runner.Stream{Data: t.Files[0].Content}, Stderr: runner.Stream{Data: stdin},
	}}, nil
}

func (e *echoExec) seen() []runner.Task {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]runner.Task(nil), e.tasks...)
}

// fakeService serves exec on a unix socket and returns the socket.
func fakeService(t *testing.T, exec service.Executor) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "srvia-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "s.sock")
	svc, err := service.New(exec)
	require.NoError(t, err)
	ls, err := service.Listen(service.ListenConfig{Socket: socket})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx, ls) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	return socket
}

func TestExecViaServiceOutputAndStatus(t *testing.T) {
	fe := &echoExec{}
	socket := fakeService(t, fe)
	code, stdout, stderr := runCLI(t, strings.NewReader("piped\n"), "exec", "--via", "service", "--socket", socket,
		"--runtime", "sh", "--timeout", "5s", "-e", "A=1", "-c", "echo hi", "--", "arg")
	assert.Equal(t, 3, code, stderr)
	assert.Equal(t, "echo hi", stdout)
	assert.Equal(t, "piped\n", stderr)
	tasks := fe.seen()
	require.Len(t, tasks, 1)
	assert.Equal(t, 5*time.Second, tasks[0].Limits.Timeout)
	assert.Equal(t, []string{"A=1"}, tasks[0].Env)
	assert.Equal(t, []string{"arg"}, tasks[0].Args)
}

func TestExecViaAutoUsesTheSocketFromTheEnvironment(t *testing.T) {
	fe := &echoExec{}
	t.Setenv("SANDBOX_RUNNER_SOCKET", fakeService(t, fe))
	code, stdout, _ := runCLI(t, nil, "exec", "--runtime", "sh", "-c", "auto")
	assert.Equal(t, 3, code)
	assert.Equal(t, "auto", stdout)
	assert.Len(t, fe.seen(), 1)
}

func TestExecViaServiceJSON(t *testing.T) {
	socket := fakeService(t, &echoExec{})
	code, stdout, _ := runCLI(t, nil, "exec", "--via", "service", "--socket", socket, "--json", "--runtime", "sh", "-c", "x")
	assert.Equal(t, 3, code)
	var res runner.Result
	require.NoError(t, json.Unmarshal([]byte(stdout), &res), stdout)
	assert.Equal(t, "x", string(res.Stdout.Data))
	assert.Regexp(t, `^sr-`, res.ID)
}

func TestExecViaServiceRefusalKeepsItsExitStatus(t *testing.T) {
	socket := fakeService(t, &echoExec{})
	// A runtime this config has and the service's does not: the service
	// refuses it, and exec exits as a direct run refusing it would.
	cfg := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(cfg, []byte("[runtimes.local]\nimage = \"x\"\nfile = \"m\"\nrun = [\"m\"]\n"), 0o644))
	code, _, stderr := runCLI(t, nil, "exec", "--config", cfg, "--via", "service", "--socket", socket, "--runtime", "local", "-c", "x")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, `unknown runtime "local"`)
}

func TestExecViaChoices(t *testing.T) {
	absent := filepath.Join(t.TempDir(), "absent.sock")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown mode", []string{"--via", "sometimes"}, exitUsage, `--via "sometimes"`},
		{"service with a containerd of its own", []string{"--via", "service", "--address", absent}, exitUsage, "--address cannot be used with --via service"},
		{"no service", []string{"--via", "service", "--socket", absent}, exitRunner, absent},
		{"no service, JSON", []string{"--via", "service", "--socket", absent, "--json"}, exitRunner, absent},
		// A task given its own containerd runs here, which here is none.
		{"auto with a local flag", []string{"--socket", fakeService(t, &echoExec{}), "--address", absent + "-ctrd"}, exitRunner, absent + "-ctrd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, append([]string{"exec", "--runtime", "sh", "-c", "true"}, tc.args...)...)
			assert.Equal(t, tc.code, code, stderr)
			assert.Contains(t, stderr, tc.want)
			if strings.Contains(tc.name, "JSON") {
				assert.Contains(t, stdout, `"kind": "unavailable"`)
			}
		})
	}
}
