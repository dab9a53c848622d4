package images

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
)

// Where apt keeps its sources; AptMirror reads them.
const (
	AptSourcesList = "/etc/apt/sources.list"
	AptSourcesDir  = "/etc/apt/sources.list.d"
)

// DefaultCacheDir is where built images and the packages they were built
// from are kept between builds.
const DefaultCacheDir = "/var/cache/sandbox-runner"

// debianBuilderVersion is part of the cache key: bump it when the way
// the root is built or trimmed changes, so old archives are not reused.
const debianBuilderVersion = "1"

// DebianOptions describe an image built with debootstrap.
type DebianOptions struct {
	// Ref names the image, as in Options.
	Ref string
	// Suite is the Debian release, e.g. "bookworm". Required.
	Suite string
	// Variant is debootstrap's --variant; default "minbase".
	Variant string
	// Packages are installed on top of the variant's.
	Packages []string
	// Mirror is the Debian archive to install from. Default: the one the
	// machine's apt sources use for Suite (AptMirror).
	Mirror string
	// Env goes into the image config.
	Env []string
	// CacheDir keeps built archives between runs, keyed by everything
	// above but the mirror, and the packages they were built from (in
	// its debs/ directory), so that another set of packages downloads
	// only what is new; empty means no cache.
	CacheDir string
	// Log receives debootstrap's output; nil discards it.
	Log io.Writer
}

// key names the cached archive of these options.
func (o DebianOptions) key() string {
	pkgs := slices.Clone(o.Packages)
	slices.Sort(pkgs)
	h := sha256.New()
	fmt.Fprintf(h, "v%s\n%s\n%s\n%s\n%s\n%s\n", debianBuilderVersion, o.Ref, o.Suite, o.Variant,
		strings.Join(pkgs, ","), strings.Join(o.Env, "\x00"))
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// BuildDebianArchive returns the path of an OCI archive of a Debian root
// built by debootstrap with opts, and whether it came from the cache.
// Without a CacheDir the archive is written to a temporary directory the
// caller removes. debootstrap needs root and the mirror's network; no
// debootstrap is an errdefs.ErrFailedPrecondition, a missing suite an
// errdefs.ErrInvalidArgument. Nothing is left in the cache but a
// complete archive.
func BuildDebianArchive(ctx context.Context, opts DebianOptions) (path string, cached bool, retErr error) {
	if opts.Suite == "" {
		return "", false, fmt.Errorf("debian image: no suite given: %w", errdefs.ErrInvalidArgument)
	}
	if opts.Variant == "" {
		opts.Variant = "minbase"
	}
	dir := opts.CacheDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "sandbox-runner-debian-"); err != nil {
			return "", false, err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, fmt.Errorf("creating the cache dir: %w", err)
	}
	path = filepath.Join(dir, "debian-"+opts.Suite+"-"+opts.key()+".tar")

	// One builder at a time per cache dir; the others then find the result.
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", false, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", false, fmt.Errorf("locking %s: %w", dir, err)
	}
	if _, err := os.Stat(path); err == nil {
		return path, true, nil
	}
	// What a builder that was killed left (the lock says none is running).
	if err := removeStale(dir); err != nil {
		return "", false, err
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", false, fmt.Errorf("debootstrap is not installed (Debian: apt-get install debootstrap): %w: %w", err, errdefs.ErrFailedPrecondition)
	}

	if opts.Mirror == "" {
		if opts.Mirror, err = AptMirror(AptSourcesList, AptSourcesDir, opts.Suite); err != nil {
			return "", false, err
		}
	}
	root, err := os.MkdirTemp(dir, "root-")
	if err != nil {
		return "", false, err
	}
	// debootstrap mounts /proc and /sys in the root, and leaves them
	// mounted when it is killed.
	defer removeRoot(root)
	args := []string{"--variant=" + opts.Variant}
	if opts.CacheDir != "" {
		debs := filepath.Join(dir, "debs")
		if err := os.MkdirAll(debs, 0o755); err != nil {
			return "", false, err
		}
		args = append(args, "--cache-dir="+debs)
	}
	if len(opts.Packages) > 0 {
		args = append(args, "--include="+strings.Join(opts.Packages, ","))
	}
	args = append(args, opts.Suite, root, opts.Mirror)
	cmd := exec.CommandContext(ctx, "debootstrap", args...)
	var out tailBuffer
	var w io.Writer = &out
	if opts.Log != nil {
		w = io.MultiWriter(&out, opts.Log)
	}
	// One writer for both, so exec copies them in one goroutine.
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		return "", false, fmt.Errorf("debootstrap %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	if err := trimDebianRoot(root); err != nil {
		return "", false, fmt.Errorf("trimming the debootstrap root: %w", err)
	}

	tmp, err := os.CreateTemp(dir, "archive-")
	if err != nil {
		return "", false, err
	}
	defer os.Remove(tmp.Name())
	if opts.Log != nil {
		fmt.Fprintf(opts.Log, "I: writing the image\n")
	}
	if err := WriteArchive(tmp, root, ArchiveOptions{Ref: opts.Ref, Env: opts.Env, Cmd: []string{"/bin/sh"}}); err != nil {
		tmp.Close()
		return "", false, err
	}
	if err := tmp.Close(); err != nil {
		return "", false, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", false, err
	}
	return path, false, nil
}

