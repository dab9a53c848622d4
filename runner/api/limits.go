package api

import (
	"reflect"
	"time"
)

// Default limits, applied by the runner to every limit a task leaves zero.
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

// Merge returns l with every non-zero field of over in its place: a
// run's limits on top of its batch's.
func (l Limits) Merge(over Limits) Limits {
	out := reflect.ValueOf(&l).Elem()
	o := reflect.ValueOf(over)
	for i := range o.NumField() {
		if !o.Field(i).IsZero() {
			out.Field(i).Set(o.Field(i))
		}
	}
	return l
}
