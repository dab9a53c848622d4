//go:build linux

package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	dockerconfig "github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/integration/testimage"
	"github.com/sandbox-runner/sandbox-runner/runner"
)

// mirroredHost is the registry name the pull tests use. It is not a real
// host (.test is reserved): a hosts.toml entry sends it to the loopback
// registry, which is what a worker host's mirror configuration does.
const mirroredHost = "registry.sandbox-runner.test"

// registryBinary is Debian's docker-registry (distribution 2.x).
const registryBinary = "/usr/bin/docker-registry"

// registryStartTimeout bounds how long the registry may take to serve.
const registryStartTimeout = 15 * time.Second

// testRegistry is a docker-registry on 127.0.0.1, for one test.
type testRegistry struct {
	// Host is "127.0.0.1:PORT", the registry's host for pushes and for
	// the hosts.toml mirror entry.
	Host string
	// User and Password are the login when the registry wants one.
	User, Password string
}

// startRegistry runs a registry with storage in a temp dir, with basic
// auth when withAuth is set, and stops it when t ends.
func startRegistry(t *testing.T, withAuth bool) *testRegistry {
	t.Helper()
	RequiresRoot(t)
	if _, err := os.Stat(registryBinary); err != nil {
		t.Fatalf("Debian's docker-registry is needed for the registry tests (apt-get install docker-registry): %v", err)
	}
	dir := t.TempDir()
	r := &testRegistry{}
	auth := ""
	if withAuth {
		r.User, r.Password = "sandbox", "correct horse battery staple"
		hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
		require.NoError(t, err)
		htpasswd := filepath.Join(dir, "htpasswd")
		require.NoError(t, os.WriteFile(htpasswd, []byte(r.User+":"+string(hash)+"\n"), 0o600))
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: sandbox-runner-test\n    path: %s\n", htpasswd)
	}
	// The port is picked free just before the registry binds it; another
	// process may take it in between, so a failed start is tried again.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		host := freeLoopbackAddr(t)
		cfg := filepath.Join(dir, fmt.Sprintf("config-%d.yml", attempt))
		require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, filepath.Join(dir, "data"), host, auth)), 0o600))
		var out bytes.Buffer
		cmd := exec.Command(registryBinary, "serve", cfg)
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if lastErr = waitForRegistry(host, exited); lastErr == nil {
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
				if t.Failed() {
					t.Logf("registry log:\n%s", out.String())
				}
			})
			r.Host = host
			return r
		}
		_ = cmd.Process.Kill()
		<-exited
		lastErr = fmt.Errorf("%w\n%s", lastErr, out.String())
	}
	t.Fatalf("starting docker-registry: %v", lastErr)
	return nil
}

// freeLoopbackAddr returns a 127.0.0.1 address nothing listens on now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// waitForRegistry polls /v2/ until the registry answers (200, or 401
// when it wants a login).
func waitForRegistry(host string, exited <-chan error) error {
	deadline := time.Now().Add(registryStartTimeout)
	hc := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("docker-registry exited at start: %v", err)
		default:
		}
		resp, err := hc.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("docker-registry did not answer on %s within %s", host, registryStartTimeout)
}

// Ref returns the reference of repo:tag on this registry itself.
func (r *testRegistry) Ref(repoTag string) string { return r.Host + "/" + repoTag }

// push sends the image name from namespace ns of the harness's daemon to
// this registry as remote, with containerd's own pusher, and returns the
// digest it is stored under.
func (r *testRegistry) push(t *testing.T, ns, name, remote string) digest.Digest {
	t.Helper()
	h := RequiresRoot(t)
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), time.Minute)
	defer cancel()
	img, err := h.Client.ImageService().Get(ctx, name)
	require.NoError(t, err)
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: dockerconfig.ConfigureHosts(ctx, dockerconfig.HostOptions{
			DefaultScheme: "http",
			Credentials: func(string) (string, string, error) {
				return r.User, r.Password, nil
			},
		}),
	})
	require.NoError(t, h.Client.Push(ctx, remote, img.Target,
		client.WithResolver(resolver), client.WithPlatformMatcher(platforms.All)), "pushing %s as %s", name, remote)
	return img.Target.Digest
}

