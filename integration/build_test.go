//go:build linux

package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
)

// imageNames returns the names of the images in the environment's
// namespace.
func (e *imgEnv) imageNames() []string {
	e.t.Helper()
	recs, err := e.h.Client.ImageService().List(namespaces.WithNamespace(e.t.Context(), e.ns))
	require.NoError(e.t, err)
	var out []string
	for _, r := range recs {
		out = append(out, r.Name)
	}
	return out
}

// TestImagesBuildSh builds the smallest runtime image with the real
// debootstrap, from the host's apt mirror, and runs the README's first
// example in it with no --image and no config.
func TestImagesBuildSh(t *testing.T) {
	e := newImgEnv(t)
	suite, err := images.HostSuite(images.OSRelease)
	require.NoError(t, err)
	ref := images.LocalRegistry + "/sh:" + suite

	r := e.runWithin(buildTimeout, nil, []string{"images", "build"}, "sh", "--cache-dir", debianCache())
	require.Equal(t, 0, r.code, r)
	assert.Contains(t, r.stdout, "built "+ref+"\n", r)
	assert.Contains(t, r.stderr, "building sh from Debian "+suite+" with debootstrap", r)
	assert.Equal(t, images.StatusPresent, e.status(ref))
	assert.Equal(t, []string{ref}, e.imageNames(), "the build's own name is gone")

	r = e.execIn(nil, "--runtime", "sh", "-c", "echo $((6*7)); cat /etc/debian_version >/dev/null && echo debian")
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "42\ndebian\n", r.stdout, r)
	assert.NotContains(t, r.stderr, "pulling", r)

	r = e.run(nil, []string{"runtimes"})
	require.Equal(t, 0, r.code, r)
	assert.Regexp(t, `(?m)^sh\s+`+strings.ReplaceAll(ref, ".", `\.`)+`\s+main\.sh\s+yes\s`, r.stdout, r)

	// A config that names the image wins over the built one.
	e.writeConfig("[runtimes.sh]\nimage = \"sandbox-runner.test/absent/sh:1\"\n")
	r = e.execIn(nil, "--runtime", "sh", "--pull", "never", "-c", "echo never")
	assert.Equal(t, 125, r.code, r)
	assert.Contains(t, r.stderr, "sandbox-runner.test/absent/sh:1", r)
	e.writeConfig("")

	// Again: from the cache, as JSON.
	r = e.runWithin(buildTimeout, nil, []string{"images", "build"}, "sh", "--cache-dir", debianCache(), "--json")
	require.Equal(t, 0, r.code, r)
	var got struct {
		Names    []string `json:"names"`
		Cached   bool     `json:"cached"`
		Runtimes []string `json:"runtimes"`
		Digest   string   `json:"digest"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &got), r)
	assert.True(t, got.Cached, r)
	assert.Equal(t, []string{ref}, got.Names, r)
	assert.Equal(t, []string{"sh"}, got.Runtimes, r)
	assert.Regexp(t, `^sha256:[0-9a-f]{64}$`, got.Digest, r)
}

func TestImagesBuildRefusals(t *testing.T) {
	e := newImgEnv(t)
	cache := t.TempDir()

	r := e.run(nil, []string{"images", "build"}, "cobol", "--cache-dir", cache)
	assert.Equal(t, 2, r.code, r)
	assert.Contains(t, r.stderr, `unknown runtime "cobol": known runtimes are`, r)

	r = e.run(nil, []string{"images", "build"}, "dotnet", "--cache-dir", cache)
	assert.Equal(t, 2, r.code, r)
	assert.Contains(t, r.stderr, "dotnet: runtime cannot be built from Debian packages", r)
	assert.Contains(t, r.stderr, "sandbox-runner images import FILE", r)

	r = e.run(nil, []string{"images", "build"}, "--json", "java", "csharp", "--cache-dir", cache)
	assert.Equal(t, 2, r.code, r)
	var doc struct{ Kind string }
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &doc), r)
	assert.Equal(t, "invalid_input", doc.Kind, r)

	// No debootstrap on the PATH.
	cmd := e.cli.command(nil, "images", "build", "sh", "--cache-dir", cache, "--address", e.h.Address,
		"--namespace", e.ns, "--snapshotter", testSnapshotter, "--state-dir", e.stateDir, "--config", e.Config)
	cmd.Env = append(cmd.Env, "PATH=/usr/bin:/bin")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	require.Error(t, err)
	assert.Equal(t, 125, cmd.ProcessState.ExitCode(), stderr.String())
	assert.Contains(t, stderr.String(), "debootstrap is not installed (Debian: apt-get install debootstrap)")

	// debootstrap fails (no archive at that mirror): nothing is named,
	// nothing is left in the cache but the packages directory.
	r = e.runWithin(buildTimeout, nil, []string{"images", "build"}, "sh", "--cache-dir", cache, "--mirror", "http://127.0.0.1:9/debian")
	assert.Equal(t, 125, r.code, r)
	assert.Contains(t, r.stderr, "images build: debootstrap", r)
	assert.Empty(t, e.imageNames())
	left, err := filepath.Glob(filepath.Join(cache, "*"))
	require.NoError(t, err)
	for _, l := range left {
		if b := filepath.Base(l); b != "debs" && b != ".lock" {
			assert.Failf(t, "build left a file", "%s", l)
		}
	}
	_, err = os.Stat(filepath.Join(cache, "debs"))
	assert.NoError(t, err)
}

// TestCheckRuntimeImages: check says, per runtime, whether its image is
// there (the built ones are) and the command that gets a missing one.
func TestCheckRuntimeImages(t *testing.T) {
	e := debianEnv(t)
	suite, err := images.HostSuite(images.OSRelease)
	require.NoError(t, err)
	r := e.run(nil, []string{"check"})
	assert.Contains(t, r.stdout, "Runtime images", r)
	assert.Regexp(t, `(?m)^ok\s+python\s+sandbox-runner\.local/python:`+suite+` is present$`, r.stdout, r)
	assert.Regexp(t, `(?m)^no\s+dotnet\s+mcr\.microsoft\.com/dotnet/sdk:8\.0 is not present \(no\)$`, r.stdout, r)
	assert.Contains(t, r.stdout, "get it: sandbox-runner images pull mcr.microsoft.com/dotnet/sdk:8.0, or sandbox-runner images import FILE", r)

	r = e.run(nil, []string{"check"}, "--json")
	var findings []struct {
		Name string `json:"name"`
		OK   bool   `json:"ok"`
		Fix  string `json:"fix"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &findings), r)
	byName := map[string]bool{}
	for _, f := range findings {
		byName[f.Name] = f.OK
	}
	assert.True(t, byName["runtime java"], r)
	assert.False(t, byName["runtime dotnet"], r)
}

