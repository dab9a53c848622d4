//go:build linux

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

// cliTimeout bounds one CLI invocation, so a hung CLI fails its test
// instead of the whole run.
const cliTimeout = 90 * time.Second

// cliRun is one finished invocation of the CLI.
type cliRun struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

func (r cliRun) String() string {
	return fmt.Sprintf("exit %d after %s\nstdout:\n%s\nstderr:\n%s", r.code, r.elapsed, r.stdout, r.stderr)
}

// cli is the CLI under test, set up for one test: the harness's daemon and
// namespace, and a state dir of the test's own.
type cli struct {
	t        *testing.T
	bin      string
	h        *Harness
	stateDir string
}

// newCLI builds the CLI (once per run) and gives t a state dir whose
// leak check runs when t ends.
func newCLI(t *testing.T) *cli {
	t.Helper()
	h := RequiresRoot(t)
	return &cli{t: t, bin: h.CLI(t), h: h, stateDir: h.StateDir(t)}
}

// execArgs returns `exec` with the flags that point it at the harness,
// followed by args; later flags override earlier ones.
func (c *cli) execArgs(args ...string) []string {
	return append([]string{"exec",
		"--address", c.h.Address,
		"--namespace", c.h.Namespace,
		"--snapshotter", testSnapshotter,
		"--state-dir", c.stateDir,
		"--image", testImage,
		"--runtime", testRuntime,
	}, args...)
}

// exec runs `sandbox-runner exec` with the harness flags and args, stdin
// as its standard input (nil: /dev/null).
func (c *cli) exec(stdin io.Reader, args ...string) cliRun {
	c.t.Helper()
	return c.run(stdin, c.execArgs(args...)...)
}

// run runs the CLI with args.
func (c *cli) run(stdin io.Reader, args ...string) cliRun {
	c.t.Helper()
	return c.runWithin(cliTimeout, stdin, args...)
}

// runWithin is run for a command that may take up to timeout.
func (c *cli) runWithin(timeout time.Duration, stdin io.Reader, args ...string) cliRun {
	c.t.Helper()
	cmd := c.commandWithin(timeout, stdin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := cliRun{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		require.NoError(c.t, err, "running %s", c.bin)
	}
	r.code = cmd.ProcessState.ExitCode()
	require.NotEqual(c.t, -1, r.code, "the CLI was killed by a signal\n%s", r)
	c.t.Logf("sandbox-runner %s: %s", strings.Join(args, " "), r)
	return r
}

func (c *cli) command(stdin io.Reader, args ...string) *exec.Cmd {
	return c.commandWithin(cliTimeout, stdin, args...)
}

func (c *cli) commandWithin(timeout time.Duration, stdin io.Reader, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(c.t.Context(), timeout)
	c.t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Stdin = stdin
	// The environment must not pick a daemon or namespace for the CLI.
	cmd.Env = cleanEnv()
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// cleanEnv is this process's environment without the variables the CLI
// reads defaults from.
func cleanEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		k, _, _ := strings.Cut(e, "=")
		switch k {
		case "CONTAINERD_ADDRESS", "CONTAINERD_SNAPSHOTTER", "SANDBOX_RUNNER_NAMESPACE", "SANDBOX_RUNNER_STATE_DIR":
			continue
		}
		env = append(env, e)
	}
	return env
}

// writeFile writes content to name in a temp dir of t and returns its path.
func writeFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), mode))
	return p
}

func TestCLIVersion(t *testing.T) {
	c := newCLI(t)
	r := c.run(nil, "version")
	require.Equal(t, 0, r.code, r)
	assert.True(t, strings.HasPrefix(r.stdout, "sandbox-runner "), r)
}

func TestCLICheck(t *testing.T) {
	c := newCLI(t)
	r := c.run(nil, "check", "--address", c.h.Address, "--state-dir", c.stateDir, "--namespace", c.h.Namespace)
	require.Equal(t, 0, r.code, "check found problems on a host that runs the suite\n%s", r)
	assert.Contains(t, r.stdout, c.h.Address, r)
}

