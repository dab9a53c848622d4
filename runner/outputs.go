package runner

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sandbox-runner/sandbox-runner/oci"
	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

// MaxOutputPatterns bounds Task.Outputs.
const MaxOutputPatterns = 32

// maxOutputScan bounds the directory entries one task's output patterns
// may make the runner look at, so that a task that fills /tmp with
// millions of empty files costs the runner no more than this.
const maxOutputScan = 1 << 16

// OutputFile is a file a task left under /tmp that matched one of its
// output patterns (api.OutputFile).
type OutputFile = api.OutputFile

// CheckOutputPattern checks one output pattern: an absolute path below
// /tmp, whose parts are names or path.Match patterns (*, ?, [a-z]; no
// "**"), without "." or ".." parts.
func CheckOutputPattern(p string) error {
	prefix := oci.ScratchDir + "/"
	switch {
	case p == "":
		return invalid("an output pattern is empty: give a path under %s, such as %s/out/*.png", oci.ScratchDir, oci.ScratchDir)
	case strings.ContainsRune(p, 0):
		return invalid("output pattern %q holds a NUL byte", p)
	case len(p) > maxPathLen:
		return invalid("output pattern %q is longer than %d bytes", p[:32]+"...", maxPathLen)
	case !strings.HasPrefix(p, prefix) || strings.TrimLeft(p[len(prefix):], "/") == "":
		return invalid("output pattern %q is not under %s: the task's files are returned from %s only; give a path such as %s/out/*.png", p, oci.ScratchDir, oci.ScratchDir, oci.ScratchDir)
	}
	for _, part := range outputParts(p) {
		switch {
		case part == "." || part == "..":
			return invalid("output pattern %q holds a %q part: give a plain path under %s", p, part, oci.ScratchDir)
		case strings.Contains(part, "**"):
			return invalid("output pattern %q holds **, which matches one name only here: give a pattern per directory", p)
		case len(part) > maxNameLen:
			return invalid("output pattern %q has a part longer than %d bytes", p, maxNameLen)
		}
		if _, err := path.Match(part, ""); err != nil {
			return invalid("output pattern %q: %q is not a valid pattern (%v)", p, part, err)
		}
	}
	return nil
}

// checkOutputs checks a task's output patterns.
func checkOutputs(patterns []string) error {
	if len(patterns) > MaxOutputPatterns {
		return invalid("%d output patterns given: at most %d are allowed", len(patterns), MaxOutputPatterns)
	}
	for _, p := range patterns {
		if err := CheckOutputPattern(p); err != nil {
			return err
		}
	}
	return nil
}

// outputParts splits a checked pattern into its parts below /tmp.
func outputParts(p string) []string {
	var parts []string
	for part := range strings.SplitSeq(strings.TrimPrefix(p, oci.ScratchDir+"/"), "/") {
		if part != "" {
			parts = append(parts, part)
		}
	}
	return parts
}

// collectOutputs returns the regular files below scratch, the task's
// /tmp seen from the host, that match patterns, in name order, within
// limits' caps on their number and bytes together, and whether any file
// was left out for the caps. It must run once no process of the task is
// left. It follows no symbolic link (a link is no file it returns, and
// no directory it enters) and opens nothing but regular files, without
// blocking: a FIFO or a link to the host's files are skipped.
func collectOutputs(scratch string, patterns []string, l Limits) ([]OutputFile, bool, error) {
	root, err := os.OpenRoot(scratch)
	if err != nil {
		return nil, false, fmt.Errorf("opening the task's /tmp: %w", err)
	}
	defer root.Close()
	m := &matcher{root: root, found: map[string]bool{}}
	for _, p := range patterns {
		if err := m.walk(".", outputParts(p)); err != nil {
			return nil, false, err
		}
	}
	names := make([]string, 0, len(m.found))
	for n := range m.found {
		names = append(names, n)
	}
	slices.Sort(names)
	files, left := []OutputFile{}, l.OutputFilesSize
	truncated := m.scanned > maxOutputScan
	for _, name := range names {
		if len(files) == l.OutputFiles {
			truncated = true
			break
		}
		f, ok, err := readOutput(root, name, left)
		if err != nil {
			return nil, false, err
		}
		if !ok {
			continue
		}
		left -= int64(len(f.Content))
		truncated = truncated || f.Truncated
		files = append(files, f)
	}
	return files, truncated, nil
}

// matcher walks the task's /tmp for the names that match a pattern.
type matcher struct {
	root    *os.Root
	found   map[string]bool
	scanned int
}

