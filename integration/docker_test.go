//go:build linux

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	ctrdimages "github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/sandbox-runner/sandbox-runner/integration/testimage"
	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/host"
)

const (
	// dockerImage is the image the tests load into Docker: busybox plus
	// /from-docker, so a task can tell it runs from Docker's copy.
	dockerImage = "sandbox-runner.test/docker-busybox:latest"
	// dockerNamespace is where the runner works on a daemon Docker uses;
	// the tests remove it, and find any leak in it, at the end.
	dockerNamespace = "sandbox-runner-it-docker"
	// dockerStartTimeout bounds dockerd's start, its containerd's included.
	dockerStartTimeout = time.Minute
	// dockerLogLines is how much of dockerd's log a failed test prints.
	dockerLogLines = 60
)

// mobyNamespaces are the namespaces Docker owns on its containerd.
var mobyNamespaces = []string{"moby", "plugins.moby"}

// dockerd is a Docker engine started for one test: its own data root,
// exec root, socket, config and cgroup parent, all under dir.
type dockerd struct {
	t   *testing.T
	dir string
	// socket is the engine API's unix socket.
	socket string
	// containerd is the socket of the containerd Docker uses: the one it
	// was given, or the one it started under its exec root.
	containerd string
	// cli is the docker CLI.
	cli string
	log string

	cmd          *exec.Cmd
	exited       chan error
	cgroupParent string
	// created are host paths dockerd makes outside dir that did not
	// exist before it started; stop removes them again.
	created []string
}

// requireDocker returns the paths of dockerd and the docker CLI, or ends
// t: a failure where the suite must run, a skip elsewhere.
func requireDocker(t *testing.T) (dockerdBin, cliBin string) {
	t.Helper()
	RequiresRoot(t)
	var missing []string
	dockerdBin, err := exec.LookPath("dockerd")
	if err != nil {
		missing = append(missing, "dockerd")
	}
	cliBin, err = exec.LookPath("docker")
	if err != nil {
		missing = append(missing, "docker")
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("%s not on PATH (Debian: apt-get install docker.io)", strings.Join(missing, " and "))
		if mustRun() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dockerdBin, cliBin
}

// startDockerd starts dockerd on the containerd at containerdAddress, or,
// when it is empty, with a containerd of its own, as dockerd does when it
// is not given --containerd. Networking is off (no bridge, no iptables,
// no sysctls). Everything is stopped and removed when t ends.
func startDockerd(t *testing.T, containerdAddress string) *dockerd {
	t.Helper()
	dockerdBin, cliBin := requireDocker(t)
	// Short: dockerd's and its containerd's sockets live under it.
	dir, err := os.MkdirTemp("", "srd-")
	require.NoError(t, err)
	d := &dockerd{
		t:            t,
		dir:          dir,
		socket:       filepath.Join(dir, "docker.sock"),
		containerd:   containerdAddress,
		cli:          cliBin,
		log:          filepath.Join(dir, "dockerd.log"),
		cgroupParent: "/" + filepath.Base(dir),
	}
	t.Cleanup(d.stop)
	if d.containerd == "" {
		d.containerd = filepath.Join(dir, "x", "containerd", "containerd.sock")
	}
	for _, p := range []string{"/etc/docker/key.json", "/etc/docker", "/run/docker/plugins", "/run/docker"} {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			d.created = append(d.created, p)
		}
	}

	// A daemon.json of our own: the host's must not change the test, and
	// the engine key goes under dir instead of /etc/docker.
	config := filepath.Join(dir, "daemon.json")
	require.NoError(t, os.WriteFile(config, []byte(fmt.Sprintf(`{"deprecated-key-path": %q}`, filepath.Join(dir, "key.json"))), 0o600))
	args := []string{
		"--config-file", config,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "x"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"-H", "unix://" + d.socket,
		"--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
		"--cgroup-parent", d.cgroupParent,
	}
	if containerdAddress != "" {
		args = append(args, "--containerd", containerdAddress)
	}
	logf, err := os.Create(d.log)
	require.NoError(t, err)
	defer logf.Close()
	d.cmd = exec.Command(dockerdBin, args...)
	if containerdAddress == "" {
		if _, err := os.Stat(host.DefaultAddress); err == nil {
			// dockerd uses a containerd it finds at the default socket
			// instead of starting its own. Hide that one from it, in a
			// mount namespace of its own, as on a host without one.
			hide := fmt.Sprintf("mount -t tmpfs tmpfs %s && exec \"$0\" \"$@\"", filepath.Dir(host.DefaultAddress))
			d.cmd = exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", hide, dockerdBin}, args...)...)
		}
	}
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.Env = dockerdEnv()
	// A test binary that dies takes its dockerd with it.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	start := time.Now()
	require.NoError(t, d.cmd.Start())
	d.exited = make(chan error, 1)
	go func() { d.exited <- d.cmd.Wait() }()

	deadline := time.Now().Add(dockerStartTimeout)
	for !d.ping() {
		select {
		case err := <-d.exited:
			d.exited <- err
			t.Fatalf("dockerd exited at start (%v); its log ends with:\n%s", err, tail(d.log, dockerLogLines))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not serve on %s within %s; its log ends with:\n%s", d.socket, dockerStartTimeout, tail(d.log, dockerLogLines))
		}
	}
	// dockerd serves its API once its containerd is up; check anyway.
	_, err = os.Stat(d.containerd)
	require.NoError(t, err, "no containerd socket where Docker should use one\n%s", tail(d.log, dockerLogLines))
	t.Logf("dockerd serving on %s, with containerd %s, in %s", d.socket, d.containerd, time.Since(start).Round(time.Millisecond))
	return d
}