// Images the pull tests push. They live in a namespace of their own, so
// the suite's namespace stays as the harness left it.
const (
	pushNamespace  = "sandbox-runner-it-push"
	pushBusybox    = "sandbox-runner.test/push/busybox:1"
	pushArm64      = "sandbox-runner.test/push/arm64:1"
	pushArchiveDir = "push-archives"
)

var pushSourceOnce struct {
	sync.Once
	err error
}

// pushSources imports, once per run, the images the pull tests push: the
// busybox image, and one that says it is for linux/arm64.
func pushSources(t *testing.T) {
	t.Helper()
	h := RequiresRoot(t)
	pushSourceOnce.Do(func() {
		pushSourceOnce.err = func() error {
			dir := filepath.Join(h.Dir, pushArchiveDir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			ctx := namespaces.WithNamespace(context.Background(), pushNamespace)
			for _, img := range []struct {
				ref      string
				platform ocispec.Platform
			}{
				{pushBusybox, ocispec.Platform{}},
				{pushArm64, ocispec.Platform{OS: "linux", Architecture: "arm64"}},
			} {
				path := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(img.ref)+".tar")
				if err := writeBusyboxArchive(path, img.ref, img.platform, false); err != nil {
					return err
				}
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				// All platforms: the arm64 one is pushed, never run.
				_, err = h.Client.Import(ctx, f, client.WithImportPlatform(platforms.All))
				f.Close()
				if err != nil {
					return fmt.Errorf("importing %s: %w", img.ref, err)
				}
			}
			return nil
		}()
	})
	require.NoError(t, pushSourceOnce.err)
}

// writeBusyboxArchive writes a busybox image for platform (empty: the
// host's) at path, as an OCI layout or, with docker set, as docker save.
func writeBusyboxArchive(path, ref string, platform ocispec.Platform, docker bool) error {
	root, err := os.MkdirTemp("", "busybox-root-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	if err := testimage.BusyboxRootfs(root, testimage.DefaultBusybox); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	opts := testimage.Options{
		Ref:      ref,
		Env:      []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd:      []string{"/bin/sh"},
		Platform: platform,
	}
	if docker {
		err = testimage.WriteDockerArchive(f, root, opts)
	} else {
		err = testimage.WriteArchive(f, root, opts)
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// imgEnv runs the CLI against the harness's daemon in a namespace of the
// test's own, with a config file that sets the registry configuration
// and, optionally, runtimes.
type imgEnv struct {
	*cli
	t  *testing.T
	ns string
	// HostsDir is the hosts.toml directory the config names.
	HostsDir string
	// DockerConfig is the credentials file the config names; empty "{}".
	DockerConfig string
	// Config is the config file.
	Config string
}

var nsCounter atomic.Int64

var nsUnsafe = regexp.MustCompile(`[^a-z0-9]+`)

// newImgEnv returns an environment with a fresh namespace, an empty
// hosts.toml directory and no logins. The namespace is checked for
// leftover containers, tasks and leases when t ends.
func newImgEnv(t *testing.T) *imgEnv {
	t.Helper()
	c := newCLI(t)
	name := strings.Trim(nsUnsafe.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 40 {
		name = name[:40]
	}
	e := &imgEnv{cli: c, t: t, ns: fmt.Sprintf("srit-%d-%s", nsCounter.Add(1), strings.Trim(name, "-"))}
	dir := t.TempDir()
	e.HostsDir = filepath.Join(dir, "certs.d")
	require.NoError(t, os.Mkdir(e.HostsDir, 0o755))
	e.DockerConfig = filepath.Join(dir, "docker-config.json")
	require.NoError(t, os.WriteFile(e.DockerConfig, []byte("{}"), 0o600))
	e.Config = filepath.Join(dir, "config.toml")
	e.writeConfig("")
	t.Cleanup(func() { checkNamespaceClean(t, c.h, e.ns) })
	return e
}

// writeConfig writes the config file: the registry section, then extra.
func (e *imgEnv) writeConfig(extra string) {
	e.t.Helper()
	cfg := fmt.Sprintf("[registry]\nconfig_path = %q\ndocker_config = %q\n\n%s", e.HostsDir, e.DockerConfig, extra)
	require.NoError(e.t, os.WriteFile(e.Config, []byte(cfg), 0o600))
}

// mirror writes the hosts.toml that sends host to the registry at
// target over plain HTTP, for pulls and resolves.
func (e *imgEnv) mirror(host, target string) {
	e.t.Helper()
	dir := filepath.Join(e.HostsDir, host)
	require.NoError(e.t, os.MkdirAll(dir, 0o755))
	require.NoError(e.t, os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(fmt.Sprintf(`server = "http://%[1]s"

[host."http://%[1]s"]
  capabilities = ["pull", "resolve"]
`, target)), 0o644))
}

// login writes a Docker config.json with user and password for host.
func (e *imgEnv) login(host, user, password string) {
	e.t.Helper()
	b, err := json.Marshal(map[string]any{"auths": map[string]any{
		host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))},
	}})
	require.NoError(e.t, err)
	require.NoError(e.t, os.WriteFile(e.DockerConfig, b, 0o600))
}

