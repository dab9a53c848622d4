package client

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

// ExecBatch sends a request with runs and returns the batch's result,
// as Exec does for one task.
func (c *Client) ExecBatch(ctx context.Context, req api.Request) (*api.BatchResult, error) {
	if len(req.Runs) == 0 {
		return nil, &api.FieldError{Field: "runs", Msg: "empty: a batch needs at least one run"}
	}
	return post[api.BatchResult](ctx, c, req, maxAnswer*int64(len(req.Runs)+1))
}

// Metrics fetches the service's GET /metrics, Prometheus text.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, "/metrics", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("reading the service's metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, answerError(resp, b)
	}
	return b, nil
}
