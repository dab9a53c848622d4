//go:build linux

package integration

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// expectContainerdEnv names the containerd version the suite must run
// against; `make integration-ctrd2` sets it, so that a run meant for a
// 2.x daemon cannot pass on the system's 1.6 by mistake.
const expectContainerdEnv = "SANDBOX_RUNNER_EXPECT_CONTAINERD"

func TestDaemonVersion(t *testing.T) {
	h := RequiresRoot(t)
	v, err := h.Client.Version(t.Context())
	require.NoError(t, err)
	t.Logf("containerd %s (revision %s)", v.Version, v.Revision)
	if want := os.Getenv(expectContainerdEnv); want != "" {
		assert.Equal(t, strings.TrimPrefix(want, "v"), strings.TrimPrefix(v.Version, "v"),
			"%s asks for containerd %s", expectContainerdEnv, want)
	}
}
