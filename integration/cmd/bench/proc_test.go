package main

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A command name with a space and a ')' of its own.
	stat := "4242 (a b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 130 7 3 20 0 1 0 100 1000 10 18446744073709551615"
	pt, err := parseStat(stat)
	if err != nil {
		t.Fatal(err)
	}
	if pt.ppid != 17 {
		t.Errorf("ppid %d, want 17", pt.ppid)
	}
	if want := (250 + 130 + 7 + 3) * clockTick; pt.cpu != want {
		t.Errorf("cpu %s, want %s", pt.cpu, want)
	}
	if _, err := parseStat("4242 no name"); err == nil {
		t.Error("a stat without a command name parsed")
	}
	if _, err := parseStat("4242 (x) S 1 2"); err == nil {
		t.Error("a short stat parsed")
	}
}

// A child's CPU counts in its parent's tree while it runs, and, once the
// parent has waited for it, in the parent's own figures.
func TestTreeCPUCountsChildren(t *testing.T) {
	self := os.Getpid()
	before := treeCPU(self)
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	used := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	after := treeCPU(self)
	if used < 50*time.Millisecond {
		t.Fatalf("the child used only %s in %s; the test needs a busier loop", used, time.Since(start))
	}
	// Tick rounding: allow two ticks per field.
	if got := after - before; got < used-8*clockTick {
		t.Errorf("tree CPU grew by %s while a waited-for child used %s", got, used)
	}
	if treeCPU(1<<30) != 0 {
		t.Error("a process that does not exist has CPU time")
	}
}

func TestParseCPUStatUsage(t *testing.T) {
	d, err := parseCPUStatUsage("usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n")
	if err != nil {
		t.Fatal(err)
	}
	if d != 1234567*time.Microsecond {
		t.Errorf("usage %s", d)
	}
	if _, err := parseCPUStatUsage("user_usec 1\n"); err == nil {
		t.Error("a cpu.stat without usage_usec parsed")
	}
}

// The CPU time of a client process the bench waited for is counted.
func TestCombinedOutputCountsChildCPU(t *testing.T) {
	before := childCPU.Load()
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done")
	if _, err := combinedOutput(cmd); err != nil {
		t.Fatal(err)
	}
	used := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if got := time.Duration(childCPU.Load() - before); got != used || used == 0 {
		t.Errorf("counted %s, the child used %s", got, used)
	}
}
