package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/api"
	"github.com/sandbox-runner/sandbox-runner/runner/config"
)

// noDaemon is a socket that does not exist: a command that gets as far as
// connecting fails there with exitRunner, never with exitUsage.
const noDaemon = "/nonexistent/sock"

// writeCode writes a code file with the given mode, whatever the umask.
func writeCode(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), mode))
	require.NoError(t, os.Chmod(path, mode))
	return path
}

func TestExecBadInputFailsBeforeConnecting(t *testing.T) {
	file := writeCode(t, "main.py", "print(1)", 0o644)
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"unknown runtime", []string{"-r", "cobol", "-c", "x"}, `unknown runtime "cobol"`},
		{"no runtime", []string{"-c", "x"}, "no runtime given"},
		{"bad memory", []string{"-r", "sh", "--memory", "12qb", "-c", "x"}, "--memory"},
		{"negative memory", []string{"-r", "sh", "--memory=-1", "-c", "x"}, "--memory"},
		{"memory over the host's", []string{"-r", "sh", "--memory", "8388607t", "-c", "x"}, "more than the host's"},
		{"zero timeout", []string{"-r", "sh", "--timeout", "0", "-c", "x"}, "--timeout"},
		{"negative timeout", []string{"-r", "sh", "--timeout", "-1s", "-c", "x"}, "--timeout"},
		{"bad timeout", []string{"-r", "sh", "--timeout", "soon", "-c", "x"}, "--timeout"},
		{"timeout over max", []string{"-r", "sh", "--timeout", "25h", "-c", "x"}, "timeout"},
		{"zero compile timeout", []string{"-r", "sh", "--compile-timeout", "0", "-c", "x"}, "--compile-timeout"},
		{"zero cpus", []string{"-r", "sh", "--cpus", "0", "-c", "x"}, "--cpus"},
		{"NaN cpus", []string{"-r", "sh", "--cpus", "NaN", "-c", "x"}, "cpus"},
		{"zero pids", []string{"-r", "sh", "--pids", "0", "-c", "x"}, "--pids"},
		{"zero output limit", []string{"-r", "sh", "--output-limit", "0", "-c", "x"}, "--output-limit"},
		{"zero tmp size", []string{"-r", "sh", "--tmp-size", "0", "-c", "x"}, "--tmp-size"},
		{"zero cpu time", []string{"-r", "sh", "--cpu-time", "0", "-c", "x"}, "--cpu-time"},
		{"negative cpu time", []string{"-r", "sh", "--cpu-time", "-2s", "-c", "x"}, "--cpu-time"},
		{"bad cpu time", []string{"-r", "sh", "--cpu-time", "soon", "-c", "x"}, "--cpu-time"},
		{"cpu time over max", []string{"-r", "sh", "--cpu-time", "25h", "-c", "x"}, "cpu time"},
		{"output outside /tmp", []string{"-r", "sh", "-c", "x", "--output", "/etc/*"}, `--output: output pattern "/etc/*" is not under /tmp`},
		{"output with ..", []string{"-r", "sh", "-c", "x", "--output", "/tmp/../etc/*"}, `--output: output pattern "/tmp/../etc/*" holds a ".." part`},
		{"copy-out without output", []string{"-r", "sh", "-c", "x", "--copy-out", t.TempDir()}, "--copy-out"},
		{"copy-out to a file", []string{"-r", "sh", "-c", "x", "--output", "/tmp/*", "--copy-out", file}, "is not a directory"},
		{"-c and FILE", []string{"-r", "python", "-c", "x", file}, "both -c and FILE"},
		{"two FILEs", []string{"-r", "python", file, file}, "unexpected argument"},
		{"missing FILE", []string{"-r", "python", filepath.Join(t.TempDir(), "nope.py")}, "code file"},
		{"FILE is a dir", []string{"-r", "python", t.TempDir()}, "not a regular file"},
		{"missing --file", []string{"-r", "python", "-c", "x", "--file", filepath.Join(t.TempDir(), "nope.py")}, "code file"},
		{"missing --stdin", []string{"-r", "python", "-c", "x", "--stdin", filepath.Join(t.TempDir(), "nope")}, "--stdin"},
		{"bad env", []string{"-r", "sh", "-c", "x", "--env", "=v"}, "KEY=VALUE"},
		{"unknown OCI runtime", []string{"-r", "sh", "-c", "x", "--oci-runtime", "kata"}, `--oci-runtime "kata": give one of crun, runc, runsc`},
		{"bad log level", []string{"-r", "sh", "-c", "x", "--log-level", "loud"}, "--log-level"},
		{"unknown flag", []string{"-r", "sh", "-c", "x", "--bogus"}, "unknown flag: --bogus"},
		{"flag value not a number", []string{"-r", "sh", "-c", "x", "--cpus", "abc"}, `invalid argument "abc" for "--cpus" flag`},
		{"flag without value", []string{"-r", "sh", "-c"}, "flag needs an argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"exec", "--address", noDaemon}, tc.args...)
			code, stdout, stderr := runCLI(t, nil, args...)
			assert.Equal(t, exitUsage, code, "stderr: %s", stderr)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, tc.msg)
			assert.NotContains(t, stderr, "hint:", "reached the connect step")
			assert.NotContains(t, stderr, ": usage\n", "the errUsage marker leaked into the message")
		})
	}
}

