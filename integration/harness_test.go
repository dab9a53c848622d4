//go:build linux

// Package integration holds the privileged tests: they run real tasks
// through a private containerd and runc, and check the sandbox from inside.
//
// TestMain decides once whether this machine can run them (root,
// containerd and runc installed, a daemon that starts). When it cannot,
// the suite is skipped, so an unprivileged `go test ./...` passes; with
// CI=true or SANDBOX_RUNNER_INTEGRATION=1 it fails instead, so CI never
// passes by skipping.
package integration

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	ctrdlog "github.com/containerd/log"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/integration/ctrdtest"
	"github.com/sandbox-runner/sandbox-runner/integration/testimage"
	"github.com/sandbox-runner/sandbox-runner/runner"
)

const (
	// testNamespace holds everything the suite creates, so that nothing
	// else on the daemon is touched and leaks are easy to see.
	testNamespace = "sandbox-runner-it"
	// testSnapshotter is the snapshotter the image is unpacked into and
	// tasks run from.
	testSnapshotter = "overlayfs"
	// testImage is the busybox image every test runs in.
	testImage = "sandbox-runner.test/busybox:latest"
	// testRuntime is the catalog runtime the tests use: Debian's busybox
	// has no bash applet, so scripts are plain sh.
	testRuntime = "sh"
	// ociRuntimeEnv names the OCI runtime the whole suite runs under.
	ociRuntimeEnv = "SANDBOX_RUNNER_OCI_RUNTIME"
	// daemonLogLines is how much of the daemon's log a failed run prints.
	daemonLogLines = 80
)

// Harness is the private containerd the suite runs against, with the test
// image imported. It exists only when the environment gate passed.
type Harness struct {
	// Dir holds the daemon's root, state, socket and log, and the CLI.
	Dir string
	// Address is the daemon's socket.
	Address string
	// Client talks to the daemon.
	Client *client.Client
	// Namespace is where every test object lives.
	Namespace string

	daemon *ctrdtest.Daemon
	// layers are the snapshots the imported image owns; they are the only
	// ones allowed to outlive a test.
	layers map[string]bool

	// OCIRuntimes is the choice of OCI runtime every runner of the suite
	// makes: $SANDBOX_RUNNER_OCI_RUNTIME's when set (the CLI and the
	// service the tests start read the same variable), else the
	// fastest usable one.
	OCIRuntimes *runner.OCIRuntimes
	// OCIRuntime is the OCI runtime tasks run under by default.
	OCIRuntime string

	// builds are the init and the CLI, built once for the suite and
	// shared by the namespaces of parallel tests.
	builds *builds
}

// builds are the binaries the suite builds once.
type builds struct {
	initOnce sync.Once
	initPath string
	initErr  error
	cliOnce  sync.Once
	cliPath  string
	cliErr   error
}

// underGVisor tells whether the suite's tasks run under gVisor (runsc),
// whose kernel answers some probes differently from Linux: the tests
// that apply to it assert what gVisor gives instead.
func underGVisor() bool {
	return harness != nil && harness.OCIRuntime == runner.OCIRuntimeRunsc
}

// harness is set by TestMain before any test runs.
var harness *Harness

// skipReason is why the suite is not running, when it is not.
var skipReason string

func TestMain(m *testing.M) {
	flag.Parse()
	// The client logs through logrus; its warnings are noise here.
	_ = ctrdlog.SetLevel("error")
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	ctx := context.Background()
	start := time.Now()
	h, err := startHarness(ctx)
	if err != nil {
		return gate(m, err)
	}
	defer h.stop(ctx)
	harness = h
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "integration: containerd on %s, image %s in namespace %s, OCI runtime %s, ready in %s\n",
			h.Address, testImage, h.Namespace, h.OCIRuntime, time.Since(start).Round(time.Millisecond))
	}

	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "\n--- containerd log (%s), last %d lines:\n%s\n--- end of containerd log\n",
			h.daemon.Log, daemonLogLines, tail(h.daemon.Log, daemonLogLines))
	}
	return code
}

