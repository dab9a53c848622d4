package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on
// every Linux architecture Go runs on.
const clockTick = 10 * time.Millisecond

// procTimes is a process's parent and the CPU time it and its waited-for
// children have used (utime, stime, cutime, cstime of /proc/PID/stat).
type procTimes struct {
	ppid int
	cpu  time.Duration
}

// parseStat reads the parent and CPU times from the text of a
// /proc/PID/stat file. The command name, in parentheses, may hold spaces
// and parentheses: the fields are counted from the last ')'.
func parseStat(stat string) (procTimes, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return procTimes{}, fmt.Errorf("no command name in %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state): field n is f[n-3].
	if len(f) < 15 {
		return procTimes{}, fmt.Errorf("short stat %q", stat)
	}
	var pt procTimes
	var err error
	if pt.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procTimes{}, fmt.Errorf("ppid in %q: %w", stat, err)
	}
	for _, n := range []int{14, 15, 16, 17} {
		ticks, err := strconv.ParseInt(f[n-3], 10, 64)
		if err != nil {
			return procTimes{}, fmt.Errorf("field %d in %q: %w", n, stat, err)
		}
		pt.cpu += time.Duration(ticks) * clockTick
	}
	return pt, nil
}

// treeCPU is the CPU time the process root and every live process under
// it have used, with what each has reaped of its exited children: the
// whole tree's cost, as long as every process in it waits for its own.
func treeCPU(root int) time.Duration {
	var total time.Duration
	for _, pt := range tree(root) {
		total += pt.cpu
	}
	return total
}

// treeRSS is the resident memory of root and every process under it.
func treeRSS(root int) uint64 {
	var total uint64
	for pid := range tree(root) {
		total += rss(pid)
	}
	return total
}

// tree is root and every live process under it.
func tree(root int) map[int]procTimes {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	procs := map[int]procTimes{}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		pt, err := parseStat(string(b))
		if err != nil {
			continue
		}
		procs[pid] = pt
		children[pt.ppid] = append(children[pt.ppid], pid)
	}
	out := map[int]procTimes{}
	todo := []int{root}
	for len(todo) > 0 {
		pid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if pt, ok := procs[pid]; ok && out[pid] == (procTimes{}) {
			out[pid] = pt
			todo = append(todo, children[pid]...)
		}
	}
	return out
}
