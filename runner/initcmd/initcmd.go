// Package initcmd is the contract between the runner and
// sandbox-runner-init, the PID 1 of every sandbox (cmd/sandbox-runner-init):
// where the init and its command file are inside the sandbox, and the
// command file's format, which the runner writes with Encode and the init
// parses.
package initcmd

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Where the init and its command are inside every sandbox: two read-only
// bind mounts of the runner's.
const (
	// Path is the init binary.
	Path = "/.sandbox-runner/init"
	// Dir is the directory of this sandbox alone that holds the command
	// file; the runner writes the file there on the host before start.
	Dir = "/.sandbox-runner/cmd"
	// File is the command file's name in Dir.
	File = "command"
	// StatusFile is the name in Dir of a started-ahead sandbox's status
	// FIFO: the init opens its writing end before it waits for the
	// command, the runner unlinks it before it writes the command, and
	// the init writes its exit status there, one byte, as it exits.
	StatusFile = "status"
)

// magic opens every command file; the init refuses any other.
const magic = "sandbox-runner-command 1"

// ExitDeadline is the init's exit status when its deadline killed the
// task, as timeout(1)'s.
const ExitDeadline = 124

// Command is what the init runs.
type Command struct {
	// Args is the task's command; Args[0] is looked up in Env's PATH.
	Args []string
	// Env is the task's whole environment.
	Env []string
	// Dir is the working directory; empty keeps the container's.
	Dir string
	// Deadline is how long after its start the init kills every process
	// of the sandbox and exits with ExitDeadline; 0 means never.
	Deadline time.Duration
}

// Argv is the container process's command line: the init and the path of
// its command file.
func Argv() []string { return []string{Path, Dir + "/" + File} }

// Encode returns c in the command file's format: NUL-terminated fields,
// the magic, the deadline in milliseconds, the directory, the argument
// count and arguments, the environment count and entries.
func Encode(c Command) ([]byte, error) {
	if len(c.Args) == 0 || c.Args[0] == "" {
		return nil, errors.New("init command: no command to run")
	}
	if c.Deadline < 0 {
		return nil, errors.New("init command: negative deadline")
	}
	// Rounded up: a deadline under a millisecond is not "none".
	ms := (c.Deadline + time.Millisecond - 1).Milliseconds()
	fields := []string{magic, strconv.FormatInt(ms, 10), c.Dir, strconv.Itoa(len(c.Args))}
	fields = append(fields, c.Args...)
	fields = append(fields, strconv.Itoa(len(c.Env)))
	fields = append(fields, c.Env...)
	var b bytes.Buffer
	for _, f := range fields {
		if strings.IndexByte(f, 0) >= 0 {
			return nil, errors.New("init command: a field holds a NUL byte")
		}
		b.WriteString(f)
		b.WriteByte(0)
	}
	return b.Bytes(), nil
}
