package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// outcomeExec ends a task as its first file says: "timeout" times out,
// anything else exits 0.
type outcomeExec struct{}

func (outcomeExec) Run(_ context.Context, t runner.Task) (*runner.Result, error) {
	res := &runner.Result{ID: runner.NewID(), Runtime: t.Runtime, Stage: runner.Stage{Outcome: runner.OutcomeExited}}
	if string(t.Files[0].Content) == "timeout" {
		res.Outcome, res.TimedOut, res.ExitCode = runner.OutcomeTimedOut, true, runner.ExitTimedOut
	}
	return res, nil
}

// statusService serves outcomeExec with opts on a unix socket and on
// TCP, and returns the socket and the TCP address.
func statusService(t *testing.T, opts ...service.Option) (socket, tcp string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "srstatus-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket = filepath.Join(dir, "s.sock")
	svc, err := service.New(outcomeExec{}, append(opts, service.WithToken("status-token"))...)
	require.NoError(t, err)
	ls, err := service.Listen(service.ListenConfig{Socket: socket})
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx, append(ls, l)) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	return socket, l.Addr().String()
}

func sendTasks(t *testing.T, socket string, contents ...string) {
	t.Helper()
	c := service.NewClient(socket)
	for _, content := range contents {
		_, err := c.Exec(context.Background(), service.Request{Runtime: "sh", Files: []service.File{{Content: content}}})
		require.NoError(t, err)
	}
}

func TestStatusPrintsTheSuccessMetrics(t *testing.T) {
	rep := runner.SweepReport{SweepCounts: runner.SweepCounts{Containers: 1, Tasks: 1}}
	socket, _ := statusService(t, service.WithSweep(rep, nil), service.WithVersion("v1.2.3"),
		service.WithContainerdProbe(func(context.Context) error { return nil }, 0))
	sendTasks(t, socket, "echo", "echo")

	code, out, errOut := runCLI(t, nil, "status", "--socket", socket)
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	for _, want := range []string{
		"version            v1.2.3",
		"containerd         reachable",
		"tasks              2 (0 running, 0 queued)",
		"success rate       100%",
		"timeout rate       0%",
		"leftovers          2 found, 2 removed",
		"every target met",
	} {
		assert.Contains(t, out, want)
	}

	t.Setenv("SANDBOX_RUNNER_SOCKET", socket)
	code, out, _ = runCLI(t, nil, "status", "--json")
	require.Equal(t, exitOK, code)
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &doc), out)
	assert.Equal(t, 2.0, doc["tasks"])
	assert.Equal(t, 1.0, doc["success_rate"])
	assert.Equal(t, 0.0, doc["timeout_rate"])
	assert.Equal(t, true, doc["containerd_up"])
	assert.Equal(t, map[string]any{"containers": 1.0, "tasks": 1.0, "snapshots": 0.0, "leases": 0.0, "dirs": 0.0, "mounts": 0.0, "identities": 0.0}, doc["leftovers_removed"])
	assert.Equal(t, []any{}, doc["missed"])
}

func TestStatusFailsWhenATargetIsMissed(t *testing.T) {
	socket, tcp := statusService(t)
	sendTasks(t, socket, "echo", "timeout")
	code, out, _ := runCLI(t, nil, "status", "--socket", socket)
	assert.Equal(t, exitFailed, code)
	assert.Contains(t, out, "MISSED: success rate 50% is not above 99%")
	assert.Contains(t, out, "MISSED: timeout rate 50% is not under 0.1%")
	assert.Contains(t, out, "containerd         not probed")

	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("status-token\n"), 0o600))
	code, out, errOut := runCLI(t, nil, "status", "--tcp", tcp, "--token-file", tokenFile, "--json")
	assert.Equal(t, exitFailed, code, errOut)
	var st service.Status
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	assert.Equal(t, 2.0, st.Tasks)
	assert.Len(t, st.Missed, 2)
}

func TestStatusRefusals(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--socket", filepath.Join(dir, "none.sock")}, exitRunner, "no service at"},
		{[]string{"--tcp", "127.0.0.1:1"}, exitUsage, "needs --token-file"},
		{[]string{"--token-file", "x"}, exitUsage, "--token-file is for --tcp"},
		{[]string{"--tcp", "127.0.0.1:1", "--token-file", filepath.Join(dir, "missing")}, exitUsage, "token file"},
		{[]string{"extra"}, exitUsage, "takes no arguments"},
	} {
		code, _, errOut := runCLI(t, nil, append([]string{"status"}, c.args...)...)
		assert.Equal(t, c.code, code, "%v: %s", c.args, errOut)
		assert.Contains(t, errOut, c.want, strings.Join(c.args, " "))
	}
}