// TestCheckAsNonRoot: a user who is not root is told that the runner
// cannot work for it, and how to fix that, not that all is ok.
func TestCheckAsNonRoot(t *testing.T) {
	c := newCLI(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed to run the CLI as another user: %v", err)
	}
	// A copy of the binary any user may run, and its config, in a dir
	// any user may enter (t.TempDir's parent is root's alone).
	dir, err := os.MkdirTemp("", "sr-nonroot-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	bin := filepath.Join(dir, "sandbox-runner")
	b, err := os.ReadFile(c.bin)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, b, 0o755))
	state := filepath.Join(t.TempDir(), "state")
	require.NoError(t, os.Mkdir(state, 0o700))
	config := filepath.Join(dir, "config.toml")
	require.NoError(t, os.WriteFile(config, nil, 0o644))

	cmd := exec.CommandContext(t.Context(), "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		bin, "check", "--address", c.h.Address, "--state-dir", state, "--config", config)
	cmd.Env = cleanEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	require.Error(t, err, stdout.String())
	assert.Equal(t, 1, cmd.ProcessState.ExitCode(), "%s%s", stdout.String(), stderr.String())
	assert.Contains(t, stdout.String(), "FAIL  privileges running as uid 65534, not root", stdout.String())
	assert.Contains(t, stdout.String(), "the state dir "+state+" is not writable by this user", stdout.String())
	assert.Contains(t, stdout.String(), "fix: run sandbox-runner as root (sudo)", stdout.String())
}
