package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
)

// DefaultAddress is where a system containerd listens.
const DefaultAddress = "/run/containerd/containerd.sock"

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
}

// Connect finds a containerd: the address asked for, else the system one
// at DefaultAddress, else a private one under the state dir, started when
// it is not already running.
func Connect(ctx context.Context, o ConnectOptions) (*Connection, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Address != "" {
		conn, err := dial(ctx, o.Address)
		if err != nil {
			return nil, fmt.Errorf("%w\nhint: is containerd running and listening on %s? Check `systemctl status containerd`, or leave --address and CONTAINERD_ADDRESS unset to let sandbox-runner find or start one", err, o.Address)
		}
		return conn, nil
	}
	conn, sysErr := dial(ctx, DefaultAddress)
	if sysErr == nil {
		return conn, nil
	}
	if o.NoPrivate {
		return nil, fmt.Errorf("%w\nhint: start containerd (`systemctl start containerd`) or allow a private one", sysErr)
	}
	dir := filepath.Join(o.StateDir, "containerd")
	d, err := EnsureDaemon(ctx, dir, log)
	if err != nil {
		return nil, fmt.Errorf("no containerd at %s (%v), and starting a private one failed: %w", DefaultAddress, sysErr, err)
	}
	conn, err = dial(ctx, d.Address)
	if err != nil {
		return nil, err
	}
	conn.Private = true
	return conn, nil
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
