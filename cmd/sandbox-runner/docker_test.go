package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Nothing may reach Docker's namespaces: every command refuses them
// before it connects to anything (the address below does not exist, so a
// command that tried would fail differently, with exit status 125).
func TestDockersNamespacesRefused(t *testing.T) {
	nowhere := filepath.Join(t.TempDir(), "none.sock")
	for _, ns := range []string{"moby", "plugins.moby", "k8s.io"} {
		for _, args := range [][]string{
			{"gc", "--all"},
			{"images", "ls"},
			{"images", "rm", "busybox"},
			{"images", "import", "--from-docker", "busybox"},
			{"exec", "--runtime", "sh", "-c", "true"},
			{"runtimes"},
			{"check"},
		} {
			args := append(args, "--namespace", ns, "--address", nowhere)
			code, stdout, stderr := runCLI(t, nil, args...)
			assert.Equal(t, exitUsage, code, "%v\n%s", args, stderr)
			assert.Empty(t, stdout, "%v", args)
			assert.Contains(t, stderr, "belongs to", "%v", args)
		}
	}
	t.Setenv("SANDBOX_RUNNER_NAMESPACE", "moby")
	code, _, stderr := runCLI(t, nil, "gc", "--address", nowhere)
	assert.Equal(t, exitUsage, code, stderr)
	assert.Contains(t, stderr, `namespace "moby" belongs to Docker`)
}

func TestImagesImportFromDockerUsage(t *testing.T) {
	nowhere := filepath.Join(t.TempDir(), "none.sock")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"images", "import"}, "--from-docker REF"},
		{[]string{"images", "import", "--from-docker", "busybox", "file.tar"}, "not both"},
		{[]string{"images", "import", "a.tar", "b.tar"}, "one FILE"},
	} {
		code, _, stderr := runCLI(t, nil, append(tc.args, "--address", nowhere)...)
		assert.Equal(t, exitUsage, code, "%v: %s", tc.args, stderr)
		assert.Contains(t, stderr, tc.want, "%v", tc.args)
	}
	code, stdout, _ := runCLI(t, nil, "images", "import", "--help")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stdout, "--from-docker")
}
