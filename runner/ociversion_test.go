package runner

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The --version output of a binary is run once and then read from the
// cache, by every OCIRuntimes that uses it, until the binary changes.
func TestCacheVersionsRunsEachBinaryOnce(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "crun")
	require.NoError(t, os.WriteFile(bin, []byte("v1"), 0o755))
	runs := 0
	p := fakeHost(allBins, hybrid(""))
	p.lookPath = func(name string) (string, error) { return bin, nil }
	p.version = func(string) ([]byte, error) {
		runs++
		return []byte(versionCrun), nil
	}
	cache := filepath.Join(t.TempDir(), "cache")
	cached := p
	WithVersionCache(cache)(&cached)
	find := func() OCIRuntime {
		o, err := newOCIRuntimes(cached, "", nil)
		require.NoError(t, err)
		return o.Find(OCIRuntimeCrun)
	}

	rt := find()
	assert.True(t, rt.Usable, rt.Reason)
	assert.Equal(t, "crun version 1.8.1", rt.Version)
	assert.Equal(t, 1, runs)
	assert.Equal(t, rt, find(), "the same, from the cache")
	assert.Equal(t, 1, runs)

	// An upgrade: the binary is rewritten.
	require.NoError(t, os.WriteFile(bin, []byte("v2, longer"), 0o755))
	later := time.Now().Add(time.Minute)
	require.NoError(t, os.Chtimes(bin, later, later))
	find()
	assert.Equal(t, 2, runs, "a changed binary is run again")

	// A cache dir that cannot be written only costs the run.
	unwritable := p
	WithVersionCache("/proc/no-such-dir")(&unwritable)
	o, err := newOCIRuntimes(unwritable, "", nil)
	require.NoError(t, err)
	assert.True(t, o.Find(OCIRuntimeCrun).Usable)
	assert.Equal(t, 3, runs)
}