// run runs `sandbox-runner WORDS... FLAGS ARGS...`, where words are the
// command (and subcommand) and the flags point at the harness's daemon,
// the environment's namespace and config.
func (e *imgEnv) run(stdin io.Reader, words []string, args ...string) cliRun {
	e.t.Helper()
	return e.runWithin(cliTimeout, stdin, words, args...)
}

// runWithin is run for a command that may take up to timeout.
func (e *imgEnv) runWithin(timeout time.Duration, stdin io.Reader, words []string, args ...string) cliRun {
	e.t.Helper()
	all := append(append([]string(nil), words...),
		"--address", e.h.Address,
		"--namespace", e.ns,
		"--snapshotter", testSnapshotter,
		"--state-dir", e.stateDir,
		"--config", e.Config,
	)
	return e.cli.runWithin(timeout, stdin, append(all, args...)...)
}

func (e *imgEnv) pull(args ...string) cliRun {
	e.t.Helper()
	return e.run(nil, []string{"images", "pull"}, args...)
}

func (e *imgEnv) execIn(stdin io.Reader, args ...string) cliRun {
	e.t.Helper()
	return e.run(stdin, []string{"exec"}, args...)
}

// status says whether ref is in the environment's namespace, unpacked.
func (e *imgEnv) status(ref string) images.Status {
	e.t.Helper()
	ctx := namespaces.WithNamespace(e.t.Context(), e.ns)
	st, err := images.StatusOf(ctx, e.h.Client, ref, testSnapshotter)
	require.NoError(e.t, err)
	return st
}

// checkNamespaceClean asserts that no container, task or lease is left in
// ns; images and their snapshots may stay.
func checkNamespaceClean(t *testing.T, h *Harness, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
	defer cancel()
	cs, err := h.Client.ContainerService().List(ctx)
	if assert.NoError(t, err) {
		for _, c := range cs {
			assert.Failf(t, "container leaked", "container %s in %s is still there", c.ID, ns)
		}
	}
	ls, err := h.Client.LeasesService().List(ctx)
	if assert.NoError(t, err) {
		for _, l := range ls {
			assert.Failf(t, "lease leaked", "lease %s (labels %v) in %s is still there", l.ID, l.Labels, ns)
		}
	}
}