// gate is the one place that decides what a machine that cannot run the
// suite means: a failure where the suite must run (CI, `make test`);
// everywhere else a run in which every test skips, saying why, so that an
// unprivileged `go test ./...` passes.
func gate(m *testing.M, reason error) int {
	skipReason = reason.Error()
	if mustRun() {
		fmt.Fprintf(os.Stderr, "integration: cannot run the privileged tests, and CI=true or SANDBOX_RUNNER_INTEGRATION=1 requires them: %v\n", reason)
		return 1
	}
	fmt.Fprintf(os.Stderr, "integration: skipping all tests: %v\n(set SANDBOX_RUNNER_INTEGRATION=1 to make this a failure)\n", reason)
	return m.Run()
}

// mustRun tells whether the environment requires the suite to run.
func mustRun() bool {
	for _, key := range []string{"CI", "SANDBOX_RUNNER_INTEGRATION"} {
		if v, err := strconv.ParseBool(os.Getenv(key)); err == nil && v {
			return true
		}
	}
	return false
}

// RequiresRoot returns the harness, or skips t when TestMain found that
// this machine cannot run the suite. Every test starts with it (directly
// or through runSh and newCLI): the decision is TestMain's, made once, and
// not scattered os.Geteuid checks.
func RequiresRoot(t testing.TB) *Harness {
	t.Helper()
	if harness == nil {
		if mustRun() {
			t.Fatalf("the privileged tests must run here but cannot: %s", skipReason)
		}
		t.Skipf("privileged integration test: %s", skipReason)
	}
	top, _, _ := strings.Cut(t.Name(), "/")
	if v, ok := views.Load(top); ok {
		return v.(*Harness)
	}
	return harness
}

// prerequisites returns why this machine cannot run the suite at all.
func prerequisites() error {
	if os.Geteuid() != 0 {
		return errors.New("not running as root: the tests start containerd and run containers")
	}
	for _, bin := range []string{"containerd", "runc", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is not on PATH (Debian: apt-get install containerd runc): %w", bin, err)
		}
	}
	if _, err := os.Stat(testimage.DefaultBusybox); err != nil {
		return fmt.Errorf("no busybox at %s to build the test image from (Debian: apt-get install busybox-static): %w", testimage.DefaultBusybox, err)
	}
	return nil
}

// startHarness starts a private containerd in a fresh directory, imports
// the test image into the test namespace, and checks that a runner can
// be made on this host. Whatever fails is undone.
func startHarness(ctx context.Context) (_ *Harness, retErr error) {
	if err := prerequisites(); err != nil {
		return nil, err
	}
	// Short on purpose: the daemon's unix sockets live here, and socket
	// paths must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "srit-")
	if err != nil {
		return nil, err
	}
	h := &Harness{Dir: dir, Namespace: testNamespace, builds: &builds{}}
	// An OCI runtime that cannot run here fails the suite with the fix
	// (such as the host preparation crun needs), never falls back.
	h.OCIRuntimes, err = runner.NewOCIRuntimes(os.Getenv(ociRuntimeEnv), nil)
	if err != nil {
		return nil, fmt.Errorf("$%s: %w", ociRuntimeEnv, err)
	}
	def, err := h.OCIRuntimes.Default()
	if err != nil {
		return nil, err
	}
	h.OCIRuntime = def.Name
	defer func() {
		if retErr != nil {
			h.stop(ctx)
		}
	}()

	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	h.daemon, err = ctrdtest.StartDaemon(sctx, filepath.Join(dir, "d"))
	if err != nil {
		return nil, fmt.Errorf("starting containerd: %w", err)
	}
	h.Address = h.daemon.Address
	h.Client, err = client.New(h.Address, client.WithDefaultNamespace(testNamespace))
	if err != nil {
		return nil, fmt.Errorf("connecting to containerd: %w", err)
	}

	archive := filepath.Join(dir, testArchive)
	if err := testimage.BuildBusyboxArchive(archive, testImage); err != nil {
		return nil, fmt.Errorf("building the test image: %w", err)
	}
	if h.layers, err = importTestImage(sctx, h.Client, testNamespace, archive); err != nil {
		return nil, err
	}

	// A host without seccomp or a cgroup controller refuses every task;
	// that is an environment problem, and is reported once, here.
	probe := filepath.Join(dir, "probe")
	if _, err := runner.New(h.Client, runner.WithNamespace(testNamespace), runner.WithStateDir(probe), runner.WithOCIRuntimes(h.OCIRuntimes)); err != nil {
		return nil, fmt.Errorf("this host cannot sandbox tasks: %w", err)
	}
	_ = os.RemoveAll(probe)
	return h, nil
}