func TestExecBadConfigFailsBeforeConnecting(t *testing.T) {
	for _, tc := range []struct{ name, toml, msg string }{
		{"unknown key", "adress = \"/run/x.sock\"\n", "adress"},
		{"bad limit", "[limits]\nmemory = \"12qb\"\n", "memory"},
		{"unknown OCI runtime", "oci_runtime = \"kata\"\n", `oci_runtime: unknown OCI runtime "kata"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeCode(t, "config.toml", tc.toml, 0o644)
			code, _, stderr := runCLI(t, nil, "exec", "--config", path, "--address", noDaemon, "-r", "sh", "-c", "x")
			assert.Equal(t, exitUsage, code, "stderr: %s", stderr)
			assert.Contains(t, stderr, tc.msg)
			assert.NotContains(t, stderr, "hint:", "reached the connect step")
		})
	}
}

func TestExecBadInputJSON(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, "exec", "--address", noDaemon, "--json", "-r", "cobol", "-c", "x")
	require.Equal(t, exitUsage, code)
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &doc), "stdout: %s", stdout)
	assert.Equal(t, "invalid_input", doc["kind"])
	assert.Equal(t, float64(exitUsage), doc["exit_code"])
	assert.Contains(t, doc["error"], `unknown runtime "cobol"`)
	assert.Len(t, doc, 3)
	assert.Contains(t, stderr, `unknown runtime "cobol"`)
}

func TestExecBadFlagValueJSON(t *testing.T) {
	code, stdout, _ := runCLI(t, nil, "exec", "--address", noDaemon, "--json", "-r", "sh", "--pids", "0", "-c", "x")
	require.Equal(t, exitUsage, code)
	var doc struct {
		Error    string `json:"error"`
		Kind     string `json:"kind"`
		ExitCode int    `json:"exit_code"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &doc), "stdout: %s", stdout)
	assert.Equal(t, "invalid_input", doc.Kind)
	assert.Equal(t, exitUsage, doc.ExitCode)
	assert.Equal(t, `--pids: "0": give a whole number above zero, such as 64, or leave it out for the default`, doc.Error)
}

