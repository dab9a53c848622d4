//go:build linux

package runner

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckSaysWhetherRunscIsUsable(t *testing.T) {
	findings := func(bins map[string]string) map[string]Finding {
		o, err := newOCIRuntimes(fakeHost(bins, hybrid("")), "", nil)
		require.NoError(t, err)
		out := map[string]Finding{}
		for _, f := range checkOCIRuntimes(o) {
			out[f.Name] = f
		}
		return out
	}

	// Debian's runsc package alone: not usable, why, and the fix.
	f := findings(map[string]string{"crun": versionCrun, "runc": versionRunc, "runsc": versionRunsc})["runsc"]
	assert.False(t, f.OK)
	assert.True(t, f.Optional, "gVisor is never the default, so its absence fails nothing")
	assert.Contains(t, f.Detail, "not usable: gVisor's containerd shim containerd-shim-runsc-v1 is not on PATH")
	assert.Contains(t, f.Detail, "runsc version release-20221219.0", "the version found")
	assert.Contains(t, f.Fix, "make gvisor")

	// No runsc at all.
	f = findings(map[string]string{"crun": versionCrun, "runc": versionRunc})["runsc"]
	assert.False(t, f.OK)
	assert.Equal(t, "not usable: runsc is not on PATH", f.Detail)
	assert.Contains(t, f.Fix, "make gvisor")

	// runsc and its shim: usable, its version and shim, not the default.
	f = findings(allBins)["runsc"]
	assert.True(t, f.OK, f.Detail)
	assert.True(t, f.Optional)
	assert.Equal(t, "usable: /usr/bin/runsc: runsc version release-20221219.0, runtime-spec 1.1.0-rc.1, through /usr/bin/containerd-shim-runsc-v1 (older than containerd's 1.3.0, so specs declare ociVersion 1.1.0-rc.1)", f.Detail)
	assert.NotContains(t, f.Detail, "the default")
}
