package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

// serve answers on a unix socket in a temporary dir with handler, and
// returns the socket's path.
func serve(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", socket)
	require.NoError(t, err)
	srv := &http.Server{Handler: handler}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return socket
}

func TestExecSendsTheRequestAndReadsTheResult(t *testing.T) {
	var got api.Request
	socket := serve(t, func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "/v1/exec", r.URL.Path)
		assert.NoError(t, json.NewDecoder(r.Body).Decode(&got))
		_ = json.NewEncoder(w).Encode(api.Result{ID: "t1", Stage: api.Stage{Outcome: api.OutcomeExited, ExitCode: 3,
			Stdout: api.Stream{Data: []byte("hi\n")}}})
	})
	req := api.Request{Runtime: "python", Files: []api.File{{Content: "print('hi')"}},
		Limits: api.WrittenLimits{Memory: api.LimitString("64m"), Timeout: api.LimitInt(5)}}
	res, err := New(socket).Exec(context.Background(), req)
	require.NoError(t, err)
	assert.Equal(t, "t1", res.ID)
	assert.Equal(t, api.OutcomeExited, res.Outcome)
	assert.Equal(t, 3, res.ExitCode)
	assert.Equal(t, "hi\n", string(res.Stdout.Data))
	assert.Equal(t, req, got, "the service got the request as sent")
}

func TestExecErrorAnswerMatchesItsKind(t *testing.T) {
	socket := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(api.ErrorResponse{Error: "limits.memory: bad", Kind: api.KindInvalidInput})
	})
	_, err := New(socket).Exec(context.Background(), api.Request{Runtime: "sh"})
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, http.StatusBadRequest, e.Status)
	assert.Equal(t, "limits.memory: bad", e.Error())
	assert.ErrorIs(t, err, api.ErrInvalidTask)
	assert.True(t, errdefs.IsInvalidArgument(err))
	assert.Equal(t, 2e9, float64(e.RetryAfter))
}

func TestPingWithNobodyListeningIsUnreachable(t *testing.T) {
	err := New(filepath.Join(t.TempDir(), "nobody.sock")).Ping(context.Background())
	assert.ErrorIs(t, err, ErrUnreachable)
	assert.True(t, errdefs.IsUnavailable(err))
	assert.False(t, errors.Is(err, api.ErrInvalidTask))
}
