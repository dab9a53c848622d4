package fleet_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner/fleet"
	"github.com/sandbox-runner/sandbox-runner/runner/fleet/fleettest"
)

// TestClusterNodeStops: with every stream on three servers, a worker
// goes on when the server it is connected to stops, mid-task.
func TestClusterNodeStops(t *testing.T) {
	nodes := fleettest.StartCluster(t, 3)
	urls := fleettest.URLs(nodes)
	exec := newFakeExec()
	startWorker(t, urls, exec, fleet.WithRuntimes("sh"), fleet.WithReplicas(3), fleet.WithID("w"))
	c := newClient(t, urls)
	ctx := context.Background()
	ws, err := c.Workers(ctx)
	require.NoError(t, err)
	require.Len(t, ws, 1)
	var connected *fleettest.Server
	for _, n := range nodes {
		if n.URL == ws[0].Server {
			connected = n
		}
	}
	require.NotNil(t, connected)
	require.NoError(t, c.Submit(ctx, shTask("across", "sleep 2s")))
	require.Eventually(t, func() bool { return exec.running.Load() == 1 }, 10*time.Second, 10*time.Millisecond)
	connected.Stop()
	stopped := time.Now()
	a := wait(t, c, "across", 30*time.Second)
	t.Logf("answered %s after the stop, the task had 2s to go", time.Since(stopped).Round(time.Millisecond))
	assert.NoError(t, a.Err())
	assert.Equal(t, 1, a.Deliveries)
	for i := range 5 {
		require.NoError(t, c.Submit(ctx, shTask(fmt.Sprintf("after-%d", i), "echo x")))
	}
	for i := range 5 {
		assert.NoError(t, wait(t, c, fmt.Sprintf("after-%d", i), 30*time.Second).Err())
	}
}
