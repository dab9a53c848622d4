package images

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// dockerHubAuthKey is the key `docker login` files Docker Hub's
// credentials under, for historical reasons.
const dockerHubAuthKey = "https://index.docker.io/v1/"

// maxDockerConfigSize bounds a credentials file: a larger one is surely
// not one.
const maxDockerConfigSize = 4 << 20

// DockerConfigPath returns the Docker-style credentials file to read:
// explicit when given, else $DOCKER_CONFIG/config.json, else
// ~/.docker/config.json. It does not check that the file exists.
func DockerConfigPath(explicit string) string {
	if explicit != "" {
		return explicit
	}
	if dir := os.Getenv("DOCKER_CONFIG"); dir != "" {
		return filepath.Join(dir, "config.json")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".docker", "config.json")
}

// Credentials are registry logins read from a Docker-style config.json
// (what `docker login` and `nerdctl login` write): the "auths" entries,
// each with "auth" (base64 of "user:password"), or "username" and
// "password", or an "identitytoken". Credential helpers ("credsStore",
// "credHelpers") are not run: their logins are not seen.
type Credentials struct {
	auths map[string]authEntry
}

type authEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
}

// LoadCredentials reads the credentials file at path. A missing file is
// an error only when required; otherwise it means no credentials.
func LoadCredentials(path string, required bool) (*Credentials, error) {
	if path == "" {
		return &Credentials{}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !required {
			return &Credentials{}, nil
		}
		return nil, fmt.Errorf("reading registry credentials: %w", err)
	}
	defer f.Close()
	c, err := ParseCredentials(f)
	if err != nil {
		return nil, fmt.Errorf("registry credentials %s: %w", path, err)
	}
	return c, nil
}

// ParseCredentials reads a Docker-style config.json from r.
func ParseCredentials(r io.Reader) (*Credentials, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxDockerConfigSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxDockerConfigSize {
		return nil, fmt.Errorf("larger than %d bytes: %w", maxDockerConfigSize, errdefs.ErrInvalidArgument)
	}
	var file struct {
		Auths map[string]authEntry `json:"auths"`
	}
	if len(strings.TrimSpace(string(b))) > 0 {
		if err := json.Unmarshal(b, &file); err != nil {
			return nil, fmt.Errorf("not a Docker config.json: %v: %w", err, errdefs.ErrInvalidArgument)
		}
	}
	c := &Credentials{auths: map[string]authEntry{}}
	for key, e := range file.Auths {
		if e.Auth != "" {
			user, secret, err := decodeAuth(e.Auth)
			if err != nil {
				return nil, fmt.Errorf("auths %q: %w", key, err)
			}
			e.Username, e.Password = user, secret
		}
		host := normalizeAuthKey(key)
		if host == "" {
			continue
		}
		c.auths[host] = e
	}
	return c, nil
}

// decodeAuth splits the base64 "user:password" of an "auth" field.
func decodeAuth(s string) (string, string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		// Some tools write it unpadded.
		if b, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "=")); err != nil {
			return "", "", fmt.Errorf("auth is not base64: %w", errdefs.ErrInvalidArgument)
		}
	}
	user, secret, ok := strings.Cut(string(b), ":")
	if !ok || user == "" {
		return "", "", fmt.Errorf("auth is not base64 of user:password: %w", errdefs.ErrInvalidArgument)
	}
	return user, secret, nil
}

// normalizeAuthKey turns an auths key ("https://host:5000/v1/", "host")
// into the host the registry is reached at, the name containerd asks
// credentials for.
func normalizeAuthKey(key string) string {
	if key == dockerHubAuthKey {
		return "registry-1.docker.io"
	}
	key = strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	host, _, _ := strings.Cut(key, "/")
	switch host {
	case "docker.io", "index.docker.io":
		return "registry-1.docker.io"
	}
	return host
}

// Lookup returns the login for host, in the form containerd's
// authorizer takes: user and password, or an empty user and an identity
// token. A host without a login gets empty strings and no error, so
// anonymous pulls work.
func (c *Credentials) Lookup(host string) (string, string, error) {
	if c == nil {
		return "", "", nil
	}
	e, ok := c.auths[normalizeAuthKey(host)]
	if !ok {
		return "", "", nil
	}
	if e.IdentityToken != "" {
		return "", e.IdentityToken, nil
	}
	return e.Username, e.Password, nil
}
