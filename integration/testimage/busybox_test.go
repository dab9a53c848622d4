package testimage

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// requireBusybox skips the test only when busybox-static is not installed;
// any other problem with the binary is a failure.
func requireBusybox(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(DefaultBusybox); os.IsNotExist(err) {
		t.Skipf("%s not found: install Debian's busybox-static", DefaultBusybox)
	}
}

func TestBusyboxRootfs(t *testing.T) {
	requireBusybox(t)
	dir := t.TempDir()
	require.NoError(t, BusyboxRootfs(dir, ""))

	out, err := exec.Command(DefaultBusybox, "--list").Output()
	require.NoError(t, err)
	applets := strings.Fields(string(out))
	require.Contains(t, applets, "sh")
	for _, a := range applets {
		if a == "busybox" {
			continue
		}
		target, err := os.Readlink(filepath.Join(dir, "bin", a))
		if assert.NoError(t, err, "applet %s", a) {
			assert.Equal(t, "busybox", target, "applet %s", a)
		}
	}

	fi, err := os.Stat(filepath.Join(dir, "bin", "busybox"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm())

	for name, mode := range map[string]os.FileMode{
		"tmp":  0o777 | os.ModeSticky | os.ModeDir,
		"code": 0o755 | os.ModeDir,
		"etc":  0o755 | os.ModeDir,
		"proc": 0o555 | os.ModeDir,
		"sys":  0o555 | os.ModeDir,
		"dev":  0o755 | os.ModeDir,
		"root": 0o700 | os.ModeDir,
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if assert.NoError(t, err, name) {
			assert.Equal(t, mode, fi.Mode(), name)
		}
	}

	passwd, err := os.ReadFile(filepath.Join(dir, "etc", "passwd"))
	require.NoError(t, err)
	assert.Contains(t, string(passwd), "root:x:0:0:")
	assert.Contains(t, string(passwd), "nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n")
	group, err := os.ReadFile(filepath.Join(dir, "etc", "group"))
	require.NoError(t, err)
	assert.Contains(t, string(group), "root:x:0:")
	assert.Contains(t, string(group), "nogroup:x:65534:\n")
}

// TestBusyboxRootfsBash checks that bin/bash exists exactly when the busybox
// at hand runs bash scripts.
func TestBusyboxRootfsBash(t *testing.T) {
	requireBusybox(t)
	dir := t.TempDir()
	require.NoError(t, BusyboxRootfs(dir, ""))

	out, err := exec.Command(DefaultBusybox, "bash", "-c", "echo ok").Output()
	bashWorks := err == nil && strings.TrimSpace(string(out)) == "ok"
	_, err = os.Lstat(filepath.Join(dir, "bin", "bash"))
	assert.Equal(t, bashWorks, err == nil, "bin/bash present = %v, busybox runs bash = %v", err == nil, bashWorks)
}

// TestBusyboxRootfsShellRuns runs the rootfs' own shell through its symlink:
// the binary is static, so it needs nothing from the host.
func TestBusyboxRootfsShellRuns(t *testing.T) {
	requireBusybox(t)
	dir := t.TempDir()
	require.NoError(t, BusyboxRootfs(dir, ""))
	out, err := exec.Command(filepath.Join(dir, "bin", "sh"), "-c", "echo ok").Output()
	require.NoError(t, err)
	assert.Equal(t, "ok\n", string(out))
}

func TestBusyboxRootfsMissingBinary(t *testing.T) {
	err := BusyboxRootfs(t.TempDir(), filepath.Join(t.TempDir(), "busybox"))
	require.ErrorIs(t, err, os.ErrNotExist)
	assert.ErrorContains(t, err, "busybox-static")
}

func TestBusyboxRootfsDynamicBinary(t *testing.T) {
	// Any dynamically linked program will do; the test binary itself may be
	// static, so look for a system one.
	var dyn string
	for _, p := range []string{"/bin/ls", "/usr/bin/env", "/bin/cat"} {
		if checkStatic(p) != nil {
			dyn = p
			break
		}
	}
	if dyn == "" {
		t.Skip("no dynamically linked binary found")
	}
	err := BusyboxRootfs(t.TempDir(), dyn)
	require.ErrorIs(t, err, errNotStatic)
	assert.ErrorContains(t, err, "busybox-static")
}

func TestBuildBusyboxArchive(t *testing.T) {
	requireBusybox(t)
	const ref = "sandbox-runner.test/busybox:latest"
	path := filepath.Join(t.TempDir(), "busybox.tar")
	require.NoError(t, BuildBusyboxArchive(path, ref))
	data, err := os.ReadFile(path)
	require.NoError(t, err)

	l := parseLayout(t, data)
	assert.Equal(t, ref, l.index.Manifests[0].Annotations[annotationImageName])
	assert.Equal(t, []string{"/bin/sh"}, l.config.Config.Cmd)

	files, hdrs := readTar(t, bytes.NewReader(gunzip(t, l.layer)))
	assert.Contains(t, files, "bin/busybox")
	var sh bool
	for _, h := range hdrs {
		if h.Name == "bin/sh" {
			sh = h.Linkname == "busybox"
		}
	}
	assert.True(t, sh, "bin/sh -> busybox missing from the layer")

	again := filepath.Join(t.TempDir(), "again.tar")
	require.NoError(t, BuildBusyboxArchive(again, ref))
	data2, err := os.ReadFile(again)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, data2), "two busybox builds differ")

	store, err := local.NewStore(t.TempDir())
	require.NoError(t, err)
	_, err = archive.ImportIndex(context.Background(), store, bytes.NewReader(data))
	require.NoError(t, err)
}

func TestBuildBusyboxArchiveRemovesPartialOutput(t *testing.T) {
	requireBusybox(t)
	path := filepath.Join(t.TempDir(), "bad.tar")
	require.Error(t, BuildBusyboxArchive(path, "no-host:latest"))
	_, err := os.Stat(path)
	assert.True(t, os.IsNotExist(err), "partial archive left behind")
}