// dockerdEnv is the environment dockerd runs with. When the suite runs
// against a given containerd build, Docker's own containerd is that
// build too: its directory goes first on PATH, as for the harness.
func dockerdEnv() []string {
	var env []string
	path := os.Getenv("PATH")
	if bin := os.Getenv(host.ContainerdBinEnv); bin != "" {
		path = filepath.Dir(bin) + string(os.PathListSeparator) + path
	}
	for _, e := range os.Environ() {
		k, _, _ := strings.Cut(e, "=")
		if k == "PATH" || strings.HasPrefix(k, "DOCKER_") {
			continue
		}
		env = append(env, e)
	}
	return append(env, "PATH="+path)
}

// ping tells whether the engine answers GET /_ping.
func (d *dockerd) ping() bool {
	c := http.Client{
		Timeout: time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", d.socket)
		}},
	}
	resp, err := c.Get("http://docker/_ping")
	if err != nil {
		return false
	}
	resp.Body.Close()
	c.CloseIdleConnections()
	return resp.StatusCode == http.StatusOK
}

// env is the environment for the docker CLI and for sandbox-runner's
// --from-docker: this engine, and a CLI config dir of the test's own.
func (d *dockerd) env() []string {
	var env []string
	for _, e := range cleanEnv() {
		if k, _, _ := strings.Cut(e, "="); !strings.HasPrefix(k, "DOCKER_") {
			env = append(env, e)
		}
	}
	return append(env, "DOCKER_HOST=unix://"+d.socket, "DOCKER_CONFIG="+filepath.Join(d.dir, "cli"))
}

// docker runs the docker CLI and returns its trimmed stdout; failing is
// fatal.
func (d *dockerd) docker(args ...string) string {
	d.t.Helper()
	out, err := d.tryDocker(args...)
	require.NoError(d.t, err)
	return out
}

func (d *dockerd) tryDocker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.cli, args...)
	cmd.Env = d.env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// loadImage builds dockerImage and loads it into the engine with
