package runner

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFindShimFront(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	init := filepath.Join(dir, InitName)

	_, err := findShimFront(init)
	assert.ErrorContains(t, err, "no "+ShimName+" beside the init")

	front := filepath.Join(dir, ShimName)
	require.NoError(t, os.WriteFile(front, []byte("#!/bin/sh\n"), 0o755))
	path, err := findShimFront(init)
	if os.Geteuid() == 0 {
		require.NoError(t, err)
		assert.Equal(t, front, path)
	} else {
		assert.ErrorContains(t, err, "someone other than root may change it", "containerd runs it as root: only root may own it")
	}

	require.NoError(t, os.Chmod(front, 0o775))
	_, err = findShimFront(init)
	assert.ErrorContains(t, err, "someone other than root may change it", "a group-writable front is refused")
	require.NoError(t, os.Chmod(front, 0o755))

	require.NoError(t, os.Chmod(dir, 0o777))
	_, err = findShimFront(init)
	assert.ErrorContains(t, err, "someone other than root may change it", "a front in a world-writable directory is refused")
}

func TestShimForUsesTheFrontForTheRuncShimOnly(t *testing.T) {
	r := &Runner{shimFront: "/opt/sr/" + ShimName}
	assert.Equal(t, "/opt/sr/"+ShimName, r.shimFor(OCIRuntime{Name: OCIRuntimeCrun}))
	assert.Equal(t, "/opt/sr/"+ShimName, r.shimFor(OCIRuntime{Name: OCIRuntimeRunc}))
	assert.Equal(t, RunscShim, r.shimFor(OCIRuntime{Name: OCIRuntimeRunsc}))
	assert.Equal(t, DefaultShim, (&Runner{}).shimFor(OCIRuntime{Name: OCIRuntimeCrun}), "without a front: containerd's runc shim")
}

// A grouped sandbox's spec names its group's socket as the runc shim
// computes it, and the containerd address that went into it.
func TestGroupAnnotations(t *testing.T) {
	r := &Runner{opts: options{namespace: "ns"}, ctrdAddress: "/run/containerd/containerd.sock", plainShim: true}
	r.plainShimOnce.Do(func() {})
	a := r.groupAnnotations("g1")
	assert.Equal(t, "g1", a[shimGroupAnnotation])
	assert.Equal(t, "/run/containerd/containerd.sock", a[annotationShimAddress])
	// sha256("/run/containerd/containerd.sock/ns/g1")
	assert.Equal(t, "unix:///run/containerd/s/32e0f1a370959a510baafe7a45941d1c2b307edd909acc65a8122aa6e4817096", a[annotationShimSocket])

	a = (&Runner{}).groupAnnotations("g1")
	assert.Equal(t, map[string]string{shimGroupAnnotation: "g1"}, a, "no address known: the group alone")

	r2 := &Runner{opts: options{namespace: "ns"}, ctrdAddress: "/run/containerd/containerd.sock"}
	r2.plainShimOnce.Do(func() {})
	assert.Equal(t, map[string]string{shimGroupAnnotation: "g1"}, r2.groupAnnotations("g1"),
		"containerd 2.x's runc shim answers a start with a bootstrap message: the group alone")
}

func TestContainerdMajor(t *testing.T) {
	assert.Equal(t, "1", containerdMajor("1.6.20~ds1"))
	assert.Equal(t, "2", containerdMajor("v2.4.2"))
	assert.Equal(t, "1", containerdMajor("v1.7.0"))
}
