package images

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPlanBuildAll(t *testing.T) {
	plan, err := PlanBuild(DefaultCatalog(), nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"bash", "c", "cpp", "java", "node", "python", "sh"}, plan.Runtimes, ".NET is not in Debian")
	assert.Equal(t, []string{"default-jdk-headless", "g++", "gcc", "libc6-dev", "nodejs", "python3"}, plan.Packages)
}

func TestPlanBuildSome(t *testing.T) {
	plan, err := PlanBuild(DefaultCatalog(), []string{"c++", "python", "cpp"})
	require.NoError(t, err)
	assert.Equal(t, []string{"cpp", "python"}, plan.Runtimes, "aliases resolved, duplicates dropped")
	assert.Equal(t, []string{"g++", "libc6-dev", "python3"}, plan.Packages)

	plan, err = PlanBuild(DefaultCatalog(), []string{"sh"})
	require.NoError(t, err)
	assert.Empty(t, plan.Packages, "sh is in minbase")
}

func TestPlanBuildRefuses(t *testing.T) {
	_, err := PlanBuild(DefaultCatalog(), []string{"cobol"})
	assert.True(t, errdefs.IsInvalidArgument(err), err)
	assert.ErrorContains(t, err, `unknown runtime "cobol"`)

	_, err = PlanBuild(DefaultCatalog(), []string{"python", "csharp"})
	assert.ErrorIs(t, err, ErrNotBuildable)
	assert.True(t, errdefs.IsInvalidArgument(err), err)
	assert.ErrorContains(t, err, "images import FILE")
	assert.ErrorContains(t, err, "mcr.microsoft.com/dotnet/sdk:8.0")
}

func TestLocalRef(t *testing.T) {
	assert.Equal(t, "sandbox-runner.local/python:bookworm", LocalRef(DefaultCatalog()["python"], "bookworm"))
	for name, rt := range DefaultCatalog() {
		if rt.Local == "" {
			continue
		}
		_, err := Normalize(LocalRef(rt, "trixie"))
		assert.NoError(t, err, name)
	}
}

func TestHostSuite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "os-release")
	require.NoError(t, os.WriteFile(p, []byte("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n"), 0o644))
	got, err := HostSuite(p)
	require.NoError(t, err)
	assert.Equal(t, "bookworm", got)

	require.NoError(t, os.WriteFile(p, []byte("ID=something\n"), 0o644))
	_, err = HostSuite(p)
	assert.True(t, errdefs.IsFailedPrecondition(err), err)
	assert.ErrorContains(t, err, "--suite")

	_, err = HostSuite(filepath.Join(dir, "absent"))
	assert.True(t, errdefs.IsFailedPrecondition(err), err)
}

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"root-123/usr/bin", "debs"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	for _, f := range []string{"archive-456", "debian-bookworm-0123456789abcdef.tar", "debs/x.deb"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644))
	}
	require.NoError(t, removeStale(dir))
	left, err := filepath.Glob(filepath.Join(dir, "*"))
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{filepath.Join(dir, "debs"), filepath.Join(dir, "debian-bookworm-0123456789abcdef.tar")}, left)
}