// `docker load`, the way an image gets there without a registry.
func (d *dockerd) loadImage() {
	d.t.Helper()
	rootfs := d.t.TempDir()
	require.NoError(d.t, testimage.BusyboxRootfs(rootfs, testimage.DefaultBusybox))
	require.NoError(d.t, os.WriteFile(filepath.Join(rootfs, "from-docker"), []byte("docker\n"), 0o644))
	archive := filepath.Join(d.t.TempDir(), "docker-busybox.tar")
	f, err := os.Create(archive)
	require.NoError(d.t, err)
	err = testimage.WriteDockerArchive(f, rootfs, testimage.Options{
		Ref: dockerImage,
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd: []string{"/bin/sh"},
	})
	require.NoError(d.t, errors.Join(err, f.Close()))
	out := d.docker("load", "-i", archive)
	require.Contains(d.t, out, dockerImage)
}

// stop removes Docker's containers, stops dockerd (which stops the
// containerd it started), ends whatever process still runs from dir,
// unmounts and removes dir, and removes the host paths dockerd created.
// It prints dockerd's log when the test failed.
func (d *dockerd) stop() {
	t := d.t
	if t.Failed() {
		t.Logf("dockerd log (%s), last %d lines:\n%s", d.log, dockerLogLines, tail(d.log, dockerLogLines))
	}
	if d.cmd != nil && d.cmd.Process != nil {
		select {
		case err := <-d.exited:
			d.exited <- err
		default:
			if ids, err := d.tryDocker("ps", "-aq"); err == nil && ids != "" {
				if _, err := d.tryDocker(append([]string{"rm", "-f"}, strings.Fields(ids)...)...); err != nil {
					t.Errorf("removing Docker's containers: %v", err)
				}
			}
			_ = d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.exited:
			case <-time.After(30 * time.Second):
				t.Errorf("dockerd did not stop within 30s of SIGTERM; killing it")
				_ = d.cmd.Process.Kill()
				<-d.exited
			}
		}
	}
	// Docker's own containerd and any shim of its containers name dir on
	// their command line; none should be left, but none may outlive us.
	for _, pid := range processesMentioning(d.dir) {
		t.Errorf("process %d (%s) outlived dockerd; killing it", pid, cmdline(pid))
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	unmountUnder(t, d.dir)
	if err := os.RemoveAll(d.dir); err != nil {
		t.Errorf("removing %s: %v", d.dir, err)
	}
	for _, p := range d.created {
		// Files dockerd wrote, and directories it made that are empty.
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
			t.Errorf("removing %s that dockerd created: %v", p, err)
		}
	}
	removeCgroupParent(t, d.cgroupParent)
}

// processesMentioning returns the pids whose command line contains s.
func processesMentioning(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if strings.Contains(cmdline(pid), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(t *testing.T, dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("reading mountinfo: %v", err)
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	slices.Reverse(points)
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			t.Errorf("unmounting %s: %v", p, err)
		}
	}
}

// removeCgroupParent removes the cgroup Docker made its containers'
// parent, in every hierarchy, with any container cgroup runc left in it
// (runc's own removal can lose a race with the exiting processes).
func removeCgroupParent(t *testing.T, parent string) {
	roots, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	roots = append(roots, filepath.Join("/sys/fs/cgroup", parent))
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		// Children before their parents.
		slices.Reverse(dirs)
		for _, dir := range dirs {
			var err error
			for range 50 {
				if err = os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) || !errors.Is(err, syscall.EBUSY) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("removing cgroup %s: %v", dir, err)
			}
		}
	}
}

// mobyState is everything Docker keeps in its containerd namespaces, as
// seen by a client: the tests assert that the runner changes none of it.
type mobyState struct {
	Containers []string
	Tasks      []string
	Images     []string
	Content    []string
	Snapshots  []string
	Leases     []string
}

