package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/containerd/errdefs"

	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

// ErrUnreachable marks a service that could not be reached at all: no
// socket, nobody listening, no permission. Nothing was sent, so nothing
// ran. It is of errdefs' unavailable class (kind "unavailable").
var ErrUnreachable = fmt.Errorf("service unreachable: %w", errdefs.ErrUnavailable)

// DefaultSocket is where `sandbox-runner serve` listens by default.
const DefaultSocket = "/run/sandbox-runner/sandbox-runner.sock"

// maxAnswer bounds an answer: two streams at the runner's largest output
// limit, in base64, with room for the rest.
const maxAnswer = 3 * api.MaxOutputLimit

// Client talks to a service over its unix socket, or over TCP with its
// bearer token.
type Client struct {
	socket string
	// base is where requests go; token, when set, is sent with each.
	base  string
	token string
	http  *http.Client
}

// New returns a client of the service listening on socket.
func New(socket string) *Client {
	d := net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := d.DialContext(ctx, "unix", socket)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		},
		MaxIdleConns:    1,
		IdleConnTimeout: 30 * time.Second,
	}
	// No overall timeout: a task's own timeout bounds the answer, and
	// the caller's context can end it.
	return &Client{socket: socket, base: "http://sandbox-runner", http: &http.Client{Transport: tr}}
}

// NewTCP returns a client of the service listening on the TCP address
// addr (host:port, as serve's --tcp), which sends token with every
// request.
func NewTCP(addr, token string) *Client {
	d := net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, address)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		},
		MaxIdleConns:    1,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Client{socket: addr, base: "http://" + addr, token: token, http: &http.Client{Transport: tr}}
}

type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// Socket returns the socket (or TCP address) the client talks to.
func (c *Client) Socket() string { return c.socket }

// Ping asks GET /healthz; it fails with ErrUnreachable when nobody
// answers on the socket.
func (c *Client) Ping(ctx context.Context) error {
	resp, err := c.do(ctx, http.MethodGet, "/healthz", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the service at %s answered %s to /healthz: %w", c.socket, resp.Status, errdefs.ErrUnavailable)
	}
	return nil
}

// Exec sends one task and returns its result. A refusal or a failure of
// the service is an *Error that matches the runner's sentinels; a
// cancelled ctx cancels the task on the service, which kills it.
func (c *Client) Exec(ctx context.Context, req api.Request) (*api.Result, error) {
	return post[api.Result](ctx, c, req, maxAnswer)
}

// post sends req to POST /v1/exec and decodes the answer, at most limit
// bytes, as a T.
func post[T any](ctx context.Context, c *Client, req api.Request, limit int64) (*T, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encoding the request: %w", err)
	}
	resp, err := c.do(ctx, http.MethodPost, "/v1/exec", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("waiting for the service: %w", context.Cause(ctx))
		}
		return nil, fmt.Errorf("reading the service's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, answerError(resp, b)
	}
	var res T
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("decoding the service's answer: %w", err)
	}
	return &res, nil
}

func (c *Client) do(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	return c.doHeader(ctx, method, path, body, nil)
}

// answerError turns an error answer into an *Error.
func answerError(resp *http.Response, body []byte) error {
	e := &Error{Status: resp.StatusCode, Kind: api.KindRunnerFailed}
	var doc api.ErrorResponse
	if err := json.Unmarshal(body, &doc); err == nil && doc.Error != "" {
		e.Message, e.Kind = doc.Error, doc.Kind
	} else {
		e.Message = fmt.Sprintf("the service answered %s", resp.Status)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}