// testArchive is the test image's archive in the harness's dir.
const testArchive = "busybox.tar"

// importTestImage imports the test image into namespace ns and returns
// its layers' snapshots: all that may be there once a test is done.
func importTestImage(ctx context.Context, c *client.Client, ns, archive string) (map[string]bool, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	nctx := namespaces.WithNamespace(ctx, ns)
	names, err := images.Import(nctx, c, f, testSnapshotter)
	if err != nil {
		return nil, fmt.Errorf("importing the test image: %w", err)
	}
	if !slices.Contains(names, testImage) {
		return nil, fmt.Errorf("importing the test image gave %v, not %s", names, testImage)
	}
	layers := map[string]bool{}
	err = c.SnapshotService(testSnapshotter).Walk(nctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind != snapshots.KindCommitted {
			return fmt.Errorf("snapshot %s is %s after the import, not committed", info.Name, info.Kind)
		}
		layers[info.Name] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the image's snapshots: %w", err)
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("the test image was not unpacked into %s", testSnapshotter)
	}
	return layers, nil
}

// views are the harnesses of the parallel tests running now, by test
// name: RequiresRoot gives a parallel test (and its subtests, and the
// helpers it calls) its own.
var (
	views       sync.Map
	parallelSeq atomic.Int64
)

// Parallel runs t alongside the other parallel tests (go test's
// -parallel of them at a time, once the serial ones are done), in a
// containerd namespace of its own with the test image imported, so that
// its leak check sees only what it made. Only tests that make their own
// service, workers or NATS servers and need nothing host-wide take it:
// no Docker, no containerd restart, no runtime images, no timing of
// what they measure, no systemd unit.
func Parallel(t *testing.T) *Harness {
	t.Helper()
	base := RequiresRoot(t)
	t.Parallel()
	ns := fmt.Sprintf("%s-%d", testNamespace, parallelSeq.Add(1))
	c, err := client.New(base.Address, client.WithDefaultNamespace(ns))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	layers, err := importTestImage(ctx, c, ns, filepath.Join(base.Dir, testArchive))
	require.NoError(t, err)
	h := &Harness{Dir: base.Dir, Address: base.Address, Client: c, Namespace: ns, daemon: base.daemon,
		layers: layers, OCIRuntimes: base.OCIRuntimes, OCIRuntime: base.OCIRuntime, builds: base.builds}
	views.Store(t.Name(), h)
	t.Cleanup(func() { views.Delete(t.Name()) })
	return h
}

// stop removes whatever a failed test left behind, so no shim outlives
// the suite, then stops the daemon and removes its directory.
func (h *Harness) stop(ctx context.Context) {
	if h.Client != nil {
		if n := h.sweep(ctx); n > 0 {
			fmt.Fprintf(os.Stderr, "integration: removed %d leftover containers at the end of the suite\n", n)
		}
		h.Client.Close()
	}
	if h.daemon != nil {
		if err := h.daemon.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "integration: stopping containerd: %v\n", err)
		}
	}
	if err := os.RemoveAll(h.Dir); err != nil {
		fmt.Fprintf(os.Stderr, "integration: removing %s: %v\n", h.Dir, err)
	}
}

