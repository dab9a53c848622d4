package runner

import (
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/stretchr/testify/assert"
)

func TestLeaseStaleByOwnerNotByAge(t *testing.T) {
	now := time.Now()
	pid, start := processIdentity()
	alive := map[string]string{LabelOwnerPID: pid, LabelOwnerStart: start}
	// No process has this pid, so its owner is gone.
	gone := map[string]string{LabelOwnerPID: "2147483646", LabelOwnerStart: "1"}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		age    time.Duration
		all    bool
		stale  bool
	}{
		{"a live runner's hour-long pull", alive, time.Hour, false, false},
		{"a dead runner's lease, just made", gone, time.Second, false, true},
		{"a lease with no owner, young", nil, time.Minute, false, false},
		{"a lease with no owner, old", nil, staleLease, false, true},
		{"with all, even a live runner's", alive, time.Second, true, true},
	} {
		l := leases.Lease{ID: "l", CreatedAt: now.Add(-tc.age), Labels: tc.labels}
		assert.Equal(t, tc.stale, leaseStale(l, tc.all, now), tc.name)
	}
}
