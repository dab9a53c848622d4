//go:build linux

package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
)

func TestImageImportBothFormats(t *testing.T) {
	e := newImgEnv(t)
	dir := t.TempDir()
	oci := filepath.Join(dir, "oci.tar")
	dockerSave := filepath.Join(dir, "docker.tar")
	require.NoError(t, writeBusyboxArchive(oci, "sandbox-runner.test/import/oci:1", ocispec.Platform{}, false))
	require.NoError(t, writeBusyboxArchive(dockerSave, "sandbox-runner.test/import/docker:1", ocispec.Platform{}, true))

	r := e.run(nil, []string{"images", "import"}, oci)
	require.Equal(t, 0, r.code, r)
	// Each image with its digest and size; how much was read on stderr.
	assert.Regexp(t, `^imported sandbox-runner.test/import/oci:1 sha256:[0-9a-f]{64} [0-9.]+ (B|KiB|MiB)\n$`, r.stdout, r)
	assert.Regexp(t, `read [0-9.]+ (KiB|MiB) from \S+ in `, r.stderr, r)

	// docker save archives, here from stdin.
	f, err := os.Open(dockerSave)
	require.NoError(t, err)
	defer f.Close()
	r = e.run(f, []string{"images", "import"}, "-")
	require.Equal(t, 0, r.code, r)
	assert.Regexp(t, `^imported sandbox-runner.test/import/docker:1 sha256:[0-9a-f]{64} [0-9.]+ (B|KiB|MiB)\n$`, r.stdout, r)
	assert.Contains(t, r.stderr, "from stdin", r)

	for _, ref := range []string{"sandbox-runner.test/import/oci:1", "sandbox-runner.test/import/docker:1"} {
		assert.Equal(t, images.StatusPresent, e.status(ref), ref)
		r = e.execIn(nil, "--runtime", "sh", "--image", ref, "--pull", "never", "-c", "echo imported")
		require.Equal(t, 0, r.code, r)
		assert.Equal(t, "imported\n", r.stdout, r)
	}

	// A runtime pointed at one shows up in images ls.
	e.writeConfig("[runtimes.sh]\nimage = \"sandbox-runner.test/import/oci:1\"\n")
	r = e.run(nil, []string{"images", "ls"})
	require.Equal(t, 0, r.code, r)
	assert.Regexp(t, `(?m)^IMAGE\s+RUNTIMES\s+UNPACKED\s+SIZE$`, r.stdout, r)
	assert.Regexp(t, `(?m)^sandbox-runner.test/import/oci:1\s+sh\s+true\s`, r.stdout, r)
	assert.Regexp(t, `(?m)^sandbox-runner.test/import/docker:1\s+-\s+true\s`, r.stdout, r)
	r = e.run(nil, []string{"images", "ls"}, "--json")
	require.Equal(t, 0, r.code, r)
	var listed []images.Info
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &listed), r)
	byName := map[string]images.Info{}
	for _, i := range listed {
		byName[i.Name] = i
	}
	assert.Equal(t, []string{"sh"}, byName["sandbox-runner.test/import/oci:1"].Runtimes, r)
	assert.True(t, byName["sandbox-runner.test/import/docker:1"].Unpacked, r)
	assert.Positive(t, byName["sandbox-runner.test/import/docker:1"].Size, r)

	r = e.run(nil, []string{"images", "rm"}, "sandbox-runner.test/import/oci:1", "sandbox-runner.test/import/docker:1")
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "removed sandbox-runner.test/import/oci:1\nremoved sandbox-runner.test/import/docker:1\n", r.stdout, r)
	assert.Equal(t, images.StatusAbsent, e.status("sandbox-runner.test/import/oci:1"))
	r = e.run(nil, []string{"images", "rm"}, "sandbox-runner.test/import/oci:1")
	assert.Equal(t, 125, r.code, r)
	assert.Contains(t, r.stderr, "not found", r)
}

