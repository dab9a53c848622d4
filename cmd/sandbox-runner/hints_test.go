package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
)

// helpLines are the command lines whose help the tests ask for: every
// command and every images subcommand.
func helpLines() [][]string {
	var out [][]string
	for _, c := range commands() {
		out = append(out, []string{c.name})
	}
	for _, sub := range []string{"build", "pull", "import", "ls", "rm"} {
		out = append(out, []string{"images", sub})
	}
	return out
}

func TestHelpOfEveryCommandGoesToStdout(t *testing.T) {
	// pflag takes `quoted` words of a usage for the value's name.
	artefact := regexp.MustCompile(`--[a-z-]+ sandbox-runner`)
	for _, line := range helpLines() {
		for _, help := range []string{"--help", "-h"} {
			args := append(append([]string(nil), line...), help)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				code, stdout, stderr := runCLI(t, nil, args...)
				assert.Equal(t, exitOK, code)
				assert.Empty(t, stderr)
				assert.True(t, strings.HasPrefix(stdout, "Usage: sandbox-runner "+line[0]), stdout)
				assert.NotRegexp(t, artefact, stdout)
				for _, l := range strings.Split(stdout, "\n") {
					assert.LessOrEqual(t, len([]rune(l)), helpWidth, "wrapped at %d columns: %q", helpWidth, l)
				}
			})
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"images", "--help"}, "Usage: sandbox-runner images COMMAND"},
		{[]string{"images", "help"}, "Usage: sandbox-runner images COMMAND"},
		{[]string{"help", "exec"}, "Usage: sandbox-runner exec --runtime NAME"},
		{[]string{"help", "images", "build"}, "Usage: sandbox-runner images build [RUNTIME...]"},
	} {
		code, stdout, stderr := runCLI(t, nil, tc.args...)
		assert.Equal(t, exitOK, code, tc.args)
		assert.Empty(t, stderr, tc.args)
		assert.True(t, strings.HasPrefix(stdout, tc.want), "%v: %s", tc.args, stdout)
	}
}

func TestDockerHabitFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--pids-limit", "50"}, "unknown flag --pids-limit: did you mean --pids?"},
		{[]string{"-m", "1g"}, "unknown flag -m: did you mean --memory?"},
		{[]string{"--network", "none"}, "unknown flag --network: tasks never have a network"},
		{[]string{"--network=none"}, "unknown flag --network: tasks never have a network"},
		{[]string{"--read-only"}, "unknown flag --read-only: the root file system is always read-only"},
		{[]string{"--rm"}, "unknown flag --rm: every task's container is always removed"},
		{[]string{"--user", "1000"}, "unknown flag --user: tasks always run as an unprivileged user"},
		// exec has -i (interactive.go), and no -t.
		{[]string{"-it"}, "unknown flag -t: tasks get no terminal"},
		{[]string{"-t"}, "unknown flag -t: tasks get no terminal"},
		{[]string{"-w", "/src"}, "unknown flag -w: the working directory is always /tmp"},
		// Known flags' values are skipped, not taken for flags.
		{[]string{"--timeout", "5s", "-e", "A=1", "--rm"}, "unknown flag --rm"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			args := append([]string{"exec", "--runtime", "sh"}, tc.args...)
			code, stdout, stderr := runCLI(t, nil, append(args, "-c", "true")...)
			assert.Equal(t, exitUsage, code)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, tc.want)
			assert.Contains(t, stderr, "sandbox-runner exec --help")
		})
	}
	// An unknown flag with no habit behind it keeps pflag's message.
	code, _, stderr := runCLI(t, nil, "exec", "--runtime", "sh", "--frobnicate", "-c", "true")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, "unknown flag: --frobnicate")
}

func TestUnknownCommandSuggestions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--runtime", "sh"}, `unknown command "run": did you mean 'sandbox-runner exec --runtime sh'?`},
		{[]string{"image", "ls"}, `unknown command "image": did you mean 'sandbox-runner images ls'?`},
		{[]string{"image", "list"}, `did you mean 'sandbox-runner images ls'?`},
		{[]string{"pull", "python:3"}, `did you mean 'sandbox-runner images pull python:3'?`},
		{[]string{"exce"}, `unknown command "exce": did you mean 'exec'?`},
		{[]string{"chekc"}, `did you mean 'check'?`},
		{[]string{"images", "list"}, `unknown images command "list" (did you mean 'images ls'?)`},
		{[]string{"images", "buidl"}, `unknown images command "buidl" (did you mean 'images build'?)`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, tc.args...)
			assert.Equal(t, exitUsage, code)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, tc.want)
		})
	}
	_, _, stderr := runCLI(t, nil, "frobnicate")
	assert.NotContains(t, stderr, "did you mean")
}

func TestAddressTakesUnixScheme(t *testing.T) {
	var g globalFlags
	g.address = "unix:///run/x/containerd.sock"
	t.Setenv("SANDBOX_RUNNER_CONFIG", "")
	t.Setenv("CONTAINERD_ADDRESS", "")
	g.configPath = writeEmptyConfig(t)
	assert.NoError(t, g.load())
	assert.Equal(t, "/run/x/containerd.sock", g.address)
}

func writeEmptyConfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(p, nil, 0o644))
	return p
}

func TestRuntimesAndVersionJSON(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, "runtimes", "--json", "--address", filepath.Join(t.TempDir(), "absent.sock"))
	require.Equal(t, exitOK, code, stderr)
	var rts []struct {
		Name, Image, File, Present string
		Run                        []string
		Local                      string `json:"local_image"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &rts), stdout)
	require.Len(t, rts, len(images.DefaultCatalog()))
	assert.Equal(t, "bash", rts[0].Name)
	for _, r := range rts {
		if r.Name == "python" {
			assert.Equal(t, "docker.io/library/python:3.11-slim", r.Image)
			assert.Equal(t, "sandbox-runner.local/python", r.Local)
			assert.Equal(t, "unknown", r.Present)
		}
	}

	code, stdout, _ = runCLI(t, nil, "version", "--json")
	require.Equal(t, exitOK, code)
	var v map[string]string
	require.NoError(t, json.Unmarshal([]byte(stdout), &v))
	assert.Equal(t, version, v["version"])
}

func TestImageHint(t *testing.T) {
	cat := images.DefaultCatalog()
	missing := fmt.Errorf("image docker.io/library/python:3.11-slim is not in containerd's store: %w", runner.ErrImageNotFound)
	err := withImageHint(missing, runner.Task{Runtime: "python"}, cat)
	assert.ErrorIs(t, err, runner.ErrImageNotFound)
	assert.ErrorContains(t, err, "build it from this host's Debian mirror: `sandbox-runner images build python`")

	unreachable := fmt.Errorf("pulling: %w", images.ErrRegistryUnreachable)
	err = withImageHint(unreachable, runner.Task{Runtime: "csharp"}, cat)
	assert.ErrorContains(t, err, "--image REF (with --pull never")
	assert.NotContains(t, err.Error(), "images build")

	assert.Equal(t, missing, withImageHint(missing, runner.Task{Runtime: "python", Image: "x.test/py:1"}, cat),
		"an image asked for by name gets no other")

	other := errors.New("boom")
	assert.Equal(t, other, withImageHint(other, runner.Task{Runtime: "python"}, cat))
}
