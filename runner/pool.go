package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner/initcmd"
)

// Pool defaults.
const (
	// DefaultMaxIdle is how long a pooled sandbox may wait for a task
	// before it is recycled for a fresh one.
	DefaultMaxIdle = 10 * time.Minute
	// refillBackoffMax bounds the wait between failed attempts to fill
	// the pool (a missing image, a containerd restart).
	refillBackoffMax = 30 * time.Second
	// refillAfter is how long a task may run before the pool starts
	// replacing the sandbox it took.
	refillAfter = 100 * time.Millisecond
	// refillParallel is how many sandboxes of a runtime the pool makes at
	// once.
	refillParallel = 2
)

// PoolOptions configure a warm pool.
type PoolOptions struct {
	// Runtimes says, per runtime name, how many sandboxes to keep ready
	// and the limits they are made with.
	Runtimes map[string]PoolRuntime
	// MaxIdle is how long a sandbox may wait before it is recycled.
	// Default DefaultMaxIdle.
	MaxIdle time.Duration
	// ShimGroup is how many sandboxes of a runtime share one containerd
	// shim (the runc v2 shim's group annotation), under crun and runc.
	// 0: the default, DefaultShimGroup; 1: a shim each. The sandboxes of
	// tasks that miss the pool share shims in groups of the same size.
	// Sharing saves the CPU and memory of starting a shim per sandbox; a
	// shim that dies takes its group's tasks with it, each of which then
	// fails with ErrShimLost.
	ShimGroup int
}

// DefaultShimGroup is how many pooled sandboxes share a shim by default
// (at most the runtime's pool size). A group is filled before the next
// starts, and tasks take sandboxes of full groups first: the sandboxes
// being made share no shim with the tasks running, which matters as the
// runc shim of containerd 1.6 serves nothing else while it creates one.
// A group closes once one of its sandboxes leaves the pool (closeGroup).
const DefaultShimGroup = 4

// shimGroupAnnotation makes the runc v2 shim serve every container that
// carries the same value from one process.
const shimGroupAnnotation = "io.containerd.runc.v2.group"

// PoolRuntime is the pool of one runtime.
type PoolRuntime struct {
	// Size is how many sandboxes ready for a task to keep.
	Size int
	// Limits are what the sandboxes are made with; zero fields take the
	// runner's defaults. A task may ask for other memory, CPU and pids
	// limits (the cgroup is updated before start); a task that asks for
	// another tmp size takes the cold path, since a tmpfs is sized when
	// it is mounted.
	Limits Limits
	// OCIRuntime is the OCI runtime the sandboxes run under; empty: the
	// one a task of the runtime gets when it names none. A task that
	// names another takes the cold path.
	OCIRuntime string
}

// PoolStats are one runtime's pool figures.
type PoolStats struct {
	Runtime string `json:"runtime"`
	// Size is the target, Idle what is ready now.
	Size int `json:"size"`
	Idle int `json:"idle"`
	// Hits are tasks that got a pooled sandbox; Misses took the cold path
	// because none was ready.
	Hits   uint64 `json:"hits"`
	Misses uint64 `json:"misses"`
	// Recycled counts sandboxes thrown away unused after MaxIdle.
	Recycled uint64 `json:"recycled"`
	// InitExits counts hits whose verdict came from their init's status
	// FIFO as it exited, not from containerd milliseconds later (see
	// readStatus); the others waited for containerd.
	InitExits uint64 `json:"init_exits"`
	// IdleMemoryBytes is the mean host memory (proportional set size of
	// the waiting process and its shim) one idle sandbox holds.
	IdleMemoryBytes uint64 `json:"idle_memory_bytes"`
}

