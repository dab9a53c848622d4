package runner

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sandbox-runner/sandbox-runner/oci"
)

// cpuOnline is the file glibc counts the online CPUs from (sysconf's
// _SC_NPROCESSORS_ONLN, get_nprocs: Python's os.cpu_count(), C++'s
// hardware_concurrency()). A sandbox gets its own, naming its cpuset, so
// that those agree with what sched_getaffinity tells nproc, Node and the
// JVM.
const cpuOnline = "/sys/devices/system/cpu/online"

// cpuSets hands out the CPUs sandboxes may run on: each gets ceil(cpus)
// CPUs of this process's affinity, those running the fewest tasks first,
// so concurrent tasks spread over the host rather than pile onto one core.
// A warm pool's sandboxes are made ahead of their tasks: the pool claims
// the one whose CPUs are least busy then (busy).
type cpuSets struct {
	mu   sync.Mutex
	cpus []int // the CPUs this process may run on, ascending
	held []int // sandboxes made on each of cpus
	busy []int // tasks running on each
	next int   // where ties start, so equal CPUs take turns
}

func newCPUSets() *cpuSets {
	var set unix.CPUSet
	var cpus []int
	if err := unix.SchedGetaffinity(0, &set); err == nil {
		for cpu := 0; cpu < len(set)*64; cpu++ {
			if set.IsSet(cpu) {
				cpus = append(cpus, cpu)
			}
		}
	}
	if len(cpus) == 0 {
		for cpu := range runtime.NumCPU() {
			cpus = append(cpus, cpu)
		}
	}
	return &cpuSets{cpus: cpus, held: make([]int, len(cpus)), busy: make([]int, len(cpus))}
}

// cpuCount is how many CPUs a task with a quota of cpus gets.
func cpuCount(cpus float64) int { return max(1, int(math.Ceil(cpus-1e-9))) }

// take reserves n CPUs (at most all of them), ascending: the least busy,
// then the fewest sandboxes made on them.
func (c *cpuSets) take(n int) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n = min(n, len(c.cpus))
	order := make([]int, len(c.cpus))
	for i := range order {
		order[i] = (c.next + i) % len(c.cpus)
	}
	// Stable: among equal CPUs, the turn order decides.
	slices.SortStableFunc(order, func(a, b int) int {
		if d := c.busy[a] - c.busy[b]; d != 0 {
			return d
		}
		return c.held[a] - c.held[b]
	})
	chosen := order[:n]
	set := make([]int, 0, n)
	for _, i := range chosen {
		c.held[i]++
		set = append(set, c.cpus[i])
	}
	c.next = (chosen[n-1] + 1) % len(c.cpus)
	slices.Sort(set)
	return set
}

// give returns a set take handed out.
func (c *cpuSets) give(set []int) { c.add(c.held, set, -1) }

// run and done count a task running on set, from its start to its end.
func (c *cpuSets) run(set []int)  { c.add(c.busy, set, 1) }
func (c *cpuSets) done(set []int) { c.add(c.busy, set, -1) }

func (c *cpuSets) add(counts []int, set []int, d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cpu := range set {
		if i, ok := slices.BinarySearch(c.cpus, cpu); ok && counts[i]+d >= 0 {
			counts[i] += d
		}
	}
}

// load is how many tasks run on set's CPUs.
func (c *cpuSets) load(set []int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, cpu := range set {
		if i, ok := slices.BinarySearch(c.cpus, cpu); ok {
			n += c.busy[i]
		}
	}
	return n
}

// writeCPUOnline writes the online-CPU file a sandbox sees, in place, so
// that a sandbox already bound to it sees the new set.
func writeCPUOnline(path string, set []int) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o444)
	if err != nil {
		return fmt.Errorf("writing the sandbox's CPU list: %w", err)
	}
	_, err = f.WriteString(oci.FormatCPUList(set) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing the sandbox's CPU list: %w", err)
	}
	return nil
}

// cpuOnlineFile is sandbox id's online-CPU file in its task dir.
func (d *taskDir) cpuOnlineFile(id string) string { return filepath.Join(d.path, "cpus-"+id) }
