package images

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestParseCredentials(t *testing.T) {
	c, err := ParseCredentials(strings.NewReader(`{
	  "auths": {
	    "https://index.docker.io/v1/": {"auth": "` + b64("hubuser:hubpass") + `"},
	    "127.0.0.1:5000": {"auth": "` + b64("alice:s3cret:with:colons") + `"},
	    "https://registry.example.test/v2/": {"username": "bob", "password": "pw"},
	    "http://plain.example.test": {"auth": "` + strings.TrimRight(b64("carol:x"), "=") + `"},
	    "token.example.test": {"identitytoken": "refresh-token"}
	  },
	  "credsStore": "desktop",
	  "HttpHeaders": {"User-Agent": "x"}
	}`))
	require.NoError(t, err)
	for _, tc := range []struct{ host, user, secret string }{
		{"registry-1.docker.io", "hubuser", "hubpass"},
		{"docker.io", "hubuser", "hubpass"},
		{"127.0.0.1:5000", "alice", "s3cret:with:colons"},
		{"registry.example.test", "bob", "pw"},
		{"plain.example.test", "carol", "x"},
		{"token.example.test", "", "refresh-token"},
		{"unknown.example.test", "", ""},
		{"127.0.0.1:5001", "", ""},
	} {
		user, secret, err := c.Lookup(tc.host)
		require.NoError(t, err)
		assert.Equal(t, tc.user, user, tc.host)
		assert.Equal(t, tc.secret, secret, tc.host)
	}
}

func TestParseCredentialsEmpty(t *testing.T) {
	for _, in := range []string{"", "  \n", "{}", `{"auths": {}}`} {
		c, err := ParseCredentials(strings.NewReader(in))
		require.NoError(t, err, "%q", in)
		u, s, err := c.Lookup("registry-1.docker.io")
		assert.NoError(t, err)
		assert.Empty(t, u+s)
	}
	var nilCreds *Credentials
	u, s, err := nilCreds.Lookup("x")
	assert.NoError(t, err)
	assert.Empty(t, u+s)
}

func TestParseCredentialsBad(t *testing.T) {
	for name, in := range map[string]string{
		"not json":        `auths = 1`,
		"auths not map":   `{"auths": []}`,
		"auth not base64": `{"auths": {"h": {"auth": "!!!"}}}`,
		"auth no colon":   `{"auths": {"h": {"auth": "` + b64("nocolon") + `"}}}`,
	} {
		_, err := ParseCredentials(strings.NewReader(in))
		assert.True(t, errdefs.IsInvalidArgument(err), "%s: %v", name, err)
	}
}

func TestLoadCredentials(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "absent.json")
	c, err := LoadCredentials(missing, false)
	require.NoError(t, err, "a default file that is not there means no logins")
	assert.NotNil(t, c)
	_, err = LoadCredentials(missing, true)
	assert.ErrorContains(t, err, "absent.json", "a file the user named must exist")

	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte("{"), 0o600))
	_, err = LoadCredentials(bad, false)
	assert.ErrorContains(t, err, bad)
}

func TestDockerConfigPath(t *testing.T) {
	assert.Equal(t, "/x/c.json", DockerConfigPath("/x/c.json"))
	t.Setenv("DOCKER_CONFIG", "/etc/dockercfg")
	assert.Equal(t, "/etc/dockercfg/config.json", DockerConfigPath(""))
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("HOME", "/home/someone")
	assert.Equal(t, "/home/someone/.docker/config.json", DockerConfigPath(""))
}
