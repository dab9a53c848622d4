package runner

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	ctrdoci "github.com/containerd/containerd/v2/pkg/oci"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sandbox-runner/sandbox-runner/oci"
)

// specOf builds the spec a sandbox of spec would be created with.
func specOf(t *testing.T, spec sandboxSpec) *specs.Spec {
	t.Helper()
	cpus := []int{0, 1, 2, 3}[:cpuCount(spec.limits.CPUs)]
	opts, err := oci.Options(sandboxConfig(spec, "/usr/libexec/sandbox-runner-init", spec.dir.path+"/cmd-"+spec.id,
		cpus, spec.dir.cpuOnlineFile(spec.id)))
	require.NoError(t, err)
	s, err := ctrdoci.GenerateSpecWithPlatform(namespaces.WithNamespace(context.Background(), "test"), nil, "linux",
		&containers.Container{ID: spec.id}, opts...)
	require.NoError(t, err)
	return s
}

// A pooled sandbox, made with the pool's limits and then given the task's
// through resourcesUpdate, ends up with the cgroup limits of a sandbox
// made cold for the task, rounding included (the pool truncated 0.29 CPUs
// to 28999 µs where the spec rounded it to 29000); and its spec is the
// cold one's but for the limits.
func TestPooledSandboxMatchesACold(t *testing.T) {
	dir := &taskDir{path: "/state/tasks/sr-1", uid: 1500000001}
	pool := Limits{Memory: 512 << 20, CPUs: 1, Pids: 128, TmpSize: 64 << 20}
	for _, o := range []OCIRuntime{{Name: OCIRuntimeRunc, Path: "/usr/bin/runc"}, {Name: OCIRuntimeRunsc, Path: "/usr/bin/runsc"}} {
		for _, want := range []Limits{
			pool,
			{Memory: 64 << 20, CPUs: 0.29, Pids: 20, TmpSize: 64 << 20},
			{Memory: 1 << 30, CPUs: 1.5, Pids: 1000, TmpSize: 64 << 20},
		} {
			pooled := specOf(t, sandboxSpec{id: "sr-1", task: "sr-1", dir: dir, limits: pool, oci: o})
			cold := specOf(t, sandboxSpec{id: "sr-1", task: "sr-1", dir: dir, limits: want, oci: o})
			if up := resourcesUpdate(want, pool, o, []int{0, 1, 2, 3}[:cpuCount(want.CPUs)]); up != nil {
				res := pooled.Linux.Resources
				res.Memory.Limit, res.Memory.Swap = up.Memory.Limit, up.Memory.Swap
				res.CPU.Quota, res.CPU.Period, res.CPU.Cpus = up.CPU.Quota, up.CPU.Period, up.CPU.Cpus
				res.Pids = up.Pids
			} else {
				assert.Equal(t, want, pool, "no update, yet the limits differ")
			}
			assert.Equal(t, cold.Linux.Resources, pooled.Linux.Resources, "limits %+v", want)
			if o.Name == OCIRuntimeRunsc {
				assert.Equal(t, want.Pids+runscPidsOverhead, *cold.Linux.Resources.Pids.Limit, "gVisor's own tasks count against the host's limit")
			}
			pooled.Linux.Resources = nil
			cold.Linux.Resources = nil
			assert.Equal(t, cold, pooled, "a pooled sandbox's spec differs from a cold one's beyond its limits")
		}
	}
}

// A pooled sandbox is handed out as soon as its start returns, which can
// be just before its init opens the command FIFO: the writer waits for
// the reader, but not for an init that is gone.
func TestOpenCommandFIFOWaitsForTheInit(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "command")
	require.NoError(t, unix.Mkfifo(fifo, 0o600))
	got := make(chan string, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		b, err := os.ReadFile(fifo)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(b)
	}()
	f, err := openCommandFIFO(t.Context(), fifo, hostProcess{pid: strconv.Itoa(os.Getpid())})
	require.NoError(t, err)
	_, err = f.Write([]byte("the command"))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	assert.Equal(t, "the command", <-got)

	gone := exec.Command("true")
	require.NoError(t, gone.Run())
	begun := time.Now()
	_, err = openCommandFIFO(t.Context(), fifo, hostProcess{pid: strconv.Itoa(gone.Process.Pid)})
	assert.ErrorContains(t, err, "init was gone before its task started")
	assert.Less(t, time.Since(begun), fifoReaderWait, "a dead init is not waited for")
}

// A pooled sandbox is known to wait by its init's and shim's host
// processes, each its pid and start time: a process that ended, or
// another with its pid, is not it.
func TestHostProcessRunning(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	parent, ok := hostProcess{self, startTime(self)}.running()
	assert.True(t, ok)
	assert.Equal(t, strconv.Itoa(os.Getppid()), parent)
	_, ok = hostProcess{self, "1"}.running()
	assert.False(t, ok, "another process with the same pid")

	gone := exec.Command("true")
	require.NoError(t, gone.Run())
	_, ok = hostProcess{strconv.Itoa(gone.Process.Pid), "1"}.running()
	assert.False(t, ok)

	s := &sandbox{}
	_, known := s.runsAhead()
	assert.False(t, known, "not watched: ask containerd")
	s.init, s.shim = hostProcess{self, startTime(self)}, hostProcess{strconv.Itoa(os.Getppid()), startTime(strconv.Itoa(os.Getppid()))}
	running, known := s.runsAhead()
	assert.True(t, known)
	assert.True(t, running)
	s.shim = hostProcess{"1", startTime("1")}
	running, _ = s.runsAhead()
	assert.False(t, running, "the init is no longer the shim's child: the shim died")
}
