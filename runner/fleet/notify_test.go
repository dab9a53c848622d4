package fleet_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner/fleet"
	"github.com/sandbox-runner/sandbox-runner/runner/fleet/fleettest"
)

// notifySocket listens where systemd's NOTIFY_SOCKET would be and points
// the process's NOTIFY_SOCKET at it until the test ends.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	// A short path: unix socket names are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "fln-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

// readNotify reads one sd_notify datagram and splits it into its lines.
func readNotify(t *testing.T, c *net.UnixConn, timeout time.Duration) []string {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(timeout)))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	require.NoError(t, err, "no notification from the worker within %s", timeout)
	return strings.Split(string(buf[:n]), "\n")
}

func status(lines []string) string {
	for _, l := range lines {
		if s, ok := strings.CutPrefix(l, "STATUS="); ok {
			return s
		}
	}
	return ""
}

// TestWorkerTellsSystemdReadyThenStopping: under a Type=notify unit the
// worker says READY=1 only once its consumers and presence entry exist
// and it takes tasks, with a STATUS= naming the server and runtimes;
// and STOPPING=1 as soon as it is told to stop, while its running task
// still has its grace period to finish.
func TestWorkerTellsSystemdReadyThenStopping(t *testing.T) {
	srv := fleettest.Start(t)
	notifyConn := notifySocket(t)
	exec := newFakeExec()
	nc := connect(t, srv.URL)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	w, err := fleet.NewWorker(nc, exec, fleet.WithCatalog(catalog()), fleet.WithRuntimes("sh", "python"),
		// Pull requests of 2s each: STOPPING=1 must not wait for one.
		fleet.WithCapacity(2), fleet.WithGrace(20*time.Second), fleet.WithPollWait(4*time.Second),
		fleet.WithID("notifier"), fleet.WithLogger(log))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	ready := readNotify(t, notifyConn, 20*time.Second)
	assert.Contains(t, ready, "READY=1", ready)
	assert.Equal(t, "taking tasks of python,sh from "+srv.URL+", 2 at a time", status(ready))
	// Ready means ready: its consumers and its presence entry are there
	// the moment it says so.
	c := newClient(t, srv.URL)
	s, err := c.JetStream().Stream(ctx, fleet.TaskStream)
	require.NoError(t, err)
	for _, rt := range []string{"sh", "python"} {
		_, err := s.Consumer(ctx, fleet.ConsumerName(rt))
		assert.NoError(t, err, "consumer of %s at READY=1", rt)
	}
	ws, err := c.Workers(ctx)
	require.NoError(t, err)
	require.Len(t, ws, 1, "presence entry at READY=1")
	assert.Equal(t, "notifier", ws[0].ID)

	// ... and fetching.
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	a, err := c.Run(rctx, shTask("after-ready", "echo taken"))
	rcancel()
	require.NoError(t, err)
	require.NotNil(t, a.Result, a.Error)
	assert.Equal(t, "taken\n", string(a.Result.Stdout.Data))

	// Stopping is told at once, not when the running task is done.
	require.NoError(t, c.Submit(ctx, shTask("running", "sleep 2s")))
	require.Eventually(t, func() bool { return exec.running.Load() == 1 }, 10*time.Second, 10*time.Millisecond)
	cancel()
	stopping := readNotify(t, notifyConn, 500*time.Millisecond)
	assert.Contains(t, stopping, "STOPPING=1", stopping)
	assert.Contains(t, status(stopping), "1 running")
	select {
	case err := <-done:
		t.Fatalf("the worker returned (%v) before its running task finished", err)
	default:
	}
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the worker did not stop")
	}
	a = wait(t, c, "running", time.Second)
	assert.Equal(t, "notifier", a.Worker, "finished within the grace period")

	// Nothing else was sent: one READY=1, one STOPPING=1.
	require.NoError(t, notifyConn.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	n, err := notifyConn.Read(make([]byte, 4096))
	assert.Error(t, err, "an unexpected notification of %d bytes", n)
}