// TestJSONErrorWhenFlagsOrConfigFail checks that --json gets its error
// document on stdout also when parsing fails, before the command knows
// what it runs: an unknown flag (before or after --json), a flag value
// pflag itself refuses, and a config file that does not decode.
func TestJSONErrorWhenFlagsOrConfigFail(t *testing.T) {
	badConfig := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(badConfig, []byte("[runtimes.sh]\nimgae = \"x\"\n"), 0o644))
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"unknown flag after --json", []string{"exec", "--json", "--no-such-flag", "-c", "x"}, "unknown flag: --no-such-flag"},
		{"unknown flag before --json", []string{"exec", "--no-such-flag", "--json", "-c", "x"}, "unknown flag: --no-such-flag"},
		{"--json=true", []string{"exec", "--bogus", "--json=true"}, "unknown flag: --bogus"},
		{"value pflag refuses", []string{"exec", "--json", "--cpus", "many", "-c", "x"}, "--cpus"},
		{"config that does not decode", []string{"exec", "--json", "--config", badConfig, "-r", "sh", "-c", "x"}, "imgae"},
		{"config that is not there", []string{"exec", "--json", "--config", badConfig + ".missing", "-r", "sh", "-c", "x"}, "does not exist"},
		{"submit too", []string{"submit", "--json", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{"check too", []string{"check", "--json", "--no-such-flag"}, "unknown flag: --no-such-flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, tc.args...)
			assert.Equal(t, exitUsage, code)
			var doc struct {
				Error    string `json:"error"`
				Kind     string `json:"kind"`
				ExitCode int    `json:"exit_code"`
			}
			require.NoError(t, json.Unmarshal([]byte(stdout), &doc), "stdout: %q, stderr: %s", stdout, stderr)
			assert.Equal(t, "invalid_input", doc.Kind)
			assert.Equal(t, exitUsage, doc.ExitCode)
			assert.Contains(t, doc.Error, tc.msg)
			assert.Contains(t, stderr, tc.msg, "stderr still says why")
		})
	}

	// A config file that is not there is bad input for every command,
	// so that a unit's RestartPreventExitStatus=2 stops the restarts.
	for _, cmd := range [][]string{{"worker"}, {"serve"}, {"images", "ls"}, {"gc"}} {
		code, _, stderr := runCLI(t, nil, append(cmd, "--config", badConfig+".missing")...)
		assert.Equal(t, exitUsage, code, cmd)
		assert.Contains(t, stderr, "does not exist", cmd)
	}

	// Without --json, or with it only as the task's argument, stdout
	// stays empty.
	for _, args := range [][]string{
		{"exec", "--no-such-flag", "-c", "x"},
		{"exec", "--no-such-flag", "-c", "x", "--", "--json"},
		{"exec", "--no-such-flag", "--json=false"},
	} {
		code, stdout, _ := runCLI(t, nil, args...)
		assert.Equal(t, exitUsage, code, args)
		assert.Empty(t, stdout, args)
	}
}

func TestExecUnreachableAddress(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, "exec", "--address", noDaemon, "-r", "sh", "-c", "echo hi")
	assert.Equal(t, exitRunner, code)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "no containerd socket at "+noDaemon)
	assert.Contains(t, stderr, "hint: is containerd running and listening on "+noDaemon)
}

