package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
)

// staleLease is the age past which a lease in our namespace that names no
// owner (see OwnedLease) is taken to be a leftover: the client's own
// leases, which runners before owned leases used, live for one container
// creation or one pull.
const staleLease = 10 * time.Minute

// ownerFile in a task's task dir records which runner process made it,
// as the owner labels do on containerd objects.
const ownerFile = "owner"

// SweepCounts counts leftovers of each kind a sweep deals with.
type SweepCounts struct {
	Tasks      int `json:"tasks"`
	Containers int `json:"containers"`
	Snapshots  int `json:"snapshots"`
	Leases     int `json:"leases"`
	Dirs       int `json:"dirs"`
	// Mounts are the scratch tmpfs mounts of compiled tasks' task dirs.
	Mounts int `json:"mounts"`
	// Identities are task uids whose reservation outlived its task.
	Identities int `json:"identities"`
}

// The kinds of leftovers, as SweepCounts.ByKind names them.
const (
	KindTasks      = "tasks"
	KindContainers = "containers"
	KindSnapshots  = "snapshots"
	KindLeases     = "leases"
	KindDirs       = "dirs"
	KindMounts     = "mounts"
	KindIdentities = "identities"
)

// SweepKinds lists the kinds of leftovers in a fixed order.
var SweepKinds = []string{KindTasks, KindContainers, KindSnapshots, KindLeases, KindDirs, KindMounts, KindIdentities}

// Total is the number of objects counted.
func (s SweepCounts) Total() int {
	return s.Tasks + s.Containers + s.Snapshots + s.Leases + s.Dirs + s.Mounts + s.Identities
}

// ByKind returns the counts keyed by the names in SweepKinds.
func (s SweepCounts) ByKind() map[string]int {
	return map[string]int{
		KindTasks: s.Tasks, KindContainers: s.Containers, KindSnapshots: s.Snapshots,
		KindLeases: s.Leases, KindDirs: s.Dirs, KindMounts: s.Mounts, KindIdentities: s.Identities,
	}
}

// SweepReport counts what a sweep removed and, in Failed, the leftovers
// it found but could not remove (its error says why): what it found is
// the sum of both.
type SweepReport struct {
	SweepCounts
	Failed SweepCounts `json:"failed"`
}

// Found is what the sweep found: removed and failed.
func (s SweepReport) Found() SweepCounts {
	return SweepCounts{
		Tasks: s.Tasks + s.Failed.Tasks, Containers: s.Containers + s.Failed.Containers,
		Snapshots: s.Snapshots + s.Failed.Snapshots, Leases: s.Leases + s.Failed.Leases,
		Dirs: s.Dirs + s.Failed.Dirs, Mounts: s.Mounts + s.Failed.Mounts,
		Identities: s.Identities + s.Failed.Identities,
	}
}

