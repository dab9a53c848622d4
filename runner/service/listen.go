package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/sandbox-runner/sandbox-runner/runner/service/client"
)

// DefaultSocket is where the service listens, and where `exec --via`
// looks for it.
const DefaultSocket = client.DefaultSocket

// DefaultSocketMode lets the socket's owner and group in, nobody else.
const DefaultSocketMode fs.FileMode = 0o660

// ListenConfig says where the service listens.
type ListenConfig struct {
	// Socket is the unix socket made when systemd passes none. Default
	// DefaultSocket.
	Socket string
	// SocketGroup, a group name or number, owns the socket; empty keeps
	// the process's group.
	SocketGroup string
	// SocketMode is the socket's mode. Default DefaultSocketMode.
	SocketMode fs.FileMode
	// TCP, when set, is an address to listen on as well ("127.0.0.1:8080").
	TCP string
	// Log hears where the service listens.
	Log *slog.Logger
}

// Listen returns the service's listeners: the sockets systemd passed
// (socket activation: LISTEN_FDS and LISTEN_PID), else a unix socket of
// its own at Socket; and a TCP listener when TCP is set. A socket file
// left by a service that died is replaced; a live one is an error.
func Listen(c ListenConfig) (_ []net.Listener, retErr error) {
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var ls []net.Listener
	defer func() {
		if retErr != nil {
			for _, l := range ls {
				_ = l.Close()
			}
		}
	}()
	activated, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("taking the sockets systemd passed: %w", err)
	}
	for _, l := range activated {
		// A passed descriptor that is not a listening stream socket is
		// nil here.
		if l != nil {
			log.Info("using a socket from systemd", "address", l.Addr().String(), "network", l.Addr().Network())
			ls = append(ls, l)
		}
	}
	if len(ls) == 0 {
		l, err := listenUnix(c)
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
	}
	if c.TCP != "" {
		l, err := net.Listen("tcp", c.TCP)
		if err != nil {
			return nil, fmt.Errorf("listening on tcp %s: %w", c.TCP, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

func listenUnix(c ListenConfig) (net.Listener, error) {
	path := c.Socket
	if path == "" {
		path = DefaultSocket
	}
	mode := c.SocketMode
	if mode == 0 {
		mode = DefaultSocketMode
	}
	gid := -1
	if c.SocketGroup != "" {
		var err error
		if gid, err = lookupGroup(c.SocketGroup); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating the socket's directory: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	// The socket is made with no permissions for anyone but its owner,
	// then opened up to the group: never, even for a moment, to all.
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("giving the socket to group %s: %w", c.SocketGroup, err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("setting the socket's mode: %w", err)
	}
	return l, nil
}

func lookupGroup(name string) (int, error) {
	if gid, err := strconv.Atoi(name); err == nil && gid >= 0 {
		return gid, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1, fmt.Errorf("socket group %q: %w", name, err)
	}
	return strconv.Atoi(g.Gid)
}

// removeStaleSocket removes a socket at path that nobody answers on.
func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket path %s: %w", path, err)
	}
	if st.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("socket path %s exists and is not a socket: refusing to replace it", path)
	}
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(context.Background(), "unix", path)
	if err == nil {
		conn.Close()
		return fmt.Errorf("another process is serving on %s: stop it first, or give another --socket", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the stale socket %s: %w", path, err)
	}
	return nil
}

// ReadToken reads a bearer token from a file: its content, less
// surrounding white space. A file anybody may read is refused, as ssh
// refuses a private key.
func ReadToken(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if st.Mode().Perm()&0o004 != 0 {
		return "", fmt.Errorf("token file %s is readable by everyone: chmod o-r it (0600 or 0640)", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("token file %s is empty: put a long random token in it (e.g. openssl rand -hex 32)", path)
	}
	if strings.ContainsAny(token, " \t\r\n") {
		return "", fmt.Errorf("token file %s holds more than one word: put the token alone in it", path)
	}
	return token, nil
}
