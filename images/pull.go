package images

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	ctrdimages "github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	dockerconfig "github.com/containerd/containerd/v2/core/remotes/docker/config"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultHostsDir is where registry host configuration is read from:
// one directory per registry host holding a hosts.toml (mirrors, plain
// HTTP, CAs, headers), containerd's own certs.d layout.
const DefaultHostsDir = "/etc/containerd/certs.d"

// DefaultProgressInterval is how often a pull reports its progress.
const DefaultProgressInterval = 100 * time.Millisecond

// PullPolicy says when a task's image is pulled.
type PullPolicy string

// Pull policies.
const (
	// PullMissing pulls an image only when it is not in the store.
	PullMissing PullPolicy = "missing"
	// PullAlways pulls every time, so a moved tag is followed.
	PullAlways PullPolicy = "always"
	// PullNever uses the store only.
	PullNever PullPolicy = "never"
)

// ParsePullPolicy checks s; empty means PullMissing.
func ParsePullPolicy(s string) (PullPolicy, error) {
	switch p := PullPolicy(s); p {
	case "":
		return PullMissing, nil
	case PullMissing, PullAlways, PullNever:
		return p, nil
	}
	return "", fmt.Errorf("pull policy %q: give missing, always or never: %w", s, errdefs.ErrInvalidArgument)
}

// PullOptions say how Pull reaches registries and where the image goes.
// The zero value pulls for the host's platform into DefaultSnapshotter,
// with DefaultHostsDir and the user's Docker credentials.
type PullOptions struct {
	// Snapshotter the image is unpacked into. Default "overlayfs".
	Snapshotter string
	// Platform picks the image of a multi-platform index, and an image
	// for no platform it matches is refused. Default: the host's.
	Platform platforms.MatchComparer
	// HostsDir is the hosts.toml directory. Default DefaultHostsDir; a
	// directory that does not exist means no host configuration.
	HostsDir string
	// DockerConfig is the credentials file. Default DockerConfigPath(""),
	// which may be absent; a file named here must exist.
	DockerConfig string
	// Credentials, when set, are used instead of reading DockerConfig.
	Credentials *Credentials
	// Progress, when set, is called every ProgressInterval while the
	// pull runs, and once more at the end. It must not block for long.
	Progress func(Progress)
	// ProgressInterval defaults to DefaultProgressInterval.
	ProgressInterval time.Duration
}

// DefaultSnapshotter is what images are unpacked into when no
// snapshotter is named.
const DefaultSnapshotter = "overlayfs"

// Progress is the state of a pull at one moment.
type Progress struct {
	// Ref is the image being pulled, normalized.
	Ref string
	// Blobs are the index, manifests, config and layers seen so far, in
	// the order they were first seen.
	Blobs []BlobProgress
	// Elapsed is the time since the pull started.
	Elapsed time.Duration
	// Done is set on the last report, whatever the outcome.
	Done bool
	// Failed is set on the last report of a pull that did not complete
	// (an error, or the caller gave up).
	Failed bool
}

// BlobStatus is where one blob of a pull is.
type BlobStatus string

// Blob statuses.
const (
	BlobWaiting     BlobStatus = "waiting"
	BlobDownloading BlobStatus = "downloading"
	BlobDone        BlobStatus = "done"
	// BlobExists is a blob that was in the store (or a layer that was
	// unpacked) before the pull: nothing was downloaded.
	BlobExists BlobStatus = "exists"
)

// BlobProgress is one blob of a pull.
type BlobProgress struct {
	Digest digest.Digest
	// Kind is index, manifest, config, layer or blob.
	Kind   string
	Status BlobStatus
	// Offset is how many bytes are in; Size how many there are.
	Offset, Size int64
}

