package testimage

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/plugins/content/local"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func writeDockerArchive(t *testing.T, rootfs string, opts Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, WriteDockerArchive(&buf, rootfs, opts))
	return buf.Bytes()
}

func TestWriteDockerArchiveIsDockerSave(t *testing.T) {
	b := writeDockerArchive(t, tinyRootfs(t), Options{Ref: testRef, Env: []string{"PATH=/bin"}})
	files, _ := readTar(t, bytes.NewReader(b))

	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	require.NoError(t, json.Unmarshal(files["manifest.json"], &manifest))
	require.Len(t, manifest, 1)
	assert.Equal(t, []string{testRef}, manifest[0].RepoTags)
	require.Len(t, manifest[0].Layers, 1)

	layer, ok := files[manifest[0].Layers[0]]
	require.True(t, ok, "layer %s missing", manifest[0].Layers[0])
	cfgData, ok := files[manifest[0].Config]
	require.True(t, ok, "config %s missing", manifest[0].Config)
	assert.Equal(t, digest.FromBytes(cfgData).Encoded()+".json", manifest[0].Config)

	var cfg ocispec.Image
	require.NoError(t, json.Unmarshal(cfgData, &cfg))
	// docker save stores layers uncompressed: the diff ID is the file's digest.
	assert.Equal(t, []digest.Digest{digest.FromBytes(layer)}, cfg.RootFS.DiffIDs)
	assert.Equal(t, []string{"PATH=/bin"}, cfg.Config.Env)

	entries, _ := readTar(t, bytes.NewReader(layer))
	assert.Equal(t, "hello\n", string(entries["hello.txt"]))

	var repos map[string]map[string]string
	require.NoError(t, json.Unmarshal(files["repositories"], &repos))
	assert.Equal(t, map[string]map[string]string{"sandbox-runner.test/tiny": {"v1": cfg.RootFS.DiffIDs[0].Encoded()}}, repos)
}

func TestWriteDockerArchiveIsDeterministic(t *testing.T) {
	root := tinyRootfs(t)
	a := writeDockerArchive(t, root, Options{Ref: testRef})
	b := writeDockerArchive(t, root, Options{Ref: testRef})
	assert.Equal(t, digest.FromBytes(a), digest.FromBytes(b))
}

func TestWriteDockerArchiveSameLayerAsOCI(t *testing.T) {
	root := tinyRootfs(t)
	oci := parseLayout(t, writeArchive(t, root, Options{Ref: testRef}))
	files, _ := readTar(t, bytes.NewReader(writeDockerArchive(t, root, Options{Ref: testRef})))
	var manifest []struct{ Layers []string }
	require.NoError(t, json.Unmarshal(files["manifest.json"], &manifest))
	assert.Equal(t, gunzip(t, oci.layer), files[manifest[0].Layers[0]])
}

func TestWriteDockerArchiveRejectsBadRef(t *testing.T) {
	var buf bytes.Buffer
	err := WriteDockerArchive(&buf, tinyRootfs(t), Options{Ref: "no host"})
	assert.Error(t, err)
}

// TestWriteDockerArchiveImportsIntoContainerd runs containerd's importer,
// which converts a docker save archive to an OCI index on the fly.
func TestWriteDockerArchiveImportsIntoContainerd(t *testing.T) {
	ctx := context.Background()
	store, err := local.NewStore(t.TempDir())
	require.NoError(t, err)

	b := writeDockerArchive(t, tinyRootfs(t), Options{Ref: testRef, Cmd: []string{"/bin/sh"}})
	idxDesc, err := archive.ImportIndex(ctx, store, bytes.NewReader(b))
	require.NoError(t, err)

	data, err := content.ReadBlob(ctx, store, idxDesc)
	require.NoError(t, err)
	var idx ocispec.Index
	require.NoError(t, json.Unmarshal(data, &idx))
	require.Len(t, idx.Manifests, 1)
	assert.Equal(t, testRef, idx.Manifests[0].Annotations[images.AnnotationImageName])

	img := images.Image{Name: testRef, Target: idx.Manifests[0]}
	ok, _, _, missing, err := images.Check(ctx, store, img.Target, nil)
	require.NoError(t, err)
	assert.True(t, ok, "content missing after import: %v", missing)
}