// sweep kills and deletes every container in the suite's namespaces (the
// test namespace and those of parallel tests) and returns how many there
// were.
func (h *Harness) sweep(ctx context.Context) int {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	nss, err := h.Client.NamespaceService().List(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: listing namespaces: %v\n", err)
		nss = []string{h.Namespace}
	}
	n := 0
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		cs, err := h.Client.Containers(nctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "integration: listing leftover containers in %s: %v\n", ns, err)
			continue
		}
		for _, c := range cs {
			if task, err := c.Task(nctx, nil); err == nil {
				if _, err := task.Delete(nctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
					fmt.Fprintf(os.Stderr, "integration: deleting leftover task %s: %v\n", c.ID(), err)
				}
			}
			if err := c.Delete(nctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
				fmt.Fprintf(os.Stderr, "integration: deleting leftover container %s: %v\n", c.ID(), err)
			}
		}
		n += len(cs)
	}
	return n
}

// NewRunner returns a runner on the harness's daemon with its own state
// dir and opts on top, and registers the leak check that runs when t ends.
func (h *Harness) NewRunner(t *testing.T, opts ...runner.Option) *runner.Runner {
	t.Helper()
	stateDir := h.StateDir(t)
	r, err := runner.New(h.Client, append([]runner.Option{
		runner.WithNamespace(h.Namespace),
		runner.WithSnapshotter(testSnapshotter),
		runner.WithStateDir(stateDir),
		runner.WithOCIRuntimes(h.OCIRuntimes),
		runner.WithOwner("integration/" + t.Name()),
		runner.WithInit(h.InitBinary(t)),
		runner.WithLogger(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))),
	}, opts...)...)
	require.NoError(t, err)
	return r
}

// StateDir returns a fresh runner state dir for t, and registers the leak
// check on it and on the namespace, which runs when t ends, before the
// dir is removed.
func (h *Harness) StateDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { h.CheckNoLeaks(t, dir) })
	return dir
}

// CheckNoLeaks asserts that nothing a task made is left: no container, no
// task, no snapshot but the image's layers, no lease in the namespace, no
// mount under stateDir and nothing in its tasks/ and fifo/ dirs. A namespace is one test's at a time,
// so the namespace must be exactly as the import left it.
func (h *Harness) CheckNoLeaks(t testing.TB, stateDir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), h.Namespace), 30*time.Second)
	defer cancel()

	cs, err := h.Client.ContainerService().List(ctx)
	if assert.NoError(t, err, "listing containers") {
		for _, c := range cs {
			assert.Failf(t, "container leaked", "container %s (labels %v) is still there", c.ID, c.Labels)
		}
	}

	ts, err := h.Client.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
	if assert.NoError(t, err, "listing tasks") {
		for _, task := range ts.Tasks {
			assert.Failf(t, "task leaked", "task %s (pid %d, status %s) is still there", task.ID, task.Pid, task.Status)
		}
	}

	err = h.Client.SnapshotService(testSnapshotter).Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		switch {
		case info.Labels[runner.LabelTask] != "":
			assert.Failf(t, "snapshot leaked", "snapshot %s of task %s (%s) is still there", info.Name, info.Labels[runner.LabelTask], info.Kind)
		case info.Kind != snapshots.KindCommitted:
			assert.Failf(t, "snapshot leaked", "%s snapshot %s (labels %v) is still there", info.Kind, info.Name, info.Labels)
		case !h.layers[info.Name]:
			assert.Failf(t, "snapshot leaked", "committed snapshot %s (labels %v) is not one of the image's", info.Name, info.Labels)
		}
		return nil
	})
	assert.NoError(t, err, "listing snapshots")

	// A shim whose task is gone shuts down shortly after; one that
	// stays holds memory for nothing, and nothing would ever stop it.
	var shims []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		shims = shimsOf(h.Address, h.Namespace)
		if len(shims) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, s := range shims {
		assert.Failf(t, "shim leaked", "a shim with no task is still running: %s", s)
	}
	// gVisor's sandbox (its kernel) and gofer are processes of their own,
	// which a shim that died could leave behind.
	for _, p := range processesUnder(h.Dir, "runsc") {
		assert.Failf(t, "gVisor process leaked", "a gVisor process of this suite is still running: %s", p)
	}

	ls, err := h.Client.LeasesService().List(ctx)
	if assert.NoError(t, err, "listing leases") {
		for _, l := range ls {
			assert.Failf(t, "lease leaked", "lease %s (labels %v) is still there", l.ID, l.Labels)
		}
	}

	if stateDir == "" {
		return
	}
	// A compiled task's stages share a tmpfs the runner mounts on the
	// host, in the task dir; it must be unmounted, not just hidden.
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if assert.NoError(t, err) {
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], stateDir+"/") {
				assert.Failf(t, "mount leaked", "%s is still mounted", f[4])
			}
		}
	}
	for _, sub := range []string{"tasks", "fifo", "ids"} {
		entries, err := os.ReadDir(filepath.Join(stateDir, sub))
		if errors.Is(err, os.ErrNotExist) {
			// A runner that refused its input before New made nothing.
			continue
		}
		if assert.NoError(t, err) {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			assert.Empty(t, names, "the runner left files in %s/", sub)
		}
	}
}

