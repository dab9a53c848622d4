package runner

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCleanNameAccepts(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"main.py", "main.py"},
		{"lib/util.py", "lib/util.py"},
		{"./a", "a"},
		{"a//b/./c", "a/b/c"},
		{"a/../b", "b"},
		{"dir/", "dir"},
		{strings.Repeat("x", maxNameLen), strings.Repeat("x", maxNameLen)},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := cleanName(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestCleanNameRejects(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"parent", "../x"},
		{"climbs out midway", "a/../../x"},
		{"absolute", "/etc/passwd"},
		{"NUL", "a\x00b"},
		{"backslash", "a\\b"},
		{"dot", "."},
		{"dot after clean", "a/.."},
		{"long part", "lib/" + strings.Repeat("x", maxNameLen+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cleanName(tc.in)
			requireInvalid(t, err)
		})
	}
}

func TestCheckFilesAccepts(t *testing.T) {
	require.NoError(t, checkFiles([]File{
		{Name: "main.py", Content: []byte("import lib.util")},
		{Name: "lib/util.py", Content: []byte("x = 1")},
	}))
}

func TestCheckFilesRejects(t *testing.T) {
	many := make([]File, DefaultMaxFiles+1)
	for i := range many {
		many[i].Name = filepath.Join("f", strings.Repeat("a", i+1))
	}
	for _, tc := range []struct {
		name  string
		files []File
	}{
		{"none", nil},
		{"bad name", []File{{Name: "main.py"}, {Name: "../x"}}},
		{"duplicate", []File{{Name: "a"}, {Name: "a"}}},
		{"duplicate after clean", []File{{Name: "a"}, {Name: "./a"}}},
		{"too many files", many},
		{"too many bytes", []File{
			{Name: "a", Content: make([]byte, DefaultMaxFileSize/2)},
			{Name: "b", Content: make([]byte, DefaultMaxFileSize/2+1)},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireInvalid(t, checkFiles(tc.files))
		})
	}
}

func TestCheckFilesAtLimits(t *testing.T) {
	files := make([]File, DefaultMaxFiles)
	for i := range files {
		files[i].Name = filepath.Join("f", strings.Repeat("a", i+1))
	}
	files[0].Content = make([]byte, DefaultMaxFileSize)
	require.NoError(t, checkFiles(files))
}

// withUmask sets the process umask for the test. Tests that use it must
// not run in parallel: the umask is process-wide.
func withUmask(t *testing.T, mask int) {
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

func TestWriteCodeModesIgnoreUmask(t *testing.T) {
	withUmask(t, 0o077)
	dir := t.TempDir()
	require.NoError(t, writeCode(dir, []File{
		{Name: "main.py", Content: []byte("print(1)")},
		{Name: "bin/run", Content: []byte("#!/bin/sh\n"), Executable: true},
		{Name: "a/b/c/util.py", Content: []byte("x = 1")},
		{Name: "a/b/other.py", Content: []byte("y = 1")},
	}, uint32(os.Getuid())))

	// Readable by the task's identity alone.
	for name, want := range map[string]fs.FileMode{
		"main.py":       0o400,
		"bin/run":       0o500,
		"a/b/c/util.py": 0o400,
		"a/b/other.py":  0o400,
		"bin":           fs.ModeDir | 0o500,
		"a":             fs.ModeDir | 0o500,
		"a/b":           fs.ModeDir | 0o500,
		"a/b/c":         fs.ModeDir | 0o500,
	} {
		st, err := os.Lstat(filepath.Join(dir, name))
		require.NoError(t, err, name)
		assert.Equal(t, want, st.Mode(), name)
		assert.Equal(t, uint32(os.Getuid()), st.Sys().(*syscall.Stat_t).Uid, name)
	}
	b, err := os.ReadFile(filepath.Join(dir, "a/b/c/util.py"))
	require.NoError(t, err)
	assert.Equal(t, "x = 1", string(b))
}

func TestWriteCodeRefusesSymlinkOut(t *testing.T) {
	outside := t.TempDir()
	require.NoError(t, os.Chmod(outside, 0o700))
	dir := t.TempDir()
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "lib")))

	err := writeCode(dir, []File{{Name: "lib/x", Content: []byte("escaped")}}, uint32(os.Getuid()))
	require.Error(t, err)

	entries, err := os.ReadDir(outside)
	require.NoError(t, err)
	assert.Empty(t, entries, "stage wrote outside its dir")
	st, err := os.Stat(outside)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o700), st.Mode().Perm(), "stage changed the mode of a dir outside")
}

func TestWriteCodeRefusesSymlinkedFile(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "target")
	require.NoError(t, os.WriteFile(outside, []byte("keep"), 0o600))
	dir := t.TempDir()
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "main.py")))

	require.Error(t, writeCode(dir, []File{{Name: "main.py", Content: []byte("overwritten")}}, uint32(os.Getuid())))
	b, err := os.ReadFile(outside)
	require.NoError(t, err)
	assert.Equal(t, "keep", string(b))
}

func TestWriteCodeRefusesExistingFile(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.py"), []byte("old"), 0o644))

	err := writeCode(dir, []File{{Name: "main.py", Content: []byte("new")}}, uint32(os.Getuid()))
	require.ErrorIs(t, err, fs.ErrExist)
	b, err := os.ReadFile(filepath.Join(dir, "main.py"))
	require.NoError(t, err)
	assert.Equal(t, "old", string(b))
}

func TestWriteCodeRejectsBadName(t *testing.T) {
	dir := t.TempDir()
	requireInvalid(t, writeCode(dir, []File{{Name: "../x"}}, uint32(os.Getuid())))
	_, err := os.Stat(filepath.Join(filepath.Dir(dir), "x"))
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

func FuzzCleanName(f *testing.F) {
	for _, s := range []string{
		"main.py", "lib/util.py", "", "../x", "a/../../x", "/etc/passwd",
		"a\x00b", "a\\b", "./a", ".", "a/..", "a//b/", "...", "..a", "a/./b",
	} {
		f.Add(s)
	}
	const dir = "/code"
	f.Fuzz(func(t *testing.T, name string) {
		clean, err := cleanName(name)
		if err != nil {
			return
		}
		if !filepath.IsLocal(clean) {
			t.Fatalf("cleanName(%q) = %q, not local", name, clean)
		}
		if clean == "." {
			t.Fatalf("cleanName(%q) = %q, names the dir itself", name, clean)
		}
		if strings.ContainsRune(clean, 0) {
			t.Fatalf("cleanName(%q) = %q holds a NUL", name, clean)
		}
		joined := filepath.Join(dir, clean)
		if !strings.HasPrefix(joined, dir+"/") {
			t.Fatalf("cleanName(%q) = %q, which joins to %q outside %s", name, clean, joined, dir)
		}
		// Clean is stable: cleaning again changes nothing.
		again, err := cleanName(clean)
		if err != nil || again != clean {
			t.Fatalf("cleanName(%q) = %q, %v; want %q", clean, again, err, clean)
		}
	})
}

func TestCheckFilesRejectsFileThatIsAlsoADirectory(t *testing.T) {
	err := checkFiles([]File{{Name: "a"}, {Name: "a/b"}})
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrInvalidTask))
	assert.Contains(t, err.Error(), "both a file and the directory")
	err = checkFiles([]File{{Name: "x/y/z"}, {Name: "x/y"}})
	require.Error(t, err)
}

func TestCleanNameRejectsOverlongPath(t *testing.T) {
	long := strings.Repeat("d/", 600) + "f"
	_, err := cleanName(long)
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrInvalidTask))
}
