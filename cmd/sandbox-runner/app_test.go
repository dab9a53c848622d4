package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner/host"
)

// runCLI runs the command line args with stdin as standard input and
// returns the exit status and what went to stdout and stderr.
func runCLI(t *testing.T, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	// A config file on this host must not change what the tests see.
	empty := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	t.Setenv("SANDBOX_RUNNER_CONFIG", empty)
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, stdio{in: stdin, out: &out, err: &errOut})
	return code, out.String(), errOut.String()
}

func TestRunNoArgs(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil)
	assert.Equal(t, exitUsage, code)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "Usage: sandbox-runner COMMAND")
}

func TestRunHelp(t *testing.T) {
	for _, arg := range []string{"help", "--help", "-h"} {
		t.Run(arg, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, arg)
			assert.Equal(t, exitOK, code)
			assert.Contains(t, stdout, "Usage: sandbox-runner COMMAND")
			for _, c := range commands() {
				assert.Contains(t, stdout, c.name)
			}
			assert.Empty(t, stderr)
		})
	}
}

func TestRunCommandHelp(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, "exec", "--help")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stdout, "Usage: sandbox-runner exec")
	assert.Contains(t, stdout, "--runtime")
	assert.Empty(t, stderr)
}

func TestRunUnknownCommand(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, "frobnicate")
	assert.Equal(t, exitUsage, code)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, `unknown command "frobnicate"`)
	assert.Contains(t, stderr, "Usage: sandbox-runner COMMAND")
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-v"}} {
		t.Run(args[0], func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, args...)
			assert.Equal(t, exitOK, code)
			assert.Equal(t, "sandbox-runner "+version+" ("+runtime.Version()+", "+runtime.GOOS+"/"+runtime.GOARCH+")\n", stdout)
			assert.Empty(t, stderr)
		})
	}
}

func TestVersionRejectsArgs(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, "version", "--bogus")
	assert.Equal(t, exitUsage, code)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "unknown flag: --bogus")
	assert.Contains(t, stderr, "sandbox-runner version --help")
}

func TestRuntimes(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, "runtimes")
	require.Equal(t, exitOK, code)
	assert.Empty(t, stderr)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.NotEmpty(t, lines)
	assert.Regexp(t, `^RUNTIME\s+IMAGE\s+FILE\s`, lines[0])
	var names []string
	for _, l := range lines[1:] {
		names = append(names, strings.Fields(l)[0])
	}
	assert.Equal(t, images.DefaultCatalog().Names(), names, "one line per runtime, sorted")
	assert.Subset(t, names, []string{"bash", "node", "python", "sh"})
	assert.Contains(t, stdout, "python3 {file}")
}

func TestImagesUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no subcommand", []string{"images"}},
		{"unknown subcommand", []string{"images", "frob", "--address", "/nonexistent/sock"}},
		{"import without file", []string{"images", "import", "--address", "/nonexistent/sock"}},
		{"rm without ref", []string{"images", "rm", "--address", "/nonexistent/sock"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, nil, tc.args...)
			assert.Equal(t, exitUsage, code)
			assert.NotContains(t, stderr, "hint:")
		})
	}
}

func TestConnectHintIsTheCLIs(t *testing.T) {
	given := withConnectHint(&host.NoContainerdError{Address: "/x.sock", Given: true, Err: fmt.Errorf("no containerd socket at /x.sock: %w", errdefs.ErrUnavailable)})
	assert.Equal(t, "no containerd socket at /x.sock: unavailable\nhint: is containerd running and listening on /x.sock? Check `systemctl status containerd`, or leave --address and CONTAINERD_ADDRESS unset to let sandbox-runner find or start one", given.Error())
	assert.True(t, errdefs.IsUnavailable(given))
	none := withConnectHint(&host.NoContainerdError{Err: errdefs.ErrUnavailable})
	assert.Contains(t, none.Error(), "hint: start containerd")
	other := errors.New("boom")
	assert.Equal(t, other, withConnectHint(other), "other errors pass as they are")
	assert.NoError(t, withConnectHint(nil))
}