func TestImageImportCorruptArchive(t *testing.T) {
	e := newImgEnv(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar")
	require.NoError(t, writeBusyboxArchive(good, "sandbox-runner.test/import/corrupt:1", ocispec.Platform{}, false))
	b, err := os.ReadFile(good)
	require.NoError(t, err)

	for name, content := range map[string][]byte{
		"not a tar":   []byte("this is not an image archive\n"),
		"empty":       nil,
		"truncated":   b[:len(b)/2],
		"a plain tar": tarOf(t, map[string]string{"hello.txt": "hi"}),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".tar")
			require.NoError(t, os.WriteFile(path, content, 0o644))
			r := e.run(nil, []string{"images", "import"}, path)
			assert.Equal(t, 2, r.code, r)
			assert.Contains(t, r.stderr, path+": importing image archive", r)
			assert.Contains(t, r.stderr, "OCI image layout or `docker save` archive", r)
			assert.Empty(t, r.stdout, r)
		})
	}
	r := e.run(nil, []string{"images", "import"}, filepath.Join(dir, "absent.tar"))
	assert.Equal(t, 2, r.code, r)
	assert.Contains(t, r.stderr, "no such file", r)
}

// tarOf returns a tar of the files given: a tar, but no image archive.
func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, content := range files {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(content))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

func TestImageImportOtherPlatform(t *testing.T) {
	e := newImgEnv(t)
	path := filepath.Join(t.TempDir(), "arm64.tar")
	require.NoError(t, writeBusyboxArchive(path, "sandbox-runner.test/import/arm64:1", ocispec.Platform{OS: "linux", Architecture: "arm64"}, false))
	r := e.run(nil, []string{"images", "import"}, path)
	assert.Equal(t, 125, r.code, r)
	assert.Contains(t, r.stderr, "the archive holds no image for this host's "+platforms.Format(platforms.DefaultSpec()), r)
	assert.Equal(t, images.StatusAbsent, e.status("sandbox-runner.test/import/arm64:1"))
}

func TestRuntimesPresence(t *testing.T) {
	e := newImgEnv(t)
	path := filepath.Join(t.TempDir(), "bb.tar")
	require.NoError(t, writeBusyboxArchive(path, "sandbox-runner.test/runtimes/sh:1", ocispec.Platform{}, false))
	r := e.run(nil, []string{"images", "import"}, path)
	require.Equal(t, 0, r.code, r)
	e.writeConfig("[runtimes.sh]\nimage = \"sandbox-runner.test/runtimes/sh:1\"\n")

	r = e.run(nil, []string{"runtimes"})
	require.Equal(t, 0, r.code, r)
	assert.Empty(t, r.stderr, r)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	assert.Regexp(t, `^RUNTIME\s+IMAGE\s+FILE\s+PRESENT\s+COMPILE\s+RUN$`, lines[0])
	present := map[string]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		present[f[0]] = f[3]
	}
	assert.Equal(t, "yes", present["sh"], r)
	assert.Equal(t, "no", present["python"], r)
	assert.Len(t, present, len(images.DefaultCatalog()), r)

	// Without a containerd it still lists the catalog, presence unknown.
	r = e.cli.run(nil, "runtimes", "--config", e.Config, "--address", filepath.Join(t.TempDir(), "absent.sock"))
	require.Equal(t, 0, r.code, r)
	assert.Regexp(t, regexp.MustCompile(`(?m)^sh\s+sandbox-runner.test/runtimes/sh:1\s+main.sh\s+unknown\s`), r.stdout, r)
}

func TestRuntimeUnknownListsKnown(t *testing.T) {
	e := newImgEnv(t)
	r := e.execIn(nil, "--runtime", "cobol", "-c", "DISPLAY 'never'.")
	assert.Equal(t, 2, r.code, r)
	assert.Contains(t, r.stderr, `unknown runtime "cobol": known runtimes are bash, c, cpp, dotnet, java, node, python, sh`, r)
}

func TestRuntimeConfigRejectsUnknownKey(t *testing.T) {
	e := newImgEnv(t)
	e.writeConfig("[runtimes.python]\nimage = \"x.test/python:1\"\nimgae = \"typo\"\n")
	r := e.execIn(nil, "--runtime", "python", "-c", "print('never')")
	assert.Equal(t, 2, r.code, r)
	// Three lines of [registry] and a blank one come first.
	assert.Contains(t, r.stderr, `line 7: unknown key "runtimes.python.imgae"`, r)

	e.writeConfig("[runtimes.ruby]\nimage = \"x.test/ruby:3\"\n")
	r = e.execIn(nil, "--runtime", "ruby", "-c", "puts 1")
	assert.Equal(t, 2, r.code, r)
	assert.Contains(t, r.stderr, "[runtimes.ruby] is a new runtime and needs file, run", r)

	require.NoError(t, os.WriteFile(e.Config, []byte("[registry]\nconfig_path = \"/etc/containerd/certs.d\"\nmirror = \"x\"\n"), 0o600))
	r = e.run(nil, []string{"images", "pull"}, "x.test/a:1")
	assert.Equal(t, 2, r.code, r)
	assert.Contains(t, r.stderr, `line 3: unknown key "registry.mirror"`, r)
}