// removeStale removes the roots and archives builders that were killed
// left in the cache dir dir.
func removeStale(dir string) error {
	for _, pattern := range []string{"root-*", "archive-*"} {
		matches, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return err
		}
		for _, m := range matches {
			if err := removeRoot(m); err != nil {
				return fmt.Errorf("removing what a killed build left: %w", err)
			}
		}
	}
	return nil
}

// removeRoot unmounts whatever is mounted under root, deepest first,
// then removes it: removing through a mounted /proc or /sys would fail
// half-way, or worse.
func removeRoot(root string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == root || strings.HasPrefix(f[4], root+"/")) {
			mounts = append(mounts, f[4])
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		if err := unmountDetached(m); err != nil && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("unmounting %s: %w", m, err)
		}
	}
	return os.RemoveAll(root)
}

// trimDebianRoot removes what a task never needs and an image cannot
// hold: device nodes (the runtime makes /dev), downloaded packages, apt
// lists, documentation and translations.
func trimDebianRoot(root string) error {
	for _, pattern := range []string{
		"dev/*", "var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*",
		"usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*",
		"var/log/*", "run/*", "tmp/*",
	} {
		matches, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			return err
		}
		for _, m := range matches {
			if filepath.Base(m) == "partial" || filepath.Base(m) == "lock" {
				continue
			}
			if err := os.RemoveAll(m); err != nil {
				return err
			}
		}
	}
	// Anything else that is not a file, directory or symlink (a socket
	// or FIFO left by a maintainer script) cannot go into the layer.
	return filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		m := fi.Mode()
		if m.IsRegular() || m.IsDir() || m&os.ModeSymlink != 0 {
			return nil
		}
		return os.Remove(p)
	})
}

// AptMirror returns the Debian archive URI the machine's apt sources use
// for suite: from sourcesList (one-line "deb [opts] URI SUITE COMP..."
// entries) and the *.list and *.sources (deb822) files in sourcesDir.
// A source that lists suite wins; else the first "deb" source with the
// main component whose suites are Debian ones (a "-security" or
// "-updates" suite is no mirror for the release itself).
func AptMirror(sourcesList, sourcesDir, suite string) (string, error) {
	var sources []aptSource
	if s, err := readOneLineSources(sourcesList); err == nil {
		sources = append(sources, s...)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	lists, _ := filepath.Glob(filepath.Join(sourcesDir, "*.list"))
	for _, l := range lists {
		s, err := readOneLineSources(l)
		if err != nil {
			return "", err
		}
		sources = append(sources, s...)
	}
	deb822, _ := filepath.Glob(filepath.Join(sourcesDir, "*.sources"))
	for _, f := range deb822 {
		s, err := readDeb822Sources(f)
		if err != nil {
			return "", err
		}
		sources = append(sources, s...)
	}
	var fallback string
	for _, s := range sources {
		if !s.deb || !slices.Contains(s.components, "main") {
			continue
		}
		if slices.Contains(s.suites, suite) {
			return s.uris[0], nil
		}
		if fallback == "" && !slices.ContainsFunc(s.suites, func(x string) bool { return strings.Contains(x, "-") }) {
			fallback = s.uris[0]
		}
	}
	if fallback != "" {
		return fallback, nil
	}
	return "", fmt.Errorf("no Debian mirror with the main component in %s or %s: configure apt, or give the mirror explicitly: %w",
		sourcesList, sourcesDir, errdefs.ErrFailedPrecondition)
}

type aptSource struct {
	deb        bool
	uris       []string
	suites     []string
	components []string
}

func readOneLineSources(path string) ([]aptSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []aptSource
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) < 3 || (fields[0] != "deb" && fields[0] != "deb-src") {
			continue
		}
		kind, rest := fields[0], fields[1:]
		if strings.HasPrefix(rest[0], "[") {
			// Options: "[arch=amd64 signed-by=...]", possibly over several fields.
			for len(rest) > 0 && !strings.HasSuffix(rest[0], "]") {
				rest = rest[1:]
			}
			if len(rest) > 0 {
				rest = rest[1:]
			}
		}
		if len(rest) < 2 {
			continue
		}
		out = append(out, aptSource{deb: kind == "deb", uris: rest[:1], suites: rest[1:2], components: rest[2:]})
	}
	return out, sc.Err()
}

func readDeb822Sources(path string) ([]aptSource, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []aptSource
	for _, stanza := range strings.Split(string(b), "\n\n") {
		fields := map[string]string{}
		var last string
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
				continue
			}
			if (line[0] == ' ' || line[0] == '\t') && last != "" {
				fields[last] += " " + strings.TrimSpace(line)
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
		if strings.EqualFold(fields["enabled"], "no") || fields["uris"] == "" {
			continue
		}
		s := aptSource{
			deb:        slices.Contains(strings.Fields(fields["types"]), "deb"),
			uris:       strings.Fields(fields["uris"]),
			suites:     strings.Fields(fields["suites"]),
			components: strings.Fields(fields["components"]),
		}
		out = append(out, s)
	}
	return out, nil
}

// tailBuffer keeps the last 8 KiB written to it, for error messages.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if over := len(t.b) - 8<<10; over > 0 {
		t.b = t.b[over:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }
