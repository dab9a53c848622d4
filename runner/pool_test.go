package runner

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
)

// By default a runtime's pooled sandboxes share shims in groups of
// DefaultShimGroup, at most its pool size; a group fills before the next
// starts; gVisor's shim and a group of 1 mean a shim each.
func TestPoolShimGroups(t *testing.T) {
	crun := OCIRuntime{Name: OCIRuntimeCrun}
	pool := func(group, size int) *Pool {
		return &Pool{filling: map[string]*shimGroup{},
			opts: PoolOptions{ShimGroup: group, Runtimes: map[string]PoolRuntime{"sh": {Size: size}, "py": {Size: size}}}}
	}

	p := pool(0, 10)
	var names []string
	for i := range 2*DefaultShimGroup + 1 {
		g, _ := p.joinPooled("sh", string(rune('a'+i)), crun)
		require.NotNil(t, g)
		names = append(names, g.name)
	}
	assert.Equal(t, "sr-pool-a", names[0])
	assert.Equal(t, names[0], names[DefaultShimGroup-1], "a group fills first")
	assert.Equal(t, "sr-pool-"+string(rune('a'+DefaultShimGroup)), names[DefaultShimGroup], "then the next starts")
	py, _ := p.joinPooled("py", "z", crun)
	assert.NotEqual(t, names[0], py.name, "each runtime has its own groups")

	p = pool(0, 2)
	a, _ := p.joinPooled("sh", "a", crun)
	b, _ := p.joinPooled("sh", "b", crun)
	c, _ := p.joinPooled("sh", "c", crun)
	assert.Same(t, a, b)
	assert.NotSame(t, a, c, "no larger than the pool")

	none, _ := pool(1, 10).joinPooled("sh", "a", crun)
	assert.Nil(t, none, "1: a shim each")
	none, _ = pool(0, 1).joinPooled("sh", "a", crun)
	assert.Nil(t, none, "a pool of 1 has no group")
	none, _ = pool(0, 10).joinPooled("sh", "a", OCIRuntime{Name: OCIRuntimeRunsc})
	assert.Nil(t, none, "gVisor's shim has no groups")

	p = pool(3, 10)
	a, first := p.joinPooled("sh", "a", crun)
	assert.True(t, first)
	b, first = p.joinPooled("sh", "b", crun)
	assert.False(t, first)
	assert.Same(t, a, b, "a group as configured")
}

// The sandboxes of tasks that miss the pool share shims too: they join
// the runtime's filling pooled group (whose idle sandboxes keep its shim
// running) while it has room, else a group per OCI runtime, which takes
// new sandboxes until it is full or one of its own leaves (its shim exits
// with its last sandbox).
func TestPoolColdShimGroups(t *testing.T) {
	crun, runc := OCIRuntime{Name: OCIRuntimeCrun}, OCIRuntime{Name: OCIRuntimeRunc}
	pool := func(group int) *Pool {
		return &Pool{r: &Runner{}, filling: map[string]*shimGroup{}, coldFilling: map[string]*shimGroup{},
			opts: PoolOptions{ShimGroup: group, Runtimes: map[string]PoolRuntime{"sh": {Size: 4}}}}
	}
	group := func(a map[string]string) string { return a[shimGroupAnnotation] }
	ctx := t.Context()

	p := pool(0)
	cold := coldGroups{p: p, runtime: "sh"}
	a, leaveA, started := cold.join(ctx, crun)
	require.NotNil(t, started, "the group's first sandbox says when it is made")
	joined := make(chan map[string]string, 1)
	go func() { b, _, _ := cold.join(ctx, crun); joined <- b }()
	select {
	case <-joined:
		t.Fatal("a sandbox joined a group before its first one was made")
	case <-time.After(50 * time.Millisecond):
	}
	started(true)
	b := <-joined
	assert.NotEmpty(t, group(a))
	assert.Equal(t, group(a), group(b))
	r, _, startedR := cold.join(ctx, runc)
	assert.NotEqual(t, group(a), group(r), "each OCI runtime has its own")
	startedR(false)
	r2, _, _ := cold.join(ctx, runc)
	assert.Nil(t, r2, "the group's first sandbox failed: a shim of its own")
	leaveA()
	c, _, startedC := cold.join(ctx, crun)
	assert.NotEqual(t, group(a), group(c), "a group one has left takes no more")
	startedC(true)
	for range DefaultShimGroup - 1 {
		d, _, _ := cold.join(ctx, crun)
		assert.Equal(t, group(c), group(d))
	}
	e, _, startedE := cold.join(ctx, crun)
	assert.NotEqual(t, group(c), group(e), "a full group takes no more")
	startedE(true)

	pooled, first := p.joinPooled("sh", "a", crun)
	require.True(t, first)
	pooled.started(true)
	f, leaveF, _ := cold.join(ctx, crun)
	assert.Equal(t, pooled.name, group(f), "the filling pooled group, while it has room")
	leaveF()
	g, _, _ := cold.join(ctx, crun)
	assert.Equal(t, pooled.name, group(g), "a task leaving does not close a pooled group")
	h, _, startedH := cold.join(ctx, runc)
	assert.NotEqual(t, pooled.name, group(h), "not a pooled group of another OCI runtime")
	startedH(true)
	p.joinPooled("sh", "b", crun) // the pooled group is full
	i, _, _ := cold.join(ctx, crun)
	assert.NotEqual(t, pooled.name, group(i), "not a full one")

	none, leave, _ := coldGroups{p: pool(1), runtime: "sh"}.join(ctx, crun)
	assert.Nil(t, none, "1: a shim each")
	assert.Nil(t, leave)
	none, _, _ = cold.join(ctx, OCIRuntime{Name: OCIRuntimeRunsc})
	assert.Nil(t, none, "gVisor's shim has no groups")
}

// A task takes a sandbox whose shim group is full before one of the group
// new sandboxes are joining, so that making them never holds up the shim
// its task runs under; among equals, the oldest. A group that lost a
// sandbox takes no more: its shim exits with its last one.
func TestPoolTakesFromFullShimGroupsFirst(t *testing.T) {
	cpus := &cpuSets{cpus: []int{0}, held: make([]int, 1), busy: make([]int, 1)}
	full, filling := &shimGroup{name: "full"}, &shimGroup{name: "filling"}
	slotIn := func(g *shimGroup, born int64) *slot {
		return &slot{group: g, born: time.Unix(born, 0), sandbox: &sandbox{spec: sandboxSpec{image: "img"}, cpus: []int{0}}}
	}
	s1, s2, s3, s4 := slotIn(filling, 1), slotIn(full, 2), slotIn(full, 3), slotIn(filling, 4)
	p := &Pool{r: &Runner{cpus: cpus}, filling: map[string]*shimGroup{"sh": filling},
		idle: map[string][]*slot{"sh": {s1, s2, s3, s4}}}
	pt := &prepared{runtime: images.Runtime{Name: "sh"}, image: "img"}
	var order []*slot
	for s := p.take(pt); s != nil; s = p.take(pt) {
		order = append(order, s)
		if s == s1 {
			assert.Nil(t, p.filling["sh"], "a group one of whose sandboxes left takes no new ones")
		}
	}
	assert.Equal(t, []*slot{s2, s3, s1, s4}, order)
	assert.Nil(t, p.filling["sh"])
}
