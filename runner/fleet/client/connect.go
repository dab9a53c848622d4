package client

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// ConnectOptions say how to reach NATS. Everything is passed through to
// the NATS client.
type ConnectOptions struct {
	// URLs are one or more server URLs, separated by commas. A URL
	// without a scheme is tls://.
	URLs string
	// Creds is a credentials file (a user JWT and its NKey seed), as
	// `nsc` writes them. The client reads it at each connect; Connect
	// refuses one that is missing or holds no JWT and seed as invalid
	// input, before it dials.
	Creds string
	// CA is a PEM file of the CAs that sign the servers' certificates;
	// default: the system's.
	CA string
	// Cert and Key are a client certificate and its key, for servers
	// that verify clients.
	Cert, Key string
	// Name is the connection's name, as the server's monitoring shows it.
	Name string
	// Timeout bounds each dial. Default 5s.
	Timeout time.Duration
}

// Connect connects to NATS. Nothing goes in clear unless every URL says
// so with nats:// or ws://; a tls:// or wss:// URL, a URL without a
// scheme, or a CA or client certificate makes the connection TLS, and a
// server that does not speak TLS is refused. Mixing clear and TLS URLs
// is refused. The connection reconnects forever, to any server of the
// cluster, and buffers what is published meanwhile.
func Connect(o ConnectOptions) (*nats.Conn, error) {
	urls, secure, err := parseURLs(o.URLs)
	if err != nil {
		return nil, err
	}
	if (o.Cert == "") != (o.Key == "") {
		return nil, fmt.Errorf("a client certificate needs both its file and its key: %w", errdefs.ErrInvalidArgument)
	}
	if o.Creds != "" {
		if err := checkCreds(o.Creds); err != nil {
			return nil, err
		}
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
	}
	if secure {
		opts = append(opts, nats.Secure())
	}
	if o.CA != "" {
		opts = append(opts, nats.RootCAs(o.CA))
	}
	if o.Cert != "" {
		opts = append(opts, nats.ClientCert(o.Cert, o.Key))
	}
	if o.Creds != "" {
		opts = append(opts, nats.UserCredentials(o.Creds))
	}
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		// The server answered and refused us: no retry will help.
		return nil, fmt.Errorf("connecting to NATS at %s: %w: %w\nhint: check the credentials (--creds, or the user in the URL) against the server's accounts",
			redact(urls), err, errdefs.ErrPermissionDenied)
	case err != nil:
		return nil, fmt.Errorf("connecting to NATS at %s: %w", redact(urls), unavailable(err))
	}
	return nc, nil
}

// checkCreds reads a credentials file as the client will at each
// connect, so that one that is missing, unreadable or not a user's
// credentials is told as such, naming it, and not as the server being
// out of reach (or, against a server without auth, not at all).
func checkCreds(path string) error {
	const hint = "give the .creds file of a NATS user, with its JWT and its seed, as nsc writes it"
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // it names the file again
		}
		return fmt.Errorf("NATS credentials file %s: %w: %s: %w", path, err, hint, errdefs.ErrInvalidArgument)
	}
	defer clear(b)
	kp, err := nkeys.ParseDecoratedUserNKey(b)
	if err != nil {
		return fmt.Errorf("NATS credentials file %s has no user seed (%w): %s: %w", path, err, hint, errdefs.ErrInvalidArgument)
	}
	kp.Wipe()
	if jwt, _ := nkeys.ParseDecoratedJWT(b); strings.Count(jwt, ".") != 2 || strings.ContainsAny(jwt, " \t\r\n") {
		return fmt.Errorf("NATS credentials file %s has no user JWT: %s: %w", path, hint, errdefs.ErrInvalidArgument)
	}
	return nil
}

// parseURLs checks the URLs and tells whether TLS is required.
func parseURLs(list string) (urls []string, secure bool, err error) {
	clear := 0
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		if !strings.Contains(raw, "://") {
			raw = "tls://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return nil, false, fmt.Errorf("NATS URL %q: give nats://HOST:PORT, tls://HOST:PORT, ws:// or wss://: %w", redact([]string{raw}), errdefs.ErrInvalidArgument)
		}
		switch u.Scheme {
		case "nats", "ws":
			clear++
		case "tls", "wss":
		default:
			return nil, false, fmt.Errorf("NATS URL %q: unknown scheme %q: give nats://, tls://, ws:// or wss://: %w", redact([]string{raw}), u.Scheme, errdefs.ErrInvalidArgument)
		}
		urls = append(urls, raw)
	}
	switch {
	case len(urls) == 0:
		return nil, false, fmt.Errorf("no NATS URL given: %w", errdefs.ErrInvalidArgument)
	case clear > 0 && clear < len(urls):
		return nil, false, fmt.Errorf("NATS URLs %s mix clear (nats://, ws://) and TLS (tls://, wss://) ones: give one kind: %w", redact(urls), errdefs.ErrInvalidArgument)
	}
	return urls, clear == 0, nil
}

// redact hides passwords and tokens in URLs, for messages.
func redact(urls []string) string {
	out := make([]string, len(urls))
	for i, raw := range urls {
		out[i] = raw
		if u, err := url.Parse(raw); err == nil && u.User != nil {
			u.User = url.User("REDACTED")
			out[i] = u.String()
		}
	}
	return strings.Join(out, ",")
}

// unavailable marks err as the server being out of reach.
func unavailable(err error) error {
	if errdefs.IsUnavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
}
