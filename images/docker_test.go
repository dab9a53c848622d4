package images

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeEngine serves handler on a unix socket, as dockerd does, and
// returns the socket's path.
func fakeEngine(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "eng-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(handler)
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return sock
}

func TestDockerSocket(t *testing.T) {
	for host, want := range map[string]string{
		"":                            DefaultDockerSocket,
		"unix:///var/run/docker.sock": "/var/run/docker.sock",
		"unix:///tmp/d/docker.sock":   "/tmp/d/docker.sock",
	} {
		got, err := DockerSocket(host)
		require.NoError(t, err, host)
		assert.Equal(t, want, got, host)
	}
	for _, host := range []string{"tcp://127.0.0.1:2375", "ssh://me@host", "unix://", "/var/run/docker.sock"} {
		_, err := DockerSocket(host)
		assert.True(t, errdefs.IsInvalidArgument(err), "%s: %v", host, err)
	}
}

func TestDockerSaveAsksForOneTag(t *testing.T) {
	var asked []string
	sock := fakeEngine(t, func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, http.MethodGet, r.Method)
		assert.Equal(t, "/images/get", r.URL.Path)
		asked = append(asked, r.URL.Query()["names"]...)
		w.Header().Set("Content-Type", "application/x-tar")
		_, _ = io.WriteString(w, "the archive")
	})
	rc, err := DockerSave(t.Context(), sock, "busybox")
	require.NoError(t, err)
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	assert.Equal(t, "the archive", string(b))
	// A bare name would make Docker save every tag of the repository.
	assert.Equal(t, []string{"docker.io/library/busybox:latest"}, asked)
}

func TestDockerSaveImageMissing(t *testing.T) {
	sock := fakeEngine(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"message":"reference does not exist"}`)
	})
	_, err := DockerSave(t.Context(), sock, "example.com/nothing:1")
	require.Error(t, err)
	assert.True(t, errdefs.IsNotFound(err), "%v", err)
	assert.Contains(t, err.Error(), "example.com/nothing:1")
	assert.Contains(t, err.Error(), "reference does not exist")
}

func TestDockerSaveEngineError(t *testing.T) {
	sock := fakeEngine(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "layer store broke\nmore")
	})
	_, err := DockerSave(t.Context(), sock, "busybox:1")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "layer store broke")
	assert.Contains(t, err.Error(), "HTTP 500")
}

func TestDockerSaveNoEngine(t *testing.T) {
	_, err := DockerSave(t.Context(), filepath.Join(t.TempDir(), "docker.sock"), "busybox")
	require.Error(t, err)
	assert.True(t, errdefs.IsUnavailable(err), "%v", err)
	assert.Contains(t, err.Error(), "is dockerd running?")
}

func TestDockerSaveRefusesDigestsAndBadRefs(t *testing.T) {
	sock := fakeEngine(t, func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the engine must not be asked for %s", r.URL)
	})
	for _, ref := range []string{
		"busybox@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"Not A Ref",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	} {
		_, err := DockerSave(t.Context(), sock, ref)
		assert.True(t, errdefs.IsInvalidArgument(err), "%s: %v", ref, err)
	}
}
