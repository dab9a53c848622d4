package client

import (
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

func TestParseURLs(t *testing.T) {
	for _, c := range []struct {
		in     string
		urls   []string
		secure bool
		err    string
	}{
		{in: "nats://127.0.0.1:4222", urls: []string{"nats://127.0.0.1:4222"}},
		{in: "tls://nats.example:4222", urls: []string{"tls://nats.example:4222"}, secure: true},
		{in: "nats.example:4222", urls: []string{"tls://nats.example:4222"}, secure: true},
		{in: "nats://a:1, nats://b:2", urls: []string{"nats://a:1", "nats://b:2"}},
		{in: "wss://a:443", urls: []string{"wss://a:443"}, secure: true},
		{in: "nats://a:1,tls://b:2", err: "mix clear"},
		{in: "http://a:1", err: "unknown scheme"},
		{in: "", err: "no NATS URL"},
		{in: "nats://u:secret@a:1,tls://b", err: "REDACTED"},
	} {
		urls, secure, err := parseURLs(c.in)
		if c.err != "" {
			if assert.Error(t, err, c.in) {
				assert.Contains(t, err.Error(), c.err)
				assert.NotContains(t, err.Error(), "secret")
				assert.True(t, errdefs.IsInvalidArgument(err))
			}
			continue
		}
		require.NoError(t, err, c.in)
		assert.Equal(t, c.urls, urls, c.in)
		assert.Equal(t, c.secure, secure, c.in)
	}
}

// FuzzDecodeTask: any body either decodes to a task that encodes again
// to a body that decodes to the same task, or is refused as invalid
// input; it never panics.
func FuzzDecodeTask(f *testing.F) {
	f.Add([]byte(`{"id":"t-1","request":{"runtime":"sh","files":[{"content":"echo hi"}]}}`))
	f.Add([]byte(`{"id":"t-1","request":{"runtime":"python","files":[{"name":"a.py","content":"AA==","encoding":"base64"}],"limits":{"memory":"1g","cpus":0.5,"timeout":3}}}`))
	f.Add([]byte(`{"id":"","request":null}`))
	f.Add([]byte(`{"id":"t-1","request":{"runtime":"sh","files":"x"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		task, err := DecodeTask(body)
		if err != nil {
			if !errors.Is(err, api.ErrInvalidTask) {
				t.Fatalf("error %v is not ErrInvalidTask", err)
			}
			if task.ID != "" && ValidateID(task.ID) != nil {
				t.Fatalf("an invalid id %q came back", task.ID)
			}
			return
		}
		b, err := EncodeTask(task)
		if err != nil {
			t.Fatalf("a decoded task does not encode: %v", err)
		}
		again, err := DecodeTask(b)
		if err != nil {
			t.Fatalf("a re-encoded task does not decode: %v\n%s", err, b)
		}
		b2, err := EncodeTask(again)
		if err != nil || string(b) != string(b2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", b, b2)
		}
	})
}

func TestClusterSettlingIsRetriedOnlyForPlacement(t *testing.T) {
	noPeers := fmt.Errorf("creating stream X: %w", &jetstream.APIError{Code: 400, ErrorCode: 10005, Description: "no suitable peers for placement"})
	assert.True(t, clusterSettling(noPeers))
	assert.False(t, clusterSettling(fmt.Errorf("creating stream X: %w", &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeBadRequest})))
	assert.False(t, clusterSettling(errors.New("connection refused")))
}