// Pool keeps, per runtime, sandboxes that are made (namespaces, cgroup,
// seccomp filter, mounts in place) and, under crun and runc, started, their
// init waiting for a command (see startAhead), each with its own empty
// task dir and scratch tmpfs. A task claims one, gets its files written
// and its limits applied, and hands it its command (gVisor's: starts it):
// most of a cold start's cost is paid before the task arrives. A sandbox runs
// one task and is destroyed, off the task's path; the pool refills in the
// background and never makes a task wait: with no sandbox ready, a task
// takes the cold path.
type Pool struct {
	r    *Runner
	opts PoolOptions

	mu    sync.Mutex
	idle  map[string][]*slot
	stats map[string]*poolCounters

	wake chan struct{}
	// ctx ends with Close and stops the filling between two sandboxes;
	// making and destroying one runs on tctx, which carries the namespace
	// and is never cancelled: a creation cut short would orphan the
	// client's lease and the snapshot.
	ctx    context.Context
	tctx   context.Context
	cancel context.CancelFunc
	filler sync.WaitGroup // the refill loop
	bg     sync.WaitGroup // teardowns
	closed atomic.Bool

	// filling is, per runtime, the shim group new sandboxes join
	// (guarded by mu).
	filling map[string]*shimGroup
	// coldFilling is, per OCI runtime, the shim group the sandboxes of
	// tasks that miss the pool join (guarded by mu).
	coldFilling map[string]*shimGroup
	// unholdFreezer releases the freezer hold (see holdFreezer).
	unholdFreezer func() error
}

type poolCounters struct {
	hits, misses, recycled, initExits atomic.Uint64
}

// slot is one pooled sandbox and its task dir.
type slot struct {
	runtime string
	env     []string // the image's
	dir     *taskDir
	sandbox *sandbox
	born    time.Time
	// group is the shim group it joined, if any.
	group *shimGroup
}

// shimGroup is the sandboxes of a runtime that share a shim.
type shimGroup struct {
	name   string
	joined int
	// oci is the OCI runtime of its sandboxes.
	oci string
	// up is closed once the group's first sandbox is made (its shim
	// serves) or failed to be (failed).
	up     chan struct{}
	failed bool
}

func newShimGroup(name, oci string) *shimGroup {
	return &shimGroup{name: name, oci: oci, up: make(chan struct{})}
}

// started records that the group's first sandbox was made, or not.
func (g *shimGroup) started(ok bool) {
	g.failed = !ok
	close(g.up)
}

// wait waits until the group's shim serves, for a sandbox joining it
// after the first: the runc shim's start races with another for the same
// group (the second can remove the first's socket and start a shim of its
// own, and the first shim then serves no one and never exits). False
// when the first sandbox failed, or ctx ended: then no group.
func (g *shimGroup) wait(ctx context.Context) bool {
	select {
	case <-g.up:
		return !g.failed
	case <-ctx.Done():
		return false
	}
}

// NewPool starts a pool that fills itself in the background. Close drains
// it.
func (r *Runner) NewPool(ctx context.Context, o PoolOptions) (*Pool, error) {
	if o.MaxIdle == 0 {
		o.MaxIdle = DefaultMaxIdle
	}
	if _, err := r.initBinary(); err != nil {
		return nil, err
	}
	stats := map[string]*poolCounters{}
	for name, pr := range o.Runtimes {
		rt, err := r.opts.catalog.Lookup(name)
		if err != nil {
			return nil, fmt.Errorf("pool: %w", err)
		}
		if len(rt.Compile) > 0 {
			return nil, invalid("pool: runtime %s is compiled, and compiled runtimes take the cold path: remove it from the pool", name)
		}
		if pr.Size < 0 {
			return nil, invalid("pool: runtime %s: size %d is negative", name, pr.Size)
		}
		if _, err := withDefaults(pr.Limits, r.host); err != nil {
			return nil, fmt.Errorf("pool: runtime %s: %w", name, err)
		}
		if _, err := r.opts.oci.For(pr.OCIRuntime, rt.Name); err != nil {
			return nil, fmt.Errorf("pool: runtime %s: %w", name, err)
		}
		stats[name] = &poolCounters{}
	}
	tctx := namespaces.WithNamespace(context.WithoutCancel(ctx), r.opts.namespace)
	pctx, cancel := context.WithCancel(tctx)
	p := &Pool{r: r, opts: o, idle: map[string][]*slot{}, stats: stats, filling: map[string]*shimGroup{}, coldFilling: map[string]*shimGroup{},
		wake: make(chan struct{}, 1), ctx: pctx, tctx: tctx, cancel: cancel}
	unhold, err := holdFreezer(r.opts.namespace)
	if err != nil {
		// Only speed depends on it.
		r.opts.log.Warn("the pool runs without its cgroup freezer hold", "error", err)
		unhold = func() error { return nil }
	}
	p.unholdFreezer = sync.OnceValue(unhold)
	p.filler.Go(p.refill)
	return p, nil
}

