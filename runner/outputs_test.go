package runner

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestCheckOutputPatternAccepts(t *testing.T) {
	for _, p := range []string{"/tmp/a.txt", "/tmp/out/*.png", "/tmp/*/result-?.json", "/tmp/[a-c]*", "/tmp//x", "/tmp/dir/"} {
		assert.NoError(t, CheckOutputPattern(p), p)
	}
}

func TestCheckOutputPatternRejects(t *testing.T) {
	for _, p := range []string{
		"", "relative/*.txt", "tmp/a", "/etc/passwd", "/tmpfoo/a", "/tmp", "/tmp/", "/",
		"/tmp/../etc/passwd", "/tmp/a/../../etc", "/tmp/./a", "/tmp/**/*.png", "/tmp/[a-", "/tmp/a\x00b",
		"/tmp/" + strings.Repeat("a", 256), "/tmp/" + strings.Repeat("a/", 600),
	} {
		err := CheckOutputPattern(p)
		requireInvalid(t, err)
	}
	requireInvalid(t, checkOutputs(make([]string, MaxOutputPatterns+1)))
	assert.NoError(t, checkOutputs([]string{"/tmp/a", "/tmp/b"}))
}

func TestValidateChecksOutputs(t *testing.T) {
	task := validTask()
	task.Outputs = []string{"/tmp/ok/*", "/etc/shadow"}
	err := Validate(task, nil)
	requireInvalid(t, err)
}

// scratchFixture is a task's /tmp as the host sees it, with what a task
// could leave there to trick the runner.
func scratchFixture(t *testing.T) (scratch, outside string) {
	t.Helper()
	base := t.TempDir()
	scratch, outside = filepath.Join(base, "scratch"), filepath.Join(base, "secret")
	for _, d := range []string{"out/sub", "elsewhere"} {
		require.NoError(t, os.MkdirAll(filepath.Join(scratch, d), 0o755))
	}
	require.NoError(t, os.WriteFile(outside, []byte("host secret"), 0o600))
	for name, content := range map[string]string{
		"out/a.txt": "hello\n", "out/b.bin": "\x00\x01\x02\xff", "out/sub/c.txt": "deep\n", "elsewhere/d.txt": "hidden\n", "top.txt": "top\n",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(scratch, name), []byte(content), 0o644))
	}
	require.NoError(t, os.Symlink(outside, filepath.Join(scratch, "out/secret.txt")))
	require.NoError(t, os.Symlink("../elsewhere", filepath.Join(scratch, "out/link")))
	require.NoError(t, os.Symlink(filepath.Dir(outside), filepath.Join(scratch, "hostdir")))
	require.NoError(t, unix.Mkfifo(filepath.Join(scratch, "out/fifo.txt"), 0o644))
	return scratch, outside
}

func names(files []OutputFile) []string {
	var n []string
	for _, f := range files {
		n = append(n, f.Name)
	}
	return n
}

func TestCollectOutputsFollowsNoLinkAndOpensNoFIFO(t *testing.T) {
	scratch, _ := scratchFixture(t)
	files, truncated, err := collectOutputs(scratch, []string{
		"/tmp/out/*", "/tmp/out/*/*.txt", "/tmp/out/secret.txt", "/tmp/out/fifo.txt", "/tmp/hostdir/*", "/tmp/top.txt", "/tmp/out/a.txt",
	}, Limits{}.Filled())
	require.NoError(t, err)
	assert.False(t, truncated)
	assert.Equal(t, []string{"out/a.txt", "out/b.bin", "out/sub/c.txt", "top.txt"}, names(files),
		"regular files once each, in name order; no link, FIFO or directory")
	assert.Equal(t, OutputFile{Name: "out/b.bin", Content: []byte{0, 1, 2, 0xff}, Size: 4}, files[1])
}

