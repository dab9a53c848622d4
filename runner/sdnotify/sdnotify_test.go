package sdnotify_test

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner/sdnotify"
)

func TestNotifySendsTheStateToNotifySocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "sdn-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", path)

	require.NoError(t, sdnotify.Notify("READY=1\nSTATUS=up"))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "READY=1\nSTATUS=up", string(buf[:n]))
}

func TestNotifyWithoutNotifySocketDoesNothing(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	assert.NoError(t, sdnotify.Notify("READY=1"))
}

func TestNotifyToAMissingSocketFails(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent"))
	assert.Error(t, sdnotify.Notify("READY=1"))
}