// registryWithBusybox starts a registry, pushes the busybox image to it
// as runtimes/busybox:1 and returns it with the pushed digest.
func registryWithBusybox(t *testing.T, withAuth bool) (*testRegistry, digest.Digest) {
	t.Helper()
	pushSources(t)
	reg := startRegistry(t, withAuth)
	d := reg.push(t, pushNamespace, pushBusybox, reg.Ref("runtimes/busybox:1"))
	return reg, d
}

func TestRegistryPullThroughMirror(t *testing.T) {
	reg, dgst := registryWithBusybox(t, false)
	e := newImgEnv(t)
	e.mirror(mirroredHost, reg.Host)
	ref := mirroredHost + "/runtimes/busybox:1"

	r := e.pull(ref)
	require.Equal(t, 0, r.code, r)
	assert.Contains(t, r.stdout, "pulling "+ref, r)
	assert.Contains(t, r.stdout, "pulled "+ref+" ("+dgst.String(), r)
	assert.Empty(t, r.stderr, r)
	assert.Equal(t, images.StatusPresent, e.status(ref), "pulled and unpacked")

	// The pulled image runs, and is not pulled again.
	r = e.execIn(nil, "--runtime", "sh", "--image", ref, "-c", "echo from the registry")
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "from the registry\n", r.stdout, r)
	assert.NotContains(t, r.stderr, "pulling", r)

	// images ls shows it, unpacked.
	r = e.run(nil, []string{"images", "ls"})
	require.Equal(t, 0, r.code, r)
	assert.Regexp(t, regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(ref)+`\s+-\s+true\s`), r.stdout, r)
}

func TestRegistryConfigFlagOverridesConfigFile(t *testing.T) {
	reg, _ := registryWithBusybox(t, false)
	e := newImgEnv(t)
	// The config file names an empty directory; the flag one with the mirror.
	flagDir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(flagDir, mirroredHost), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(flagDir, mirroredHost, "hosts.toml"), []byte(fmt.Sprintf(
		"server = %q\n", "http://"+reg.Host)), 0o644))
	r := e.pull("--registry-config", flagDir, mirroredHost+"/runtimes/busybox:1")
	require.Equal(t, 0, r.code, r)
}

func TestRegistryPullByDigest(t *testing.T) {
	reg, dgst := registryWithBusybox(t, false)
	e := newImgEnv(t)
	e.mirror(mirroredHost, reg.Host)
	pinned := mirroredHost + "/runtimes/busybox@" + dgst.String()

	r := e.pull(pinned)
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, images.StatusPresent, e.status(pinned))
	assert.Equal(t, images.StatusAbsent, e.status(mirroredHost+"/runtimes/busybox:1"), "only the pinned name is recorded")

	// A tag next to the digest is ignored: the digest pins.
	r = e.execIn(nil, "--runtime", "sh", "--image", mirroredHost+"/runtimes/busybox:whatever@"+dgst.String(), "--pull", "never", "-c", "echo pinned")
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "pinned\n", r.stdout, r)

	// A digest the registry does not have is not found.
	other := digest.FromString("not pushed")
	r = e.pull(mirroredHost + "/runtimes/busybox@" + other.String())
	assert.Equal(t, 125, r.code, r)
	assert.Contains(t, r.stderr, "no such tag or digest", r)
}

func TestRegistryDigestPinFindsTaggedImage(t *testing.T) {
	reg, dgst := registryWithBusybox(t, false)
	e := newImgEnv(t)
	e.mirror(mirroredHost, reg.Host)
	r := e.pull(mirroredHost + "/runtimes/busybox:1")
	require.Equal(t, 0, r.code, r)

	// With the registry unreachable, a pin to the tag's digest still runs:
	// the image is in the store under its tag.
	e.mirror(mirroredHost, freeLoopbackAddr(t))
	r = e.execIn(nil, "--runtime", "sh", "--image", mirroredHost+"/runtimes/busybox@"+dgst.String(), "-c", "echo by digest")
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "by digest\n", r.stdout, r)
	assert.NotContains(t, r.stderr, "pulling", r)
}

