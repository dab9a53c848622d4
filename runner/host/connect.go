package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
)

// DefaultAddress is where a system containerd listens.
const DefaultAddress = "/run/containerd/containerd.sock"

// DockerAddress is where the containerd that dockerd starts for itself
// (when it is not given --containerd) listens, under Docker's default
// exec root. Docker keeps its containers there in namespace "moby", which
// the runner never touches.
const DockerAddress = "/var/run/docker/containerd/containerd.sock"

// Where a containerd was found.
const (
	// SourceGiven is the address the caller asked for.
	SourceGiven = "given"
	// SourceSystem is the system containerd at DefaultAddress.
	SourceSystem = "system"
	// SourceDocker is the containerd dockerd started, at DockerAddress.
	SourceDocker = "docker"
	// SourcePrivate is a containerd the runner started itself.
	SourcePrivate = "private"
)

// systemAddresses are the sockets Connect tries, in order, when no
// address is given; a variable so that tests can point it elsewhere.
var systemAddresses = []struct{ address, source string }{
	{DefaultAddress, SourceSystem},
	{DockerAddress, SourceDocker},
}

// dialAddress connects to one socket; a variable so that tests can
// stand in for daemons.
var dialAddress = dial

// probeTimeout bounds the first call to a containerd, which tells whether
// it serves at all.
const probeTimeout = 3 * time.Second

// ConnectOptions say which containerd to use.
type ConnectOptions struct {
	// Address is the socket the user asked for. When set, it is used or it
	// is an error: never a silent fallback.
	Address string
	// StateDir is the runner's state directory; a private containerd keeps
	// its root, state and socket under StateDir/containerd.
	StateDir string
	// NoPrivate forbids starting a private containerd when none is found.
	NoPrivate bool
	// Log, when set, hears about the choice made.
	Log *slog.Logger
}

// Connection is a containerd client and where it came from.
type Connection struct {
	*client.Client
	// Address is the socket in use.
	Address string
	// Version is the daemon's version.
	Version client.Version
	// Private is true when the runner started this containerd itself.
	Private bool
	// Source says how the socket was found: SourceGiven, SourceSystem,
	// SourceDocker or SourcePrivate.
	Source string
}

// NoContainerdError is Connect's error when no containerd answered where
// it looked: at Address, when one was given, else at the system's and
// Docker's sockets with a private one not allowed. It says what failed;
// what a person should do about it is the caller's to say.
type NoContainerdError struct {
	// Address is the socket given, when Given.
	Address string
	Given   bool
	Err     error
}

func (e *NoContainerdError) Error() string { return e.Err.Error() }
func (e *NoContainerdError) Unwrap() error { return e.Err }

// Connect finds a containerd: the address asked for, else the system one
// at DefaultAddress, else the one Docker started at DockerAddress, else a
// private one under the state dir, started when it is not already
// running.
func Connect(ctx context.Context, o ConnectOptions) (*Connection, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, err := connect(ctx, o, log)
	if err != nil {
		return nil, err
	}
	if err := checkVersion(conn.Version.Version); err != nil {
		log.Warn("this containerd is not supported; tasks may fail", "socket", conn.Address, "error", err)
	}
	return conn, nil
}

func connect(ctx context.Context, o ConnectOptions, log *slog.Logger) (*Connection, error) {
	if o.Address != "" {
		conn, err := dialAddress(ctx, o.Address)
		if err != nil {
			return nil, &NoContainerdError{Address: o.Address, Given: true, Err: err}
		}
		conn.Source = SourceGiven
		return conn, nil
	}
	conn, sysErr := dialSystem(ctx)
	if sysErr == nil {
		if conn.Source == SourceDocker {
			log.Info("using the containerd Docker started; Docker's containers are in namespace moby, which is never touched", "socket", conn.Address)
		}
		return conn, nil
	}
	if o.NoPrivate {
		return nil, &NoContainerdError{Err: sysErr}
	}
	dir := filepath.Join(o.StateDir, "containerd")
	d, err := EnsureDaemon(ctx, dir, log)
	if err != nil {
		return nil, fmt.Errorf("%v, and starting a private one failed: %w", sysErr, err)
	}
	conn, err = dial(ctx, d.Address)
	if err != nil {
		return nil, err
	}
	conn.Private = true
	conn.Source = SourcePrivate
	return conn, nil
}

// dialSystem connects to the first of systemAddresses that answers. A
// socket that is there but does not answer is skipped like a missing one:
// a stopped Docker leaves its socket behind.
func dialSystem(ctx context.Context) (*Connection, error) {
	var first error
	var msgs []string
	for _, a := range systemAddresses {
		conn, err := dialAddress(ctx, a.address)
		if err == nil {
			conn.Source = a.source
			return conn, nil
		}
		if first == nil {
			first = err
		}
		msgs = append(msgs, err.Error())
	}
	if first == nil {
		return nil, fmt.Errorf("no containerd address to try: %w", errdefs.ErrUnavailable)
	}
	if len(msgs) == 1 {
		return nil, first
	}
	// One line for a person; the first error keeps the errdefs class.
	return nil, fmt.Errorf("%w (and %s)", first, strings.Join(msgs[1:], "; "))
}

// dial connects to address and checks that a containerd answers there.
func dial(ctx context.Context, address string) (*Connection, error) {
	if _, err := os.Stat(address); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no containerd socket at %s: %w", address, errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("containerd socket %s: %w: %w", address, err, errdefs.ErrUnavailable)
	}
	c, err := client.New(address, client.WithTimeout(probeTimeout))
	if err != nil {
		return nil, fmt.Errorf("connecting to containerd at %s: %w: %w", address, err, errdefs.ErrUnavailable)
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	v, err := c.Version(pctx)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("containerd at %s does not answer: %w: %w", address, err, errdefs.ErrUnavailable)
	}
	return &Connection{Client: c, Address: address, Version: v}, nil
}
