package images

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	ctrdimages "github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/reference"
	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// annotationImageName is the index annotation containerd's importer reads
// first to name an image.
const annotationImageName = ctrdimages.AnnotationImageName

// epoch is the modification time of every tar entry, so that builds do not
// depend on when the input files were written.
var epoch = time.Unix(0, 0)

// ArchiveOptions describe the image WriteArchive builds.
type ArchiveOptions struct {
	// Ref names the image, e.g. "sandbox-runner.test/busybox:latest". It must
	// start with a host name and must not carry a digest; without a tag,
	// ":latest" is used. Required: an invalid Ref is an
	// errdefs.ErrInvalidArgument.
	Ref string
	// Env, Cmd, Entrypoint and User go into the image config unchanged.
	Env        []string
	Cmd        []string
	Entrypoint []string
	User       string
	// Platform is the image platform. An empty OS or Architecture defaults
	// to runtime.GOOS or runtime.GOARCH.
	Platform ocispec.Platform
}

// WriteArchive writes to w an OCI image layout archive of a single-layer
// image whose layer holds the directory tree rootfs.
//
// Regular files, directories and symlinks are stored with their modes,
// owned by uid and gid 0, with zero timestamps; other file types are an
// error. The layer is staged in a temporary file, so large trees (a
// debootstrap root) stream through without being held in memory.
func WriteArchive(w io.Writer, rootfs string, opts ArchiveOptions) error {
	name, tag, err := parseRef(opts.Ref)
	if err != nil {
		return err
	}
	platform := opts.platform()
	layer, err := buildLayer(rootfs, true)
	if err != nil {
		return fmt.Errorf("building layer from %s: %w", rootfs, err)
	}
	defer layer.close()
	layerDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayerGzip,
		Digest:    layer.digest,
		Size:      layer.size,
	}

	config, err := imageConfig(opts, platform, layer.diffID)
	if err != nil {
		return err
	}
	configDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageConfig,
		Digest:    digest.FromBytes(config),
		Size:      int64(len(config)),
	}

	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    []ocispec.Descriptor{layerDesc},
	})
	if err != nil {
		return fmt.Errorf("encoding manifest: %w", err)
	}

	index, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{
			MediaType: ocispec.MediaTypeImageManifest,
			Digest:    digest.FromBytes(manifest),
			Size:      int64(len(manifest)),
			Platform:  &platform,
			// containerd names the image after the first annotation; OCI
			// tools after the second, which holds only the tag.
			Annotations: map[string]string{
				annotationImageName:       name,
				ocispec.AnnotationRefName: tag,
			},
		}},
	})
	if err != nil {
		return fmt.Errorf("encoding index: %w", err)
	}

	layout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return fmt.Errorf("encoding oci-layout: %w", err)
	}

	return writeTar(w, []archiveFile{
		{name: ocispec.ImageLayoutFile, data: layout},
		{name: ocispec.ImageIndexFile, data: index},
		{name: "blobs/"},
		{name: "blobs/sha256/"},
		{name: blobPath(configDesc.Digest), data: config},
		{name: blobPath(layerDesc.Digest), file: layer},
		{name: blobPath(digest.FromBytes(manifest)), data: manifest},
	})
}

// WriteDockerArchive writes to w the same single-layer image as
// WriteArchive, in the format of `docker save`: manifest.json with the
// tag, the config as <hex>.json, and the layer as an uncompressed
// <hex>/layer.tar, plus the legacy "repositories" file.
func WriteDockerArchive(w io.Writer, rootfs string, opts ArchiveOptions) error {
	name, tag, err := parseRef(opts.Ref)
	if err != nil {
		return err
	}
	layer, err := buildLayer(rootfs, false)
	if err != nil {
		return fmt.Errorf("building layer from %s: %w", rootfs, err)
	}
	defer layer.close()
	config, err := imageConfig(opts, opts.platform(), layer.diffID)
	if err != nil {
		return err
	}
	configName := digest.FromBytes(config).Encoded() + ".json"
	layerName := layer.diffID.Encoded() + "/layer.tar"
	repo := strings.TrimSuffix(name, ":"+tag)
	manifest, err := json.Marshal([]struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{Config: configName, RepoTags: []string{name}, Layers: []string{layerName}}})
	if err != nil {
		return fmt.Errorf("encoding manifest.json: %w", err)
	}
	repositories, err := json.Marshal(map[string]map[string]string{repo: {tag: layer.diffID.Encoded()}})
	if err != nil {
		return fmt.Errorf("encoding repositories: %w", err)
	}
	return writeTar(w, []archiveFile{
		{name: layer.diffID.Encoded() + "/"},
		{name: layerName, file: layer},
		{name: configName, data: config},
		{name: "manifest.json", data: manifest},
		{name: "repositories", data: repositories},
	})
}

func (o ArchiveOptions) platform() ocispec.Platform {
	p := o.Platform
	if p.OS == "" {
		p.OS = runtime.GOOS
	}
	if p.Architecture == "" {
		p.Architecture = runtime.GOARCH
	}
	return p
}

