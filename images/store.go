package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/containerd/containerd/v2/client"
	ctrdimages "github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Normalize turns a short reference ("busybox", "python:3.11-slim") into the
// full one containerd stores ("docker.io/library/busybox:latest").
func Normalize(ref string) (string, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("parsing image reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	return named.String(), nil
}

// Ensure returns the image ref from containerd's store, unpacked into
// snapshotter. An image that is not in the store is a not-found error that
// says how to get it.
func Ensure(ctx context.Context, c *client.Client, ref, snapshotter string) (client.Image, error) {
	name, err := Normalize(ref)
	if err != nil {
		return nil, err
	}
	img, err := c.GetImage(ctx, name)
	if errdefs.IsNotFound(err) {
		img, err = byDigest(ctx, c, name)
	}
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("image %s is not in containerd's store: pull it with `sandbox-runner images pull %s`, or import it with `sandbox-runner images import FILE`: %w", name, name, err)
		}
		return nil, fmt.Errorf("looking up image %s: %w", name, err)
	}
	unpacked, err := img.IsUnpacked(ctx, snapshotter)
	if err != nil {
		return nil, fmt.Errorf("checking whether %s is unpacked: %w", name, err)
	}
	if !unpacked {
		if err := img.Unpack(ctx, snapshotter); err != nil {
			return nil, fmt.Errorf("unpacking %s into %s: %w", name, snapshotter, err)
		}
	}
	return img, nil
}

// byDigest finds an image pinned by digest ("repo@sha256:...") that is
// in the store under a tag of the same repository (imported, or pulled
// by tag), and records it under the pinned name too, so the pin works
// without a registry. Anything else is not found.
func byDigest(ctx context.Context, c *client.Client, name string) (client.Image, error) {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, errdefs.ErrNotFound)
	}
	canonical, ok := named.(reference.Canonical)
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, errdefs.ErrNotFound)
	}
	recs, err := c.ImageService().List(ctx, fmt.Sprintf("target.digest==%s", canonical.Digest()))
	if err != nil {
		return nil, fmt.Errorf("looking up image %s: %w", name, err)
	}
	for _, rec := range recs {
		other, err := reference.ParseNormalizedNamed(rec.Name)
		if err != nil || other.Name() != named.Name() {
			continue
		}
		rec.Name = name
		rec.CreatedAt, rec.UpdatedAt = time.Time{}, time.Time{}
		if _, err := c.ImageService().Create(ctx, rec); err != nil && !errdefs.IsAlreadyExists(err) {
			return nil, fmt.Errorf("recording %s: %w", name, err)
		}
		return c.GetImage(ctx, name)
	}
	return nil, fmt.Errorf("%s: %w", name, errdefs.ErrNotFound)
}

// Import reads an image archive (OCI layout or `docker save`) from r into
// containerd's store, unpacks the host platform's image into snapshotter
// and returns the names of the imported images. Input that is not such
// an archive is an invalid-argument error; an image with nothing for
// the host's platform is refused (ErrPlatformMismatch) and its record
// removed.
func Import(ctx context.Context, c *client.Client, r io.Reader, snapshotter string) ([]string, error) {
	host := platforms.Default()
	imgs, err := c.Import(ctx, r, client.WithImportPlatform(host))
	if errors.Is(err, ctrdimages.ErrEmptyWalk) {
		// What the archive is for is gone with the stream; what it is
		// not for is known.
		return nil, fmt.Errorf("importing image archive: the archive holds no image for this host's %s: %w: %w",
			platforms.Format(platforms.DefaultSpec()), ErrPlatformMismatch, errdefs.ErrNotFound)
	}
	if err != nil {
		if ctx.Err() != nil || errdefs.IsUnavailable(err) || errdefs.IsCanceled(err) {
			return nil, fmt.Errorf("importing image archive: %w", err)
		}
		return nil, fmt.Errorf("importing image archive: not a complete OCI image layout or `docker save` archive: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if len(imgs) == 0 {
		return nil, fmt.Errorf("importing image archive: it names no image (an OCI layout needs the %s or %s annotation): %w",
			"io.containerd.image.name", ocispec.AnnotationRefName, errdefs.ErrInvalidArgument)
	}
	var names []string
	for _, i := range imgs {
		have, err := ctrdimages.Platforms(ctx, c.ContentStore(), i.Target)
		if err == nil && len(have) > 0 && !slices.ContainsFunc(have, host.Match) {
			_ = c.ImageService().Delete(ctx, i.Name)
			return names, fmt.Errorf("importing image archive: %w", platformError(i.Name, have))
		}
		img := client.NewImageWithPlatform(c, i, host)
		if err := img.Unpack(ctx, snapshotter); err != nil {
			return names, fmt.Errorf("unpacking %s into %s: %w", i.Name, snapshotter, err)
		}
		names = append(names, i.Name)
	}
	return names, nil
}

// Info describes one image in the store.
type Info struct {
	Name     string   `json:"name"`
	Runtimes []string `json:"runtimes"`
	Unpacked bool     `json:"unpacked"`
	Size     int64    `json:"size"`
}

// List returns the images in the namespace on ctx, with the runtimes of
// catalog each serves and whether it is unpacked into snapshotter.
func List(ctx context.Context, c *client.Client, snapshotter string, catalog Catalog) ([]Info, error) {
	imgs, err := c.ListImages(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	var out []Info
	for _, img := range imgs {
		i := Info{Name: img.Name()}
		for _, name := range catalog.Names() {
			if ref, err := Normalize(catalog[name].Image); err == nil && ref == img.Name() {
				i.Runtimes = append(i.Runtimes, name)
			}
		}
		i.Unpacked, _ = img.IsUnpacked(ctx, snapshotter)
		i.Size, _ = img.Size(ctx)
		out = append(out, i)
	}
	return out, nil
}

// Remove deletes the image ref from the store; containerd's garbage
// collector then frees its content and snapshots.
func Remove(ctx context.Context, c *client.Client, ref string) (string, error) {
	name, err := Normalize(ref)
	if err != nil {
		return "", err
	}
	if err := c.ImageService().Delete(ctx, name); err != nil {
		return "", fmt.Errorf("removing image %s: %w", name, err)
	}
	return name, nil
}

// Status says whether an image is in the store and ready to run.
type Status string

// Statuses of an image.
const (
	StatusPresent  Status = "yes"
	StatusPacked   Status = "not unpacked"
	StatusAbsent   Status = "no"
	StatusNotValid Status = "invalid reference"
)

// StatusOf tells whether ref is in the store (in the namespace on ctx)
// and unpacked into snapshotter, without changing anything.
func StatusOf(ctx context.Context, c *client.Client, ref, snapshotter string) (Status, error) {
	name, err := Normalize(ref)
	if err != nil {
		return StatusNotValid, nil
	}
	img, err := c.GetImage(ctx, name)
	if errdefs.IsNotFound(err) {
		return StatusAbsent, nil
	}
	if err != nil {
		return "", fmt.Errorf("looking up image %s: %w", name, err)
	}
	unpacked, err := img.IsUnpacked(ctx, snapshotter)
	if err != nil {
		return "", fmt.Errorf("checking whether %s is unpacked: %w", name, err)
	}
	if !unpacked {
		return StatusPacked, nil
	}
	return StatusPresent, nil
}
