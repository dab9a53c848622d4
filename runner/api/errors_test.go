package api

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
)

func TestKindOfAndBack(t *testing.T) {
	for _, tc := range []struct {
		err  error
		kind string
	}{
		{fmt.Errorf("%w: bad name", ErrInvalidTask), KindInvalidInput},
		{fmt.Errorf("x: %w", errdefs.ErrInvalidArgument), KindInvalidInput},
		{fmt.Errorf("%w: busybox", ErrImageNotFound), KindImageNotFound},
		{fmt.Errorf("no image for this platform: %w", errdefs.ErrNotFound), KindImageNotFound},
		{fmt.Errorf("%w: no seccomp", ErrSandboxUnavailable), KindSandboxUnavailable},
		{fmt.Errorf("dialing containerd: %w", errdefs.ErrUnavailable), KindUnavailable},
		{fmt.Errorf("nats: %w", errdefs.ErrPermissionDenied), KindUnauthorized},
		{fmt.Errorf("registry: %w", errdefs.ErrUnauthenticated), KindUnauthorized},
		{fmt.Errorf("stopping: %w", context.Canceled), KindCancelled},
		{errors.New("disk full"), KindRunnerFailed},
	} {
		kind := KindOf(tc.err)
		assert.Equal(t, tc.kind, kind, "%v", tc.err)
		if kind == KindRunnerFailed {
			assert.Empty(t, Sentinel(kind))
			continue
		}
		// What a remote answer of this kind matches, the local error
		// matches too.
		sentinels := Sentinel(kind)
		assert.NotEmpty(t, sentinels, kind)
		matched := false
		for _, s := range sentinels {
			matched = matched || errors.Is(tc.err, s)
		}
		assert.True(t, matched, "%v is of kind %s but matches none of %v", tc.err, kind, sentinels)
	}
	assert.Empty(t, KindOf(nil))
}
