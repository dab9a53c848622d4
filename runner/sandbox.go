package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/cio"
	ctrdoci "github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/sandbox-runner/sandbox-runner/oci"
	"github.com/sandbox-runner/sandbox-runner/runner/initcmd"
)

// One lifecycle makes every sandbox, cold or pooled:
//
//	taskDir  a task's private host dir and its identity (one per task)
//	  newSandbox   a container and its task, created, not started, with
//	               the init as PID 1 waiting for a command (one per stage)
//	  claim        the task's command, limits and streams handed to it
//	  execute      started, timed, killed if need be, its verdict read
//	  destroy      task, container and snapshot removed
//	remove   the dir unmounted and removed, the identity freed
//
// The cold path makes a sandbox and claims it at once; the warm pool makes
// them ahead of time, starts them (startAhead: the init then waits on a
// FIFO for its command, which execute writes) and claims one when a task
// comes.

// taskDir is a task's private directory on the host, tasks/<id> under the
// state dir: root's, 0700, so no other host user can reach anything in it.
// It holds the owner file, code/ (the task's files, owned by the task's
// identity and readable by it alone, read-only inside), for a compiled
// task scratch/ (the tmpfs its stages share as /tmp, the identity's,
// 0700), one cmd-<sandbox>/ per sandbox (its init's command) and fifo/
// (the output FIFOs).
type taskDir struct {
	path string
	uid  uint32
	ids  *identities
}