// observeMoby reads Docker's namespaces on the containerd at address.
// Only the test reads them; the runner never does.
func observeMoby(t *testing.T, c *client.Client) map[string]mobyState {
	t.Helper()
	snapshotters := snapshotterNames(t, c)
	out := map[string]mobyState{}
	for _, ns := range mobyNamespaces {
		ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
		var s mobyState
		cs, err := c.ContainerService().List(ctx)
		require.NoError(t, err)
		for _, x := range cs {
			s.Containers = append(s.Containers, fmt.Sprintf("%s image=%q runtime=%s snapshot=%s/%s labels=%v created=%s updated=%s",
				x.ID, x.Image, x.Runtime.Name, x.Snapshotter, x.SnapshotKey, x.Labels, x.CreatedAt, x.UpdatedAt))
		}
		ts, err := c.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
		require.NoError(t, err)
		for _, x := range ts.Tasks {
			s.Tasks = append(s.Tasks, fmt.Sprintf("%s pid=%d status=%s", x.ID, x.Pid, x.Status))
		}
		is, err := c.ImageService().List(ctx)
		require.NoError(t, err)
		for _, x := range is {
			s.Images = append(s.Images, fmt.Sprintf("%s %s labels=%v updated=%s", x.Name, x.Target.Digest, x.Labels, x.UpdatedAt))
		}
		err = c.ContentStore().Walk(ctx, func(x content.Info) error {
			s.Content = append(s.Content, fmt.Sprintf("%s size=%d labels=%v updated=%s", x.Digest, x.Size, x.Labels, x.UpdatedAt))
			return nil
		})
		require.NoError(t, err)
		for _, name := range snapshotters {
			err := c.SnapshotService(name).Walk(ctx, func(_ context.Context, x snapshots.Info) error {
				s.Snapshots = append(s.Snapshots, fmt.Sprintf("%s/%s kind=%s parent=%s labels=%v updated=%s", name, x.Name, x.Kind, x.Parent, x.Labels, x.Updated))
				return nil
			})
			if err != nil {
				s.Snapshots = append(s.Snapshots, fmt.Sprintf("%s: %v", name, err))
			}
		}
		ls, err := c.LeasesService().List(ctx)
		require.NoError(t, err)
		for _, x := range ls {
			s.Leases = append(s.Leases, fmt.Sprintf("%s labels=%v created=%s", x.ID, x.Labels, x.CreatedAt))
		}
		cancel()
		for _, l := range [][]string{s.Containers, s.Tasks, s.Images, s.Content, s.Snapshots, s.Leases} {
			slices.Sort(l)
		}
		out[ns] = s
	}
	return out
}

// snapshotterNames lists the snapshotters that loaded on the daemon.
func snapshotterNames(t *testing.T, c *client.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.IntrospectionService().Plugins(ctx, "type==io.containerd.snapshotter.v1")
	require.NoError(t, err)
	var names []string
	for _, p := range resp.Plugins {
		if p.InitErr == nil {
			names = append(names, p.ID)
		}
	}
	slices.Sort(names)
	return names
}

// dockerState is what `docker` shows: every container with its state,
// the pid and start time of the one that must keep running, and the
// images.
type dockerState struct {
	Containers string
	Sleeper    string
	Images     string
}

func (d *dockerd) observe(sleeper string) dockerState {
	d.t.Helper()
	return dockerState{
		Containers: d.docker("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Image}} {{.Command}} {{.Names}} {{.State}} {{.CreatedAt}}"),
		Sleeper:    d.docker("inspect", "-f", "running={{.State.Running}} pid={{.State.Pid}} started={{.State.StartedAt}} restarts={{.RestartCount}}", sleeper),
		Images:     d.docker("images", "-a", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}} {{.CreatedAt}}"),
	}
}

// TestDockerSharedContainerd runs the runner next to a dockerd that uses
// the harness's containerd, as Docker does on hosts where both share the
// system containerd.
func TestDockerSharedContainerd(t *testing.T) {
	h := RequiresRoot(t)
	d := startDockerd(t, h.Address)
	testSideBySide(t, d)
}

// TestDockerOwnContainerd runs the runner on the containerd dockerd
// starts for itself when it is given no --containerd, through its socket
// under Docker's exec root.
func TestDockerOwnContainerd(t *testing.T) {
	RequiresRoot(t)
	d := startDockerd(t, "")
	testSideBySide(t, d)
}