// Run runs t in a pooled sandbox when one fits, else on the cold path,
// and returns the same Result either way.
func (p *Pool) Run(ctx context.Context, t Task) (*Result, error) {
	res, err := p.run(ctx, t)
	return res, withEnded(ctx, err)
}

func (p *Pool) run(ctx context.Context, t Task) (*Result, error) {
	pt, err := prepare(t, p.r.opts.catalog, p.r.host)
	if err != nil {
		return nil, err
	}
	if pt.oci, err = p.r.opts.oci.For(t.OCIRuntime, pt.runtime.Name); err != nil {
		return nil, err
	}
	var s *slot
	// A task that returns files takes the cold path: its /tmp must be a
	// host mount that outlives its sandbox.
	if t.ID == "" && pt.compile == nil && len(pt.outputs) == 0 && !p.closed.Load() {
		s = p.takeLive(ctx, pt)
	}
	if s == nil {
		if c := p.stats[pt.runtime.Name]; c != nil {
			c.misses.Add(1)
		}
		pt.groups = coldGroups{p: p, runtime: pt.runtime.Name}
		return p.r.run(ctx, t, pt)
	}
	p.stats[pt.runtime.Name].hits.Add(1)
	// The refill waits until the task has ended or run for refillAfter:
	// making a sandbox takes both cores of a small host for a while, and
	// a short task then starts and ends on a quiet machine.
	refill := time.AfterFunc(refillAfter, p.poke)
	defer func() {
		refill.Stop()
		p.poke()
	}()
	ctx = namespaces.WithNamespace(ctx, p.r.opts.namespace)
	sb := s.sandbox
	log := p.r.opts.log.With("task", sb.spec.id, "runtime", s.runtime, "pooled", true)
	// The sandbox is used once: destroyed whatever happens, off this path.
	defer p.discard(s)

	if err := s.dir.writeCode(pt.files); err != nil {
		return nil, err
	}
	cmd := taskCommand(initcmd.Command{Args: pt.args, Env: taskEnv(s.env, pt.env)}, pt.limits.Timeout)
	if err := sb.claim(ctx, cmd, pt.limits, t.Stdin, t.Stdout, t.Stderr); err != nil {
		return nil, err
	}
	st, err := p.r.execute(ctx, log, sb, pt.limits.Timeout)
	if err != nil {
		return nil, err
	}
	if sb.pendingExit != nil {
		p.stats[pt.runtime.Name].initExits.Add(1)
	}
	return &Result{ID: sb.spec.id, Runtime: s.runtime, Image: sb.spec.image, OCIRuntime: sb.spec.oci.Name, Stage: *st}, nil
}

// takeLive is take, passing over sandboxes whose task is gone: a shim
// that died (the OOM killer, a crash; with shared shims, one shim takes
// its whole group along) leaves its idle sandboxes unusable, and a task
// given one would fail before it ran, its stdin partly read.
func (p *Pool) takeLive(ctx context.Context, pt *prepared) *slot {
	ctx = namespaces.WithNamespace(ctx, p.r.opts.namespace)
	for {
		s := p.take(pt)
		if s == nil {
			return nil
		}
		err := p.waiting(ctx, s)
		if err == nil {
			return s
		}
		p.r.opts.log.Warn("a pooled sandbox's task is gone; discarding it", "task", s.sandbox.spec.id, "runtime", s.runtime, "error", err)
		p.discard(s)
		p.poke()
		if ended(ctx) != nil {
			return nil
		}
	}
}