func TestCollectOutputsCaps(t *testing.T) {
	scratch, _ := scratchFixture(t)
	l := Limits{OutputFiles: 3, OutputFilesSize: 8}.Filled()
	files, truncated, err := collectOutputs(scratch, []string{"/tmp/out/*", "/tmp/out/sub/*", "/tmp/top.txt"}, l)
	require.NoError(t, err)
	assert.True(t, truncated)
	assert.Equal(t, []OutputFile{
		{Name: "out/a.txt", Content: []byte("hello\n"), Size: 6},
		{Name: "out/b.bin", Content: []byte{0, 1}, Size: 4, Truncated: true},
		{Name: "out/sub/c.txt", Content: []byte{}, Size: 5, Truncated: true},
	}, files, "three files, eight bytes in all")

	files, truncated, err = collectOutputs(scratch, []string{"/tmp/nothing/*"}, Limits{}.Filled())
	require.NoError(t, err)
	assert.False(t, truncated)
	assert.NotNil(t, files)
	assert.Empty(t, files)
}

func TestOutputFileJSON(t *testing.T) {
	for _, f := range []OutputFile{
		{Name: "a.txt", Content: []byte("héllo\n"), Size: 7},
		{Name: "b.bin", Content: []byte{0, 0xff}, Size: 9, Truncated: true},
	} {
		b, err := json.Marshal(f)
		require.NoError(t, err)
		var raw map[string]any
		require.NoError(t, json.Unmarshal(b, &raw))
		assert.ElementsMatch(t, []string{"name", "content", "encoding", "truncated", "size"}, keys(raw))
		var back OutputFile
		require.NoError(t, json.Unmarshal(b, &back))
		assert.Equal(t, f, back)
	}
	b, _ := json.Marshal(OutputFile{Content: []byte{0xff}})
	assert.Contains(t, string(b), `"encoding":"base64"`)
	var f OutputFile
	assert.Error(t, json.Unmarshal([]byte(`{"name": "x", "content": "!", "encoding": "base64"}`), &f))
	assert.Error(t, json.Unmarshal([]byte(`{"name": "x", "content": "", "encoding": "rot13"}`), &f))
}

func keys(m map[string]any) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	return k
}

func TestCopyOutWritesBelowDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "made")
	written, err := CopyOut(dir, []OutputFile{{Name: "a.txt", Content: []byte("a")}, {Name: "sub/deeper/b.bin", Content: []byte{0}}})
	require.NoError(t, err)
	assert.Equal(t, []string{filepath.Join(dir, "a.txt"), filepath.Join(dir, "sub/deeper/b.bin")}, written)
	b, err := os.ReadFile(filepath.Join(dir, "sub/deeper/b.bin"))
	require.NoError(t, err)
	assert.Equal(t, []byte{0}, b)
}

func TestCopyOutNeverLeavesDirNorOverwrites(t *testing.T) {
	base := t.TempDir()
	dir, outside := filepath.Join(base, "dir"), filepath.Join(base, "outside")
	require.NoError(t, os.Mkdir(dir, 0o755))
	require.NoError(t, os.Mkdir(outside, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kept.txt"), []byte("mine"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "link")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "target.txt"), filepath.Join(dir, "dangling.txt")))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "inside"), 0o755))
	require.NoError(t, os.Symlink("inside", filepath.Join(dir, "innerlink")))

	written, err := CopyOut(dir, []OutputFile{
		{Name: "../escape.txt"}, {Name: "/abs.txt"}, {Name: "a/../../x"}, {Name: "a//b"}, {Name: ""}, {Name: "x\\y"},
		{Name: "kept.txt", Content: []byte("theirs")},
		{Name: "link/evil.txt"}, {Name: "dangling.txt"}, {Name: "innerlink/x.txt"},
		{Name: "fine.txt", Content: []byte("ok")},
	})
	require.Error(t, err)
	assert.Equal(t, []string{filepath.Join(dir, "fine.txt")}, written, "only the plain new file")
	b, _ := os.ReadFile(filepath.Join(dir, "kept.txt"))
	assert.Equal(t, "mine", string(b), "never overwritten")
	entries, _ := os.ReadDir(outside)
	assert.Empty(t, entries, "nothing written through a link")
	_, statErr := os.Stat(filepath.Join(base, "escape.txt"))
	assert.ErrorIs(t, statErr, os.ErrNotExist)
	entries, _ = os.ReadDir(filepath.Join(dir, "inside"))
	assert.Empty(t, entries, "not even through a link that stays in dir")
	for _, want := range []string{"escape.txt", "kept.txt exists", "link is not a directory", "dangling.txt", "innerlink"} {
		assert.Contains(t, err.Error(), want)
	}
}