// testSideBySide runs a Docker container, then the runner's commands on
// the containerd Docker uses, and checks that Docker saw none of it.
func testSideBySide(t *testing.T, d *dockerd) {
	c := newCLI(t)
	mc, err := client.New(d.containerd)
	require.NoError(t, err)
	defer mc.Close()
	v, err := mc.Version(t.Context())
	require.NoError(t, err)
	t.Logf("containerd %s (revision %s) at %s", v.Version, v.Revision, d.containerd)

	d.loadImage()
	sleeper := "srit-sleeper"
	d.docker("run", "-d", "--name", sleeper, "--network", "none", dockerImage, "sleep", "3600")
	d.docker("create", "--name", "srit-stopped", "--network", "none", dockerImage, "true")
	beforeDocker := d.observe(sleeper)
	require.Contains(t, beforeDocker.Sleeper, "running=true")
	beforeMoby := observeMoby(t, mc)
	require.NotEmpty(t, beforeMoby["moby"].Containers, "Docker's containers should be in namespace moby")
	require.NotEmpty(t, beforeMoby["moby"].Tasks, "Docker's running container should be a task in namespace moby")

	// args points a command at Docker's containerd and our namespace,
	// before the command's own flags, which win.
	args := func(cmd ...string) []string {
		n := 1
		if cmd[0] == "images" {
			n = 2
		}
		out := append([]string{}, cmd[:n]...)
		out = append(out, "--address", d.containerd, "--namespace", dockerNamespace, "--state-dir", c.stateDir)
		return append(out, cmd[n:]...)
	}
	run := func(cmd ...string) cliRun {
		t.Helper()
		cmd2 := c.command(nil, args(cmd...)...)
		cmd2.Env = d.env()
		var stdout, stderr bytes.Buffer
		cmd2.Stdout, cmd2.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd2.Run()
		var exitErr *exec.ExitError
		if err != nil && !errors.As(err, &exitErr) {
			require.NoError(t, err)
		}
		r := cliRun{code: cmd2.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
		t.Logf("sandbox-runner %s: %s", strings.Join(cmd, " "), r)
		return r
	}
	defer removeNamespace(t, mc, dockerNamespace)

	t.Run("ImportFromDocker", func(t *testing.T) {
		r := run("images", "import", "--from-docker", dockerImage)
		require.Equal(t, 0, r.code, r)
		assert.Equal(t, fmt.Sprintf("imported %s from Docker at %s\n", dockerImage, d.socket), r.stdout)
		r = run("images", "ls")
		require.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, dockerImage)
		r = run("images", "import", "--from-docker", "sandbox-runner.test/not-in-docker:1")
		assert.Equal(t, runnerExit, r.code, r)
		assert.Contains(t, r.stderr, "not in Docker's image store", r)
	})

	t.Run("TasksHardened", func(t *testing.T) {
		r := run("exec", "--runtime", testRuntime, "--image", dockerImage, "-c",
			"cat /from-docker; grep -E '^(Seccomp|CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status; id -u; touch /x 2>/dev/null || echo ro")
		require.Equal(t, 0, r.code, r)
		got := statusFields(r.stdout)
		assert.Equal(t, "2", got["Seccomp"], r)
		assert.Equal(t, "0000000000000000", got["CapEff"], r)
		assert.Equal(t, "0000000000000000", got["CapPrm"], r)
		assert.Equal(t, "0000000000000000", got["CapBnd"], r)
		assert.Equal(t, "1", got["NoNewPrivs"], r)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		assert.Equal(t, "docker", lines[0], "the task must run from the image imported from Docker")
		assert.Equal(t, "ro", lines[len(lines)-1], r)
		assertTaskUID(t, lines[len(lines)-2])

		r = run("exec", "--runtime", testRuntime, "--image", dockerImage, "--timeout", "1s", "-c", "sleep 60")
		assert.Equal(t, runner.ExitTimedOut, r.code, r)
	})

	t.Run("CheckSaysWhichContainerd", func(t *testing.T) {
		r := run("check")
		assert.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, d.containerd, r)
		assert.Contains(t, r.stdout, `"moby"`, r)
	})

	t.Run("MobyNamespaceRefused", func(t *testing.T) {
		for _, ns := range mobyNamespaces {
			for _, cmd := range [][]string{
				{"gc", "--all"},
				{"images", "rm", dockerImage},
				{"images", "ls"},
				{"images", "import", "--from-docker", dockerImage},
				{"exec", "--runtime", testRuntime, "--image", dockerImage, "-c", "true"},
			} {
				r := run(append(cmd, "--namespace", ns)...)
				assert.Equal(t, exitUsage, r.code, r)
				assert.Contains(t, r.stderr, "belongs to Docker", r)
			}
		}
	})

	t.Run("GCLeavesDockerAlone", func(t *testing.T) {
		r := run("gc", "--all")
		assert.Equal(t, 0, r.code, r)
		assert.Contains(t, r.stdout, dockerNamespace, r)
	})

	t.Run("DockerUnchanged", func(t *testing.T) {
		assert.Equal(t, beforeDocker, d.observe(sleeper), "docker ps -a, docker images or the running container changed")
		assert.Equal(t, beforeMoby, observeMoby(t, mc), "Docker's containerd namespaces changed")
		// Docker still works: its container answers.
		assert.Equal(t, "docker", d.docker("exec", sleeper, "cat", "/from-docker"))
	})
}