// Pull fetches ref from its registry into containerd's store in the
// namespace on ctx, unpacks it into the snapshotter for the platform,
// and returns it. Registry hosts come from the hosts.toml directory
// through containerd's own host configuration; logins from the Docker
// credentials file.
//
// Errors are classified: a malformed reference is invalid argument; a
// missing tag or digest, or an image for no matching platform, is not
// found (ErrPlatformMismatch for the latter); a refused login is
// unauthenticated (ErrRegistryAuth); a registry that cannot be reached
// is unavailable (ErrRegistryUnreachable).
func Pull(ctx context.Context, c *client.Client, ref string, opts PullOptions) (_ client.Image, retErr error) {
	name, err := Normalize(ref)
	if err != nil {
		return nil, err
	}
	if opts.Snapshotter == "" {
		opts.Snapshotter = DefaultSnapshotter
	}
	if opts.Platform == nil {
		opts.Platform = platforms.Default()
	}
	if opts.HostsDir == "" {
		opts.HostsDir = DefaultHostsDir
	}
	if opts.ProgressInterval <= 0 {
		opts.ProgressInterval = DefaultProgressInterval
	}
	creds := opts.Credentials
	if creds == nil {
		if creds, err = LoadCredentials(DockerConfigPath(opts.DockerConfig), opts.DockerConfig != ""); err != nil {
			return nil, err
		}
	}
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: dockerconfig.ConfigureHosts(ctx, dockerconfig.HostOptions{
			HostDir:     dockerconfig.HostDirFromRoot(opts.HostsDir),
			Credentials: creds.Lookup,
		}),
	})

	// What was there before, so a refused pull removes only its own record.
	var before digest.Digest
	if old, err := c.ImageService().Get(ctx, name); err == nil {
		before = old.Target.Digest
	}

	tr := newTracker(c.ContentStore(), name)
	if opts.Progress != nil {
		stop := tr.report(ctx, opts.Progress, opts.ProgressInterval)
		defer func() { stop(retErr == nil) }()
	}

	img, err := c.Pull(ctx, name,
		client.WithResolver(resolver),
		client.WithPlatformMatcher(opts.Platform),
		client.WithPullUnpack,
		client.WithPullSnapshotter(opts.Snapshotter),
		client.WithImageHandlerWrapper(tr.wrap),
	)
	// An image for another platform is pulled (a lone manifest) or fails
	// to unpack (an index without it) with containerd's own words;
	// either way it is refused here, plainly, and its record removed.
	if perr := checkPlatform(ctx, c, name, before, opts.Platform); perr != nil {
		return nil, perr
	}
	if err != nil {
		return nil, classifyPullError(name, err)
	}
	return img, nil
}

// Sentinel errors of pulls, each also wrapping its errdefs class.
var (
	// ErrPlatformMismatch marks an image that has no variant for the
	// platform asked for (errdefs not found).
	ErrPlatformMismatch = errors.New("no image for this platform")
	// ErrRegistryAuth marks a registry that refused the login, or wants
	// one and none was configured (errdefs unauthenticated).
	ErrRegistryAuth = errors.New("registry refused access")
	// ErrRegistryUnreachable marks a registry that could not be reached
	// at all (errdefs unavailable).
	ErrRegistryUnreachable = errors.New("registry unreachable")
)

// classifyPullError puts a pull's error into the classes callers tell
// apart, with a message that says what to do.
func classifyPullError(name string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("pulling %s: %w", name, err)
	}
	var status remoteerrors.ErrUnexpectedStatus
	if errors.As(err, &status) {
		switch status.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("pulling %s: %w (%s): check the login for this registry in the Docker config.json: %w: %w",
				name, ErrRegistryAuth, status.Status, errdefs.ErrUnauthenticated, err)
		case http.StatusNotFound:
			return fmt.Errorf("pulling %s: not found in the registry: %w", name, err)
		}
	}
	if errors.Is(err, docker.ErrInvalidAuthorization) {
		return fmt.Errorf("pulling %s: %w: check the login for this registry in the Docker config.json: %w: %w",
			name, ErrRegistryAuth, errdefs.ErrUnauthenticated, err)
	}
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("pulling %s: no such tag or digest in the registry: %w", name, err)
	}
	var netErr net.Error
	var opErr *net.OpError
	var dnsErr *net.DNSError
	if errors.As(err, &opErr) || errors.As(err, &dnsErr) || errors.As(err, &netErr) {
		return fmt.Errorf("pulling %s: %w: check the network, and the mirrors in the hosts.toml directory: %w: %w",
			name, ErrRegistryUnreachable, errdefs.ErrUnavailable, err)
	}
	return fmt.Errorf("pulling %s: %w", name, err)
}

// checkPlatform refuses the image record name when this pull made it
// point at an image with nothing for platform, and removes the record.
func checkPlatform(ctx context.Context, c *client.Client, name string, before digest.Digest, platform platforms.MatchComparer) error {
	rec, err := c.ImageService().Get(ctx, name)
	if err != nil || rec.Target.Digest == before {
		return nil
	}
	have, err := ctrdimages.Platforms(ctx, c.ContentStore(), rec.Target)
	if err != nil || len(have) == 0 {
		return nil
	}
	for _, p := range have {
		if platform.Match(p) {
			return nil
		}
	}
	if err := c.ImageService().Delete(ctx, name); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("removing %s, an image for another platform: %w", name, err)
	}
	return platformError(name, have)
}