func TestExecUnreachableAddressJSON(t *testing.T) {
	code, stdout, _ := runCLI(t, nil, "exec", "--address", noDaemon, "--json", "-r", "sh", "-c", "echo hi")
	require.Equal(t, exitRunner, code)
	var doc struct {
		Error    string `json:"error"`
		Kind     string `json:"kind"`
		ExitCode int    `json:"exit_code"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &doc), "stdout: %s", stdout)
	assert.Equal(t, exitRunner, doc.ExitCode)
	assert.Contains(t, doc.Error, noDaemon)
	assert.NotEqual(t, "invalid_input", doc.Kind)
}

func TestExecAddressFromEnv(t *testing.T) {
	t.Setenv("CONTAINERD_ADDRESS", noDaemon)
	code, _, stderr := runCLI(t, nil, "exec", "-r", "sh", "-c", "echo hi")
	assert.Equal(t, exitRunner, code)
	assert.Contains(t, stderr, noDaemon)
}

// openPTY returns the master side of a fresh pseudo-terminal, which
// term.IsTerminal takes for a terminal.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	f, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal to stand in for an interactive stdin: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	if !term.IsTerminal(int(f.Fd())) {
		t.Skip("/dev/ptmx is not a terminal here")
	}
	return f
}

func TestExecNoCodeFromTerminal(t *testing.T) {
	code, _, stderr := runCLI(t, openPTY(t), "exec", "--address", noDaemon, "-r", "sh")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, "no code given")
}

// execDefaults are the options exec's flags give when none is set and
// there is no config file. set names the flags to take as given.
func execDefaults(set ...string) execOptions {
	return execOptions{
		global:      globalFlags{file: &config.File{}},
		runtime:     "python",
		timeout:     "30s",
		compileTO:   "60s",
		memory:      "512m",
		cpus:        runner.DefaultCPUs,
		pids:        runner.DefaultPids,
		outputLimit: "1m",
		tmpSize:     "64m",
		changed:     func(name string) bool { return slices.Contains(set, name) },
	}
}

func TestTaskLimitsFromFlags(t *testing.T) {
	o := execDefaults("timeout", "compile-timeout", "memory", "cpus", "pids", "output-limit", "tmp-size", "cpu-time")
	o.timeout, o.compileTO, o.memory, o.cpus, o.pids, o.outputLimit, o.tmpSize = "1.5", "2m", "256m", 0.5, 64, "4k", "8m"
	o.cpuTime = "750ms"
	o.outputs = []string{"/tmp/out/*.png"}
	o.code, o.codeSet = "x", true
	task, err := o.task(nil, -1, strings.NewReader(""))
	require.NoError(t, err)
	assert.Equal(t, runner.Limits{
		Timeout:        1500 * time.Millisecond,
		CompileTimeout: 2 * time.Minute,
		Memory:         256 << 20,
		CPUs:           0.5,
		Pids:           64,
		OutputLimit:    4 << 10,
		TmpSize:        8 << 20,
		CPUTime:        750 * time.Millisecond,
	}, task.Limits)
	assert.Equal(t, []string{"/tmp/out/*.png"}, task.Outputs)
}

func TestTaskLimitsUnsetFlagsLeaveDefaults(t *testing.T) {
	o := execDefaults()
	o.code, o.codeSet = "x", true
	task, err := o.task(nil, -1, strings.NewReader(""))
	require.NoError(t, err)
	assert.Zero(t, task.Limits, "unset limits are the runner's to default")
}

func TestTaskLimitsFlagsOverConfig(t *testing.T) {
	o := execDefaults("memory")
	o.global.file.Limits = config.Limits{Timeout: api.LimitString("10s"), Memory: api.LimitString("1g")}
	o.memory = "256m"
	o.code, o.codeSet = "x", true
	task, err := o.task(nil, -1, strings.NewReader(""))
	require.NoError(t, err)
	assert.Equal(t, 10*time.Second, task.Limits.Timeout)
	assert.Equal(t, int64(256<<20), task.Limits.Memory)
}

func TestTaskCodeFlagHasNoName(t *testing.T) {
	o := execDefaults()
	o.code, o.codeSet = "print(1)", true
	o.image = "python:3.12"
	task, err := o.task(nil, -1, strings.NewReader(""))
	require.NoError(t, err)
	assert.Equal(t, []runner.File{{Content: []byte("print(1)")}}, task.Files)
	assert.Equal(t, "python", task.Runtime)
	assert.Equal(t, "python:3.12", task.Image)
}

func TestTaskEmptyCodeFlag(t *testing.T) {
	o := execDefaults()
	o.codeSet = true
	task, err := o.task(nil, -1, strings.NewReader("not code"))
	require.NoError(t, err)
	require.Len(t, task.Files, 1)
	assert.Empty(t, task.Files[0].Content)
}

func TestTaskFileNameAndMode(t *testing.T) {
	for _, tc := range []struct {
		mode os.FileMode
		exec bool
	}{{0o644, false}, {0o755, true}, {0o744, true}, {0o600, false}} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			path := writeCode(t, "run.sh", "echo hi", tc.mode)
			o := execDefaults()
			task, err := o.task([]string{path}, -1, strings.NewReader(""))
			require.NoError(t, err)
			assert.Equal(t, []runner.File{{Name: "run.sh", Content: []byte("echo hi"), Executable: tc.exec}}, task.Files)
		})
	}
}

func TestTaskExtraFilesFollowEntry(t *testing.T) {
	entry := writeCode(t, "main.py", "import util", 0o644)
	util := writeCode(t, "util.py", "x = 1", 0o644)
	data := writeCode(t, "data.txt", "d", 0o644)
	for _, tc := range []struct {
		name  string
		opts  func(*execOptions)
		args  []string
		first runner.File
	}{
		{"after FILE", func(*execOptions) {}, []string{entry}, runner.File{Name: "main.py", Content: []byte("import util")}},
		{"after -c", func(o *execOptions) { o.code, o.codeSet = "import util", true }, nil, runner.File{Content: []byte("import util")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := execDefaults()
			tc.opts(&o)
			o.files = []string{util, data}
			task, err := o.task(tc.args, -1, strings.NewReader(""))
			require.NoError(t, err)
			assert.Equal(t, []runner.File{
				tc.first,
				{Name: "util.py", Content: []byte("x = 1")},
				{Name: "data.txt", Content: []byte("d")},
			}, task.Files)
		})
	}
}

func TestTaskOnlyExtraFiles(t *testing.T) {
	util := writeCode(t, "main.py", "x = 1", 0o644)
	o := execDefaults()
	o.files = []string{util}
	in := strings.NewReader("task input")
	task, err := o.task(nil, -1, in)
	require.NoError(t, err)
	assert.Equal(t, []runner.File{{Name: "main.py", Content: []byte("x = 1")}}, task.Files)
	assert.Same(t, in, task.Stdin, "stdin is the task's input, not code")
}

func TestTaskArgsAfterDash(t *testing.T) {
	file := writeCode(t, "main.py", "x", 0o644)
	for _, tc := range []struct {
		name string
		code bool
		args []string
		dash int
		want []string
	}{
		{"after FILE", false, []string{file, "a", "--b"}, 1, []string{"a", "--b"}},
		{"after -c", true, []string{"a", "b c"}, 0, []string{"a", "b c"}},
		{"dash with nothing after", false, []string{file}, 1, []string{}},
		{"no dash", false, []string{file}, -1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := execDefaults()
			if tc.code {
				o.code, o.codeSet = "x", true
			}
			task, err := o.task(tc.args, tc.dash, strings.NewReader(""))
			require.NoError(t, err)
			assert.Equal(t, tc.want, task.Args)
		})
	}
}

func TestTaskArgsWithoutDash(t *testing.T) {
	file := writeCode(t, "main.py", "x", 0o644)
	o := execDefaults()
	_, err := o.task([]string{file, "a"}, -1, strings.NewReader(""))
	require.ErrorIs(t, err, errUsage)
	assert.Contains(t, err.Error(), `unexpected argument "a"`)
}

func TestTaskEnv(t *testing.T) {
	t.Setenv("SR_TEST_FROM_HOST", "host value")
	t.Setenv("SR_TEST_EMPTY", "")
	o := execDefaults()
	o.code, o.codeSet = "x", true
	o.env = []string{"SR_TEST_FROM_HOST", "A=1", "B=x=y", "C=", "SR_TEST_EMPTY", "SR_TEST_UNSET_8c1f"}
	task, err := o.task(nil, -1, strings.NewReader(""))
	require.NoError(t, err)
	assert.Equal(t, []string{"SR_TEST_FROM_HOST=host value", "A=1", "B=x=y", "C=", "SR_TEST_EMPTY="}, task.Env)
}

func TestTaskStdinFile(t *testing.T) {
	input := writeCode(t, "input.txt", "some input", 0o644)
	o := execDefaults()
	o.code, o.codeSet = "x", true
	o.stdinFile = input
	task, err := o.task(nil, -1, strings.NewReader("not the input"))
	require.NoError(t, err)
	require.NotNil(t, task.Stdin)
	if c, ok := task.Stdin.(io.Closer); ok {
		t.Cleanup(func() { c.Close() })
	}
	b, err := io.ReadAll(task.Stdin)
	require.NoError(t, err)
	assert.Equal(t, "some input", string(b))
}

func TestTaskStdinDash(t *testing.T) {
	o := execDefaults()
	o.code, o.codeSet = "x", true
	o.stdinFile = "-"
	in := strings.NewReader("input")
	task, err := o.task(nil, -1, in)
	require.NoError(t, err)
	assert.Same(t, in, task.Stdin)
}

func TestTaskCodeFromStdin(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"nothing given", nil},
		{"FILE is -", []string{"-"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := execDefaults()
			task, err := o.task(tc.args, -1, strings.NewReader("print(2)"))
			require.NoError(t, err)
			assert.Equal(t, []runner.File{{Content: []byte("print(2)")}}, task.Files)
			assert.Nil(t, task.Stdin, "stdin held the code, it is not the task's input too")
		})
	}
}

func TestTaskCodeAndInputBothOnStdin(t *testing.T) {
	o := execDefaults()
	o.stdinFile = "-"
	_, err := o.task(nil, -1, strings.NewReader("print(2)"))
	require.ErrorIs(t, err, errUsage)
}

func TestTaskStdinNotForwardedFromTerminal(t *testing.T) {
	o := execDefaults()
	o.code, o.codeSet = "x", true
	task, err := o.task(nil, -1, openPTY(t))
	require.NoError(t, err)
	assert.Nil(t, task.Stdin)
}

func TestFormatSize(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{512 << 20, "512MiB"},
		{1 << 30, "1GiB"},
		{1536 << 20, "1536MiB"},
		{64 << 10, "64KiB"},
		{1000, "1000 bytes"},
		{0, "0 bytes"},
	} {
		assert.Equal(t, tc.want, formatSize(tc.n))
	}
}

func TestErrorKindNamesWhatFailed(t *testing.T) {
	for _, tc := range []struct {
		err  error
		kind string
	}{
		{usageError("bad"), "invalid_input"},
		{fmt.Errorf("x: %w", errdefs.ErrInvalidArgument), "invalid_input"},
		{fmt.Errorf("x: %w", context.Canceled), "cancelled"},
		{fmt.Errorf("x: %w", runner.ErrImageNotFound), "image_not_found"},
		{fmt.Errorf("x: %w", runner.ErrSandboxUnavailable), "sandbox_unavailable"},
		{fmt.Errorf("nats: authorization violation: %w", errdefs.ErrPermissionDenied), "unauthorized"},
		{fmt.Errorf("no socket: %w", errdefs.ErrUnavailable), "unavailable"},
		{errors.New("something else"), "runner_failed"},
	} {
		assert.Equal(t, tc.kind, errorKind(tc.err), "%v", tc.err)
	}
}

// Whatever the command, --json gives a JSON document on stdout when what
// it talks to does not answer, with the one kind for that: unavailable.
func TestJSONErrorWhenNothingAnswers(t *testing.T) {
	dir := t.TempDir()
	nosock := filepath.Join(dir, "containerd.sock")
	for _, args := range [][]string{
		{"gc", "--json", "--address", nosock},
		{"images", "ls", "--json", "--address", nosock},
		{"images", "pull", "--json", "--address", nosock, "x.test/a:1"},
		{"workers", "--json", "--nats", "nats://127.0.0.1:1"},
		{"exec", "--json", "--via", "service", "--socket", filepath.Join(dir, "api.sock"), "--runtime", "sh", "-c", "true"},
	} {
		code, stdout, stderr := runCLI(t, nil, args...)
		assert.Equal(t, exitRunner, code, "%v: %s", args, stderr)
		var doc struct {
			Error    string `json:"error"`
			Kind     string `json:"kind"`
			ExitCode int    `json:"exit_code"`
		}
		require.NoError(t, json.Unmarshal([]byte(stdout), &doc), "%v printed %q", args, stdout)
		assert.Equal(t, "unavailable", doc.Kind, "%v: %s", args, doc.Error)
		assert.Equal(t, exitRunner, doc.ExitCode, args)
		assert.NotEmpty(t, stderr, "stderr still says why")
	}
}

func TestExplainCPUTimeAndReturnedFiles(t *testing.T) {
	var b strings.Builder
	res := &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeCPUTimeExceeded, ExitCode: 152,
		Usage: runner.Usage{CPU: 306 * time.Millisecond}}, FilesTruncated: true}
	explain(&b, res, runner.Limits{CPUTime: 300 * time.Millisecond})
	assert.Equal(t, "sandbox-runner: CPU time over its limit of 300ms (used 306ms); killed\n"+
		"sandbox-runner: returned files truncated: a file was cut or left out at the caps on returned files ([limits] output_files and output_files_size)\n", b.String())

	b.Reset()
	// A result from a service whose limit this process does not know.
	explain(&b, &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeCPUTimeExceeded, Usage: runner.Usage{CPU: time.Second}}}, runner.Limits{})
	assert.Equal(t, "sandbox-runner: CPU time over its limit (used 1s); killed\n", b.String())
}

func TestWriteFilesCopiesOutOrFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	o := &execOptions{copyOut: dir}
	var stdout, stderr strings.Builder
	std := stdio{out: &stdout, err: &stderr}
	res := &runner.Result{Files: []runner.OutputFile{{Name: "a/b.txt", Content: []byte("b")}}}
	assert.Equal(t, 3, o.writeFiles(std, res, 3), "the task's status when every file is written")
	assert.Contains(t, stderr.String(), "1 file(s) written to "+dir)
	got, err := os.ReadFile(filepath.Join(dir, "a/b.txt"))
	require.NoError(t, err)
	assert.Equal(t, "b", string(got))

	stderr.Reset()
	assert.Equal(t, exitRunner, o.writeFiles(std, res, 0), "an existing file is not overwritten")
	assert.Contains(t, stderr.String(), "never overwritten")

	assert.Equal(t, 7, (&execOptions{}).writeFiles(std, res, 7), "no --copy-out: nothing written")
}

func TestExplainPidsLimitHit(t *testing.T) {
	var b strings.Builder
	res := &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeExited, ExitCode: 1, PidsLimitHit: true}}
	explain(&b, res, runner.Limits{Pids: 16})
	assert.Equal(t, "sandbox-runner: the task hit its limit of 16 processes and threads (--pids): a fork or thread creation failed\n", b.String())
}
