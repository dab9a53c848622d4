package initcmd_test

import (
	"bytes"
	"errors"
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

	"github.com/sandbox-runner/sandbox-runner/runner/initcmd"
)

func TestEncode(t *testing.T) {
	b, err := initcmd.Encode(initcmd.Command{Args: []string{"sh", "-c", "x"}, Env: []string{"A=1"}, Dir: "/tmp", Deadline: 1500 * time.Microsecond})
	require.NoError(t, err)
	assert.Equal(t, "sandbox-runner-command 1\x002\x00/tmp\x003\x00sh\x00-c\x00x\x001\x00A=1\x00", string(b), "the deadline rounds up")

	_, err = initcmd.Encode(initcmd.Command{})
	assert.Error(t, err)
	_, err = initcmd.Encode(initcmd.Command{Args: []string{"a\x00b"}})
	assert.Error(t, err, "a NUL would shift every later field")
}

// initBinary compiles cmd/sandbox-runner-init once per test binary, the
// way the Makefile does.
func initBinary(t *testing.T) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no C compiler: install gcc (make deps does)")
		}
		t.Skip("no C compiler")
	}
	bin := filepath.Join(t.TempDir(), "init")
	out, err := exec.Command(cc, "-static", "-O2", "-Wall", "-Werror", "-o", bin, "../../cmd/sandbox-runner-init/init.c").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// runInit runs the init outside any sandbox on command c and returns its
// exit status and output. Outside a sandbox it is not PID 1, and kills
// the task's process group where it would kill the pid namespace.
func runInit(t *testing.T, bin string, c initcmd.Command, started func(*os.Process)) (int, string) {
	t.Helper()
	b, err := initcmd.Encode(c)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "command")
	require.NoError(t, os.WriteFile(file, b, 0o600))
	return runFile(t, bin, file, started)
}

func runFile(t *testing.T, bin, file string, started func(*os.Process)) (int, string) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, file)
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	if started != nil {
		started(cmd.Process)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), out.String()
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("the init did not exit; output so far: %s", out.String())
		return 0, ""
	}
}

func sh(script string) initcmd.Command {
	return initcmd.Command{Args: []string{"sh", "-c", script, "sh"}, Env: []string{"PATH=/usr/bin:/bin"}}
}

func TestInitPassesTheTasksStatusThrough(t *testing.T) {
	bin := initBinary(t)
	for _, tc := range []struct {
		name   string
		script string
		code   int
	}{
		{"exit code", "exit 3", 3},
		{"abort is SIGABRT, not ignored as by a PID 1", "kill -ABRT $$", 128 + int(syscall.SIGABRT)},
		{"a self-sent SIGTERM ends the task", "kill -TERM $$; sleep 5", 128 + int(syscall.SIGTERM)},
		{"a missing command", "exec /no/such/program", 127},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runInit(t, bin, sh(tc.script), nil)
			assert.Equal(t, tc.code, code, out)
		})
	}
}

func TestInitRunsTheCommandAsWritten(t *testing.T) {
	bin := initBinary(t)
	dir := t.TempDir()
	c := initcmd.Command{
		Args: []string{"sh", "-c", `echo "$0 $1 $2"; echo "$GREETING"; pwd`, "zero", "one two", ""},
		Env:  []string{"PATH=/usr/bin:/bin", "GREETING=hello=world"},
		Dir:  dir,
	}
	code, out := runInit(t, bin, c, nil)
	assert.Equal(t, 0, code)
	assert.Equal(t, "zero one two \nhello=world\n"+dir+"\n", out)

	code, out = runInit(t, bin, initcmd.Command{Args: []string{"no-such-command-anywhere"}, Env: []string{"PATH=/usr/bin:/bin"}}, nil)
	assert.Equal(t, 127, code)
	assert.Contains(t, out, "no-such-command-anywhere: command not found")
}

func TestInitRefusesAMalformedCommandFile(t *testing.T) {
	bin := initBinary(t)
	for name, content := range map[string]string{
		"empty":            "",
		"another format":   "{\"args\":[\"true\"]}",
		"truncated":        "sandbox-runner-command 1\x000\x00/\x002\x00true\x00",
		"trailing garbage": "sandbox-runner-command 1\x000\x00/\x001\x00true\x000\x00extra\x00",
		"negative count":   "sandbox-runner-command 1\x000\x00/\x00-1\x000\x00",
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "command")
			require.NoError(t, os.WriteFile(file, []byte(content), 0o600))
			code, out := runFile(t, bin, file, nil)
			assert.Equal(t, 126, code, out)
			assert.Contains(t, out, "sandbox-runner-init: ")
		})
	}
}

// alive tells whether the process whose pid is in file still runs.
func alive(t *testing.T, file string) bool {
	t.Helper()
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	// A zombie of a process that is not ours would still answer kill 0:
	// read its state instead.
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return fields[0] != "Z" && fields[0] != "X"
}

func TestInitKillsEverythingAtItsDeadline(t *testing.T) {
	bin := initBinary(t)
	dir := t.TempDir()
	c := sh(`trap '' TERM; sleep 60 & echo $! > ` + dir + `/bg; echo $$ > ` + dir + `/main; wait`)
	c.Deadline = 300 * time.Millisecond
	begun := time.Now()
	code, out := runInit(t, bin, c, nil)
	assert.Equal(t, initcmd.ExitDeadline, code, out)
	assert.Less(t, time.Since(begun), 5*time.Second)
	assert.Eventually(t, func() bool { return !alive(t, dir+"/bg") && !alive(t, dir+"/main") }, 2*time.Second, 10*time.Millisecond,
		"the task and its background process outlived the deadline")
}

