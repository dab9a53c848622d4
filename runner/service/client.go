package service

import (
	"bytes"
	"context"

	"github.com/sandbox-runner/sandbox-runner/runner/service/client"
)

// ErrUnreachable marks a service that could not be reached at all
// (client.ErrUnreachable).
var ErrUnreachable = client.ErrUnreachable

// Client talks to a service over its unix socket, or over TCP with its
// bearer token: a client.Client, which builds on any OS, with Status,
// which reads the metrics as this package's Status.
type Client struct {
	*client.Client
}

// NewClient returns a client of the service listening on socket
// (client.New).
func NewClient(socket string) *Client { return &Client{client.New(socket)} }

// NewTCPClient returns a client of the service listening on the TCP
// address addr, which sends token with every request (client.NewTCP).
func NewTCPClient(addr, token string) *Client { return &Client{client.NewTCP(addr, token)} }

// Status fetches and reads the service's success metrics.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	b, err := c.Metrics(ctx)
	if err != nil {
		return nil, err
	}
	return ParseStatus(bytes.NewReader(b))
}
