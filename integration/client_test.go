package integration

import (
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

// TestExampleClientRunsATask runs contrib/examples/client, the program
// that imports only runner/api and runner/service/client, against a real
// service: it prints the task's result document and exits with its
// status; a refused request prints the service's kind and message.
func TestExampleClientRunsATask(t *testing.T) {
	p := startServe(t, serveSetup{})
	bin := filepath.Join(t.TempDir(), "client")
	build := exec.Command("go", "build", "-o", bin, "./contrib/examples/client")
	build.Dir = ".."
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	cmd := exec.Command(bin, "-socket", p.socket, "-runtime", "sh", "-code", "echo hi; cat; exit 3", "-stdin", "typed", "-memory", "64m")
	stdout, err := cmd.Output()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "the client exits with the task's status: %v", err)
	assert.Equal(t, 3, exit.ExitCode())
	var res runner.Result
	require.NoError(t, json.Unmarshal(stdout, &res), "%s", stdout)
	assert.Equal(t, runner.OutcomeExited, res.Outcome)
	assert.Equal(t, 3, res.ExitCode)
	assert.Equal(t, "hi\ntyped", string(res.Stdout.Data))
	assert.Equal(t, "sh", res.Runtime)

	cmd = exec.Command(bin, "-socket", p.socket, "-runtime", "sh", "-code", "true", "-memory", "0")
	combined, err := cmd.CombinedOutput()
	require.True(t, errors.As(err, &exit), "%v", err)
	assert.Equal(t, 1, exit.ExitCode())
	assert.Contains(t, string(combined), `the service answered 400 (invalid_input): limits.memory: "0": give a size above zero`)
}