// statusFields reads "Key:\tvalue" lines, as /proc/self/status has them.
func statusFields(s string) map[string]string {
	kv := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			kv[k] = strings.TrimSpace(v)
		}
	}
	return kv
}

// Exit statuses the CLI documents.
const (
	exitUsage  = 2
	runnerExit = 125
)

// removeNamespace removes everything in ns and then ns itself, and fails
// t when something of the runner's (a container, task, lease or active
// snapshot) was still there: that is a leak.
func removeNamespace(t *testing.T, c *client.Client, ns string) {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), time.Minute)
	defer cancel()
	cs, err := c.ContainerService().List(ctx)
	if assert.NoError(t, err) {
		for _, x := range cs {
			assert.Failf(t, "container leaked", "container %s in %s", x.ID, ns)
			if cntr, err := c.LoadContainer(ctx, x.ID); err == nil {
				if task, err := cntr.Task(ctx, nil); err == nil {
					_, _ = task.Delete(ctx, client.WithProcessKill)
				}
				_ = cntr.Delete(ctx, client.WithSnapshotCleanup)
			}
		}
	}
	ls, err := c.LeasesService().List(ctx)
	if assert.NoError(t, err) {
		for _, l := range ls {
			assert.Failf(t, "lease leaked", "lease %s (labels %v) in %s", l.ID, l.Labels, ns)
			_ = c.LeasesService().Delete(ctx, l)
		}
	}
	is, err := c.ImageService().List(ctx)
	if assert.NoError(t, err) {
		for i, img := range is {
			var opts []ctrdimages.DeleteOpt
			if i == len(is)-1 {
				// The last delete collects the garbage before it returns.
				opts = append(opts, ctrdimages.SynchronousDelete())
			}
			assert.NoError(t, c.ImageService().Delete(ctx, img.Name, opts...))
		}
	}
	// What the garbage collector left is not referenced by anything.
	for _, name := range snapshotterNames(t, c) {
		sn := c.SnapshotService(name)
		for range 10 {
			var keys []string
			_ = sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
				if info.Kind != snapshots.KindCommitted {
					assert.Failf(t, "snapshot leaked", "%s snapshot %s/%s in %s", info.Kind, name, info.Name, ns)
				}
				keys = append(keys, info.Name)
				return nil
			})
			if len(keys) == 0 {
				break
			}
			for _, k := range keys {
				_ = sn.Remove(ctx, k)
			}
		}
	}
	_ = c.ContentStore().Walk(ctx, func(info content.Info) error {
		_ = c.ContentStore().Delete(ctx, info.Digest)
		return nil
	})
	if err := c.NamespaceService().Delete(ctx, ns); err != nil && !errdefs.IsNotFound(err) {
		t.Errorf("removing namespace %s: %v", ns, err)
	}
}