func TestRegistryPullMissingTag(t *testing.T) {
	reg, _ := registryWithBusybox(t, false)
	e := newImgEnv(t)
	e.mirror(mirroredHost, reg.Host)
	ref := mirroredHost + "/runtimes/busybox:no-such-tag"
	r := e.pull(ref)
	assert.Equal(t, 125, r.code, r)
	assert.Contains(t, r.stderr, ref, r)
	assert.Contains(t, r.stderr, "no such tag or digest", r)
	assert.Equal(t, images.StatusAbsent, e.status(ref))

	// The same through exec, which says the image was not found.
	r = e.execIn(nil, "--runtime", "sh", "--image", ref, "--json", "-c", "echo never")
	assert.Equal(t, 125, r.code, r)
	var res struct{ Error, Kind string }
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r)
	assert.Equal(t, "image_not_found", res.Kind, r)
	assert.NotContains(t, r.stdout, "never", r)
}

func TestRegistryPullUnreachable(t *testing.T) {
	RequiresRoot(t)
	e := newImgEnv(t)
	// Nothing listens there: a refused connection, at once.
	e.mirror(mirroredHost, freeLoopbackAddr(t))
	ref := mirroredHost + "/runtimes/busybox:1"
	r := e.pull(ref)
	assert.Equal(t, 125, r.code, r)
	assert.Contains(t, r.stderr, "registry unreachable", r)
	assert.Contains(t, r.stderr, "hosts.toml", r)
	assert.Less(t, r.elapsed, 30*time.Second, r)

	r = e.pull("--json", ref)
	assert.Equal(t, 125, r.code, r)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r)
	assert.Equal(t, "unavailable", res["kind"], r)
	assert.Equal(t, ref, res["ref"], r)
	assert.Empty(t, r.stderr, "--json prints nothing but JSON\n%s", r)
}

func TestRegistryPullMalformedReference(t *testing.T) {
	e := newImgEnv(t)
	for _, ref := range []string{"Bad Ref", "busybox@sha256:123", "UPPER/Case:1"} {
		r := e.pull(ref)
		assert.Equal(t, 2, r.code, r)
		assert.Contains(t, r.stderr, "parsing image reference", r)
		assert.Empty(t, r.stdout, r)
	}
	r := e.pull()
	assert.Equal(t, 2, r.code, "images pull needs a reference or --all\n%s", r)
	r = e.execIn(nil, "--runtime", "sh", "--image", "Bad Ref", "-c", "echo never")
	assert.Equal(t, 2, r.code, r)
	assert.Contains(t, r.stderr, "parsing image reference", r)
}

func TestRegistryPullAuth(t *testing.T) {
	reg, _ := registryWithBusybox(t, true)
	e := newImgEnv(t)
	e.mirror(mirroredHost, reg.Host)
	ref := mirroredHost + "/runtimes/busybox:1"

	// No login: refused.
	r := e.pull(ref)
	assert.Equal(t, 125, r.code, r)
	assert.Contains(t, r.stderr, "registry refused access", r)
	assert.Equal(t, images.StatusAbsent, e.status(ref))

	// The wrong password: refused.
	e.login(reg.Host, reg.User, "wrong password")
	r = e.pull("--json", ref)
	assert.Equal(t, 125, r.code, r)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r)
	assert.Equal(t, "unauthorized", res["kind"], r)
	assert.Equal(t, images.StatusAbsent, e.status(ref))

	// The login is looked up by the host pulled from: the mirror.
	e.login(reg.Host, reg.User, reg.Password)
	r = e.pull(ref)
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, images.StatusPresent, e.status(ref))
}

