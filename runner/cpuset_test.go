package runner

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/sandbox-runner/sandbox-runner/images"
)

func TestCPUSetsSpreadTasksOverTheHost(t *testing.T) {
	c := &cpuSets{cpus: []int{0, 1, 2, 3}, held: make([]int, 4), busy: make([]int, 4)}
	a, b := c.take(1), c.take(1)
	assert.NotEqual(t, a, b, "two one-CPU tasks share a core while others are idle")
	two := c.take(2)
	assert.Equal(t, []int{2, 3}, two, "the idle CPUs first")
	c.give(a)
	assert.Equal(t, a, c.take(1), "the CPU given back is the least used")
	assert.Equal(t, []int{0, 1, 2, 3}, c.take(9), "never more than the host has")
}

func TestCPUCountIsTheQuotaRoundedUp(t *testing.T) {
	for cpus, n := range map[float64]int{0.01: 1, 0.5: 1, 1: 1, 1.0000000001: 1, 1.5: 2, 2: 2, 3.2: 4} {
		assert.Equal(t, n, cpuCount(cpus), "cpus %v", cpus)
	}
}

// A pool makes its sandboxes before their tasks: the CPUs running the
// fewest tasks come first, then those with the fewest sandboxes.
func TestCPUSetsPreferIdleCPUs(t *testing.T) {
	c := &cpuSets{cpus: []int{0, 1}, held: make([]int, 2), busy: make([]int, 2)}
	a, b := c.take(1), c.take(1)
	c.run(a)
	assert.Equal(t, 1, c.load(a))
	assert.Equal(t, 0, c.load(b))
	assert.Equal(t, b, c.take(1), "a new sandbox goes where no task runs")
	c.done(a)
	assert.Equal(t, 0, c.load(a))
	c.done(a)
	assert.Equal(t, 0, c.load(a), "never below zero")
}

// Of two idle sandboxes, a task gets the one whose CPU runs no task.
func TestPoolTakesTheSandboxOnTheLeastBusyCPU(t *testing.T) {
	cpus := &cpuSets{cpus: []int{0, 1}, held: make([]int, 2), busy: make([]int, 2)}
	slotOn := func(cpu int) *slot {
		return &slot{sandbox: &sandbox{spec: sandboxSpec{image: "img"}, cpus: []int{cpu}}}
	}
	p := &Pool{r: &Runner{cpus: cpus}, idle: map[string][]*slot{"sh": {slotOn(0), slotOn(1)}}}
	pt := &prepared{runtime: images.Runtime{Name: "sh"}, image: "img"}
	cpus.run([]int{1})
	assert.Equal(t, []int{0}, p.take(pt).sandbox.cpus)
	assert.Equal(t, []int{1}, p.take(pt).sandbox.cpus, "a busy CPU's sandbox is still better than none")
	assert.Nil(t, p.take(pt))
}

// A claimed sandbox's CPUs count as busy until it is destroyed, so the
// next sandbox goes elsewhere.
func TestClaimedSandboxKeepsItsCPUsBusyUntilDestroyed(t *testing.T) {
	c := &cpuSets{cpus: []int{0, 1}, held: make([]int, 2), busy: make([]int, 2)}
	s := &sandbox{cpuSets: c, cpus: c.take(1)}
	other := c.take(1)
	c.give(other)
	s.occupyCPUs()
	assert.Equal(t, 1, c.load(s.cpus))
	assert.Equal(t, other, c.take(1), "not onto the busy CPU")
	s.giveCPUs()
	assert.Equal(t, 0, c.load(s.cpus))
	assert.Equal(t, []int{0, 1}, c.held)
}
