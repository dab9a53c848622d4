package runner

import (
	"fmt"
	"io"
	"time"

	"github.com/containerd/errdefs"

	"github.com/sandbox-runner/sandbox-runner/images"
)

// Default limits, applied by Run to every limit a task leaves zero.
const (
	DefaultTimeout = 30 * time.Second
	// DefaultCompileTimeout is generous: javac and the .NET SDK start slowly.
	DefaultCompileTimeout = 60 * time.Second
	DefaultMemory         = 512 << 20
	// DefaultCompileMemory fits real compilers: g++ on a heavy template
	// file, javac. A run limit above it is the compile stage's too.
	DefaultCompileMemory = 1 << 30
	DefaultCPUs          = 1.0
	DefaultPids          = 128
	DefaultOutputLimit   = 1 << 20 // per stream
	DefaultTmpSize       = 64 << 20
	DefaultMaxFiles      = 100
	DefaultMaxFileSize   = 16 << 20 // all files together
	// DefaultOutputFiles and DefaultOutputFilesSize cap the files a task
	// returns (Task.Outputs): how many, and their bytes together.
	DefaultOutputFiles     = 16
	DefaultOutputFilesSize = 1 << 20
)

// Upper bounds that no task may ask for, whatever the host has.
const (
	MaxTimeout     = 24 * time.Hour
	MaxOutputLimit = 1 << 30
	MaxPids        = 1 << 16
	// MaxOutputFiles bounds Limits.OutputFiles.
	MaxOutputFiles = 4096
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

// Limits bound one task. The zero value means the defaults.
type Limits struct {
	// Timeout is the wall-clock limit from start to exit.
	Timeout time.Duration
	// CompileTimeout is the compile stage's wall-clock limit.
	CompileTimeout time.Duration
	// Memory in bytes; swap is not allowed on top.
	Memory int64
	// CompileMemory is the compile stage's memory limit, in bytes.
	CompileMemory int64
	// CPUs is the CPU quota (0.5 = half a core).
	CPUs float64
	// Pids limits processes and threads together.
	Pids int64
	// OutputLimit caps each of stdout and stderr, in bytes.
	OutputLimit int64
	// TmpSize is the size of the writable /tmp and the largest file the
	// task may write; at most Memory, which its pages count against.
	// Default DefaultTmpSize, or Memory when that is less.
	TmpSize int64
	// CPUTime limits the CPU time (user and system, all threads and
	// processes) the run stage may use from its start; the task is killed
	// when it passes it. Zero: no limit, the wall clock alone.
	CPUTime time.Duration
	// OutputFiles caps how many files Outputs return; default
	// DefaultOutputFiles.
	OutputFiles int
	// OutputFilesSize caps the bytes of the returned files together;
	// default DefaultOutputFilesSize.
	OutputFilesSize int64
}

// hostFacts bound the limits a task may ask for.
type hostFacts struct {
	cpus   int
	memory int64
}

// Filled returns l with its zero fields set to the defaults, as a task
// gets them; it checks nothing.
func (l Limits) Filled() Limits {
	if l.Timeout == 0 {
		l.Timeout = DefaultTimeout
	}
	if l.CompileTimeout == 0 {
		l.CompileTimeout = DefaultCompileTimeout
	}
	if l.Memory == 0 {
		l.Memory = DefaultMemory
	}
	if l.CompileMemory == 0 {
		l.CompileMemory = max(DefaultCompileMemory, l.Memory)
	}
	if l.CPUs == 0 {
		l.CPUs = DefaultCPUs
	}
	if l.Pids == 0 {
		l.Pids = DefaultPids
	}
	if l.OutputLimit == 0 {
		l.OutputLimit = DefaultOutputLimit
	}
	if l.TmpSize == 0 {
		// Never more than the memory limit, which /tmp's pages count
		// against anyway.
		l.TmpSize = min(DefaultTmpSize, l.Memory)
	}
	if l.OutputFiles == 0 {
		l.OutputFiles = DefaultOutputFiles
	}
	if l.OutputFilesSize == 0 {
		l.OutputFilesSize = DefaultOutputFilesSize
	}
	return l
}

// withDefaults fills zero fields and rejects out-of-range ones.
func (l Limits) withDefaults(host hostFacts) (Limits, error) {
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