func TestCLICheckUnreachableAddress(t *testing.T) {
	c := newCLI(t)
	r := c.run(nil, "check", "--address", filepath.Join(t.TempDir(), "absent.sock"), "--state-dir", c.stateDir)
	assert.NotEqual(t, 0, r.code, r)
}

func TestCLIExecStreamsOutputAndExitCode(t *testing.T) {
	c := newCLI(t)
	r := c.exec(nil, "-c", "echo hello; echo oops >&2; exit 3")
	assert.Equal(t, 3, r.code, r)
	assert.Equal(t, "hello\n", r.stdout, r)
	assert.Contains(t, r.stderr, "oops\n", r)
}

func TestCLIExecFileWithArgs(t *testing.T) {
	c := newCLI(t)
	script := writeFile(t, "args.sh", `echo "script=$0"; for a in "$@"; do echo "arg=$a"; done`, 0o644)
	r := c.exec(nil, script, "--", "one", "two words", "--three")
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "script=/code/args.sh\narg=one\narg=two words\narg=--three\n", r.stdout, r)
}

func TestCLIExecRepeatedFileFlag(t *testing.T) {
	c := newCLI(t)
	main := writeFile(t, "main.sh", `. /code/lib.sh; greet`, 0o644)
	lib := writeFile(t, "lib.sh", `greet() { echo "hi from lib"; }`, 0o644)
	r := c.exec(nil, "-f", main, "--file", lib)
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "hi from lib\n", r.stdout, r)
}

func TestCLIExecPipedStdinReachesTask(t *testing.T) {
	c := newCLI(t)
	r := c.exec(strings.NewReader("piped line\n"), "-c", `cat; echo "[eof]"`)
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "piped line\n[eof]\n", r.stdout, r)
}

func TestCLIExecStdinFile(t *testing.T) {
	c := newCLI(t)
	input := writeFile(t, "input.txt", "from a file\n", 0o644)
	r := c.exec(nil, "--stdin", input, "-c", "cat")
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "from a file\n", r.stdout, r)
}

func TestCLIExecCodeFromStdin(t *testing.T) {
	c := newCLI(t)
	r := c.exec(strings.NewReader("echo \"code from stdin in $0\"\n"))
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "code from stdin in /code/main.sh\n", r.stdout, r)
}

func TestCLIExecEnv(t *testing.T) {
	c := newCLI(t)
	r := c.exec(nil, "-e", "GREETING=hello there", "--env", "OTHER=2", "-c", `echo "$GREETING/$OTHER"`)
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "hello there/2\n", r.stdout, r)
}

func TestCLIExecTimeout(t *testing.T) {
	c := newCLI(t)
	r := c.exec(nil, "--timeout", "1s", "-c", "sleep 100")
	assert.Equal(t, runner.ExitTimedOut, r.code, r)
	assert.Less(t, r.elapsed, 10*time.Second, r)
}

func TestCLIExecOOM(t *testing.T) {
	c := newCLI(t)
	r := c.exec(nil, "--memory", "64m", "-c", `x=a; while true; do x="$x$x"; done`)
	assert.Equal(t, 137, r.code, r)
	assert.Contains(t, r.stderr, "out of memory", r)
}

func TestCLIExecSaysThePidsLimitWasHit(t *testing.T) {
	c := newCLI(t)
	r := c.exec(nil, "--pids", "8", "--timeout", "10s", "-c", `i=0; while [ $i -lt 16 ]; do sleep 5 & i=$((i + 1)); done; echo forked`)
	assert.Contains(t, r.stderr, "can't fork", r)
	assert.Contains(t, r.stderr, "sandbox-runner: the task hit its limit of 8 processes and threads (--pids)", r)
}