func imageConfig(opts ArchiveOptions, platform ocispec.Platform, diffID digest.Digest) ([]byte, error) {
	config, err := json.Marshal(ocispec.Image{
		Platform: platform,
		Config: ocispec.ImageConfig{
			User:       opts.User,
			Env:        opts.Env,
			Entrypoint: opts.Entrypoint,
			Cmd:        opts.Cmd,
		},
		RootFS: ocispec.RootFS{
			Type:    "layers",
			DiffIDs: []digest.Digest{diffID},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("encoding image config: %w", err)
	}
	return config, nil
}

// archiveFile is one entry of an archive: a directory (name ends in
// "/"), bytes, or a staged layer.
type archiveFile struct {
	name string
	data []byte
	file *layerFile
}

func writeTar(w io.Writer, files []archiveFile) error {
	tw := tar.NewWriter(w)
	for _, f := range files {
		hdr := &tar.Header{
			Name:     f.name,
			Typeflag: tar.TypeReg,
			Mode:     0o644,
			Size:     int64(len(f.data)),
			ModTime:  epoch,
		}
		if f.file != nil {
			hdr.Size = f.file.size
		}
		if strings.HasSuffix(f.name, "/") {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("writing archive: %w", err)
		}
		var err error
		if f.file != nil {
			if _, err = f.file.f.Seek(0, io.SeekStart); err == nil {
				_, err = io.Copy(tw, f.file.f)
			}
		} else {
			_, err = tw.Write(f.data)
		}
		if err != nil {
			return fmt.Errorf("writing archive: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing archive: %w", err)
	}
	return nil
}

func blobPath(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// parseRef returns the full image name and the part after the repository
// (the tag) with containerd's own reference parser, so both annotations
// agree with what containerd derives from the name.
func parseRef(ref string) (name, tag string, err error) {
	spec, err := reference.Parse(ref)
	if err == nil && !strings.Contains(spec.Locator, "/") {
		// Parse takes a lone "busybox" for a host: ask for one explicitly,
		// as "busybox:latest" fails to parse anyway.
		err = reference.ErrHostnameRequired
	}
	if err != nil {
		return "", "", fmt.Errorf("parsing reference %q (want HOST/NAME[:TAG], e.g. sandbox-runner.test/busybox:latest): %w: %w",
			ref, errdefs.ErrInvalidArgument, err)
	}
	if spec.Digest() != "" {
		// The digest of an image built here is known only once it is built.
		return "", "", fmt.Errorf("parsing reference %q: %w: a reference to build must not carry a digest",
			ref, errdefs.ErrInvalidArgument)
	}
	if spec.Object == "" {
		spec.Object = "latest"
	}
	return spec.String(), spec.Object, nil
}

// layerFile is a layer staged in an unlinked temporary file.
type layerFile struct {
	f *os.File
	// digest and size are the file's, as stored; diffID is the digest
	// of the uncompressed tar, which the image config lists.
	digest digest.Digest
	size   int64
	diffID digest.Digest
}

func (l *layerFile) close() { l.f.Close() }

// buildLayer stages the tar of rootfs, gzipped when compress is set.
func buildLayer(rootfs string, compress bool) (_ *layerFile, retErr error) {
	f, err := os.CreateTemp("", "sandbox-runner-layer-")
	if err != nil {
		return nil, err
	}
	// Unlinked at once: the open file is all that is needed.
	os.Remove(f.Name())
	defer func() {
		if retErr != nil {
			f.Close()
		}
	}()
	stored := sha256.New()
	counter := &countingWriter{w: io.MultiWriter(f, stored)}
	diff := sha256.New()
	var zw *gzip.Writer
	var out io.Writer = counter
	if compress {
		zw = gzip.NewWriter(counter) // its header carries no name and no time
		out = zw
	}
	tw := tar.NewWriter(io.MultiWriter(out, diff))

	// WalkDir visits entries in lexical order, which makes the tar stable.
	err = filepath.WalkDir(rootfs, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(rootfs, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		return addEntry(tw, path, filepath.ToSlash(rel))
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return nil, err
		}
	}
	return &layerFile{
		f:      f,
		digest: digest.NewDigest(digest.SHA256, stored),
		size:   counter.n,
		diffID: digest.NewDigest(digest.SHA256, diff),
	}, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func addEntry(tw *tar.Writer, path, name string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	var link string
	switch mode := fi.Mode(); {
	case mode.IsRegular(), mode.IsDir():
	case mode&fs.ModeSymlink != 0:
		if link, err = os.Readlink(path); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%s: unsupported file type %s", path, mode.Type())
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	hdr.Name = name
	if fi.IsDir() {
		hdr.Name += "/"
	}
	// The image must not depend on who built it or when.
	hdr.Uid, hdr.Gid = 0, 0
	hdr.Uname, hdr.Gname = "root", "root"
	hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = epoch, time.Time{}, time.Time{}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
