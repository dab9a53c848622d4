package host

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeDaemons stands in for the daemons answering at the given
// addresses, with their versions, and records what was dialled.
func fakeDaemons(t *testing.T, answering map[string]string) *[]string {
	t.Helper()
	var tried []string
	old := dialAddress
	t.Cleanup(func() { dialAddress = old })
	dialAddress = func(_ context.Context, address string) (*Connection, error) {
		tried = append(tried, address)
		v, ok := answering[address]
		if !ok {
			return nil, fmt.Errorf("no containerd socket at %s: %w", address, errdefs.ErrUnavailable)
		}
		// A client that never connects: Close is all the code under
		// test calls on it.
		c, err := client.New(filepath.Join(t.TempDir(), "none.sock"))
		require.NoError(t, err)
		return &Connection{Client: c, Address: address, Version: client.Version{Version: v}}, nil
	}
	return &tried
}

func TestConnectPrefersTheSystemContainerd(t *testing.T) {
	tried := fakeDaemons(t, map[string]string{DefaultAddress: "1.6.20", DockerAddress: "1.6.20"})
	conn, err := Connect(t.Context(), ConnectOptions{NoPrivate: true})
	require.NoError(t, err)
	defer conn.Close()
	assert.Equal(t, DefaultAddress, conn.Address)
	assert.Equal(t, SourceSystem, conn.Source)
	assert.Equal(t, []string{DefaultAddress}, *tried)
}

func TestConnectFallsBackToDockersContainerd(t *testing.T) {
	tried := fakeDaemons(t, map[string]string{DockerAddress: "1.6.20"})
	conn, err := Connect(t.Context(), ConnectOptions{NoPrivate: true})
	require.NoError(t, err)
	defer conn.Close()
	assert.Equal(t, DockerAddress, conn.Address)
	assert.Equal(t, SourceDocker, conn.Source)
	assert.False(t, conn.Private)
	assert.Equal(t, []string{DefaultAddress, DockerAddress}, *tried)
}

func TestConnectGivenAddressIsStrict(t *testing.T) {
	tried := fakeDaemons(t, map[string]string{DefaultAddress: "1.6.20", DockerAddress: "1.6.20"})
	_, err := Connect(t.Context(), ConnectOptions{Address: "/elsewhere.sock"})
	require.Error(t, err)
	assert.True(t, errdefs.IsUnavailable(err), "%v", err)
	assert.Contains(t, err.Error(), "/elsewhere.sock")
	assert.Equal(t, []string{"/elsewhere.sock"}, *tried, "a given address that does not answer must not fall back")

	conn, err := Connect(t.Context(), ConnectOptions{Address: DockerAddress})
	require.NoError(t, err)
	defer conn.Close()
	assert.Equal(t, SourceGiven, conn.Source)
}

func TestConnectNoneAnswers(t *testing.T) {
	fakeDaemons(t, nil)
	_, err := Connect(t.Context(), ConnectOptions{NoPrivate: true})
	require.Error(t, err)
	assert.True(t, errdefs.IsUnavailable(err), "%v", err)
	// One line that names both sockets that were tried.
	first, _, _ := strings.Cut(err.Error(), "\n")
	assert.Contains(t, first, DefaultAddress)
	assert.Contains(t, first, DockerAddress)
}

func TestCheckSaysWhichContainerd(t *testing.T) {
	fakeDaemons(t, map[string]string{DockerAddress: "v2.4.2"})
	f := CheckContainerd(t.Context(), ConnectOptions{NoPrivate: true})
	assert.True(t, f.OK, "%+v", f)
	assert.Contains(t, f.Detail, DockerAddress)
	assert.Contains(t, f.Detail, "Docker's own containerd")

	fakeDaemons(t, map[string]string{DefaultAddress: "1.6.20~ds1"})
	f = CheckContainerd(t.Context(), ConnectOptions{NoPrivate: true})
	assert.True(t, f.OK, "%+v", f)
	assert.Contains(t, f.Detail, DefaultAddress)
	assert.NotContains(t, f.Detail, "Docker")
}

func TestCheckRefusesOldContainerd(t *testing.T) {
	fakeDaemons(t, map[string]string{DefaultAddress: "1.5.18"})
	f := CheckContainerd(t.Context(), ConnectOptions{NoPrivate: true})
	assert.False(t, f.OK, "%+v", f)
	assert.Contains(t, f.Detail, "older than 1.6")
	assert.NotEmpty(t, f.Fix)
}

func TestCheckVersion(t *testing.T) {
	for v, ok := range map[string]bool{
		"1.6.20~ds1":         true,
		"v1.7.27":            true,
		"v2.4.2":             true,
		"2.0.0-rc.1+unknown": true,
		"1.10.0":             true,
		"1.5.18":             false,
		"v1.4.13":            false,
		"":                   true, // unreadable: taken to be recent
		"devel":              true,
	} {
		err := checkVersion(v)
		assert.Equal(t, ok, err == nil, "version %q: %v", v, err)
		if err != nil {
			assert.True(t, errdefs.IsNotImplemented(err), "%v", err)
		}
	}
}

func TestValidateNamespace(t *testing.T) {
	for _, ns := range []string{"moby", "plugins.moby", "k8s.io"} {
		err := ValidateNamespace(ns)
		require.Error(t, err, ns)
		assert.True(t, errdefs.IsInvalidArgument(err), "%v", err)
		assert.Contains(t, err.Error(), "belongs to")
	}
	for _, ns := range []string{"", "a/b", "-x"} {
		err := ValidateNamespace(ns)
		require.Error(t, err, ns)
		assert.True(t, errdefs.IsInvalidArgument(err), "%v", err)
	}
	for _, ns := range []string{DefaultNamespace, "sandbox-runner-it", "moby2", "default"} {
		assert.NoError(t, ValidateNamespace(ns), ns)
	}
}

// What a person should do is the CLI's to say: the library's error names
// what failed, with its class, and no hint.
func TestConnectToAMissingSocketSaysWhatFailedWithoutAHint(t *testing.T) {
	addr := filepath.Join(t.TempDir(), "containerd.sock")
	_, err := Connect(context.Background(), ConnectOptions{Address: addr})
	var nc *NoContainerdError
	require.ErrorAs(t, err, &nc)
	assert.True(t, nc.Given)
	assert.Equal(t, addr, nc.Address)
	assert.True(t, errdefs.IsUnavailable(err), "%v", err)
	assert.Contains(t, err.Error(), addr)
	assert.NotContains(t, err.Error(), "hint")
}