func TestCLIExecLimitFlags(t *testing.T) {
	c := newCLI(t)
	r := c.exec(nil, "--memory", "64m", "--cpus", "0.5", "--pids", "32", "--tmp-size", "2m", "-c", cgroupValue+`
echo "memory=$(first /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes)"
if [ -r /sys/fs/cgroup/cpu.max ]; then q=$(cut -d' ' -f1 /sys/fs/cgroup/cpu.max); else q=$(first /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us); fi
echo "quota=$q"
echo "pids=$(first /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max)"
echo "tmp-kb=$(df -k /tmp | awk 'NR == 2 { print $2 }')"
`)
	require.Equal(t, 0, r.code, r)
	kv := keyValues([]byte(r.stdout))
	assert.Equal(t, strconv.Itoa(64<<20), kv["memory"], r)
	assert.Equal(t, "50000", kv["quota"], r)
	assert.Equal(t, "32", kv["pids"], r)
	assert.Equal(t, "2048", kv["tmp-kb"], r)
}

// decodeResult decodes the one JSON document --json prints, both as a
// runner.Result and as a generic map to check the field names.
func decodeResult(t *testing.T, r cliRun) (runner.Result, map[string]any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	var raw map[string]any
	require.NoError(t, dec.Decode(&raw), r)
	require.False(t, dec.More(), "more than one JSON document\n%s", r)
	var res runner.Result
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r)
	return res, raw
}

func TestCLIExecJSON(t *testing.T) {
	c := newCLI(t)
	r := c.exec(nil, "--json", "-c", "echo out; echo err >&2; exit 5")
	assert.Equal(t, 5, r.code, r)
	res, raw := decodeResult(t, r)

	for _, k := range []string{"id", "runtime", "image", "outcome", "exit_code", "timed_out", "oom_killed",
		"cancelled", "output_truncated", "stdout", "stderr", "usage", "duration_ms"} {
		assert.Contains(t, raw, k, r)
	}
	for _, stream := range []string{"stdout", "stderr"} {
		s, ok := raw[stream].(map[string]any)
		if assert.True(t, ok, "%s is not an object\n%s", stream, r) {
			for _, k := range []string{"data", "encoding", "truncated", "dropped_bytes"} {
				assert.Contains(t, s, k, "%s.%s\n%s", stream, k, r)
			}
			assert.Equal(t, "utf-8", s["encoding"], r)
		}
	}
	usage, ok := raw["usage"].(map[string]any)
	if assert.True(t, ok, r) {
		assert.Contains(t, usage, "cpu_ms")
		assert.Contains(t, usage, "memory_peak_bytes")
	}

	assert.NotEmpty(t, res.ID)
	assert.Equal(t, testRuntime, res.Runtime)
	assert.Equal(t, testImage, res.Image)
	assert.Equal(t, runner.OutcomeExited, res.Outcome)
	assert.Equal(t, 5, res.ExitCode)
	assert.Equal(t, "out\n", string(res.Stdout.Data))
	assert.Equal(t, "err\n", string(res.Stderr.Data))
	assert.Positive(t, res.Duration)
	// The result is the only output: the task's own is inside it.
	assert.NotContains(t, r.stderr, "err\n", r)
}

func TestCLIExecJSONTruncated(t *testing.T) {
	c := newCLI(t)
	r := c.exec(nil, "--json", "--output-limit", "100", "-c", `dd if=/dev/zero bs=100 count=10 2>/dev/null | tr '\0' a`)
	assert.Equal(t, 0, r.code, r)
	res, raw := decodeResult(t, r)
	assert.True(t, res.OutputTruncated, r)
	assert.Equal(t, strings.Repeat("a", 100), string(res.Stdout.Data))
	assert.Equal(t, int64(900), res.Stdout.Dropped)
	assert.Equal(t, true, raw["stdout"].(map[string]any)["truncated"], r)
	assert.Equal(t, 900.0, raw["stdout"].(map[string]any)["dropped_bytes"], r)
}

func TestCLIExecJSONTimeout(t *testing.T) {
	c := newCLI(t)
	r := c.exec(nil, "--json", "--timeout", "1s", "-c", "sleep 100")
	assert.Equal(t, runner.ExitTimedOut, r.code, r)
	res, _ := decodeResult(t, r)
	assert.Equal(t, runner.OutcomeTimedOut, res.Outcome, r)
	assert.True(t, res.TimedOut, r)
	assert.Equal(t, runner.ExitTimedOut, res.ExitCode, r)
}