// waiting returns nil when s still waits for a task, else why not. One
// started ahead is known by its init's and shim's host processes, without
// a round trip through containerd and the shim on the task's way in;
// otherwise containerd says: created, or running when started ahead (its
// init waits for a command); stopped, its init died.
func (p *Pool) waiting(ctx context.Context, s *slot) error {
	if running, known := s.sandbox.runsAhead(); known {
		if !running {
			return errors.New("its init or shim is gone")
		}
		return nil
	}
	want := client.Created
	if s.sandbox.startedAhead {
		want = client.Running
	}
	st, err := s.sandbox.task.Status(ctx)
	if err == nil && st.Status != want {
		err = fmt.Errorf("its task is %s, not %s", st.Status, want)
	}
	return err
}

// take pops a ready sandbox that fits the task, or returns nil.
func (p *Pool) take(pt *prepared) *slot {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[pt.runtime.Name]
	filling := p.filling[pt.runtime.Name]
	// Of the sandboxes that fit: one whose shim takes no new sandboxes,
	// then the least busy CPUs, then the oldest.
	best, bestFilling, load := -1, false, 0
	for i, sl := range list {
		s := sl.sandbox
		if s.spec.image != pt.image || s.spec.limits.TmpSize != pt.limits.TmpSize || s.spec.oci.Name != pt.oci.Name {
			continue
		}
		f := sl.group != nil && sl.group == filling
		l := p.r.cpus.load(s.cpus)
		if best < 0 || (bestFilling && !f) || (f == bestFilling && l < load) {
			best, bestFilling, load = i, f, l
		}
	}
	if best < 0 {
		return nil
	}
	s := list[best]
	p.idle[pt.runtime.Name] = slices.Delete(list, best, best+1)
	p.closeGroup(pt.runtime.Name, s)
	return s
}

// closeGroup makes the group of s, which is leaving the pool, take no
// new sandboxes (p.mu held). A shim exits with its last sandbox, and a
// sandbox joining a group whose shim is exiting would fail: a group
// takes new sandboxes only while none of its own has left.
func (p *Pool) closeGroup(runtime string, s *slot) {
	if s.group != nil && p.filling[runtime] == s.group {
		delete(p.filling, runtime)
	}
}

// discard destroys a sandbox in the background.
func (p *Pool) discard(s *slot) {
	p.bg.Go(func() {
		s.sandbox.destroy(p.tctx, p.r.opts.log)
		if err := s.dir.remove(); err != nil {
			p.r.opts.log.Error("removing pooled sandbox dir", "task", s.sandbox.spec.id, "error", err)
		}
	})
}

func (p *Pool) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// refill keeps every runtime's pool at its size, one sandbox at a time so
// that filling never competes hard with running tasks, and recycles
// sandboxes that waited too long.
func (p *Pool) refill() {
	backoff := time.Second
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range p.opts.Runtimes {
			if !yield(n) {
				return
			}
		}
	})
	for {
		p.recycle()
		filled, failed := false, false
		for _, name := range names {
			if p.ctx.Err() != nil {
				return
			}
			p.mu.Lock()
			short := p.opts.Runtimes[name].Size - len(p.idle[name])
			p.mu.Unlock()
			// Up to refillParallel at once: one sandbox's making waits on
			// containerd, the shim and the OCI runtime in turn, and leaves
			// a core idle.
			var wg sync.WaitGroup
			for range min(short, refillParallel) {
				wg.Go(func() {
					s, err := p.newSlot(name)
					p.mu.Lock()
					defer p.mu.Unlock()
					if err != nil {
						p.r.opts.log.Warn("filling the warm pool", "runtime", name, "error", err)
						failed = true
						return
					}
					p.idle[name] = append(p.idle[name], s)
					filled = true
				})
			}
			wg.Wait()
		}
		wait := p.opts.MaxIdle / 4
		switch {
		case failed:
			wait, backoff = backoff, min(backoff*2, refillBackoffMax)
		case filled:
			wait, backoff = 0, time.Second
		}
		select {
		case <-p.ctx.Done():
			return
		case <-p.wake:
		case <-time.After(wait):
		}
	}
}

