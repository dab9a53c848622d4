package runner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// freezerRoot is the cgroup v1 freezer hierarchy.
const freezerRoot = "/sys/fs/cgroup/freezer"

// freezerHoldPrefix names the hold cgroups, one per process that holds.
const freezerHoldPrefix = "sr-freezer-hold-"

// holdFreezer keeps an empty, frozen cgroup in the namespace's cgroup of
// the v1 freezer hierarchy for as long as a long-lived runner (the warm
// pool) lives, and returns what removes it. crun freezes a sandbox's
// cgroup and thaws it while deleting it; the kernel switches a static key
// on at the first frozen cgroup and off after the last, patching its own
// code each time, which on a virtual machine cost about 3% of all the CPU
// a stream of tasks used (perf, 2 cores, crun 1.8.1). With one cgroup
// always frozen the key stays on and each freeze is a counter. Nothing in
// the hold runs: freezing an empty cgroup stops nothing. Holds that
// processes gone since left behind are removed first. On a host without
// the v1 freezer it does nothing.
func holdFreezer(namespace string) (release func() error, err error) {
	parent := filepath.Join(freezerRoot, namespace)
	if _, err := os.Stat(filepath.Join(freezerRoot, "cgroup.procs")); err != nil {
		return func() error { return nil }, nil
	}
	// One hold per namespace and process, however many pools it runs.
	holds.Lock()
	defer holds.Unlock()
	if holds.n[namespace] > 0 {
		holds.n[namespace]++
		return func() error { return dropHold(namespace) }, nil
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("holding the cgroup freezer: %w", err)
	}
	removeDeadHolds(parent)
	dir := holdDir(namespace)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("holding the cgroup freezer: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "freezer.state"), []byte("FROZEN"), 0); err != nil {
		_ = os.Remove(dir)
		return nil, fmt.Errorf("holding the cgroup freezer: %w", err)
	}
	holds.n[namespace] = 1
	return func() error { return dropHold(namespace) }, nil
}

var holds = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

// dropHold releases one hold of namespace, removing its cgroup with the
// last.
func dropHold(namespace string) error {
	holds.Lock()
	defer holds.Unlock()
	if holds.n[namespace]--; holds.n[namespace] > 0 {
		return nil
	}
	delete(holds.n, namespace)
	dir := holdDir(namespace)
	// Removing a frozen cgroup drops the kernel's count, as thawing does.
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the cgroup freezer hold %s: %w", dir, err)
	}
	return nil
}

// holdDir is this process's hold in namespace.
func holdDir(namespace string) string {
	return filepath.Join(freezerRoot, namespace, freezerHoldPrefix+strconv.Itoa(os.Getpid()))
}

// removeDeadHolds removes the holds in parent whose process is gone.
func removeDeadHolds(parent string) {
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		pid, ok := strings.CutPrefix(e.Name(), freezerHoldPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		if startTime(pid) == "" {
			_ = os.Remove(filepath.Join(parent, e.Name()))
		}
	}
}
