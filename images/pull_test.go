package images

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
)

func TestClassifyPullError(t *testing.T) {
	const ref = "registry.example.test/x:1"
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	for _, tc := range []struct {
		name   string
		err    error
		is     []error
		class  func(error) bool
		phrase string
	}{
		{"401", fmt.Errorf("resolving: %w", remoteerrors.ErrUnexpectedStatus{Status: "401 Unauthorized", StatusCode: http.StatusUnauthorized}),
			[]error{ErrRegistryAuth}, errdefs.IsUnauthorized, "401 Unauthorized"},
		{"403", remoteerrors.ErrUnexpectedStatus{Status: "403 Forbidden", StatusCode: http.StatusForbidden},
			[]error{ErrRegistryAuth}, errdefs.IsUnauthorized, "Docker config.json"},
		{"bad authorization", fmt.Errorf("pull access denied: %w", docker.ErrInvalidAuthorization),
			[]error{ErrRegistryAuth}, errdefs.IsUnauthorized, "login"},
		{"missing tag", fmt.Errorf("%s: %w", ref, errdefs.ErrNotFound),
			nil, errdefs.IsNotFound, "no such tag or digest"},
		{"refused", fmt.Errorf("failed to do request: %w", refused),
			[]error{ErrRegistryUnreachable}, errdefs.IsUnavailable, "hosts.toml"},
		{"dns", &net.DNSError{Err: "no such host", Name: "registry.example.test"},
			[]error{ErrRegistryUnreachable}, errdefs.IsUnavailable, "unreachable"},
		{"cancelled", context.Canceled, []error{context.Canceled}, func(error) bool { return true }, ref},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := classifyPullError(ref, tc.err)
			assert.Contains(t, err.Error(), ref)
			assert.Contains(t, err.Error(), tc.phrase)
			assert.True(t, tc.class(err), "%v", err)
			for _, target := range tc.is {
				assert.ErrorIs(t, err, target)
			}
			var status remoteerrors.ErrUnexpectedStatus
			if !errors.As(tc.err, &status) { // not comparable, so not for errors.Is
				assert.ErrorIs(t, err, tc.err, "the cause stays in the chain")
			} else {
				assert.ErrorAs(t, err, &status, "the cause stays in the chain")
			}
		})
	}
}

func TestPlatformError(t *testing.T) {
	err := platformError("x.test/a:1", []ocispec.Platform{{OS: "linux", Architecture: "arm64"}, {OS: "linux", Architecture: "s390x"}})
	assert.ErrorIs(t, err, ErrPlatformMismatch)
	assert.True(t, errdefs.IsNotFound(err))
	assert.Contains(t, err.Error(), "linux/arm64, linux/s390x")
	assert.Contains(t, err.Error(), "x.test/a:1")
}

func TestBlobKind(t *testing.T) {
	for mt, want := range map[string]string{
		ocispec.MediaTypeImageIndex:                                 "index",
		"application/vnd.docker.distribution.manifest.list.v2+json": "index",
		ocispec.MediaTypeImageManifest:                              "manifest",
		ocispec.MediaTypeImageConfig:                                "config",
		ocispec.MediaTypeImageLayerGzip:                             "layer",
		"application/vnd.docker.image.rootfs.diff.tar.gzip":         "layer",
		"application/vnd.example.test+json":                         "blob",
	} {
		assert.Equal(t, want, blobKind(mt), mt)
	}
}

func TestTrackerSnapshot(t *testing.T) {
	tr := newTracker(nil, "x.test/a:1")
	ctx := context.Background()
	m := tr.add(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: "sha256:aa", Size: 10})
	l := tr.add(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: "sha256:bb", Size: 100})
	tr.add(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: "sha256:cc", Size: 5})
	assert.Same(t, m, tr.add(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: "sha256:aa", Size: 10}), "a blob is tracked once")
	tr.set(m, BlobDone, 10)
	tr.set(l, BlobDownloading, 40)

	p := tr.snapshot(false, false)
	assert.Equal(t, "x.test/a:1", p.Ref)
	assert.False(t, p.Done)
	if assert.Len(t, p.Blobs, 3) {
		assert.Equal(t, BlobProgress{Digest: "sha256:aa", Kind: "manifest", Status: BlobDone, Offset: 10, Size: 10}, p.Blobs[0])
		assert.Equal(t, BlobProgress{Digest: "sha256:bb", Kind: "layer", Status: BlobDownloading, Offset: 40, Size: 100}, p.Blobs[1])
		assert.Equal(t, BlobWaiting, p.Blobs[2].Status)
	}
	// A done blob does not go back to downloading.
	tr.set(m, BlobDownloading, 0)
	assert.Equal(t, BlobDone, tr.snapshot(false, false).Blobs[0].Status)

	// At the end of a good pull, a layer never fetched was there already.
	assert.Equal(t, BlobExists, tr.snapshot(true, true).Blobs[2].Status)
	assert.Equal(t, BlobWaiting, tr.snapshot(true, false).Blobs[2].Status)
	assert.True(t, tr.snapshot(true, false).Failed, "a pull that did not complete says so on its last report")
	assert.False(t, tr.snapshot(true, true).Failed)
}