func platformError(name string, have []ocispec.Platform) error {
	var names []string
	for _, p := range have {
		names = append(names, platforms.Format(p))
	}
	return fmt.Errorf("image %s is for %s, not for this host's %s: %w: %w",
		name, strings.Join(names, ", "), platforms.Format(platforms.DefaultSpec()), ErrPlatformMismatch, errdefs.ErrNotFound)
}

// tracker follows the blobs of one pull for progress reports.
type tracker struct {
	cs    content.Store
	ref   string
	start time.Time

	mu    sync.Mutex
	blobs []*trackedBlob
	seen  map[digest.Digest]*trackedBlob
}

type trackedBlob struct {
	BlobProgress
	key string // the content store's ingest ref
}

func newTracker(cs content.Store, ref string) *tracker {
	return &tracker{cs: cs, ref: ref, start: time.Now(), seen: map[digest.Digest]*trackedBlob{}}
}

// wrap sees every blob as the pull handles it: before (it is being
// fetched), after (it is in the store), and its children (waiting).
func (t *tracker) wrap(h ctrdimages.Handler) ctrdimages.Handler {
	return ctrdimages.HandlerFunc(func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		b := t.add(ctx, desc)
		if _, err := t.cs.Info(ctx, desc.Digest); err == nil {
			t.set(b, BlobExists, desc.Size)
		} else {
			t.set(b, BlobDownloading, 0)
		}
		children, err := h.Handle(ctx, desc)
		if err != nil {
			return children, err
		}
		t.set(b, BlobDone, desc.Size)
		for _, child := range children {
			t.add(ctx, child)
		}
		return children, nil
	})
}

func (t *tracker) add(ctx context.Context, desc ocispec.Descriptor) *trackedBlob {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b, ok := t.seen[desc.Digest]; ok {
		return b
	}
	b := &trackedBlob{
		BlobProgress: BlobProgress{Digest: desc.Digest, Kind: blobKind(desc.MediaType), Status: BlobWaiting, Size: desc.Size},
		key:          remotes.MakeRefKey(ctx, desc),
	}
	t.seen[desc.Digest] = b
	t.blobs = append(t.blobs, b)
	return b
}

func (t *tracker) set(b *trackedBlob, s BlobStatus, offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// A blob that was there stays "exists"; a finished one stays done.
	if b.Status == BlobExists || (b.Status == BlobDone && s != BlobExists) {
		return
	}
	b.Status, b.Offset = s, offset
}

func blobKind(mediaType string) string {
	switch {
	case ctrdimages.IsIndexType(mediaType):
		return "index"
	case ctrdimages.IsManifestType(mediaType):
		return "manifest"
	case ctrdimages.IsConfigType(mediaType):
		return "config"
	case ctrdimages.IsLayerType(mediaType):
		return "layer"
	}
	return "blob"
}

// report calls f every interval until stop is called, then once more
// with Done set; ok tells whether the pull succeeded.
func (t *tracker) report(ctx context.Context, f func(Progress), interval time.Duration) (stop func(ok bool)) {
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				t.poll(ctx)
				f(t.snapshot(false, false))
			}
		}
	}()
	return func(ok bool) {
		close(quit)
		<-finished
		f(t.snapshot(true, ok))
	}
}

// poll reads the byte counts of the downloads in flight.
func (t *tracker) poll(ctx context.Context) {
	statuses, err := t.cs.ListStatuses(ctx)
	if err != nil {
		return
	}
	offsets := make(map[string]int64, len(statuses))
	for _, s := range statuses {
		offsets[s.Ref] = s.Offset
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range t.blobs {
		if b.Status != BlobDownloading && b.Status != BlobWaiting {
			continue
		}
		if off, ok := offsets[b.key]; ok {
			b.Status, b.Offset = BlobDownloading, off
		}
	}
}

func (t *tracker) snapshot(done, ok bool) Progress {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := Progress{Ref: t.ref, Elapsed: time.Since(t.start), Done: done, Failed: done && !ok}
	for _, b := range t.blobs {
		bp := b.BlobProgress
		// On the last report, a layer the unpacker never had to fetch
		// was unpacked already.
		if done && ok && bp.Status == BlobWaiting {
			bp.Status = BlobExists
		}
		p.Blobs = append(p.Blobs, bp)
	}
	return p
}
