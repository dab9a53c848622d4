package oci

// Paths inside the sandbox.
const (
	// CodeDir is where the task's files are bind-mounted, read-only.
	CodeDir = "/code"
	// ScratchDir is the size-limited writable tmpfs and the working directory.
	ScratchDir = "/tmp"
)

// Defaults for the parts of a Config that a caller leaves zero.
const (
	DefaultUID       = 65534 // nobody
	DefaultGID       = 65534 // nogroup
	DefaultHostname  = "sandbox"
	DefaultOOMScore  = 1000 // first in line when the host runs out of memory
	DefaultNoFile    = 1024
	DefaultShmBytes  = 64 << 20
	DefaultCPUPeriod = 100000 // microseconds, as the kernel's default CFS period
	DefaultPATH      = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Config is what one task's spec is built from.
type Config struct {
	// Args is the command run as the task's process; required.
	Args []string
	// Env is the complete environment (KEY=VALUE). When it sets no PATH,
	// DefaultPATH is added.
	Env []string
	// Cwd is the working directory; default ScratchDir.
	Cwd string
	// UID and GID the process runs as. Zero means DefaultUID/DefaultGID:
	// a task never runs as root.
	UID, GID uint32
	// CodeSource is the host directory bind-mounted read-only at CodeDir.
	// Empty means no code mount.
	CodeSource string
	// ScratchSource, when set, is a host directory (a size-limited tmpfs
	// the caller mounted) bind-mounted read-write at ScratchDir instead of
	// a fresh tmpfs, so that the stages of one task (compile, then run)
	// share their scratch space. Must be absolute.
	ScratchSource string
	// ReadOnlyBinds are further host paths bind-mounted read-only (and
	// nosuid, nodev) into the sandbox, such as a warm-pool sandbox's
	// entrypoint and its command directory. Both paths must be absolute.
	ReadOnlyBinds []Bind
	// Annotations are added to the spec, for the runtime's eyes (such as
	// the runc shim's grouping); they change nothing inside the sandbox.
	Annotations map[string]string
	// Hostname inside the UTS namespace; default DefaultHostname.
	Hostname string
	// Resources are the cgroup and rlimit limits.
	Resources Resources
}

// Resources are the limits on one task. Zero values are invalid except
// where a default is documented: a sandbox without limits is never built
// by accident.
type Resources struct {
	// MemoryBytes is the cgroup memory limit; swap is set equal to it,
	// so the task gets no swap at all. Required, > 0.
	MemoryBytes int64
	// CPUs is the CFS quota in CPUs (1.5 = 150ms per 100ms). Required, at
	// least 0.01: the kernel refuses a quota under 1ms.
	CPUs float64
	// CPUSet lists the CPUs the task may run on (the cpuset cgroup); empty
	// means every CPU. Programs that size themselves to the CPUs they see
	// (nproc, the JVM, Node's availableParallelism) then see these.
	CPUSet []int
	// Pids is the cgroup pids limit. Required, > 0.
	Pids int64
	// TmpBytes is the size of the /tmp tmpfs, and RLIMIT_FSIZE. Required, > 0.
	TmpBytes int64
	// ShmBytes is the size of /dev/shm; default DefaultShmBytes.
	ShmBytes int64
	// NoFile is RLIMIT_NOFILE (soft = hard); default DefaultNoFile.
	NoFile uint64
}

// Bind is one read-only bind mount.
type Bind struct {
	Source      string // on the host
	Destination string // in the sandbox
}
