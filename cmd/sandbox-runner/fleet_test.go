package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSubmitNeedsANATSServer(t *testing.T) {
	t.Setenv("NATS_URL", "")
	code, _, stderr := runCLI(t, nil, "submit", "--runtime", "sh", "-c", "true")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, "no NATS server given")
}

func TestSubmitRefusesBadInputBeforeConnecting(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--nats", "http://x:1", "--runtime", "sh", "-c", "true"}, "unknown scheme"},
		{[]string{"--nats", "nats://a:1,tls://b:2", "--runtime", "sh", "-c", "true"}, "mix clear"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--runtime", "a.b", "-c", "true"}, "cannot be routed"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--runtime", "sh", "--id", "a b", "-c", "true"}, "task id"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--runtime", "sh", "--memory", "lots", "-c", "true"}, "--memory"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--runtime", "sh", "--wait", "soon", "-c", "true"}, "--wait"},
	} {
		code, _, stderr := runCLI(t, nil, append([]string{"submit"}, c.args...)...)
		assert.Equal(t, exitUsage, code, "%v: %s", c.args, stderr)
		assert.Contains(t, stderr, c.want, c.args)
	}
}

func TestSubmitUnreachableNATSIsARunnerFailure(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	code, stdout, stderr := runCLI(t, nil, "submit", "--nats", "nats://"+addr, "--runtime", "sh", "--json", "-c", "true")
	assert.Equal(t, exitRunner, code)
	assert.Contains(t, stderr, "connecting to NATS")
	var doc struct {
		Kind     string `json:"kind"`
		ExitCode int    `json:"exit_code"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &doc), stdout)
	assert.Equal(t, exitRunner, doc.ExitCode)
}

// TestWorkerNeedsANATSServerBeforeContainerd: a worker with no NATS
// server configured exits 2 at once, even when containerd is not (yet)
// there: its systemd unit does not restart on 2.
func TestWorkerNeedsANATSServerBeforeContainerd(t *testing.T) {
	t.Setenv("NATS_URL", "")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	require.NoError(t, os.WriteFile(cfg, []byte("[fleet]\nmax_concurrent = 2\n"), 0o644))
	code, _, stderr := runCLI(t, nil, "worker", "--config", cfg, "--address", filepath.Join(dir, "absent.sock"))
	assert.Equal(t, exitUsage, code, stderr)
	assert.Contains(t, stderr, "no NATS server given")
}

func TestWorkerRefusesBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--nats", "nats://127.0.0.1:1", "extra"}, "takes no arguments"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--ack-wait", "soon"}, "--ack-wait"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--namespace", "moby"}, "moby"},
	} {
		code, _, stderr := runCLI(t, nil, append([]string{"worker"}, c.args...)...)
		assert.Equal(t, exitUsage, code, "%v: %s", c.args, stderr)
		assert.Contains(t, stderr, c.want, c.args)
	}
}