// walk matches parts below dir, a real directory below the root.
func (m *matcher) walk(dir string, parts []string) error {
	if len(parts) == 0 {
		return nil
	}
	last := len(parts) == 1
	if !hasMeta(parts[0]) {
		name := path.Join(dir, parts[0])
		m.scanned++
		return m.visit(name, last, parts[1:])
	}
	f, err := m.root.Open(dir)
	if err != nil {
		return nil // gone, or no directory: nothing matches
	}
	defer f.Close()
	for m.scanned <= maxOutputScan {
		entries, err := f.ReadDir(1024)
		for _, e := range entries {
			m.scanned++
			if m.scanned > maxOutputScan {
				break
			}
			if ok, _ := path.Match(parts[0], e.Name()); !ok {
				continue
			}
			if err := m.visit(path.Join(dir, e.Name()), last, parts[1:]); err != nil {
				return err
			}
		}
		if err != nil {
			break // io.EOF, or a directory that cannot be read
		}
	}
	return nil
}

// visit takes name as a file when it is the pattern's last part, else
// walks into it when it is a directory; links and other files are
// neither.
func (m *matcher) visit(name string, last bool, rest []string) error {
	st, err := m.root.Lstat(name)
	if err != nil {
		return nil
	}
	switch {
	case last && st.Mode().IsRegular():
		m.found[name] = true
	case !last && st.IsDir():
		return m.walk(name, rest)
	}
	return nil
}

// hasMeta tells whether part is a pattern rather than a plain name.
func hasMeta(part string) bool { return strings.ContainsAny(part, `*?[\`) }

// readOutput reads at most limit bytes of the regular file name below
// root. ok is false for what is no regular file (any more).
func readOutput(root *os.Root, name string, limit int64) (OutputFile, bool, error) {
	// O_NOFOLLOW: the last part may not be a link; os.Root keeps the rest
	// below the root. O_NONBLOCK: a FIFO put in a file's place cannot
	// block the open.
	f, err := root.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return OutputFile{}, false, nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return OutputFile{}, false, nil
	}
	content, err := io.ReadAll(io.LimitReader(f, max(limit, 0)))
	if err != nil {
		return OutputFile{}, false, fmt.Errorf("reading output file %s: %w", name, err)
	}
	return OutputFile{Name: name, Content: content, Size: st.Size(), Truncated: st.Size() > int64(len(content))}, true, nil
}

// CheckOutputName checks the name of a returned file, which may come
// from a service or a worker: a relative path that stays below the
// directory it is written to.
func CheckOutputName(name string) error {
	switch {
	case name == "" || strings.ContainsRune(name, 0) || strings.ContainsRune(name, '\\'):
		return invalid("output file name %q is empty or holds a NUL byte or a backslash", name)
	case !filepath.IsLocal(name) || path.Clean(name) != name:
		return invalid("output file name %q is not a plain relative path: it could leave the directory", name)
	}
	return nil
}

// CopyOut writes files below dir, which it creates (mode 0755) when it
// does not exist yet. A file's directories are made as needed (0755);
// files are written 0644. It never writes outside dir: a name that is not
// a plain relative path is refused, and so is a path through a symbolic
// link. It never overwrites: a file that exists already is refused. It
// writes every file it can, and returns the paths written and an error
// for each file refused.
func CopyOut(dir string, files []OutputFile) ([]string, error) {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("copying files out: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("copying files out: %w", err)
	}
	defer root.Close()
	var written []string
	var errs []error
	for _, f := range files {
		if err := copyOne(root, f); err != nil {
			errs = append(errs, fmt.Errorf("copying %s out to %s: %w", f.Name, dir, err))
			continue
		}
		written = append(written, filepath.Join(dir, f.Name))
	}
	return written, errors.Join(errs...)
}

func copyOne(root *os.Root, f OutputFile) error {
	if err := CheckOutputName(f.Name); err != nil {
		return err
	}
	// Every directory on the way is made here or must be a real one: a
	// link, even one that stays in dir, is refused.
	parts := strings.Split(f.Name, "/")
	for i := 1; i < len(parts); i++ {
		d := strings.Join(parts[:i], "/")
		st, err := root.Lstat(d)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := root.Mkdir(d, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case !st.IsDir():
			return fmt.Errorf("%s is not a directory (a link or a file): refusing to write through it", d)
		}
	}
	w, err := root.OpenFile(f.Name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists: files are never overwritten, give an empty directory", f.Name)
		}
		return err
	}
	_, werr := w.Write(f.Content)
	return errors.Join(werr, w.Close())
}
