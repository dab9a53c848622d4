package testimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testRef = "sandbox-runner.test/tiny:v1"

// tinyRootfs makes a small tree with a file, an executable, a symlink, a
// dangling symlink, a sticky directory and an empty directory.
func tinyRootfs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "bin"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "empty"), 0o700))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "tmp"), 0o755))
	require.NoError(t, os.Chmod(filepath.Join(dir, "tmp"), 0o777|os.ModeSticky))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bin", "tool"), []byte("#!/bin/sh\necho hi\n"), 0o755))
	require.NoError(t, os.Chmod(filepath.Join(dir, "bin", "tool"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello\n"), 0o644))
	require.NoError(t, os.Symlink("tool", filepath.Join(dir, "bin", "sh")))
	require.NoError(t, os.Symlink("/nowhere", filepath.Join(dir, "dangling")))
	return dir
}

func writeArchive(t *testing.T, rootfs string, opts Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, WriteArchive(&buf, rootfs, opts))
	return buf.Bytes()
}

// readTar returns the regular files of a tar stream by name, and the
// headers of all entries in order.
func readTar(t *testing.T, r io.Reader) (map[string][]byte, []*tar.Header) {
	t.Helper()
	files := map[string][]byte{}
	var hdrs []*tar.Header
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files, hdrs
		}
		require.NoError(t, err)
		hdrs = append(hdrs, hdr)
		if hdr.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			require.NoError(t, err)
			files[hdr.Name] = data
		}
	}
}

// layout is an archive parsed from index.json down to the layer.
type layout struct {
	files    map[string][]byte
	index    ocispec.Index
	manifest ocispec.Manifest
	config   ocispec.Image
	layer    []byte // gzipped
}

func blob(t *testing.T, files map[string][]byte, desc ocispec.Descriptor) []byte {
	t.Helper()
	data, ok := files["blobs/sha256/"+desc.Digest.Encoded()]
	require.True(t, ok, "blob %s missing", desc.Digest)
	require.Equal(t, desc.Digest, digest.FromBytes(data), "blob content does not match its digest")
	require.Equal(t, desc.Size, int64(len(data)), "blob size does not match its descriptor")
	return data
}

func parseLayout(t *testing.T, archive []byte) layout {
	t.Helper()
	var l layout
	l.files, _ = readTar(t, bytes.NewReader(archive))

	var il ocispec.ImageLayout
	require.NoError(t, json.Unmarshal(l.files[ocispec.ImageLayoutFile], &il))
	require.Equal(t, ocispec.ImageLayoutVersion, il.Version)

	require.NoError(t, json.Unmarshal(l.files[ocispec.ImageIndexFile], &l.index))
	require.Equal(t, 2, l.index.SchemaVersion)
	require.Equal(t, ocispec.MediaTypeImageIndex, l.index.MediaType)
	require.Len(t, l.index.Manifests, 1)
	md := l.index.Manifests[0]
	require.Equal(t, ocispec.MediaTypeImageManifest, md.MediaType)

	require.NoError(t, json.Unmarshal(blob(t, l.files, md), &l.manifest))
	require.Equal(t, ocispec.MediaTypeImageManifest, l.manifest.MediaType)
	require.Equal(t, ocispec.MediaTypeImageConfig, l.manifest.Config.MediaType)
	require.NoError(t, json.Unmarshal(blob(t, l.files, l.manifest.Config), &l.config))
	require.Len(t, l.manifest.Layers, 1)
	require.Equal(t, ocispec.MediaTypeImageLayerGzip, l.manifest.Layers[0].MediaType)
	l.layer = blob(t, l.files, l.manifest.Layers[0])
	return l
}

func gunzip(t *testing.T, data []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	require.NoError(t, err)
	out, err := io.ReadAll(zr)
	require.NoError(t, err)
	return out
}

func TestWriteArchiveIsOCILayout(t *testing.T) {
	l := parseLayout(t, writeArchive(t, tinyRootfs(t), Options{
		Ref:        testRef,
		Env:        []string{"PATH=/bin", "A=b"},
		Cmd:        []string{"-c", "echo hi"},
		Entrypoint: []string{"/bin/sh"},
		User:       "65534:65534",
	}))

	md := l.index.Manifests[0]
	assert.Equal(t, map[string]string{
		"io.containerd.image.name":          testRef,
		"org.opencontainers.image.ref.name": "v1",
	}, md.Annotations)
	require.NotNil(t, md.Platform)
	assert.Equal(t, runtime.GOOS, md.Platform.OS)
	assert.Equal(t, runtime.GOARCH, md.Platform.Architecture)

	assert.Equal(t, runtime.GOOS, l.config.OS)
	assert.Equal(t, runtime.GOARCH, l.config.Architecture)
	assert.Equal(t, []string{"PATH=/bin", "A=b"}, l.config.Config.Env)
	assert.Equal(t, []string{"-c", "echo hi"}, l.config.Config.Cmd)
	assert.Equal(t, []string{"/bin/sh"}, l.config.Config.Entrypoint)
	assert.Equal(t, "65534:65534", l.config.Config.User)
	assert.Equal(t, "layers", l.config.RootFS.Type)
	assert.Equal(t, []digest.Digest{digest.FromBytes(gunzip(t, l.layer))}, l.config.RootFS.DiffIDs,
		"diff_id must be the digest of the uncompressed layer")
}

func TestWriteArchiveIsDeterministic(t *testing.T) {
	opts := Options{Ref: testRef, Cmd: []string{"/bin/sh"}}
	first := writeArchive(t, tinyRootfs(t), opts)
	second := writeArchive(t, tinyRootfs(t), opts) // another dir, other mtimes
	assert.True(t, bytes.Equal(first, second), "two builds of the same tree differ")
}

