package testimage

import (
	"io"

	"github.com/sandbox-runner/sandbox-runner/images"
)

// annotationImageName is the index annotation containerd's importer reads
// first to name an image.
const annotationImageName = "io.containerd.image.name"

// Options describe the image WriteArchive builds.
type Options = images.ArchiveOptions

// WriteArchive writes to w an OCI image layout archive of a single-layer
// image whose layer holds the directory tree rootfs: images.WriteArchive,
// the writer `sandbox-runner images build` uses.
func WriteArchive(w io.Writer, rootfs string, opts Options) error {
	return images.WriteArchive(w, rootfs, opts)
}

// WriteDockerArchive writes the same image in the format of `docker
// save`: images.WriteDockerArchive.
func WriteDockerArchive(w io.Writer, rootfs string, opts Options) error {
	return images.WriteDockerArchive(w, rootfs, opts)
}
