package runner

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"

	"github.com/sandbox-runner/sandbox-runner/images"
)

// image returns the unpacked image ref and its environment, from a cache
// after the first time. Following policy, it pulls the image with the
// runner's puller when it is missing (or every time), and says on the
// not-found error how to get it otherwise.
func (r *Runner) image(ctx context.Context, ref string, policy images.PullPolicy) (*imageInfo, error) {
	policy, err := images.ParsePullPolicy(string(policy))
	if err != nil {
		return nil, &invalidError{msg: err.Error()}
	}
	if policy == images.PullAlways && r.opts.pull == nil {
		return nil, invalid("pull policy %q: this runner cannot pull images", policy)
	}
	if policy != images.PullAlways {
		r.mu.Lock()
		info, ok := r.images[ref]
		r.mu.Unlock()
		if ok {
			return info, nil
		}
	}
	var img client.Image
	if policy != images.PullAlways {
		img, err = images.Ensure(ctx, r.client, ref, r.opts.snapshotter)
	}
	if r.opts.pull != nil && (policy == images.PullAlways || (policy == images.PullMissing && errdefs.IsNotFound(err))) {
		if perr := r.pullOwned(ctx, ref); perr != nil {
			if errdefs.IsNotFound(perr) {
				return nil, fmt.Errorf("%w: %w", ErrImageNotFound, perr)
			}
			return nil, perr
		}
		img, err = images.Ensure(ctx, r.client, ref, r.opts.snapshotter)
	}
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("%w: %w", ErrImageNotFound, err)
		}
		return nil, err
	}
	spec, err := img.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading config of %s: %w", ref, err)
	}
	// Only the environment is taken from the image: its user, volumes,
	// ports and entrypoint never loosen the sandbox.
	info := &imageInfo{img: img, env: spec.Config.Env}
	r.mu.Lock()
	r.images[ref] = info
	r.mu.Unlock()
	return info, nil
}

// pullOwned pulls ref under a lease this process owns: a pull can take
// long, and no other runner's sweep may take its content away meanwhile.
func (r *Runner) pullOwned(ctx context.Context, ref string) error {
	ctx, done, err := OwnedLease(ctx, r.client)
	if err != nil {
		return err
	}
	defer done()
	return r.opts.pull(ctx, ref)
}

func (r *Runner) forgetImage(ref string) {
	r.mu.Lock()
	delete(r.images, ref)
	r.mu.Unlock()
}
