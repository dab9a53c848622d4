package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/integration/testimage"
)

const ref = "sandbox-runner.test/mkimage:v1"

func TestRunBadUsageExits2(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x.tar")
	for name, args := range map[string][]string{
		"no mode":            {"--ref", ref, "-o", out},
		"both modes":         {"--busybox", "--rootfs", t.TempDir(), "--ref", ref, "-o", out},
		"no ref":             {"--busybox", "-o", out},
		"no output":          {"--busybox", "--ref", ref},
		"extra argument":     {"--busybox", "--ref", ref, "-o", out, "extra"},
		"unknown flag":       {"--bogus"},
		"bin without mode":   {"--rootfs", t.TempDir(), "--busybox-bin", "/x", "--ref", ref, "-o", out},
		"missing flag value": {"--busybox", "-o", out, "--ref"},
	} {
		t.Run(name, func(t *testing.T) {
			var stderr bytes.Buffer
			assert.Equal(t, 2, run(args, &stderr))
			assert.Contains(t, stderr.String(), "mkimage: usage: ")
			assert.NoFileExists(t, out)
		})
	}
}

func TestRunFailureExits1(t *testing.T) {
	out := filepath.Join(t.TempDir(), "x.tar")
	var stderr bytes.Buffer
	assert.Equal(t, 1, run([]string{"--rootfs", t.TempDir(), "--ref", "no-host:v1", "-o", out}, &stderr))
	assert.Contains(t, stderr.String(), "no-host:v1")
	assert.NoFileExists(t, out)
	entries, err := os.ReadDir(filepath.Dir(out))
	require.NoError(t, err)
	assert.Empty(t, entries, "temporary file left behind")
}

func TestParseFlagsRootfs(t *testing.T) {
	dir := t.TempDir()
	o, err := parseFlags([]string{
		"--rootfs", dir, "--ref", ref, "-o", "img.tar",
		"--env", "A=1", "--env", "B=2",
		"--entrypoint", "/bin/sh", "--cmd", "-c", "--cmd", "echo hi",
		"--user", "65534:65534",
	}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, options{
		busyboxBin: testimage.DefaultBusybox,
		rootfs:     dir,
		output:     "img.tar",
		image: testimage.Options{
			Ref:        ref,
			Env:        []string{"A=1", "B=2"},
			Entrypoint: []string{"/bin/sh"},
			Cmd:        []string{"-c", "echo hi"},
			User:       "65534:65534",
		},
	}, o)
}

func TestParseFlagsBusyboxDefaults(t *testing.T) {
	o, err := parseFlags([]string{"--busybox", "--ref", ref, "-o", "img.tar"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, busyboxEnv, o.image.Env)
	assert.Equal(t, busyboxCmd, o.image.Cmd)
}

func TestRunRootfs(t *testing.T) {
	rootfs := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(rootfs, "hello"), []byte("hi\n"), 0o644))
	out := filepath.Join(t.TempDir(), "img.tar")
	var stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"--rootfs", rootfs, "--ref", ref, "-o", out}, &stderr), stderr.String())

	var want bytes.Buffer
	require.NoError(t, testimage.WriteArchive(&want, rootfs, testimage.Options{Ref: ref}))
	got, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want.Bytes(), got), "mkimage output differs from WriteArchive's")
}

func TestRunBusybox(t *testing.T) {
	if _, err := os.Stat(testimage.DefaultBusybox); os.IsNotExist(err) {
		t.Skipf("%s not found: install Debian's busybox-static", testimage.DefaultBusybox)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "busybox.tar")
	var stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"--busybox", "--ref", ref, "-o", out}, &stderr), stderr.String())

	// Same defaults as the library's convenience builder, so same bytes.
	want := filepath.Join(dir, "want.tar")
	require.NoError(t, testimage.BuildBusyboxArchive(want, ref))
	a, err := os.ReadFile(out)
	require.NoError(t, err)
	b, err := os.ReadFile(want)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(a, b), "mkimage --busybox differs from BuildBusyboxArchive")
}
