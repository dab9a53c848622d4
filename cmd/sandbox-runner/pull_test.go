package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner/config"
)

func TestProgressLines(t *testing.T) {
	lines := progressLines(images.Progress{
		Ref:     "x.test/a:1",
		Elapsed: 1234 * time.Millisecond,
		Blobs: []images.BlobProgress{
			{Digest: "sha256:0123456789abcdef0123", Kind: "manifest", Status: images.BlobDone, Offset: 500, Size: 500},
			{Digest: "sha256:fedcba9876543210fedc", Kind: "layer", Status: images.BlobDownloading, Offset: 3 << 20, Size: 10 << 20},
			{Digest: "sha256:aaaaaaaaaaaaaaaaaaaa", Kind: "layer", Status: images.BlobWaiting, Size: 2048},
		},
	})
	require.Len(t, lines, 4)
	assert.Equal(t, "x.test/a:1: downloading (1.2s)", lines[0])
	assert.Regexp(t, `^  manifest\s+0123456789ab\s+done\s+500 B$`, lines[1])
	assert.Regexp(t, `^  layer\s+fedcba987654\s+downloading\s+3.0 MiB / 10.0 MiB$`, lines[2])
	assert.Regexp(t, `^  layer\s+aaaaaaaaaaaa\s+waiting\s+2.0 KiB$`, lines[3])

	assert.Equal(t, []string{"x.test/a:1: resolving (0s)"}, progressLines(images.Progress{Ref: "x.test/a:1"}))
	assert.Contains(t, progressLines(images.Progress{Ref: "r", Done: true})[0], "done")
	// Ctrl-C or an error: the last drawing does not say done.
	assert.Equal(t, "r: stopped (0s)", progressLines(images.Progress{Ref: "r", Done: true, Failed: true})[0])
	allIn := images.Progress{Ref: "r", Blobs: []images.BlobProgress{{Kind: "layer", Status: images.BlobDone}, {Kind: "config", Status: images.BlobExists}}}
	assert.Contains(t, progressLines(allIn)[0], "unpacking")
}

func TestProgressPrinterRedrawsInPlace(t *testing.T) {
	var out strings.Builder
	p := &progressPrinter{w: &out}
	p.update(images.Progress{Ref: "r", Blobs: []images.BlobProgress{{Digest: "sha256:ab", Kind: "layer", Status: images.BlobWaiting}}})
	first := out.String()
	assert.NotContains(t, first, "\x1b[2A", "nothing to move back over the first time")
	p.update(images.Progress{Ref: "r", Done: true, Blobs: []images.BlobProgress{{Digest: "sha256:ab", Kind: "layer", Status: images.BlobDone}}})
	second := strings.TrimPrefix(out.String(), first)
	assert.True(t, strings.HasPrefix(second, "\x1b[2A"), "back up over the two lines drawn: %q", second)
	assert.Equal(t, 2, strings.Count(second, "\x1b[2K"), "each line cleared before it is drawn again")
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		assert.Equal(t, want, humanBytes(n), "%d", n)
	}
}

func TestFormatCommandOneLine(t *testing.T) {
	assert.Equal(t, "python3 {file}", formatCommand([]string{"python3", "{file}"}))
	got := formatCommand(images.DefaultCatalog()["dotnet"].Compile)
	assert.NotContains(t, got, "\n")
	assert.True(t, strings.HasPrefix(got, `sh -c "set -e\nsrc=$1`), got)
	assert.True(t, strings.HasSuffix(got, `..." csc {file}`), got)
}

func TestPullRefs(t *testing.T) {
	refs, err := pullRefs(images.DefaultCatalog(), []string{"busybox", "x.test/a:1"}, false)
	require.NoError(t, err)
	assert.Equal(t, []string{"docker.io/library/busybox:latest", "x.test/a:1"}, refs)

	refs, err = pullRefs(images.DefaultCatalog(), nil, true)
	require.NoError(t, err)
	assert.Contains(t, refs, "mcr.microsoft.com/dotnet/sdk:8.0")
	assert.Len(t, refs, 7)

	_, err = pullRefs(images.DefaultCatalog(), []string{"Not A Ref"}, false)
	assert.True(t, errdefs.IsInvalidArgument(err))
}

// A pull's errors get the kinds exec's do: one vocabulary.
func TestPullErrorKind(t *testing.T) {
	for want, err := range map[string]error{
		"invalid_input":   fmt.Errorf("x: %w", errdefs.ErrInvalidArgument),
		"image_not_found": fmt.Errorf("x: %w", errdefs.ErrNotFound),
		"unauthorized":    fmt.Errorf("x: %w: %w", images.ErrRegistryAuth, errdefs.ErrUnauthenticated),
		"unavailable":     fmt.Errorf("x: %w: %w", images.ErrRegistryUnreachable, errdefs.ErrUnavailable),
		"cancelled":       fmt.Errorf("x: %w", context.Canceled),
		"runner_failed":   fmt.Errorf("x"),
	} {
		assert.Equal(t, want, errorKind(err), "%v", err)
	}
	// No image for this platform is a missing image; the message says
	// which platform.
	assert.Equal(t, "image_not_found", errorKind(fmt.Errorf("x: %w: %w", images.ErrPlatformMismatch, errdefs.ErrNotFound)))
}

func TestRegistryPullOptions(t *testing.T) {
	g := &globalFlags{snapshotter: "native", file: &config.File{}}
	var r registryFlags
	o := r.pullOptions(g)
	assert.Equal(t, images.DefaultHostsDir, o.HostsDir)
	assert.Equal(t, "native", o.Snapshotter)
	assert.Empty(t, o.DockerConfig)

	g.file.Registry = config.Registry{ConfigPath: "/etc/x/certs.d", DockerConfig: "/etc/x/config.json"}
	o = r.pullOptions(g)
	assert.Equal(t, "/etc/x/certs.d", o.HostsDir)
	assert.Equal(t, "/etc/x/config.json", o.DockerConfig)

	r.hostsDir = "/flag/certs.d"
	assert.Equal(t, "/flag/certs.d", r.pullOptions(g).HostsDir, "the flag wins over the config file")
}

func TestImagesPullUsage(t *testing.T) {
	for name, args := range map[string][]string{
		"nothing to pull":    {"images", "pull", "--address", "/nonexistent/sock"},
		"refs and --all":     {"images", "pull", "--all", "x.test/a:1", "--address", "/nonexistent/sock"},
		"malformed ref":      {"images", "pull", "Not A Ref", "--address", "/nonexistent/sock"},
		"unknown pull flag":  {"images", "pull", "--frob", "x.test/a:1"},
		"bad --pull on exec": {"exec", "--runtime", "sh", "--pull", "sometimes", "-c", "true", "--address", "/nonexistent/sock"},
	} {
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, args...)
			assert.Equal(t, exitUsage, code, stderr)
			assert.Empty(t, stdout)
			assert.NotContains(t, stderr, "hint:", "refused before connecting")
		})
	}
}

func TestRuntimesWithoutContainerd(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, "runtimes", "--address", "/nonexistent/containerd.sock")
	require.Equal(t, exitOK, code)
	assert.Empty(t, stderr)
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n")[1:] {
		assert.Equal(t, "unknown", strings.Fields(l)[3], l)
	}
}
