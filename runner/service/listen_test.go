package service

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestListenMakesAPrivateSocket(t *testing.T) {
	socket := filepath.Join(shortDir(t), "sub", "s.sock")
	ls, err := Listen(ListenConfig{Socket: socket, SocketGroup: "0"})
	require.NoError(t, err)
	require.Len(t, ls, 1)
	st, err := os.Stat(socket)
	require.NoError(t, err)
	assert.Equal(t, fs.ModeSocket, st.Mode().Type())
	assert.Equal(t, DefaultSocketMode, st.Mode().Perm())
	assert.Equal(t, uint32(0), st.Sys().(*syscall.Stat_t).Gid)

	// A second service on the same socket is refused, not given it.
	_, err = Listen(ListenConfig{Socket: socket})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "another process is serving")

	require.NoError(t, ls[0].Close())
	_, err = os.Stat(socket)
	assert.ErrorIs(t, err, os.ErrNotExist, "closing the listener removes the socket")
}

func TestListenReplacesAStaleSocket(t *testing.T) {
	socket := filepath.Join(shortDir(t), "s.sock")
	l, err := net.Listen("unix", socket)
	require.NoError(t, err)
	// A dead service leaves its socket file behind.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, l.Close())
	ls, err := Listen(ListenConfig{Socket: socket})
	require.NoError(t, err)
	defer ls[0].Close()
	c, err := net.Dial("unix", socket)
	require.NoError(t, err)
	c.Close()
}

func TestListenKeepsAFileThatIsNotASocket(t *testing.T) {
	path := filepath.Join(shortDir(t), "s.sock")
	require.NoError(t, os.WriteFile(path, []byte("precious"), 0o644))
	_, err := Listen(ListenConfig{Socket: path})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a socket")
	b, _ := os.ReadFile(path)
	assert.Equal(t, "precious", string(b))
}

func TestListenUnknownGroup(t *testing.T) {
	_, err := Listen(ListenConfig{Socket: filepath.Join(shortDir(t), "s.sock"), SocketGroup: "no-such-group-here"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no-such-group-here")
}

func TestListenTCPToo(t *testing.T) {
	ls, err := Listen(ListenConfig{Socket: filepath.Join(shortDir(t), "s.sock"), TCP: "127.0.0.1:0"})
	require.NoError(t, err)
	require.Len(t, ls, 2)
	for _, l := range ls {
		defer l.Close()
	}
	assert.Equal(t, "unix", ls[0].Addr().Network())
	assert.Equal(t, "tcp", ls[1].Addr().Network())
}

func TestReadToken(t *testing.T) {
	dir := shortDir(t)
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), mode))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}
	token, err := ReadToken(write("ok", "  abc123\n", 0o600))
	require.NoError(t, err)
	assert.Equal(t, "abc123", token)
	_, err = ReadToken(write("group", "abc123\n", 0o640))
	assert.NoError(t, err)

	for _, tc := range []struct {
		name, content, want string
		mode                os.FileMode
	}{
		{"world", "abc", "readable by everyone", 0o644},
		{"empty", " \n", "is empty", 0o600},
		{"two words", "abc def", "more than one word", 0o600},
	} {
		_, err := ReadToken(write(tc.name, tc.content, tc.mode))
		if assert.Error(t, err, tc.name) {
			assert.Contains(t, err.Error(), tc.want)
		}
	}
	_, err = ReadToken(filepath.Join(dir, "absent"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}