// Sweep removes what runners that are no longer alive left behind: tasks
// (killed first), containers, snapshots, leases, task dirs with
// their scratch mounts, and the identities of tasks that are gone. It finds them by our labels in our namespace
// only, and knows a runner is gone when the process its owner label
// names no longer runs. With all set it removes everything of ours, live
// runners' tasks included: use it only when no runner is running.
func (r *Runner) Sweep(ctx context.Context, all bool) (SweepReport, error) {
	ctx = namespaces.WithNamespace(ctx, r.opts.namespace)
	var rep SweepReport
	var errs []error
	orphan := func(labels map[string]string) bool {
		return all || !ownerAlive(labels[LabelOwnerPID], labels[LabelOwnerStart])
	}

	containers, err := r.client.Containers(ctx, fmt.Sprintf("labels.%q", LabelTask))
	if err != nil {
		return rep, fmt.Errorf("listing containers: %w", err)
	}
	// live holds the containers and the task ids that must stay.
	live := map[string]bool{}
	for _, c := range containers {
		labels, err := c.Labels(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !orphan(labels) {
			live[c.ID()], live[labels[LabelTask]] = true, true
			continue
		}
		hadTask, taskErr, err := removeContainer(ctx, c)
		switch {
		case hadTask && taskErr == nil:
			rep.Tasks++
		case hadTask:
			rep.Failed.Tasks++
		}
		if err != nil {
			rep.Failed.Containers++
			errs = append(errs, fmt.Errorf("removing container %s: %w", c.ID(), err))
			live[c.ID()], live[labels[LabelTask]] = true, true
			continue
		}
		rep.Containers++
	}

	// Snapshots whose container is gone: a runner died between making the
	// snapshot and the container, or a delete half failed.
	sn := r.client.SnapshotService(r.opts.snapshotter)
	var stale []string
	err = sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind != snapshots.KindCommitted && !live[info.Name] && orphan(info.Labels) {
			stale = append(stale, info.Name)
		}
		return nil
	}, fmt.Sprintf("labels.%q", LabelTask))
	if err != nil {
		errs = append(errs, fmt.Errorf("listing snapshots: %w", err))
	}
	for _, key := range stale {
		if err := sn.Remove(ctx, key); err != nil && !errdefs.IsNotFound(err) {
			rep.Failed.Snapshots++
			errs = append(errs, fmt.Errorf("removing snapshot %s: %w", key, err))
			continue
		}
		rep.Snapshots++
	}

	// Leases hold a container's snapshot while it is made and a pull's
	// content until the image is recorded; one that outlived its runner
	// would pin them for a day.
	ls := r.client.LeasesService()
	leaseList, err := ls.List(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("listing leases: %w", err))
	}
	now := time.Now()
	for _, l := range leaseList {
		if !leaseStale(l, all, now) {
			continue
		}
		if err := ls.Delete(ctx, l, leases.SynchronousDelete); err != nil && !errdefs.IsNotFound(err) {
			rep.Failed.Leases++
			errs = append(errs, fmt.Errorf("removing lease %s: %w", l.ID, err))
			continue
		}
		rep.Leases++
	}

	// Task dirs of tasks whose runner is gone.
	tasksDir := filepath.Join(r.opts.stateDir, "tasks")
	entries, err := os.ReadDir(tasksDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("listing task dirs: %w", err))
	}
	for _, e := range entries {
		if live[e.Name()] {
			continue
		}
		dir := filepath.Join(tasksDir, e.Name())
		if !all && dirOwnerAlive(dir) {
			continue
		}
		scratch := filepath.Join(dir, scratchDir)
		mounted := isMountPoint(scratch)
		if err := removeTaskDir(dir); err != nil {
			rep.Failed.Dirs++
			if isMountPoint(scratch) {
				rep.Failed.Mounts++
			} else if mounted {
				rep.Mounts++
			}
			errs = append(errs, fmt.Errorf("removing task dir: %w", err))
			continue
		}
		rep.Dirs++
		if mounted {
			rep.Mounts++
		}
	}

	// Identities last: a uid is free again only once nothing of its task
	// is left, so a task that could not be removed keeps its uid.
	reserved, err := r.ids.list()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("listing task identities: %w", err))
	}
	for _, res := range reserved {
		if live[res.task] || !all && identityOwnerAlive(r.ids, res) {
			continue
		}
		if _, err := os.Stat(filepath.Join(tasksDir, res.task)); res.task != "" && err == nil {
			continue // its dir could not be removed
		}
		if err := r.ids.release(res.uid); err != nil {
			errs = append(errs, fmt.Errorf("freeing task identity %d: %w", res.uid, err))
			rep.Failed.Identities++
			continue
		}
		rep.Identities++
	}
	return rep, errors.Join(errs...)
}

// identityOwnerAlive tells whether the runner that reserved res still
// runs; a reservation that names no owner is one being written, or whose
// writer died while writing: given a minute, as task dirs are.
func identityOwnerAlive(ids *identities, res reservation) bool {
	return recordedOwnerAlive(res.pid, res.start, filepath.Join(ids.dir, strconv.FormatUint(uint64(res.uid), 10)))
}

