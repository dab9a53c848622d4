package images

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The mirrors here are made-up names: the tests read files, never a network.

func writeSources(t *testing.T, list string, files map[string]string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	listPath := filepath.Join(dir, "sources.list")
	if list != "" {
		require.NoError(t, os.WriteFile(listPath, []byte(list), 0o644))
	}
	d := filepath.Join(dir, "sources.list.d")
	require.NoError(t, os.Mkdir(d, 0o755))
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(d, name), []byte(content), 0o644))
	}
	return listPath, d
}

func TestAptMirrorDeb822(t *testing.T) {
	list, dir := writeSources(t, "", map[string]string{
		"debian.sources": `Types: deb
# a comment
URIs: http://mirror.example.test/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.test/debian-security
Suites: bookworm-security
Components: main
`,
		"other.sources.disabled": "Types: deb\nURIs: http://other.example.test/\nSuites: bookworm\nComponents: main\n",
	})
	got, err := AptMirror(list, dir, "bookworm")
	require.NoError(t, err)
	assert.Equal(t, "http://mirror.example.test/debian", got)
}

func TestAptMirrorOneLine(t *testing.T) {
	list, dir := writeSources(t, `# comment
deb-src http://src.example.test/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://sec.example.test/debian-security bookworm-security main
deb [ arch=amd64 ] http://mirror.example.test/debian bookworm main contrib
`, nil)
	got, err := AptMirror(list, dir, "bookworm")
	require.NoError(t, err)
	assert.Equal(t, "http://mirror.example.test/debian", got)
}

func TestAptMirrorSkipsDisabledAndFallsBack(t *testing.T) {
	list, dir := writeSources(t, "", map[string]string{
		"a.sources": "Enabled: no\nTypes: deb\nURIs: http://off.example.test/debian\nSuites: bookworm\nComponents: main\n",
		"b.list":    "deb http://mirror.example.test/debian trixie main\n",
	})
	got, err := AptMirror(list, dir, "bookworm")
	require.NoError(t, err)
	assert.Equal(t, "http://mirror.example.test/debian", got, "a Debian source of another release is a mirror for this one too")
}

func TestAptMirrorNone(t *testing.T) {
	list, dir := writeSources(t, "", map[string]string{
		"third-party.sources": "Types: deb\nURIs: http://vendor.example.test/repo\nSuites: nodistro\nComponents: contrib\n",
	})
	_, err := AptMirror(list, dir, "bookworm")
	assert.ErrorContains(t, err, "no Debian mirror")
}

func TestDebianOptionsKey(t *testing.T) {
	a := DebianOptions{Ref: "x.test/a:1", Suite: "bookworm", Packages: []string{"python3", "nodejs"}}
	b := DebianOptions{Ref: "x.test/a:1", Suite: "bookworm", Packages: []string{"nodejs", "python3"}, Mirror: "http://elsewhere.test/"}
	c := DebianOptions{Ref: "x.test/a:1", Suite: "bookworm", Packages: []string{"nodejs"}}
	assert.Equal(t, a.key(), b.key(), "package order and the mirror do not change the image")
	assert.NotEqual(t, a.key(), c.key())
}

func TestTrimDebianRoot(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"dev", "usr/share/doc/pkg", "var/cache/apt/archives/partial", "usr/bin", "tmp"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	for _, f := range []string{"usr/share/doc/pkg/copyright", "var/cache/apt/archives/x.deb", "usr/bin/python3", "dev/null-ish"} {
		require.NoError(t, os.WriteFile(filepath.Join(root, f), []byte("x"), 0o644))
	}
	if err := syscall.Mkfifo(filepath.Join(root, "usr/bin/fifo"), 0o644); err != nil {
		t.Skipf("cannot make a fifo here: %v", err)
	}
	require.NoError(t, trimDebianRoot(root))
	assert.FileExists(t, filepath.Join(root, "usr/bin/python3"))
	assert.DirExists(t, filepath.Join(root, "var/cache/apt/archives/partial"))
	for _, gone := range []string{"usr/share/doc/pkg", "var/cache/apt/archives/x.deb", "dev/null-ish", "usr/bin/fifo"} {
		assert.NoFileExists(t, filepath.Join(root, gone))
		assert.NoDirExists(t, filepath.Join(root, gone))
	}
	// The trimmed root packs into an image.
	require.NoError(t, WriteArchive(new(discard), root, ArchiveOptions{Ref: "sandbox-runner.test/trim:1"}))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
