package images

import (
	"context"
	"fmt"
	"io"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
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
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("image %s is not in containerd's store: import it with `sandbox-runner images import FILE`: %w", name, err)
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

// Import reads an image archive (OCI layout or `docker save`) from r into
// containerd's store, unpacks the host platform's image into snapshotter
// and returns the names of the imported images.
func Import(ctx context.Context, c *client.Client, r io.Reader, snapshotter string) ([]string, error) {
	imgs, err := c.Import(ctx, r, client.WithImportPlatform(platforms.Default()))
	if err != nil {
		return nil, fmt.Errorf("importing image archive: %w", err)
	}
	var names []string
	for _, i := range imgs {
		img := client.NewImageWithPlatform(c, i, platforms.Default())
		if err := img.Unpack(ctx, snapshotter); err != nil {
			return names, fmt.Errorf("unpacking %s into %s: %w", i.Name, snapshotter, err)
		}
		names = append(names, i.Name)
	}
	return names, nil
}

// Info describes one image in the store.
type Info struct {
	Name     string
	Runtimes []string
	Unpacked bool
	Size     int64
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
