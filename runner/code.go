package runner

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// maxNameLen bounds one part of a file name, as most file systems do;
// maxPathLen bounds the whole name, well under PATH_MAX with the task dir
// dir in front of it.
const (
	maxNameLen = 255
	maxPathLen = 1024
)

// checkFiles rejects file lists that could not be written safely: names
// that are empty, absolute, climb out with "..", hold NUL bytes or
// backslashes, or repeat; too many files; too many bytes.
func checkFiles(files []File) error {
	if len(files) == 0 {
		return invalid("no code given: pass a file, -c CODE, or code on stdin")
	}
	if len(files) > DefaultMaxFiles {
		return invalid("%d files given: at most %d are allowed", len(files), DefaultMaxFiles)
	}
	var total int64
	seen := make(map[string]bool, len(files))
	for _, f := range files {
		name, err := cleanName(f.Name)
		if err != nil {
			return err
		}
		if seen[name] {
			return invalid("file %q given twice: give every file a distinct name", f.Name)
		}
		seen[name] = true
		total += int64(len(f.Content))
	}
	// A name that is also another's directory cannot be written.
	for name := range seen {
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if seen[dir] {
				return invalid("%q is both a file and the directory of %q: rename one of them", dir, name)
			}
		}
	}
	if total > DefaultMaxFileSize {
		return invalid("files hold %d bytes: at most %d are allowed", total, DefaultMaxFileSize)
	}
	return nil
}

// cleanName checks one relative file name and returns its clean form.
func cleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", invalid("a file has no name: name every file after the first")
	case strings.ContainsRune(name, 0):
		return "", invalid("file name %q holds a NUL byte", name)
	case strings.ContainsRune(name, '\\'):
		return "", invalid("file name %q holds a backslash: use / between directories", name)
	case path.IsAbs(name):
		return "", invalid("file name %q is absolute: give a path relative to /code", name)
	case !filepath.IsLocal(name):
		return "", invalid("file name %q leaves /code: remove the .. parts", name)
	}
	clean := path.Clean(name)
	if len(clean) > maxPathLen {
		return "", invalid("file name %q is longer than %d bytes", name[:32]+"...", maxPathLen)
	}
	if clean == "." {
		return "", invalid("file name %q names /code itself: give a file name", name)
	}
	for _, part := range strings.Split(clean, "/") {
		if len(part) > maxNameLen {
			return "", invalid("file name %q has a part longer than %d bytes", name, maxNameLen)
		}
	}
	return clean, nil
}

// writeCode writes files below dir, which must exist and be empty, owned by
// uid (and the gid of the same number) and readable by it alone: files
// 0400 (0500 when executable), directories 0500. It goes through an
// os.Root, so even a name that slipped past cleanName could not follow a
// symlink out of dir.
func writeCode(dir string, files []File, uid uint32) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("opening the code dir: %w", err)
	}
	defer root.Close()
	var dirs []string
	for _, f := range files {
		name, err := cleanName(f.Name)
		if err != nil {
			return err
		}
		if dirs, err = mkdirs(root, path.Dir(name), dirs); err != nil {
			return fmt.Errorf("writing %s: %w", f.Name, err)
		}
		mode := os.FileMode(0o400)
		if f.Executable {
			mode = 0o500
		}
		w, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return fmt.Errorf("writing %s: %w", f.Name, err)
		}
		_, werr := w.Write(f.Content)
		cerr := w.Close()
		if err := errors.Join(werr, cerr); err != nil {
			return fmt.Errorf("writing %s: %w", f.Name, err)
		}
		if err := own(root, name, mode, uid); err != nil {
			return fmt.Errorf("writing %s: %w", f.Name, err)
		}
	}
	// Directories are closed to writes only now, so that writing the files works
	// without privileges too (in tests).
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := own(root, dirs[i], 0o500, uid); err != nil {
			return fmt.Errorf("writing %s: %w", dirs[i], err)
		}
	}
	return nil
}

// own gives name to uid with mode, whatever the umask made of it.
func own(root *os.Root, name string, mode os.FileMode, uid uint32) error {
	if err := root.Lchown(name, int(uid), int(uid)); err != nil {
		return err
	}
	return root.Chmod(name, mode)
}

// mkdirs creates dir and its parents below root, mode 0700 until writeCode
// closes them, and returns made with the ones it created appended.
func mkdirs(root *os.Root, dir string, made []string) ([]string, error) {
	if dir == "." {
		return made, nil
	}
	made, err := mkdirs(root, path.Dir(dir), made)
	if err != nil {
		return made, err
	}
	if err := root.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return made, nil
		}
		return made, err
	}
	return append(made, dir), nil
}