// The runtime tests run real programs in the images `sandbox-runner
// images build` makes: one debootstrap root with every runtime the
// catalog can build, from the mirror the machine's apt sources name,
// cached between runs (as `images build` caches it for users).
const (
	// debianCacheEnv overrides where the built archive is kept; the
	// default is images.DefaultCacheDir, so that `make demo` after
	// `make test` (or the other way round) builds once.
	debianCacheEnv = "SANDBOX_RUNNER_TEST_CACHE"
	// debianNamespace holds the built images for all runtime tests.
	debianNamespace = "sandbox-runner-it-debian"
)

// buildTimeout bounds `images build`: debootstrap of every runtime from
// a cold cache takes a few minutes.
const buildTimeout = 15 * time.Minute

var debianOnce struct {
	sync.Once
	err error
}

func debianCache() string {
	if c := os.Getenv(debianCacheEnv); c != "" {
		return c
	}
	return images.DefaultCacheDir
}

// debianEnv returns an environment whose namespace holds the images
// `images build` made for every buildable runtime, and whose config
// leaves the catalog as it is built in: the runtimes find those images
// because their own are absent.
func debianEnv(t *testing.T) *imgEnv {
	t.Helper()
	h := RequiresRoot(t)
	e := newImgEnv(t)
	e.ns = debianNamespace
	debianOnce.Do(func() {
		suite, err := images.HostSuite(images.OSRelease)
		if err != nil {
			debianOnce.err = err
			return
		}
		ctx := namespaces.WithNamespace(context.Background(), debianNamespace)
		cat := images.DefaultCatalog()
		missing := false
		for _, rt := range cat {
			if rt.Local == "" {
				continue
			}
			if st, err := images.StatusOf(ctx, h.Client, images.LocalRef(rt, suite), testSnapshotter); err != nil || st != images.StatusPresent {
				missing = true
			}
		}
		if !missing {
			return
		}
		start := time.Now()
		r := e.runWithin(buildTimeout, nil, []string{"images", "build"}, "--cache-dir", debianCache())
		if r.code != 0 {
			debianOnce.err = fmt.Errorf("images build: %v", r)
			return
		}
		fmt.Fprintf(os.Stderr, "integration: images build in %s:\n%s", time.Since(start).Round(time.Millisecond), r.stdout)
	})
	require.NoError(t, debianOnce.err, "building the runtime images (needs debootstrap and the Debian mirror of the apt sources)")
	return e
}

func TestRuntimeDebianPython(t *testing.T) {
	e := debianEnv(t)
	code := writeFile(t, "greet.py", `import sys
name = sys.stdin.readline().strip()
print(f"hello {name} from python {sys.version_info.major}", sys.argv[1:])
`, 0o644)
	r := e.execIn(strings.NewReader("world\n"), "--runtime", "python", code, "--", "a", "b c")
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "hello world from python 3 ['a', 'b c']\n", r.stdout, r)
	assert.NotContains(t, r.stderr, "pulling", "the runtime's image is the one images build made\n%s", r)

	// A runtime error: the traceback on stderr, status 1.
	r = e.execIn(nil, "--runtime", "python", "-c", "print('before')\nraise ValueError('boom')\n")
	assert.Equal(t, 1, r.code, r)
	assert.Equal(t, "before\n", r.stdout, r)
	assert.Contains(t, r.stderr, "ValueError: boom", r)

	// sys.exit passes its status through.
	r = e.execIn(nil, "--runtime", "python", "-c", "import sys; sys.exit(7)")
	assert.Equal(t, 7, r.code, r)
}

func TestRuntimeDebianNode(t *testing.T) {
	e := debianEnv(t)
	code := writeFile(t, "sum.js", `let data = "";
process.stdin.on("data", (c) => (data += c));
process.stdin.on("end", () => {
  const sum = data.split(/\s+/).filter(Boolean).map(Number).reduce((a, b) => a + b, 0);
  console.log("sum=" + sum, JSON.stringify(process.argv.slice(2)));
});
`, 0o644)
	r := e.execIn(strings.NewReader("1 2 3\n4\n"), "--runtime", "node", code, "--", "x", "y z")
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "sum=10 [\"x\",\"y z\"]\n", r.stdout, r)

	r = e.execIn(nil, "--runtime", "node", "-c", "console.log('before'); throw new Error('boom');")
	assert.Equal(t, 1, r.code, r)
	assert.Equal(t, "before\n", r.stdout, r)
	assert.Contains(t, r.stderr, "Error: boom", r)

	r = e.execIn(nil, "--runtime", "node", "-c", "process.exit(3)")
	assert.Equal(t, 3, r.code, r)
}