// removeContainer kills and deletes c's task, if it has one, then c and
// its snapshot. hadTask tells whether there was a task, taskErr why it
// could not be removed; err is set whenever c is still there.
func removeContainer(ctx context.Context, c client.Container) (hadTask bool, taskErr, err error) {
	hadTask, taskErr = removeTask(ctx, c)
	if taskErr != nil {
		return hadTask, taskErr, taskErr
	}
	return hadTask, nil, ignoreNotFound(c.Delete(ctx, client.WithSnapshotCleanup))
}

// removeTask kills and deletes c's task, if it has one: the one teardown
// of a task, for the sweep and for a purge alike.
func removeTask(ctx context.Context, c client.Container) (hadTask bool, err error) {
	task, err := c.Task(ctx, nil)
	switch {
	case errdefs.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	}
	// Bounded, so a wedged shim cannot hang the sweep.
	kctx, cancel := context.WithTimeout(ctx, killWait)
	defer cancel()
	return true, deleteTask(kctx, task)
}

// deleteTask kills every process of task and deletes it: the one
// teardown of a task, whether the sweep, a purge or a sandbox's own
// undo finds it. WithProcessKill sends SIGKILL to every process and
// waits for the exit before the delete. A task already gone is fine.
func deleteTask(ctx context.Context, task client.Task) error {
	_, err := task.Delete(ctx, client.WithProcessKill)
	if err != nil && !errdefs.IsNotFound(err) && shimGone(ctx, task) {
		// Its shim died under the delete; containerd removed the task.
		return nil
	}
	return ignoreNotFound(err)
}

// isMountPoint tells whether path is a mount point: it lies on another
// device than its parent. A bind mount of the same file system would be
// missed, but the scratch dirs this is for are tmpfs mounts.
func isMountPoint(path string) bool {
	var st, parent syscall.Stat_t
	if syscall.Lstat(path, &st) != nil || syscall.Lstat(filepath.Dir(path), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// processIdentity returns this process's pid and start time, which
// together name it uniquely until the host reboots.
func processIdentity() (pid, start string) {
	pid = strconv.Itoa(os.Getpid())
	return pid, startTime(pid)
}

// startTime reads a process's start time (clock ticks since boot), or ""
// when there is no such process.
func startTime(pid string) string { return statField(pid, 22) }

// statField returns field n (1-based, as proc(5) numbers them) of
// /proc/PID/stat, or "" when there is no such process.
func statField(pid string, n int) string { return statFields(pid, n)[0] }

// statFields returns fields ns (1-based, as proc(5) numbers them, 3 and
// on) of /proc/PID/stat from one read, "" each when there is no such
// process.
func statFields(pid string, ns ...int) []string {
	out := make([]string, len(ns))
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return out
	}
	// The command name, field 2, is in parentheses and may hold spaces
	// and parentheses: count from after its last ')', which is field 3.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return out
	}
	fields := strings.Fields(s[i+1:])
	for j, n := range ns {
		if n >= 3 && len(fields) >= n-2 {
			out[j] = fields[n-3]
		}
	}
	return out
}

// ownerAlive tells whether the runner process named by pid and start time
// still runs. Objects without owner labels are not ours to judge: alive.
func ownerAlive(pid, start string) bool {
	if pid == "" {
		return true
	}
	return startTime(pid) == start && start != ""
}

func dirOwnerAlive(dir string) bool {
	b, _ := os.ReadFile(filepath.Join(dir, ownerFile))
	pid, start, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	return recordedOwnerAlive(pid, start, dir)
}

// recordedOwnerAlive judges an owner written into a file of ours: one
// that names no owner yet is being written, or its writer died while
// writing; it gets the benefit of the doubt for a minute after path was
// made.
func recordedOwnerAlive(pid, start, path string) bool {
	if pid == "" {
		st, err := os.Stat(path)
		return err == nil && time.Since(st.ModTime()) < time.Minute
	}
	return ownerAlive(pid, start)
}