// shimsOf lists the shim processes serving namespace ns of the containerd
// at address, as "pid: command line".
func shimsOf(address, ns string) []string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var shims []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("containerd-shim")) {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if flagValue(args, "-address") == address && flagValue(args, "-namespace") == ns {
			shims = append(shims, filepath.Base(filepath.Dir(p))+": "+strings.Join(args, " "))
		}
	}
	return shims
}

// processesUnder lists the processes whose command line names dir and
// whose first word starts with prefix, as "pid: command line".
func processesUnder(dir, prefix string) []string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var out []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(dir+"/")) {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), prefix) {
			continue
		}
		out = append(out, filepath.Base(filepath.Dir(p))+": "+strings.Join(args, " "))
	}
	return out
}

// flagValue returns the value after name in args, or "".
func flagValue(args []string, name string) string {
	for i, a := range args[:max(len(args)-1, 0)] {
		if a == name {
			return args[i+1]
		}
	}
	return ""
}

// InitBinary returns the path of sandbox-runner-init, PID 1 of every
// sandbox, compiled once per run the way the Makefile does, with
// sandbox-runner-shim beside it, where the runner looks for it.
func (h *Harness) InitBinary(t testing.TB) string {
	t.Helper()
	b := h.builds
	b.initOnce.Do(func() {
		b.initPath = filepath.Join(h.Dir, runner.InitName)
		for name, src := range map[string]string{runner.InitName: "cmd/sandbox-runner-init/init.c", runner.ShimName: "cmd/sandbox-runner-shim/shim.c"} {
			cmd := exec.Command("cc", "-static", "-O2", "-Wall", "-Werror", "-o", filepath.Join(h.Dir, name), src)
			cmd.Dir = ".."
			if out, err := cmd.CombinedOutput(); err != nil {
				b.initErr = fmt.Errorf("building %s: %w\n%s", name, err, out)
			}
		}
	})
	require.NoError(t, b.initErr)
	return b.initPath
}

// CLI returns the path of the sandbox-runner binary, built once per run,
// with the init beside it, where the CLI looks for it.
func (h *Harness) CLI(t testing.TB) string {
	t.Helper()
	h.InitBinary(t)
	b := h.builds
	b.cliOnce.Do(func() {
		b.cliPath = filepath.Join(h.Dir, "sandbox-runner")
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(goBin, "build", "-o", b.cliPath, "./cmd/sandbox-runner")
		// The test runs in integration/; the module root is one up.
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.cliErr = fmt.Errorf("building the CLI: %w\n%s", err, out)
		}
	})
	require.NoError(t, b.cliErr)
	return b.cliPath
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