// newTaskDir makes task id's dir and reserves its identity. On error
// nothing is left.
func (r *Runner) newTaskDir(id string) (_ *taskDir, retErr error) {
	path := filepath.Join(r.opts.stateDir, "tasks", id)
	if err := os.Mkdir(path, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("task id %s is in use: %w", id, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("creating task dir: %w", err)
	}
	d := &taskDir{path: path, ids: r.ids}
	defer func() {
		if retErr != nil {
			_ = d.remove()
		}
	}()
	if err := os.WriteFile(filepath.Join(path, ownerFile), []byte(r.pid+" "+r.start), 0o600); err != nil {
		return nil, fmt.Errorf("creating task dir: %w", err)
	}
	uid, err := r.ids.reserve(id)
	if err != nil {
		return nil, err
	}
	d.uid = uid
	if err := d.private(d.code(), 0o500); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *taskDir) code() string    { return filepath.Join(d.path, "code") }
func (d *taskDir) scratch() string { return filepath.Join(d.path, scratchDir) }
func (d *taskDir) fifos() string   { return filepath.Join(d.path, "fifo") }

// private makes dir, owned by the task's identity, with mode.
func (d *taskDir) private(dir string, mode os.FileMode) error {
	if err := os.Mkdir(dir, mode); err != nil {
		return fmt.Errorf("creating task dir: %w", err)
	}
	// Chmod as well: the umask may have narrowed the mode.
	if err := errors.Join(os.Chown(dir, int(d.uid), int(d.uid)), os.Chmod(dir, mode)); err != nil {
		return fmt.Errorf("creating task dir: %w", err)
	}
	return nil
}

// writeCode writes the task's files into code/.
func (d *taskDir) writeCode(files []File) error { return writeCode(d.code(), files, d.uid) }

// mountScratch mounts the tmpfs a compiled task's stages share as /tmp.
func (d *taskDir) mountScratch(size int64) error { return mountScratch(d.scratch(), size, d.uid) }

// remove unmounts and removes the dir, then frees the identity: only once
// nothing of the task is left may another task get its uid.
func (d *taskDir) remove() error {
	if err := removeTaskDir(d.path); err != nil {
		return err
	}
	if d.uid == 0 {
		return nil
	}
	return d.ids.release(d.uid)
}

// sandboxSpec is what a sandbox is made of.
type sandboxSpec struct {
	id     string // container and snapshot
	task   string // the task's id, for the labels
	dir    *taskDir
	image  string
	img    client.Image
	limits Limits
	oci    OCIRuntime
	// scratch binds the task dir's scratch tmpfs at /tmp, for the stages
	// of a compiled task; else /tmp is a tmpfs of the sandbox's own.
	scratch     bool
	annotations map[string]string
	// groups, when set, gives the sandbox a shim group to join (see
	// newGroupedSandbox); else it has a shim of its own, or the group
	// that annotations name.
	groups shimGrouper
	// binds are further read-only binds, such as a batch's compiled
	// program in each run's /tmp (see artifacts).
	binds []oci.Bind
}

// sandbox is one container and its task, created and not yet started
// (or, in the warm pool, started ahead): namespaces, cgroup, seccomp
// filter and mounts in place, its init waiting to be started to read the
// command claim writes (or waiting for the command itself).
type sandbox struct {
	spec      sandboxSpec
	cmdDir    string
	cpus      []int    // the CPUs it may run on
	cpuSets   *cpuSets // where they came from
	cpuOnline string   // the file its /sys/devices/system/cpu/online is
	claimed   bool     // a task runs on cpus
	container client.Container
	task      client.Task
	streams   *streams
	stdin     *gate
	undo      cleanup
	// exited: its task's exit was seen, so nothing of it runs.
	exited bool
	// startedAhead: its init runs already, waiting for the command that
	// start writes into the FIFO in cmdDir (see startAhead); command is
	// that command, from claim.
	startedAhead bool
	command      []byte
	// status is the reading end of the status FIFO of a sandbox started
	// ahead, where its init writes its exit status (see readStatus); nil
	// when there is none to trust.
	status *os.File
	// pendingExit is containerd's exit of a task whose verdict came from
	// its init: containerd deletes a task only once it has seen the
	// exit, so the teardown waits for it.
	pendingExit <-chan client.ExitStatus
	// init and shim are its init's and shim's host processes, when
	// started ahead (see watchProcesses).
	init, shim hostProcess
	// limits are the task's, as claim handed them over.
	limits Limits
}

// newSandbox makes the sandbox spec describes. On error it has removed
// whatever it made: there is nothing for the caller to undo.
func (r *Runner) newSandbox(ctx context.Context, log *slog.Logger, spec sandboxSpec) (_ *sandbox, retErr error) {
	begun := time.Now()
	init, err := r.initBinary()
	if err != nil {
		return nil, err
	}
	s := &sandbox{spec: spec, cmdDir: filepath.Join(spec.dir.path, "cmd-"+spec.id), stdin: newGate()}
	s.streams = newStreams(0, nil, nil, s.stdin)
	defer func() {
		if retErr != nil {
			s.destroy(ctx, log)
		}
	}()
	if err := spec.dir.private(s.cmdDir, 0o500); err != nil {
		return nil, err
	}
	s.undo.add(func(context.Context) error { return os.RemoveAll(s.cmdDir) })
	s.cpuSets, s.cpuOnline = r.cpus, spec.dir.cpuOnlineFile(spec.id)
	s.cpus = r.cpus.take(cpuCount(spec.limits.CPUs))
	s.undo.add(func(context.Context) error { s.giveCPUs(); return nil })
	if err := writeCPUOnline(s.cpuOnline, s.cpus); err != nil {
		return nil, err
	}
	specOpts, err := oci.Options(sandboxConfig(spec, init, s.cmdDir, s.cpus, s.cpuOnline))
	if err != nil {
		return nil, err
	}
	specOpts = append(specOpts, ctrdoci.WithCgroup(r.cgroupPath(spec.id)))
	specOpts = append(specOpts, spec.oci.specOpts()...)
	if err := r.create(ctx, s, specOpts); err != nil {
		return nil, err
	}
	observe(ctx, spec.id, StepCreate, begun)
	log.Debug("sandbox created", "container", spec.id, "took", time.Since(begun))
	return s, nil
}

// sandboxConfig is what every sandbox's spec is built from: the init as
// its process, reading its command from cmdDir, the task's identity, code
// and limits. Nothing in it depends on the path (cold or pooled) that
// makes the sandbox.
func sandboxConfig(spec sandboxSpec, init, cmdDir string, cpus []int, cpuOnlineFile string) oci.Config {
	cfg := oci.Config{
		Args:       initcmd.Argv(),
		UID:        spec.dir.uid,
		GID:        spec.dir.uid,
		CodeSource: spec.dir.code(),
		ReadOnlyBinds: append([]oci.Bind{
			{Source: init, Destination: initcmd.Path},
			{Source: cmdDir, Destination: initcmd.Dir},
			{Source: cpuOnlineFile, Destination: cpuOnline},
		}, spec.binds...),
		Annotations: spec.annotations,
		Resources:   resources(spec.limits, spec.oci, cpus),
	}
	if spec.scratch {
		cfg.ScratchSource = spec.dir.scratch()
	}
	return cfg
}

// resources are the sandbox's cgroup and rlimit limits for l.
func resources(l Limits, o OCIRuntime, cpus []int) oci.Resources {
	return oci.Resources{MemoryBytes: l.Memory, CPUs: l.CPUs, CPUSet: cpus, Pids: o.hostPids(l.Pids), TmpBytes: l.TmpSize}
}

// create makes s's container and task, adding their undo to s.
func (r *Runner) create(ctx context.Context, s *sandbox, specOpts []ctrdoci.SpecOpts) error {
	labels := map[string]string{
		LabelTask:       s.spec.task,
		LabelCreated:    time.Now().UTC().Format(time.RFC3339),
		LabelOwner:      r.opts.owner,
		LabelOwnerPID:   r.pid,
		LabelOwnerStart: r.start,
	}
	// The caller's cancellation does not cut creation short: containerd
	// starts the shim inside NewTask, and a NewTask cancelled at the wrong
	// moment leaves that shim running with no task that anything could
	// delete (containerd 2.4 does). Creation runs to its end, about 40 ms,
	// on a context that keeps the namespace but not the cancellation, and
	// the cancellation is honoured after each step.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	defer cancel()
	// A call that failed may still have done its work in containerd:
	// whatever fails, what the id names is purged once the rest is undone
	// (the undo runs last-in first-out, so this goes first).
	id := s.spec.id
	s.undo.add(func(ctx context.Context) error { return r.purge(ctx, id) })
	// The snapshot is held by a lease this process owns until the
	// container that names it exists.
	shimOpts, err := r.shimOptions(s.spec.oci)
	if err != nil {
		return err
	}
	lctx, done, err := OwnedLease(cctx, r.client)
	if err != nil {
		return err
	}
	container, err := r.client.NewContainer(lctx, id,
		client.WithContainerLabels(labels),
		client.WithImageName(s.spec.image),
		client.WithSnapshotter(r.opts.snapshotter),
		client.WithNewSnapshot(id, s.spec.img, snapshots.WithLabels(labels)),
		client.WithRuntime(r.shimFor(s.spec.oci), shimOpts),
		client.WithNewSpec(specOpts...),
	)
	done()
	if err != nil {
		if errdefs.IsNotFound(err) {
			r.forgetImage(s.spec.image)
		}
		return fmt.Errorf("creating container: %w", err)
	}
	s.container = container
	s.undo.add(func(ctx context.Context) error {
		return ignoreNotFound(container.Delete(ctx, client.WithSnapshotCleanup))
	})
	if err := ended(ctx); err != nil {
		return fmt.Errorf("creating task: %w", err)
	}
	task, err := container.NewTask(cctx, cio.NewCreator(
		cio.WithStreams(s.streams.stdin.reader(), s.streams.stdout, s.streams.stderr),
		// In the task dir, so the FIFOs go wherever it goes.
		cio.WithFIFODir(s.spec.dir.fifos()),
	))
	if err != nil {
		return fmt.Errorf("creating task: %w", err)
	}
	s.task = task
	s.undo.add(func(ctx context.Context) error {
		drain(task.IO(), 0)
		if s.pendingExit != nil {
			select {
			case <-s.pendingExit:
			case <-ctx.Done():
			}
		}
		return deleteSandboxTask(ctx, task, s.exited)
	})
	if err := pinOOMScore(task.Pid()); err != nil {
		return err
	}
	if err := ended(ctx); err != nil {
		return fmt.Errorf("creating task: %w", err)
	}
	return nil
}

// deleteSandboxTask deletes a sandbox's task. One whose exit was seen
// has nothing left to kill (its PID 1 took its PID namespace along), so
// it is deleted as it is: deleteTask's kill of every process would cost
// another run of the OCI runtime (`crun kill --all`) for nothing. Any
// other, or one that will not go that way, gets deleteTask.
func deleteSandboxTask(ctx context.Context, task client.Task, exited bool) error {
	if exited {
		if _, err := task.Delete(ctx); err == nil || errdefs.IsNotFound(err) {
			return nil
		}
	}
	return deleteTask(ctx, task)
}

// runscConfigFile is the file in the state dir gVisor's shim reads its
// options from.
const runscConfigFile = "runsc.toml"

// shimOptions returns the shim options of a sandbox under o. For runsc
// they name a file, which it writes to the state dir first when it does
// not hold o's configuration yet (a new file renamed into place, so a
// shim never reads half of one).
func (r *Runner) shimOptions(o OCIRuntime) (any, error) {
	if o.Name != OCIRuntimeRunsc {
		return o.shimOptions(""), nil
	}
	path := filepath.Join(r.opts.stateDir, runscConfigFile)
	want := o.runscConfig()
	r.runscMu.Lock()
	defer r.runscMu.Unlock()
	if !bytes.Equal(r.runscConfig, want) {
		if err := replaceFile(path, want, 0o644); err != nil {
			return nil, fmt.Errorf("writing gVisor's shim configuration: %w", err)
		}
		r.runscConfig = want
	}
	return o.shimOptions(path), nil
}

// replaceFile writes data to path through a new file renamed into place,
// so that no reader, in this process or another, sees half of it.
func replaceFile(path string, data []byte, perm os.FileMode) error {
	tmp := fmt.Sprintf("%s.%d.new", path, os.Getpid())
	if err := os.WriteFile(tmp, data, perm); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// pinOOMScore makes the spec's OOM score adjustment the floor of the
// sandbox's processes. runc writes it without leaving that mark, and the
// task could then lower it to 0 (the audit did); written again by this
// process, which has CAP_SYS_RESOURCE, the kernel also records it as the
// lowest value any process of the sandbox may set (oom_score_adj_min,
// inherited across fork and exec).
func pinOOMScore(pid uint32) error {
	path := fmt.Sprintf("/proc/%d/oom_score_adj", pid)
	if err := os.WriteFile(path, []byte(strconv.Itoa(oci.DefaultOOMScore)), 0); err != nil {
		return fmt.Errorf("pinning the sandbox's OOM score: %w", err)
	}
	return nil
}

// startAhead starts s before any task claims it, so that a task's start
// is a write into a FIFO rather than a run of the OCI runtime (crun's
// start takes about 12 ms, runc's 22): its init opens the FIFO its command
// file is and waits there. gVisor's sandboxes are started when claimed,
// as the cold path's are: a host FIFO bound into gVisor is not the pipe
// the runner writes to.
func (s *sandbox) startAhead(ctx context.Context) error {
	file := filepath.Join(s.cmdDir, initcmd.File)
	if err := unix.Mkfifo(file, 0o400); err != nil {
		return fmt.Errorf("making the task's command FIFO: %w", err)
	}
	if err := os.Chown(file, int(s.spec.dir.uid), int(s.spec.dir.uid)); err != nil {
		return fmt.Errorf("making the task's command FIFO: %w", err)
	}
	status, err := openStatusFIFO(filepath.Join(s.cmdDir, initcmd.StatusFile), s.spec.dir.uid)
	if err != nil {
		return err
	}
	s.status = status
	s.undo.add(func(context.Context) error {
		s.closeStatus()
		return nil
	})
	if err := s.task.Start(ctx); err != nil {
		return fmt.Errorf("starting a pooled sandbox: %w", err)
	}
	s.startedAhead = true
	s.watchProcesses()
	return nil
}

// start starts s's task: through the OCI runtime, or, when s was
// started ahead, by writing the command its init waits for.
func (s *sandbox) start(ctx context.Context) error {
	if !s.startedAhead {
		return s.task.Start(ctx)
	}
	init := s.init
	if init.pid == "" {
		init.pid = strconv.FormatUint(uint64(s.task.Pid()), 10)
	}
	f, err := openCommandFIFO(ctx, filepath.Join(s.cmdDir, initcmd.File), init)
	if err != nil {
		return err
	}
	// The init holds the status FIFO open once it waits for its command:
	// unlinked now, before any task runs, no task can open it.
	if err := os.Remove(filepath.Join(s.cmdDir, initcmd.StatusFile)); err != nil || s.shim.pid == "" {
		// Not trusted, or its shim not known to be checked: containerd's
		// exit tells. The init's write then fails, which it ignores.
		s.closeStatus()
	}
	_, err = f.Write(s.command)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("handing the task its command: %w", err)
	}
	return nil
}

// openStatusFIFO makes the status FIFO at path, writable by the init
// (uid) alone, and opens its reading end: non-blocking, so the init's
// non-blocking open of its writing end finds a reader, and the read waits
// on Go's poller.
func openStatusFIFO(path string, uid uint32) (*os.File, error) {
	if err := unix.Mkfifo(path, 0o200); err != nil {
		return nil, fmt.Errorf("making the task's status FIFO: %w", err)
	}
	if err := os.Chown(path, int(uid), int(uid)); err != nil {
		return nil, fmt.Errorf("making the task's status FIFO: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the task's status FIFO: %w", err)
	}
	return f, nil
}

// closeStatus closes s's status FIFO: its task's exit then comes from
// containerd.
func (s *sandbox) closeStatus() {
	if s.status != nil {
		s.status.Close()
		s.status = nil
	}
}

// readStatus reads the exit status the init writes into f as it exits:
// the channel gets it, or is closed without a value when the init ended
// without one (killed, by a shim's cleanup or from the host) or f was
// closed. Neither the task nor its shim can write into f: the FIFO was
// unlinked before the task existed, and the init's end is not dumpable.
func readStatus(f *os.File) <-chan int {
	c := make(chan int, 1)
	go func() {
		defer close(c)
		var b [1]byte
		if n, _ := f.Read(b[:]); n == 1 {
			c <- int(b[0])
		}
	}()
	return c
}

// fifoReaderWait bounds how long openCommandFIFO waits for a started init
// to open its end: an exec and an open, about a millisecond.
const fifoReaderWait = 5 * time.Second

// openCommandFIFO opens the writing end of the command FIFO of init, once
// init has opened its end: a sandbox is
// ready as soon as its start returned, just before its init opens the
// FIFO. Non-blocking, so an init that is gone is an error (ENXIO: no
// reader) instead of a wait for ever; the writes then wait as a pipe's do,
// on Go's poller.
func openCommandFIFO(ctx context.Context, path string, init hostProcess) (*os.File, error) {
	deadline := time.Now().Add(fifoReaderWait)
	for {
		f, err := os.OpenFile(path, os.O_WRONLY|unix.O_NONBLOCK, 0)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.ENXIO) {
			return nil, fmt.Errorf("handing the task its command: %w", err)
		}
		if _, alive := init.running(); !alive || time.Now().After(deadline) {
			return nil, fmt.Errorf("the pooled sandbox's init was gone before its task started: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Microsecond):
		}
	}
}

// hostProcess is a host process as its pid and start time, which no later
// process with the same pid has; with no start time, whatever process has
// the pid.
type hostProcess struct{ pid, start string }

// running tells whether p runs (exists, and is not a zombie), and its
// parent.
func (p hostProcess) running() (parent string, ok bool) {
	f := statFields(p.pid, 3, 4, 22)
	return f[1], f[0] != "" && f[0] != "Z" && f[0] != "X" && (p.start == "" || f[2] == p.start)
}

// watchProcesses records, after s was started ahead, its init and the
// shim that is the init's parent, so that taking it from the pool can
// tell both still run without asking containerd (a round trip through
// it and the shim on the task's way in).
func (s *sandbox) watchProcesses() {
	init := strconv.FormatUint(uint64(s.task.Pid()), 10)
	f := statFields(init, 4, 22)
	if f[0] == "" || f[1] == "" {
		return
	}
	if shim := startTime(f[0]); shim != "" {
		s.init, s.shim = hostProcess{init, f[1]}, hostProcess{f[0], shim}
	}
}

// runsAhead tells whether s, started ahead, still waits for a task: its
// init runs, a child of the same shim, which runs. ok is false when that
// is not known (then ask containerd).
func (s *sandbox) runsAhead() (running, ok bool) {
	if s.init.pid == "" {
		return false, false
	}
	parent, running := s.init.running()
	if !running || parent != s.shim.pid {
		return false, true
	}
	_, running = s.shim.running()
	return running, true
}

// claim hands s its task: the command its init runs, the task's limits
// where they differ from those s was made with, and the task's streams.
func (s *sandbox) claim(ctx context.Context, cmd initcmd.Command, limits Limits, stdin io.Reader, stdout, stderr io.Writer) error {
	b, err := initcmd.Encode(cmd)
	if err != nil {
		return err
	}
	if s.startedAhead {
		s.command = b
	} else if err := s.writeCommand(b); err != nil {
		return err
	}
	if err := s.retarget(ctx, limits); err != nil {
		return err
	}
	s.occupyCPUs()
	s.limits = limits
	s.streams.stdout.reset(limits.OutputLimit, stdout)
	s.streams.stderr.reset(limits.OutputLimit, stderr)
	s.stdin.open(stdin)
	return nil
}

// writeCommand writes the command file the init of a sandbox that was not
// started ahead reads when started.
func (s *sandbox) writeCommand(b []byte) error {
	file := filepath.Join(s.cmdDir, initcmd.File)
	if err := os.WriteFile(file, b, 0o400); err != nil {
		return fmt.Errorf("writing the task's command: %w", err)
	}
	if err := os.Chown(file, int(s.spec.dir.uid), int(s.spec.dir.uid)); err != nil {
		return fmt.Errorf("writing the task's command: %w", err)
	}
	return nil
}

// retarget gives s the cgroup limits of a task that asks for other limits
// than s was made with; a task with another CPU count gets a cpuset of
// that many, its online-CPU file saying so before the task starts.
func (s *sandbox) retarget(ctx context.Context, limits Limits) error {
	if n := cpuCount(limits.CPUs); n != len(s.cpus) {
		cpus := s.cpuSets.take(n)
		s.cpuSets.give(s.cpus)
		s.cpus = cpus
		if err := writeCPUOnline(s.cpuOnline, cpus); err != nil {
			return err
		}
	}
	if res := resourcesUpdate(limits, s.spec.limits, s.spec.oci, s.cpus); res != nil {
		if err := s.task.Update(ctx, client.WithResources(res)); err != nil {
			return fmt.Errorf("applying task limits: %w", err)
		}
	}
	return nil
}

// resourcesUpdate returns the cgroup update that turns a sandbox made with
// have into one with want on cpus, or nil when the limits are the same.
func resourcesUpdate(want, have Limits, o OCIRuntime, cpus []int) *specs.LinuxResources {
	if want.Memory == have.Memory && want.CPUs == have.CPUs && want.Pids == have.Pids {
		return nil
	}
	return oci.LinuxResources(resources(want, o, cpus))
}

// destroy removes what s is made of, on a context that keeps ctx's
// namespace but not its cancellation.
func (s *sandbox) destroy(ctx context.Context, log *slog.Logger) {
	begun := time.Now()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	// A copier still blocked on an unclaimed sandbox's stdin lets go.
	s.stdin.open(nil)
	if err := s.undo.run(cctx); err != nil {
		log.Error("cleanup failed", "container", s.spec.id, "error", err)
	}
	observe(ctx, s.spec.id, StepTeardown, begun)
}

// occupyCPUs counts s's task as running on its CPUs, until giveCPUs.
func (s *sandbox) occupyCPUs() {
	s.cpuSets.run(s.cpus)
	s.claimed = true
}

// giveCPUs hands s's CPUs back, and its task's place on them.
func (s *sandbox) giveCPUs() {
	if s.claimed {
		s.cpuSets.done(s.cpus)
		s.claimed = false
	}
	s.cpuSets.give(s.cpus)
}