func TestRegistryExecPullPolicy(t *testing.T) {
	reg, dgst := registryWithBusybox(t, false)
	e := newImgEnv(t)
	e.mirror(mirroredHost, reg.Host)
	ref := mirroredHost + "/runtimes/busybox:1"
	args := []string{"--runtime", "sh", "--image", ref, "-c", "echo ran"}

	// never: a missing image is an error that says how to get it.
	r := e.execIn(nil, append([]string{"--pull", "never"}, args...)...)
	assert.Equal(t, 125, r.code, r)
	assert.Contains(t, r.stderr, "images pull "+ref, r)
	assert.NotContains(t, r.stdout, "ran", r)

	// missing (the default): pulled on first use, saying so on stderr.
	r = e.execIn(nil, args...)
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "ran\n", r.stdout, r)
	assert.Contains(t, r.stderr, "image "+ref+" is not in containerd's store; pulling it", r)
	assert.Contains(t, r.stderr, "pulled "+ref+" ("+dgst.String()+")", r)

	// ... and only then.
	r = e.execIn(nil, args...)
	require.Equal(t, 0, r.code, r)
	assert.Empty(t, r.stderr, r)

	// always: pulled again, and --json keeps stdout to the result.
	r = e.execIn(nil, append([]string{"--pull", "always", "--json"}, args...)...)
	require.Equal(t, 0, r.code, r)
	assert.Contains(t, r.stderr, "pulling it", r)
	res, _ := decodeResult(t, r)
	assert.Equal(t, "ran\n", string(res.Stdout.Data))

	// always with the registry gone: the pull's error, not a stale image.
	e.mirror(mirroredHost, freeLoopbackAddr(t))
	r = e.execIn(nil, append([]string{"--pull", "always"}, args...)...)
	assert.Equal(t, 125, r.code, r)
	assert.Contains(t, r.stderr, "registry unreachable", r)

	r = e.execIn(nil, append([]string{"--pull", "sometimes"}, args...)...)
	assert.Equal(t, 2, r.code, r)
	assert.Contains(t, r.stderr, "--pull", r)
}

func TestRegistryPullOtherPlatform(t *testing.T) {
	pushSources(t)
	reg := startRegistry(t, false)
	reg.push(t, pushNamespace, pushArm64, reg.Ref("runtimes/arm64:1"))
	e := newImgEnv(t)
	e.mirror(mirroredHost, reg.Host)
	ref := mirroredHost + "/runtimes/arm64:1"

	r := e.pull(ref)
	assert.Equal(t, 125, r.code, r)
	assert.Contains(t, r.stderr, "is for linux/arm64, not for this host's "+platforms.Format(platforms.DefaultSpec()), r)
	assert.Equal(t, images.StatusAbsent, e.status(ref), "the refused image is not left in the store")

	r = e.pull("--json", ref)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r)
	assert.Equal(t, "image_not_found", res["kind"], r)
}

func TestRegistryPullAll(t *testing.T) {
	pushSources(t)
	reg := startRegistry(t, false)
	reg.push(t, pushNamespace, pushBusybox, reg.Ref("runtimes/busybox:1"))
	reg.push(t, pushNamespace, pushBusybox, reg.Ref("runtimes/busybox:2"))
	e := newImgEnv(t)
	e.mirror(mirroredHost, reg.Host)
	// Every runtime of the catalog on one of two local images, so --all
	// reaches no public registry.
	var extra strings.Builder
	for i, name := range images.DefaultCatalog().Names() {
		fmt.Fprintf(&extra, "[runtimes.%s]\nimage = %q\n\n", name, fmt.Sprintf("%s/runtimes/busybox:%d", mirroredHost, i%2+1))
	}
	e.writeConfig(extra.String())

	r := e.pull("--all", "--json")
	require.Equal(t, 0, r.code, r)
	assert.Empty(t, r.stderr, r)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 2, "each image once\n%s", r)
	for i, l := range lines {
		var res struct {
			Ref, Image, Digest string
			Size               int64
			Error              string
		}
		require.NoError(t, json.Unmarshal([]byte(l), &res), l)
		want := fmt.Sprintf("%s/runtimes/busybox:%d", mirroredHost, i+1)
		assert.Equal(t, want, res.Ref)
		assert.Equal(t, want, res.Image)
		assert.True(t, strings.HasPrefix(res.Digest, "sha256:"), l)
		assert.Positive(t, res.Size)
		assert.Empty(t, res.Error)
	}

	// runtimes now shows every image present.
	r = e.run(nil, []string{"runtimes"})
	require.Equal(t, 0, r.code, r)
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n")[1:] {
		assert.Equal(t, "yes", strings.Fields(l)[3], l)
	}

	r = e.pull("--all", "x.test/also:1")
	assert.Equal(t, 2, r.code, "--all and references together\n%s", r)
}