func TestRuntimeDebianCCompileError(t *testing.T) {
	e := debianEnv(t)
	r := e.execIn(nil, "--runtime", "c", "--json", "-c", "int main(void) { return undefined_name; }\n")
	res, _ := decodeResult(t, r)
	assert.Equal(t, runner.OutcomeCompileFailed, res.Outcome, r)
	require.NotNil(t, res.Compile, r)
	assert.NotEqual(t, 0, res.Compile.ExitCode, r)
	assert.Contains(t, string(res.Compile.Stderr.Data), "undefined_name", r)
	assert.Contains(t, string(res.Compile.Stderr.Data), "error:", r)
	assert.NotEqual(t, 0, r.code, r)

	// Without --json, the compiler's errors and a line saying the code did not run.
	r = e.execIn(nil, "--runtime", "c", "-c", "int main(void) { syntax error }\n")
	assert.NotEqual(t, 0, r.code, r)
	assert.Contains(t, r.stderr, "error:", r)
	assert.Contains(t, r.stderr, "compilation failed", r)
}

func TestRuntimeDebianC(t *testing.T) {
	e := debianEnv(t)
	code := writeFile(t, "main.c", `#include <math.h>
#include <stdio.h>
int main(int argc, char **argv) {
	int n;
	if (scanf("%d", &n) != 1) return 2;
	printf("sqrt(%d)=%.1f args=%d first=%s\n", n, sqrt((double)n), argc - 1, argc > 1 ? argv[1] : "-");
	return n % 7;
}
`, 0o644)
	r := e.execIn(strings.NewReader("81\n"), "--runtime", "c", code, "--", "one")
	assert.Equal(t, 81%7, r.code, r)
	assert.Equal(t, "sqrt(81)=9.0 args=1 first=one\n", r.stdout, r)
}

// hostHasI386ABI tells whether int 0x80 reaches the kernel on the host,
// outside any sandbox: a program that makes an i386 getpid exits 0 there.
func hostHasI386ABI(t *testing.T) bool {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "i386.c")
	require.NoError(t, os.WriteFile(src, []byte(`int main(void) { long r; __asm__ volatile ("int $0x80" : "=a"(r) : "a"(20L) : "memory"); return r > 0 ? 0 : 1; }`), 0o600))
	out, err := exec.Command("cc", "-o", filepath.Join(dir, "i386"), src).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return exec.Command(filepath.Join(dir, "i386")).Run() == nil
}

// TestCompatSyscallABIIsRefused makes a syscall through the i386 ABI (int
// 0x80) from a 64-bit program. Docker's profile admits that ABI; ours
// admits only the native one, so the call must not reach the kernel's
// getpid: the task is killed, or the call fails.
func TestCompatSyscallABIIsRefused(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the i386 ABI exists on amd64 only")
	}
	e := debianEnv(t)
	r := e.execIn(nil, "--runtime", "c", "--json", "-c", `#include <stdio.h>
#include <unistd.h>
int main(void) {
	long ret;
	printf("native getpid=%d\n", getpid());
	fflush(stdout);
	__asm__ volatile ("int $0x80" : "=a"(ret) : "a"(20L) : "memory"); /* i386 getpid */
	printf("i386 getpid=%ld\n", ret);
	return 0;
}
`)
	res, _ := decodeResult(t, r)
	out := string(res.Stdout.Data)
	require.Contains(t, out, "native getpid=", "the program ran\n%s", r)
	switch {
	case res.Outcome == runner.OutcomeExited:
		assert.Contains(t, out, "i386 getpid=-", "the i386 getpid must fail, not return a pid\n%s", r)
	case res.Signal == "SIGSEGV" && !hostHasI386ABI(t):
		// A kernel without the i386 ABI (ia32_emulation off) faults on
		// int 0x80 before any filter sees it, on the host as inside.
		t.Log("this kernel has no i386 syscall ABI: int 0x80 faults everywhere")
	default:
		assert.Equal(t, runner.OutcomeSignaled, res.Outcome, r)
		assert.Equal(t, "SIGSYS", res.Signal, "killed by the seccomp filter\n%s", r)
	}
}