// recycle destroys sandboxes older than MaxIdle; refill replaces them.
func (p *Pool) recycle() {
	p.mu.Lock()
	var old []*slot
	for name, list := range p.idle {
		keep := list[:0]
		for _, s := range list {
			if time.Since(s.born) > p.opts.MaxIdle {
				p.closeGroup(name, s)
				old = append(old, s)
				p.stats[name].recycled.Add(1)
			} else {
				keep = append(keep, s)
			}
		}
		p.idle[name] = keep
	}
	p.mu.Unlock()
	for _, s := range old {
		p.discard(s)
	}
}

// newSlot creates one sandbox for runtime name.
func (p *Pool) newSlot(name string) (*slot, error) {
	r := p.r
	rt := r.opts.catalog[name]
	limits, err := withDefaults(p.opts.Runtimes[name].Limits, r.host)
	if err != nil {
		return nil, err
	}
	ocirt, err := r.opts.oci.For(p.opts.Runtimes[name].OCIRuntime, rt.Name)
	if err != nil {
		return nil, err
	}
	ref, err := images.Normalize(rt.Image)
	if err != nil {
		return nil, err
	}
	info, err := r.image(p.tctx, ref, "")
	if err != nil {
		return nil, err
	}
	id := NewID()
	dir, err := r.newTaskDir(id)
	if err != nil {
		return nil, err
	}
	spec := sandboxSpec{id: id, task: id, dir: dir, image: ref, img: info.img, limits: limits, oci: ocirt}
	group, first := p.joinPooled(name, id, ocirt)
	if group != nil && !first && !group.wait(p.ctx) {
		group = nil
	}
	if group != nil {
		spec.annotations = r.groupAnnotations(group.name)
	}
	sb, err := r.newSandbox(p.tctx, r.opts.log, spec)
	if first {
		group.started(err == nil)
	}
	if err == nil && ocirt.Name != OCIRuntimeRunsc {
		if err = sb.startAhead(p.tctx); err != nil {
			sb.destroy(p.tctx, r.opts.log)
		}
	}
	if err != nil {
		_ = dir.remove()
		if group != nil {
			// The group's shim may be what failed (it died): the next
			// sandbox starts a group of its own.
			p.mu.Lock()
			if p.filling[name] == group {
				delete(p.filling, name)
			}
			p.mu.Unlock()
		}
		return nil, err
	}
	return &slot{runtime: name, env: info.env, dir: dir, sandbox: sb, born: time.Now(), group: group}, nil
}

// coldGroups is the shimGrouper of the tasks of runtime that miss the
// pool: their sandboxes share shims too.
type coldGroups struct {
	p       *Pool
	runtime string
}

// join puts a sandbox under o in the runtime's pooled group that is
// filling, whose idle sandboxes keep its shim running (the shim exits
// with its last sandbox; the group takes no new ones once one of its
// pooled sandboxes has left); else in a group of such sandboxes per OCI
// runtime, which takes new ones until one of its own leaves.
func (c coldGroups) join(ctx context.Context, o OCIRuntime) (map[string]string, func(), func(bool)) {
	p := c.p
	size := p.opts.ShimGroup
	if size == 0 {
		size = DefaultShimGroup
	}
	if size <= 1 || o.shim() != DefaultShim {
		return nil, nil, nil
	}
	g, leave, first := c.pick(o, size)
	if first {
		return p.r.groupAnnotations(g.name), leave, g.started
	}
	if !g.wait(ctx) {
		leave()
		return nil, nil, nil
	}
	return p.r.groupAnnotations(g.name), leave, nil
}