// TestRegistryPullLibrary pulls with the library call, as the service
// will, and checks the progress reports.
func TestRegistryPullLibrary(t *testing.T) {
	reg, dgst := registryWithBusybox(t, false)
	h := RequiresRoot(t)
	hosts := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(hosts, mirroredHost), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(hosts, mirroredHost, "hosts.toml"),
		[]byte(fmt.Sprintf("server = %q\n", "http://"+reg.Host)), 0o644))
	ns := fmt.Sprintf("srit-%d-library", nsCounter.Add(1))
	ctx := namespaces.WithNamespace(t.Context(), ns)
	t.Cleanup(func() { checkNamespaceClean(t, h, ns) })

	var mu sync.Mutex
	var reports []images.Progress
	img, err := images.Pull(ctx, h.Client, mirroredHost+"/runtimes/busybox:1", images.PullOptions{
		Snapshotter: testSnapshotter,
		HostsDir:    hosts,
		Credentials: &images.Credentials{},
		Progress: func(p images.Progress) {
			mu.Lock()
			reports = append(reports, p)
			mu.Unlock()
		},
		ProgressInterval: 10 * time.Millisecond,
	})
	require.NoError(t, err)
	assert.Equal(t, dgst, img.Target().Digest)
	unpacked, err := img.IsUnpacked(ctx, testSnapshotter)
	require.NoError(t, err)
	assert.True(t, unpacked)

	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, reports)
	last := reports[len(reports)-1]
	assert.True(t, last.Done)
	kinds := map[string]int{}
	for _, b := range last.Blobs {
		kinds[b.Kind]++
		assert.Contains(t, []images.BlobStatus{images.BlobDone, images.BlobExists}, b.Status, "%+v", b)
	}
	// The archive's index.json is not part of the image: its target is
	// the manifest.
	assert.Equal(t, map[string]int{"manifest": 1, "config": 1, "layer": 1}, kinds)

	// A second pull finds everything there.
	_, err = images.Pull(ctx, h.Client, mirroredHost+"/runtimes/busybox:1", images.PullOptions{
		Snapshotter: testSnapshotter, HostsDir: hosts, Credentials: &images.Credentials{},
	})
	require.NoError(t, err)

	// Errors carry their errdefs class for library callers.
	_, err = images.Pull(ctx, h.Client, mirroredHost+"/runtimes/busybox:nope", images.PullOptions{
		Snapshotter: testSnapshotter, HostsDir: hosts, Credentials: &images.Credentials{},
	})
	assert.True(t, errdefs.IsNotFound(err), "%v", err)

	// A runner with the library puller runs a task in an image it pulls.
	r := h.NewRunner(t, runner.WithNamespace(ns), runner.WithPull(func(ctx context.Context, ref string) error {
		_, err := images.Pull(ctx, h.Client, ref, images.PullOptions{Snapshotter: testSnapshotter, HostsDir: hosts, Credentials: &images.Credentials{}})
		return err
	}))
	res, err := r.Run(t.Context(), runner.Task{Runtime: "sh", Image: mirroredHost + "/runtimes/busybox:1",
		Files: []runner.File{{Content: []byte("echo library")}}, Pull: images.PullAlways})
	require.NoError(t, err)
	assert.Equal(t, "library\n", string(res.Stdout.Data))
}