func TestInitKillsWhatTheTaskLeftWhenItEnds(t *testing.T) {
	bin := initBinary(t)
	dir := t.TempDir()
	code, out := runInit(t, bin, sh(`sleep 60 & echo $! > `+dir+`/bg; exit 0`), nil)
	assert.Equal(t, 0, code, out)
	assert.Eventually(t, func() bool { return !alive(t, dir+"/bg") }, 2*time.Second, 10*time.Millisecond)
}

func TestInitForwardsSignalsToTheTask(t *testing.T) {
	bin := initBinary(t)
	dir := t.TempDir()
	code, out := runInit(t, bin, sh(`trap 'echo got TERM; exit 9' TERM; touch `+dir+`/ready; while :; do sleep 0.05; done`), func(p *os.Process) {
		require.Eventually(t, func() bool { _, err := os.Stat(dir + "/ready"); return err == nil }, 5*time.Second, 10*time.Millisecond)
		require.NoError(t, p.Signal(syscall.SIGTERM))
	})
	assert.Equal(t, 9, code)
	assert.Equal(t, "got TERM\n", out)
}

// A task that makes its parent its tracer gets a truthful verdict: the
// init lets go of it and hands it its signal, where a PID 1 task made the
// shim its tracer and was reported as exited with 4294967295.
func TestInitLetsGoOfATaskThatTracesItself(t *testing.T) {
	bin := initBinary(t)
	cc, _ := exec.LookPath("cc")
	src := filepath.Join(t.TempDir(), "traceme.c")
	prog := filepath.Join(t.TempDir(), "traceme")
	require.NoError(t, os.WriteFile(src, []byte(`#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <unistd.h>
static void on_usr1(int s) { (void)s; write(1, "usr1\n", 5); _exit(7); }
int main(void) {
	signal(SIGUSR1, on_usr1);
	if (ptrace(PTRACE_TRACEME, 0, 0, 0) != 0) { perror("ptrace"); return 2; }
	raise(SIGUSR1);
	sleep(5);
	return 3;
}
`), 0o600))
	out, err := exec.Command(cc, "-o", prog, src).CombinedOutput()
	require.NoError(t, err, "%s", out)
	code, output := runInit(t, bin, initcmd.Command{Args: []string{prog}}, nil)
	assert.Equal(t, 7, code, output)
	assert.Equal(t, "usr1\n", output)
}

// A pooled sandbox's init starts before its task is known: its command
// file is a FIFO, which it reads when the runner writes the command, and
// the deadline counts from then, not from the init's start.
func TestInitWaitsForTheCommandInAFIFO(t *testing.T) {
	bin := initBinary(t)
	fifo := filepath.Join(t.TempDir(), "command")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	c := sh("sleep 0.4; echo ran")
	c.Deadline = 600 * time.Millisecond
	b, err := initcmd.Encode(c)
	require.NoError(t, err)
	begun := time.Now()
	code, out := runFile(t, bin, fifo, func(p *os.Process) {
		time.Sleep(500 * time.Millisecond)
		require.NoError(t, p.Signal(syscall.Signal(0)), "the init waits for its command")
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = w.Write(b)
		require.NoError(t, err)
		require.NoError(t, w.Close())
	})
	assert.Equal(t, 0, code, "the deadline counts from the command, 0.4 s before it: %s", out)
	assert.Equal(t, "ran\n", out)
	assert.Greater(t, time.Since(begun), 900*time.Millisecond)
}

// A started-ahead sandbox's init reports its exit status, one byte, on the
// status FIFO beside its command file, which it opens before it waits for
// the command; with no FIFO there, or no reader, it runs as ever.
func TestInitWritesItsStatusToTheStatusFIFO(t *testing.T) {
	bin := initBinary(t)
	for _, tc := range []struct {
		name     string
		script   string
		deadline time.Duration
		code     int
	}{
		{"exit code", "exit 3", 0, 3},
		{"signal", "kill -KILL $$", 0, 128 + int(syscall.SIGKILL)},
		{"deadline", "sleep 5", 200 * time.Millisecond, initcmd.ExitDeadline},
		{"a missing command", "exec /no/such/program", 0, 127},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			command, status := filepath.Join(dir, initcmd.File), filepath.Join(dir, initcmd.StatusFile)
			require.NoError(t, syscall.Mkfifo(command, 0o600))
			require.NoError(t, syscall.Mkfifo(status, 0o600))
			r, err := os.OpenFile(status, os.O_RDONLY|syscall.O_NONBLOCK, 0)
			require.NoError(t, err)
			defer r.Close()
			c := sh(tc.script)
			c.Deadline = tc.deadline
			b, err := initcmd.Encode(c)
			require.NoError(t, err)
			code, out := runFile(t, bin, command, func(*os.Process) {
				w, err := os.OpenFile(command, os.O_WRONLY, 0)
				require.NoError(t, err)
				// As the runner: the init has the status FIFO open by
				// now, and no task can open it once it is gone.
				require.NoError(t, os.Remove(status))
				_, err = w.Write(b)
				require.NoError(t, err)
				require.NoError(t, w.Close())
			})
			assert.Equal(t, tc.code, code, out)
			got, err := io.ReadAll(r)
			require.NoError(t, err)
			assert.Equal(t, []byte{byte(tc.code)}, got, "the status FIFO says what the exit says")
		})
	}

	// No reader: the init cannot open the FIFO, and runs the task anyway.
	dir := t.TempDir()
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, initcmd.StatusFile), 0o600))
	command := filepath.Join(dir, initcmd.File)
	b, err := initcmd.Encode(sh("exit 5"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(command, b, 0o600))
	code, out := runFile(t, bin, command, nil)
	assert.Equal(t, 5, code, out)
}