// pick is join's choice of a group, and whether the sandbox is its first.
func (c coldGroups) pick(o OCIRuntime, size int) (*shimGroup, func(), bool) {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if g := p.filling[c.runtime]; g != nil && g.oci == o.Name && g.joined < p.groupSize(c.runtime) && !p.closed.Load() {
		g.joined++
		return g, func() {}, false
	}
	g := p.coldFilling[o.Name]
	if g == nil || g.joined >= size {
		g = newShimGroup("sr-cold-"+NewID(), o.Name)
		p.coldFilling[o.Name] = g
	}
	g.joined++
	return g, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.coldFilling[o.Name] == g {
			delete(p.coldFilling, o.Name)
		}
	}, g.joined == 1
}

// joinPooled returns the shim group runtime name's next sandbox (id, under
// ocirt) joins, or nil for a shim of its own: gVisor's shim has no
// groups, and a group of 1 is no group.
func (p *Pool) joinPooled(name, id string, ocirt OCIRuntime) (g *shimGroup, first bool) {
	size := p.groupSize(name)
	if size <= 1 || ocirt.shim() != DefaultShim {
		return nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	g = p.filling[name]
	if g == nil || g.joined >= size {
		g = newShimGroup("sr-pool-"+id, ocirt.Name)
		p.filling[name] = g
	}
	g.joined++
	return g, g.joined == 1
}

// groupSize is how many sandboxes a pooled group of runtime name takes.
func (p *Pool) groupSize(name string) int {
	if p.opts.ShimGroup != 0 {
		return p.opts.ShimGroup
	}
	return min(DefaultShimGroup, p.opts.Runtimes[name].Size)
}

// Stats returns every pooled runtime's figures, sorted by runtime.
func (p *Pool) Stats() []PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []PoolStats
	for name, pr := range p.opts.Runtimes {
		c := p.stats[name]
		st := PoolStats{Runtime: name, Size: pr.Size, Idle: len(p.idle[name]),
			Hits: c.hits.Load(), Misses: c.misses.Load(), Recycled: c.recycled.Load(), InitExits: c.initExits.Load()}
		if st.Idle > 0 {
			st.IdleMemoryBytes = idleMemory(p.idle[name]) / uint64(st.Idle)
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b PoolStats) int { return strings.Compare(a.Runtime, b.Runtime) })
	return out
}

// idleMemory is the proportional set size of the slots' waiting
// processes and of their shims (their parents), each shim counted once
// however many slots it serves.
func idleMemory(slots []*slot) uint64 {
	var total uint64
	shims := map[string]bool{}
	for _, s := range slots {
		pid := strconv.FormatUint(uint64(s.sandbox.task.Pid()), 10)
		total += pss(pid)
		if shim := parentPID(pid); shim != "" && shim != "1" && !shims[shim] {
			shims[shim] = true
			total += pss(shim)
		}
	}
	return total
}

func pss(pid string) uint64 {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "smaps_rollup"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Pss:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// parentPID is field 4 of /proc/PID/stat.
func parentPID(pid string) string { return statField(pid, 4) }

// Close stops refilling, destroys the idle sandboxes and waits, until ctx
// ends, for every teardown. Call it once the pool's tasks are done: a task
// still running gets its sandbox destroyed when it ends.
func (p *Pool) Close(ctx context.Context) error {
	p.closed.Store(true)
	p.cancel()
	// The loop ends after the sandbox it may be making, which it adds to
	// the idle list: collect that list only then.
	p.filler.Wait()
	p.mu.Lock()
	var all []*slot
	for name, list := range p.idle {
		all = append(all, list...)
		p.idle[name] = nil
	}
	p.mu.Unlock()
	for _, s := range all {
		p.discard(s)
	}
	done := make(chan struct{})
	go func() {
		p.bg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return p.unholdFreezer()
	case <-ctx.Done():
		return errors.New("pool: sandboxes still being torn down when the context ended")
	}
}
