// Command sandbox-runner-init is the entrypoint of a warm-pool sandbox.
//
// A pooled container is created (namespaces, cgroup, seccomp filter,
// mounts in place) before anyone knows what it will run, so its process
// cannot be the task's command. It is this program instead, bind-mounted
// read-only into the sandbox. When the runner claims the sandbox for a
// task, it writes the task's command to a read-only directory and starts
// the container; this program reads the command and replaces itself with
// it through execve. It runs as the sandbox's unprivileged user under the
// sandbox's seccomp filter, adds no privilege, keeps no state, and is gone
// before the task's first instruction: the task is PID 1, as on the cold
// path.
//
// It imports next to nothing, so that it starts in well under a
// millisecond and costs no memory while the sandbox waits.
package main

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"syscall"
)

// commandFile is where the runner writes the task's command, inside the
// read-only directory it mounts for this sandbox alone.
const commandFile = "/.sandbox-runner/cmd/command.json"

// Exit statuses for a command that cannot be run, as POSIX shells use
// them: the task's result then says exactly that.
const (
	exitCannotRun = 126
	exitNotFound  = 127
)

type command struct {
	Args []string `json:"args"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir"`
}

func main() {
	b, err := os.ReadFile(commandFile)
	if err != nil {
		fail(exitCannotRun, "reading the task's command: "+err.Error())
	}
	var c command
	if err := json.Unmarshal(b, &c); err != nil || len(c.Args) == 0 {
		fail(exitCannotRun, "the task's command is malformed")
	}
	// LookPath searches this process's PATH: take the task's.
	os.Clearenv()
	for _, kv := range c.Env {
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				_ = os.Setenv(kv[:i], kv[i+1:])
				break
			}
		}
	}
	if c.Dir != "" {
		if err := os.Chdir(c.Dir); err != nil {
			fail(exitCannotRun, "changing to the working directory: "+err.Error())
		}
	}
	path, err := exec.LookPath(c.Args[0])
	if err != nil {
		fail(exitNotFound, c.Args[0]+": command not found")
	}
	err = syscall.Exec(path, c.Args, c.Env)
	code := exitCannotRun
	if errors.Is(err, fs.ErrNotExist) {
		code = exitNotFound
	}
	fail(code, c.Args[0]+": "+err.Error())
}

func fail(code int, msg string) {
	_, _ = os.Stderr.WriteString("sandbox-runner-init: " + msg + "\n")
	os.Exit(code)
}