func TestWriteArchiveLayerEntries(t *testing.T) {
	l := parseLayout(t, writeArchive(t, tinyRootfs(t), Options{Ref: testRef}))
	files, hdrs := readTar(t, bytes.NewReader(gunzip(t, l.layer)))

	var names []string
	byName := map[string]*tar.Header{}
	for _, h := range hdrs {
		names = append(names, h.Name)
		byName[h.Name] = h
		assert.Zero(t, h.Uid, h.Name)
		assert.Zero(t, h.Gid, h.Name)
		assert.Zero(t, h.ModTime.Unix(), h.Name)
	}
	assert.Equal(t, []string{"bin/", "bin/sh", "bin/tool", "dangling", "empty/", "hello.txt", "tmp/"}, names)

	assert.Equal(t, byte(tar.TypeSymlink), byName["bin/sh"].Typeflag)
	assert.Equal(t, "tool", byName["bin/sh"].Linkname)
	assert.Equal(t, byte(tar.TypeSymlink), byName["dangling"].Typeflag)
	assert.Equal(t, "/nowhere", byName["dangling"].Linkname)
	assert.Equal(t, byte(tar.TypeDir), byName["empty/"].Typeflag)
	assert.Equal(t, int64(0o700), byName["empty/"].Mode)
	assert.Equal(t, int64(0o1777), byName["tmp/"].Mode, "sticky bit must survive")
	assert.Equal(t, int64(0o755), byName["bin/tool"].Mode)
	assert.Equal(t, int64(0o644), byName["hello.txt"].Mode)
	assert.Equal(t, "hello\n", string(files["hello.txt"]))
}

func TestWriteArchiveRef(t *testing.T) {
	for _, tc := range []struct {
		ref, name, tag string
	}{
		{"sandbox-runner.test/busybox:latest", "sandbox-runner.test/busybox:latest", "latest"},
		{"localhost:5000/a/b:v2", "localhost:5000/a/b:v2", "v2"},
		{"sandbox-runner.test/busybox", "sandbox-runner.test/busybox:latest", "latest"},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			l := parseLayout(t, writeArchive(t, tinyRootfs(t), Options{Ref: tc.ref}))
			assert.Equal(t, tc.name, l.index.Manifests[0].Annotations[images.AnnotationImageName])
			assert.Equal(t, tc.tag, l.index.Manifests[0].Annotations[ocispec.AnnotationRefName])
		})
	}
}

func TestWriteArchiveRejectsBadRef(t *testing.T) {
	for _, ref := range []string{
		"",
		"busybox:latest", // no host: containerd could not resolve it either
		"busybox",
		"sandbox-runner.test/busybox@sha256:" + digest.FromString("x").Encoded(),
	} {
		err := WriteArchive(io.Discard, tinyRootfs(t), Options{Ref: ref})
		assert.ErrorIs(t, err, errdefs.ErrInvalidArgument, "ref %q", ref)
	}
}

func TestWriteArchivePlatform(t *testing.T) {
	l := parseLayout(t, writeArchive(t, tinyRootfs(t), Options{
		Ref:      testRef,
		Platform: ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"},
	}))
	assert.Equal(t, "arm64", l.config.Architecture)
	assert.Equal(t, "v8", l.config.Variant)
	assert.Equal(t, "arm64", l.index.Manifests[0].Platform.Architecture)
}

func TestWriteArchiveRejectsSpecialFiles(t *testing.T) {
	dir := tinyRootfs(t)
	if err := mkfifo(filepath.Join(dir, "fifo")); err != nil {
		t.Skipf("cannot make a fifo here: %v", err)
	}
	err := WriteArchive(io.Discard, dir, Options{Ref: testRef})
	assert.ErrorContains(t, err, "unsupported file type")
}

// TestWriteArchiveImportsIntoContainerd runs containerd's own archive
// importer, the code behind client.Import, against a content store on disk:
// no daemon needed.
func TestWriteArchiveImportsIntoContainerd(t *testing.T) {
	ctx := context.Background()
	store, err := local.NewStore(t.TempDir())
	require.NoError(t, err)

	archiveBytes := writeArchive(t, tinyRootfs(t), Options{Ref: testRef, Cmd: []string{"/bin/sh"}})
	want := parseLayout(t, archiveBytes)

	idxDesc, err := archive.ImportIndex(ctx, store, bytes.NewReader(archiveBytes))
	require.NoError(t, err)
	assert.Equal(t, ocispec.MediaTypeImageIndex, idxDesc.MediaType)
	assert.Equal(t, digest.FromBytes(want.files[ocispec.ImageIndexFile]), idxDesc.Digest)

	data, err := content.ReadBlob(ctx, store, idxDesc)
	require.NoError(t, err)
	var idx ocispec.Index
	require.NoError(t, json.Unmarshal(data, &idx))
	require.Len(t, idx.Manifests, 1)
	assert.Equal(t, testRef, idx.Manifests[0].Annotations[images.AnnotationImageName])

	// containerd resolves the whole image from its store: manifest, config,
	// layers and the platform it is for.
	img := images.Image{Name: testRef, Target: idx.Manifests[0]}
	cfg, err := img.Config(ctx, store, nil)
	require.NoError(t, err)
	assert.Equal(t, want.manifest.Config.Digest, cfg.Digest)
	diffIDs, err := img.RootFS(ctx, store, nil)
	require.NoError(t, err)
	assert.Equal(t, want.config.RootFS.DiffIDs, diffIDs)
	ok, _, _, missing, err := images.Check(ctx, store, idxDesc, nil)
	require.NoError(t, err)
	assert.True(t, ok, "content missing after import: %v", missing)
}
