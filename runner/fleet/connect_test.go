package fleet_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner/fleet"
	"github.com/sandbox-runner/sandbox-runner/runner/fleet/fleettest"
)

// certs writes a CA and a certificate for 127.0.0.1 it signed, as PEM
// files in dir.
func certs(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fleet test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	require.NoError(t, err)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server-key.pem", "EC PRIVATE KEY", keyDER)
}

// TestConnectTLS: tls:// (or no scheme) and a CA give an encrypted
// connection; without the CA the server's certificate is refused.
func TestConnectTLS(t *testing.T) {
	fleettest.Require(t)
	ca, cert, key := certs(t, t.TempDir())
	srv := fleettest.StartWithConfig(t, fmt.Sprintf("tls {\n  cert_file: %q\n  key_file: %q\n}\n", cert, key))
	hostPort := strings.TrimPrefix(srv.URL, "nats://")

	for _, url := range []string{"tls://" + hostPort, hostPort, srv.URL} {
		nc, err := fleet.Connect(fleet.ConnectOptions{URLs: url, CA: ca})
		require.NoError(t, err, url)
		state, err := nc.TLSConnectionState()
		assert.NoError(t, err, "%s: not TLS", url)
		assert.True(t, state.HandshakeComplete, url)
		nc.Close()
	}
	_, err := fleet.Connect(fleet.ConnectOptions{URLs: "tls://" + hostPort, Timeout: time.Second})
	assert.Error(t, err, "a certificate from an unknown CA is refused")
	assert.True(t, errdefs.IsUnavailable(err))
}

// TestConnectRefusesClearTextUnlessTheURLSaysSo: a tls:// URL (or one
// without a scheme) to a server without TLS is refused; nats:// is
// clear text, as asked.
func TestConnectRefusesClearTextUnlessTheURLSaysSo(t *testing.T) {
	srv := fleettest.Start(t)
	hostPort := strings.TrimPrefix(srv.URL, "nats://")
	for _, url := range []string{"tls://" + hostPort, hostPort} {
		nc, err := fleet.Connect(fleet.ConnectOptions{URLs: url, Timeout: time.Second})
		if !assert.Error(t, err, "%s went in clear", url) {
			nc.Close()
		}
	}
	nc, err := fleet.Connect(fleet.ConnectOptions{URLs: srv.URL})
	require.NoError(t, err)
	defer nc.Close()
	_, err = nc.TLSConnectionState()
	assert.Error(t, err, "nats:// is clear text")
}
