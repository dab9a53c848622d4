package runner

import (
	"fmt"
	"io"

	"github.com/containerd/errdefs"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

// Default limits, applied by Run to every limit a task leaves zero
// (defined in api, where a client sees them too).
const (
	DefaultTimeout         = api.DefaultTimeout
	DefaultCompileTimeout  = api.DefaultCompileTimeout
	DefaultMemory          = api.DefaultMemory
	DefaultCompileMemory   = api.DefaultCompileMemory
	DefaultCPUs            = api.DefaultCPUs
	DefaultPids            = api.DefaultPids
	DefaultOutputLimit     = api.DefaultOutputLimit
	DefaultTmpSize         = api.DefaultTmpSize
	DefaultMaxFiles        = api.DefaultMaxFiles
	DefaultMaxFileSize     = api.DefaultMaxFileSize
	DefaultOutputFiles     = api.DefaultOutputFiles
	DefaultOutputFilesSize = api.DefaultOutputFilesSize
)

// Upper bounds that no task may ask for, whatever the host has.
const (
	MaxTimeout     = api.MaxTimeout
	MaxOutputLimit = api.MaxOutputLimit
	MaxPids        = api.MaxPids
	MaxOutputFiles = api.MaxOutputFiles
)

// Task is one piece of code to run.
type Task struct {
	// ID names the container, its snapshot and its task dir. Empty
	// means a fresh random one; a given one must be unused.
	ID string
	// Runtime names the catalog entry (bash, python, ...).
	Runtime string
	// Image overrides the runtime's image.
	Image string
	// OCIRuntime names the OCI runtime (runc, crun, runsc) the task runs
	// under. Empty: its catalog runtime's, else the runner's default.
	OCIRuntime string
	// Pull says when the image is pulled, with the runner's WithPull:
	// images.PullMissing (empty means it), PullAlways or PullNever.
	Pull images.PullPolicy
	// Files are written, read-only, to /code. The first is the entry point;
	// when its Name is empty it gets the runtime's file name.
	Files []File
	// Args are appended to the runtime's command.
	Args []string
	// Env entries (KEY=VALUE) are added after the image's and runtime's.
	Env []string
	// Stdin, when not nil, is forwarded to the task's standard input.
	// A reader that never ends (an open pipe) may still be read from by a
	// goroutine after Run returns, until it ends or fails: pass one that
	// ends (a file, a buffer) in long-lived programs.
	Stdin io.Reader
	// Stdout and Stderr, when not nil, receive the task's output as it is
	// produced, up to the output limit. The Result holds it as well.
	Stdout, Stderr io.Writer
	// Limits on the task; zero fields take the defaults.
	Limits Limits
	// Outputs are glob patterns under /tmp (such as "/tmp/out/*.png") of
	// files to return in Result.Files when the task ends. See
	// CheckOutputPattern.
	Outputs []string
}

// File is one file of a task.
type File struct {
	// Name is a relative path inside /code, such as "main.py" or
	// "lib/util.py". It may not leave /code.
	Name    string
	Content []byte
	// Executable makes the file mode 0755 instead of 0644.
	Executable bool
}

// Limits bound one task. The zero value means the defaults. They are
// api.Limits, which the api's WrittenLimits apply to.
type Limits = api.Limits

// hostFacts bound the limits a task may ask for.
type hostFacts struct {
	cpus   int
	memory int64
}

// withDefaults fills zero fields and rejects out-of-range ones.
func withDefaults(l Limits, host hostFacts) (Limits, error) {
	compileDefault := l.CompileMemory == 0
	l = l.Filled()
	if compileDefault && l.CompileMemory > host.memory {
		// A small host: the default is what it has.
		l.CompileMemory = max(host.memory, l.Memory)
	}
	switch {
	case l.Timeout < 0 || l.Timeout > MaxTimeout:
		return l, invalid("timeout %s out of range: give a duration above 0 and at most %s", l.Timeout, MaxTimeout)
	case l.CompileTimeout < 0 || l.CompileTimeout > MaxTimeout:
		return l, invalid("compile timeout %s out of range: give a duration above 0 and at most %s", l.CompileTimeout, MaxTimeout)
	case l.Memory < 4<<20:
		return l, invalid("memory limit %d bytes is too small: give at least 4MiB", l.Memory)
	case l.Memory > host.memory:
		return l, invalid("memory limit %d bytes is more than the host's %d", l.Memory, host.memory)
	case l.CompileMemory < 4<<20:
		return l, invalid("compile memory limit %d bytes is too small: give at least 4MiB", l.CompileMemory)
	case l.CompileMemory > host.memory:
		return l, invalid("compile memory limit %d bytes is more than the host's %d", l.CompileMemory, host.memory)
	case !(l.CPUs >= 0.01) || l.CPUs > float64(host.cpus): // NaN too
		return l, invalid("cpus %g out of range: give 0.01 to %d (the host's CPUs)", l.CPUs, host.cpus)
	case l.Pids < 1 || l.Pids > MaxPids:
		return l, invalid("pids limit %d out of range: give 1 to %d", l.Pids, MaxPids)
	case l.OutputLimit < 0 || l.OutputLimit > MaxOutputLimit:
		return l, invalid("output limit %d out of range: give 1 to %d bytes", l.OutputLimit, MaxOutputLimit)
	case l.CPUTime < 0 || l.CPUTime > MaxTimeout:
		return l, invalid("cpu time %s out of range: give a duration above 0 and at most %s, or none for no CPU-time limit", l.CPUTime, MaxTimeout)
	case l.OutputFiles < 0 || l.OutputFiles > MaxOutputFiles:
		return l, invalid("output files %d out of range: give 1 to %d", l.OutputFiles, MaxOutputFiles)
	case l.OutputFilesSize < 0 || l.OutputFilesSize > MaxOutputLimit:
		return l, invalid("output files size %d out of range: give 1 to %d bytes", l.OutputFilesSize, MaxOutputLimit)
	case l.TmpSize < 1<<20:
		return l, invalid("tmp size %d bytes is too small: give at least 1MiB", l.TmpSize)
	case l.TmpSize > l.Memory:
		// tmpfs pages are charged to the task's memory cgroup: a larger
		// /tmp could never be filled, and its size would be a lie.
		return l, invalid("tmp size %d bytes is more than the memory limit %d: /tmp is held in the task's memory, give at most the memory limit", l.TmpSize, l.Memory)
	}
	return l, nil
}

// invalid returns an error that is both ErrInvalidTask and
// errdefs.ErrInvalidArgument, with only the message as its text.
func invalid(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

func (e *invalidError) Is(target error) bool {
	return target == ErrInvalidTask || target == errdefs.ErrInvalidArgument
}
