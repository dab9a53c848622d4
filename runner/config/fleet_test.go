package config

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFleetSection(t *testing.T) {
	c, err := Decode(strings.NewReader(`
[fleet]
nats = "tls://nats-1.example:4222,tls://nats-2.example:4222"
creds = "/etc/sandbox-runner/nats.creds"
tls_ca = "/etc/ssl/nats-ca.pem"
runtimes = ["python", "node"]
max_concurrent = 4
max_deliveries = 3
retry_delay = "2s"
grace = "1m"
ack_wait = "20s"
replicas = 3
presence_ttl = "10s"
task_ttl = "12h"
result_ttl = "48h"
`))
	require.NoError(t, err)
	f := c.Fleet
	assert.Equal(t, "tls://nats-1.example:4222,tls://nats-2.example:4222", f.NATS)
	assert.Equal(t, []string{"python", "node"}, f.Runtimes)
	assert.Equal(t, 4, f.MaxConcurrent)
	assert.Equal(t, 3, f.Replicas)
	assert.Equal(t, "20s", f.AckWait)
}

func TestFleetSectionRefusesBadValues(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{"[fleet]\nack_wait = \"soon\"\n", "fleet.ack_wait"},
		{"[fleet]\nreplicas = -1\n", "cannot be negative"},
		{"[fleet]\nnats_url = \"x\"\n", `unknown key "fleet.nats_url"`},
	} {
		_, err := Decode(strings.NewReader(c.body))
		if assert.Error(t, err, c.body) {
			assert.Contains(t, err.Error(), c.want)
			assert.True(t, errdefs.IsInvalidArgument(err), "%v", err)
		}
	}
}
