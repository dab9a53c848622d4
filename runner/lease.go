package runner

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
)

// leaseExpiry is how long an owned lease lives if nothing removes it,
// as long as the containerd client gives its own.
const leaseExpiry = 24 * time.Hour

// OwnedLease returns ctx carrying a new lease, in ctx's namespace,
// labelled with this process as its owner, and a function that removes
// it. What the containerd client makes under that ctx (a pull's content,
// an import, an unpack, a container's snapshot) is held by this lease
// instead of one the client would make without labels. Sweep, in any
// process, removes an owned lease only once its owner is gone: a pull
// that takes an hour is not undercut by another runner starting.
func OwnedLease(ctx context.Context, c *client.Client) (context.Context, func(), error) {
	pid, start := processIdentity()
	l, err := c.LeasesService().Create(ctx, leases.WithRandomID(), leases.WithExpiration(leaseExpiry),
		leases.WithLabels(map[string]string{LabelOwnerPID: pid, LabelOwnerStart: start}))
	if err != nil {
		return ctx, func() {}, fmt.Errorf("taking a lease: %w", err)
	}
	done := func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		_ = retryUnavailable(dctx, func(ctx context.Context) error {
			return ignoreNotFound(c.LeasesService().Delete(ctx, l))
		})
	}
	return leases.WithLease(ctx, l.ID), done, nil
}

// leaseStale tells whether Sweep removes l: one a runner owns once that
// runner is gone, whatever its age; one without an owner (made by the
// client for a runner of an older version, or by another tool in our
// namespace) once it is older than staleLease; every one with all.
func leaseStale(l leases.Lease, all bool, now time.Time) bool {
	if all {
		return true
	}
	if pid, ok := l.Labels[LabelOwnerPID]; ok {
		return !ownerAlive(pid, l.Labels[LabelOwnerStart])
	}
	return now.Sub(l.CreatedAt) >= staleLease
}