func TestCLIExecUnreachableAddress(t *testing.T) {
	c := newCLI(t)
	absent := filepath.Join(t.TempDir(), "absent.sock")
	r := c.exec(nil, "--address", absent, "-c", "echo never")
	assert.Equal(t, 125, r.code, r)
	assert.Contains(t, r.stderr, absent, r)
	assert.NotContains(t, r.stdout, "never", r)
}

func TestCLIExecBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"unknown runtime", []string{"--runtime", "cobol", "-c", "echo never"}},
		{"bad memory size", []string{"--memory", "12qb", "-c", "echo never"}},
		{"zero timeout", []string{"--timeout", "0", "-c", "echo never"}},
		{"negative timeout", []string{"--timeout=-1s", "-c", "echo never"}},
		{"unknown flag", []string{"--no-such-flag", "-c", "echo never"}},
		{"missing code file", []string{filepath.Join(os.TempDir(), "sandbox-runner-it-absent.sh")}},
		{"tmp larger than memory", []string{"--tmp-size", "10t", "-c", "echo never"}},
		{"tmp larger than the memory asked for", []string{"--memory", "64m", "--tmp-size", "65m", "-c", "echo never"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(t)
			r := c.exec(nil, tc.args...)
			assert.Equal(t, 2, r.code, r)
			assert.NotContains(t, r.stdout, "never", r)
			assert.NotEmpty(t, r.stderr, "a refusal should say why")
		})
	}
}

func TestCLIExecMissingCode(t *testing.T) {
	c := newCLI(t)
	// With a terminal on stdin there is no code to read from it.
	pts := openPTY(t)
	r := c.exec(pts)
	assert.Equal(t, 2, r.code, r)
	assert.Contains(t, r.stderr, "no code", r)
}

// openPTY returns the terminal end of a new pseudo-terminal; both ends
// close when t ends.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	ptmx := os.NewFile(uintptr(fd), "/dev/ptmx")
	t.Cleanup(func() { ptmx.Close() })
	require.NoError(t, unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	require.NoError(t, err)
	pts, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { pts.Close() })
	return pts
}

func TestCLIExecInterrupt(t *testing.T) {
	c := newCLI(t)
	cmd := c.command(nil, c.execArgs("-c", "echo started; sleep 100")...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())

	// Interrupt once the task surely runs, as Ctrl-C would.
	line := make([]byte, len("started\n"))
	_, err = io.ReadFull(stdout, line)
	require.NoError(t, err, "stderr:\n%s", stderr.String())
	require.Equal(t, "started\n", string(line))
	time.Sleep(300 * time.Millisecond)
	interrupted := time.Now()
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	_, _ = io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	var exitErr *exec.ExitError
	if err != nil {
		require.ErrorAs(t, err, &exitErr)
	}
	assert.Equal(t, runner.ExitCancelled, cmd.ProcessState.ExitCode(), "stderr:\n%s", stderr.String())
	assert.Less(t, time.Since(interrupted), 5*time.Second)
}

func TestCLIExecEmptyStdinIsMissingCode(t *testing.T) {
	c := newCLI(t)
	// No FILE, no -c and nothing on stdin (/dev/null, as under cron or
	// CI): there is no code, which is bad input, not an empty program.
	r := c.exec(nil)
	assert.Equal(t, 2, r.code, r)
	assert.Contains(t, r.stderr, "no code", r)
}

func TestCLIExecJSONBinaryOutput(t *testing.T) {
	c := newCLI(t)
	r := c.exec(nil, "--json", "-c", `printf 'a\377\000b'`)
	require.Equal(t, 0, r.code, r)
	res, raw := decodeResult(t, r)
	assert.Equal(t, "base64", raw["stdout"].(map[string]any)["encoding"], r)
	assert.Equal(t, []byte("a\xff\x00b"), res.Stdout.Data)
}
