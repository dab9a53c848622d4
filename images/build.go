package images

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	ctrdimages "github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
)

// LocalRegistry is the host part of the names of images built on this
// machine. It is not a registry anyone can reach: nothing is ever pulled
// from it.
const LocalRegistry = "sandbox-runner.local"

// OSRelease is where the host's Debian release is read from.
const OSRelease = "/etc/os-release"

// localEnv is the environment of a built image.
var localEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}

// LocalRef returns the name `images build` gives rt's image built from
// Debian suite: its Local repository tagged with the suite, e.g.
// "sandbox-runner.local/python:bookworm".
func LocalRef(rt Runtime, suite string) string {
	return rt.Local + ":" + suite
}

// HostSuite returns the Debian release the host runs, from the
// VERSION_CODENAME of os-release (a file in /etc/os-release's format).
func HostSuite(osRelease string) (string, error) {
	f, err := os.Open(osRelease)
	if err != nil {
		return "", fmt.Errorf("reading the host's release: %w: %w", err, errdefs.ErrFailedPrecondition)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VERSION_CODENAME="); ok {
			if v = strings.Trim(v, `"'`); v != "" {
				return v, nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading %s: %w", osRelease, err)
	}
	return "", fmt.Errorf("%s names no VERSION_CODENAME: give the Debian suite to build from (e.g. --suite bookworm): %w",
		osRelease, errdefs.ErrFailedPrecondition)
}

// ErrNotBuildable is the error of a runtime `images build` cannot build.
var ErrNotBuildable = errors.New("runtime cannot be built from Debian packages")

// BuildPlan is what BuildRuntimes builds: the runtimes, resolved and
// sorted, and the union of their Debian packages.
type BuildPlan struct {
	Runtimes []string
	Packages []string
}

// PlanBuild checks the runtimes to build against cat and returns the
// plan; no names means every runtime of cat that can be built. An
// unknown runtime is an invalid-argument error listing the known ones;
// a runtime with no Local image (.NET is not in Debian) is
// ErrNotBuildable, with how else to get its image.
func PlanBuild(cat Catalog, names []string) (BuildPlan, error) {
	var plan BuildPlan
	if len(names) == 0 {
		for _, n := range cat.Names() {
			if cat[n].Local != "" {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			return plan, fmt.Errorf("no runtime of the catalog can be built from Debian packages: %w", errdefs.ErrInvalidArgument)
		}
	}
	for _, n := range names {
		rt, err := cat.Lookup(n)
		if err != nil {
			return plan, err
		}
		if rt.Local == "" {
			return plan, fmt.Errorf("%s: %w: get %s with `sandbox-runner images pull %s` where a registry is reachable, "+
				"or `sandbox-runner images import FILE` of an archive saved elsewhere (`docker save`, or `images import --from-docker REF`): %w",
				rt.Name, ErrNotBuildable, rt.Image, rt.Image, errdefs.ErrInvalidArgument)
		}
		if !slices.Contains(plan.Runtimes, rt.Name) {
			plan.Runtimes = append(plan.Runtimes, rt.Name)
		}
		for _, p := range rt.Debian {
			if !slices.Contains(plan.Packages, p) {
				plan.Packages = append(plan.Packages, p)
			}
		}
	}
	slices.Sort(plan.Runtimes)
	slices.Sort(plan.Packages)
	return plan, nil
}

// BuildOptions say where and how BuildRuntimes builds.
type BuildOptions struct {
	// Suite is the Debian release to build from. Default: the host's
	// (HostSuite of OSRelease).
	Suite string
	// Mirror is the Debian archive. Default: the one the host's apt
	// sources name for Suite (AptMirror).
	Mirror string
	// CacheDir keeps built images and downloaded packages; empty means
	// DefaultCacheDir.
	CacheDir string
	// Snapshotter the image is unpacked into. Default DefaultSnapshotter.
	Snapshotter string
	// Log receives debootstrap's output; nil discards it.
	Log io.Writer
}

// Built is one image BuildRuntimes made.
type Built struct {
	// Names are the image's names, one per runtime.
	Names  []string `json:"names"`
	Digest string   `json:"digest"`
	Size   int64    `json:"size"`
	// Cached says the root came from the cache rather than debootstrap.
	Cached bool `json:"cached"`
	// Archive is the cached OCI archive it was imported from.
	Archive  string        `json:"archive"`
	Duration time.Duration `json:"-"`
}

// BuildRuntimes builds one image holding every runtime of plan, from
// Debian packages with debootstrap, imports it into the namespace on ctx,
// unpacks it into the snapshotter and names it after each runtime
// (LocalRef). ctx should carry a lease that holds what is imported until
// it is named. The image is one debootstrap root for all: one build
// instead of one per runtime, and one copy on disk. A build that fails
// names nothing: the names are set only once the image is in the store
// and unpacked, and put back as they were if setting them fails.
func BuildRuntimes(ctx context.Context, c *client.Client, cat Catalog, plan BuildPlan, opts BuildOptions) (_ *Built, retErr error) {
	start := time.Now()
	if opts.Suite == "" {
		var err error
		if opts.Suite, err = HostSuite(OSRelease); err != nil {
			return nil, err
		}
	}
	if opts.CacheDir == "" {
		opts.CacheDir = DefaultCacheDir
	}
	if opts.Snapshotter == "" {
		opts.Snapshotter = DefaultSnapshotter
	}
	// The archive names the image for the build alone: the name goes
	// away in every case once the runtimes' names are set. What the
	// build imports is held by the caller's lease meanwhile, so a build
	// of the same suite next to this one may remove the name early.
	tmp := LocalRegistry + "/build:" + opts.Suite
	path, cached, err := BuildDebianArchive(ctx, DebianOptions{
		Ref:      tmp,
		Suite:    opts.Suite,
		Packages: plan.Packages,
		Mirror:   opts.Mirror,
		Env:      localEnv,
		CacheDir: opts.CacheDir,
		Log:      opts.Log,
	})
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	host := platforms.Default()
	imgs, err := c.Import(ctx, f, client.WithImportPlatform(host))
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := c.ImageService().Delete(cctx, tmp); err != nil && !errdefs.IsNotFound(err) && retErr == nil {
			retErr = fmt.Errorf("removing the build's own name %s: %w", tmp, err)
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("importing %s: %w", path, err)
	}
	if len(imgs) != 1 {
		return nil, fmt.Errorf("importing %s: want one image, got %d", path, len(imgs))
	}
	img := client.NewImageWithPlatform(c, imgs[0], host)
	if err := img.Unpack(ctx, opts.Snapshotter); err != nil {
		return nil, fmt.Errorf("unpacking into %s: %w", opts.Snapshotter, err)
	}

	var names []string
	for _, n := range plan.Runtimes {
		names = append(names, LocalRef(cat[n], opts.Suite))
	}
	if err := nameAll(context.WithoutCancel(ctx), c.ImageService(), imgs[0], names); err != nil {
		return nil, err
	}
	size, _ := img.Size(ctx)
	return &Built{Names: names, Digest: imgs[0].Target.Digest.String(), Size: size, Cached: cached,
		Archive: path, Duration: time.Since(start)}, nil
}

// nameAll points every name at target: all of them, or, when one
// fails, none (names that existed get their old target back).
func nameAll(ctx context.Context, is ctrdimages.Store, target ctrdimages.Image, names []string) (retErr error) {
	var undo []func()
	defer func() {
		if retErr != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	for _, name := range names {
		rec := ctrdimages.Image{Name: name, Target: target.Target, Labels: map[string]string{
			"sandbox-runner.built": time.Now().UTC().Format(time.RFC3339),
		}}
		old, err := is.Get(ctx, name)
		switch {
		case errdefs.IsNotFound(err):
			if _, err := is.Create(ctx, rec); err != nil {
				return fmt.Errorf("naming the image %s: %w", name, err)
			}
			undo = append(undo, func() { _ = is.Delete(ctx, name) })
		case err != nil:
			return fmt.Errorf("looking up %s: %w", name, err)
		default:
			if _, err := is.Update(ctx, rec, "target", "labels"); err != nil {
				return fmt.Errorf("naming the image %s: %w", name, err)
			}
			undo = append(undo, func() { _, _ = is.Update(ctx, old, "target", "labels") })
		}
	}
	return nil
}

// WithLocalImages returns cat with each runtime whose image is still the
// built-in catalog's, and is not in the store, pointed at the image
// `images build` made for it (LocalRef), when there is one: the one
// built from the host's suite, else the newest. A runtime whose image a
// config file set is left alone. ctx carries the namespace.
func WithLocalImages(ctx context.Context, c *client.Client, cat Catalog) (Catalog, error) {
	recs, err := c.ImageService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	have := map[string]ctrdimages.Image{}
	for _, r := range recs {
		have[r.Name] = r
	}
	suite, _ := HostSuite(OSRelease)
	builtin := DefaultCatalog()
	out := make(Catalog, len(cat))
	for name, rt := range cat {
		out[name] = rt
		if rt.Local == "" || rt.Image != builtin[name].Image {
			continue
		}
		if ref, err := Normalize(rt.Image); err != nil || have[ref].Name != "" {
			continue
		}
		var pick ctrdimages.Image
		for n, r := range have {
			tag, ok := strings.CutPrefix(n, rt.Local+":")
			if !ok {
				continue
			}
			if tag == suite || pick.Name == "" || (!strings.HasSuffix(pick.Name, ":"+suite) && r.UpdatedAt.After(pick.UpdatedAt)) {
				pick = r
			}
			if tag == suite {
				break
			}
		}
		if pick.Name != "" {
			rt.Image = pick.Name
			out[name] = rt
		}
	}
	return out, nil
}
