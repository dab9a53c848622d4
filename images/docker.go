package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
)

// DefaultDockerSocket is where the Docker engine listens unless
// DOCKER_HOST says otherwise.
const DefaultDockerSocket = "/var/run/docker.sock"

// DockerSocket returns the Docker engine's socket for a DOCKER_HOST
// value: the path of a unix:// URL, or DefaultDockerSocket when it is
// empty. Other transports (tcp://, ssh://) are an invalid-argument error:
// an image is streamed from the local engine only.
func DockerSocket(dockerHost string) (string, error) {
	if dockerHost == "" {
		return DefaultDockerSocket, nil
	}
	path, ok := strings.CutPrefix(dockerHost, "unix://")
	if !ok || path == "" {
		return "", fmt.Errorf("DOCKER_HOST=%s: only a local engine's unix:// socket is supported: %w", dockerHost, errdefs.ErrInvalidArgument)
	}
	return path, nil
}

// dockerRef returns the reference to ask Docker for: ref normalized, with
// ":latest" when it has no tag, since Docker saves every tag of a bare
// repository name. A digest reference is refused: Docker's archive then
// names no image, and an image must have a name in containerd's store.
func dockerRef(ref string) (string, error) {
	name, err := Normalize(ref)
	if err != nil {
		return "", err
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return "", fmt.Errorf("parsing image reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	if _, ok := named.(reference.Canonical); ok {
		return "", fmt.Errorf("image reference %q: give NAME[:TAG] to import from Docker, not a digest (Docker's archive of a digest names no image): %w", ref, errdefs.ErrInvalidArgument)
	}
	return name, nil
}

// DockerSave streams `docker save` of ref from the Docker engine on
// socket: the Engine API's GET /images/get, over the unix socket. An
// engine that does not answer is an unavailable error, an image it does
// not have a not-found error. The caller closes the stream.
func DockerSave(ctx context.Context, socket, ref string) (io.ReadCloser, error) {
	name, err := dockerRef(ref)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		// The archive is a tar; asking for gzip would only cost CPU.
		DisableCompression: true,
	}
	// The host is a placeholder: the transport always dials socket.
	u := "http://docker/images/get?" + url.Values{"names": {name}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("asking Docker for %s: %w", name, err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		tr.CloseIdleConnections()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("asking Docker for %s: %w", name, ctx.Err())
		}
		hint := "is dockerd running? DOCKER_HOST=unix:///PATH picks another socket"
		if errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EACCES) {
			hint = "run as root or as a member of the docker group"
		}
		return nil, fmt.Errorf("no Docker engine answers at %s (%s): %v: %w", socket, hint, err, errdefs.ErrUnavailable)
	}
	if resp.StatusCode != http.StatusOK {
		defer tr.CloseIdleConnections()
		defer resp.Body.Close()
		msg := engineMessage(resp.Body)
		switch {
		case resp.StatusCode == http.StatusNotFound:
			return nil, fmt.Errorf("image %s is not in Docker's image store (%s): %w", name, msg, errdefs.ErrNotFound)
		case resp.StatusCode == http.StatusBadRequest:
			return nil, fmt.Errorf("the Docker engine refused %s: %s: %w", name, msg, errdefs.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("the Docker engine at %s: saving %s: %s (HTTP %d)", socket, name, msg, resp.StatusCode)
	}
	return &dockerStream{ReadCloser: resp.Body, tr: tr}, nil
}

// engineMessage reads the message of an Engine API error body,
// {"message": "..."}, or its first line when it is not JSON.
func engineMessage(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		return e.Message
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if line == "" {
		return "no message"
	}
	return line
}

// dockerStream is the archive being read; closing it also closes the
// connection to the engine.
type dockerStream struct {
	io.ReadCloser
	tr *http.Transport
}

func (s *dockerStream) Close() error {
	err := s.ReadCloser.Close()
	s.tr.CloseIdleConnections()
	return err
}

// ImportFromDocker streams the image ref from the Docker engine on socket
// into containerd's store, in the namespace on ctx, and unpacks it into
// snapshotter, as Import does with an archive. Nothing is written to
// disk on the way, and Docker's own store is only read. It returns the
// name the image has in containerd's store.
func ImportFromDocker(ctx context.Context, c *client.Client, socket, ref, snapshotter string) (string, error) {
	name, err := dockerRef(ref)
	if err != nil {
		return "", err
	}
	archive, err := DockerSave(ctx, socket, name)
	if err != nil {
		return "", err
	}
	defer archive.Close()
	names, err := Import(ctx, c, archive, snapshotter)
	if err != nil {
		return "", fmt.Errorf("importing %s from Docker: %w", name, err)
	}
	if !slices.Contains(names, name) {
		return "", fmt.Errorf("importing %s from Docker: the archive held %v instead", name, names)
	}
	return name, nil
}
