package fleet_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner/fleet"
	"github.com/sandbox-runner/sandbox-runner/runner/fleet/fleettest"
)

// operatorServer is a nats-server in operator (JWT) mode: it trusts one
// operator, whose accounts it knows from a memory resolver, and lets in
// only users whose JWT an account it knows signed.
type operatorServer struct {
	srv *fleettest.Server
	// account signs the users of the account the server trusts, which
	// has JetStream.
	account nkeys.KeyPair
}

// startOperatorServer starts a server that trusts a new operator and,
// of its accounts, a system account and one account with JetStream
// without limits.
func startOperatorServer(t *testing.T) *operatorServer {
	t.Helper()
	fleettest.Require(t)
	operator, err := nkeys.CreateOperator()
	require.NoError(t, err)
	operatorPub, err := operator.PublicKey()
	require.NoError(t, err)

	// newAccount returns an account's key and its JWT, signed by the
	// operator.
	newAccount := func(name string, js bool) (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		require.NoError(t, err)
		pub, err := kp.PublicKey()
		require.NoError(t, err)
		claims := jwt.NewAccountClaims(pub)
		claims.Name = name
		if js {
			// Zero would mean no JetStream for the account.
			claims.Limits.JetStreamLimits = jwt.JetStreamLimits{
				MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit,
				Streams: jwt.NoLimit, Consumer: jwt.NoLimit,
			}
		}
		token, err := claims.Encode(operator)
		require.NoError(t, err)
		return kp, pub, token
	}
	_, sysPub, sysJWT := newAccount("SYS", false)
	account, accountPub, accountJWT := newAccount("FLEET", true)

	oc := jwt.NewOperatorClaims(operatorPub)
	oc.Name = "fleet-test"
	oc.SystemAccount = sysPub
	operatorJWT, err := oc.Encode(operator)
	require.NoError(t, err)

	srv := fleettest.StartWithConfig(t, fmt.Sprintf(
		"operator: %q\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %q\n  %s: %q\n}\n",
		operatorJWT, sysPub, sysPub, sysJWT, accountPub, accountJWT))
	return &operatorServer{srv: srv, account: account}
}

// writeCreds writes a credentials file, as nsc does, for a new user
// that signer signs, and returns its path. With otherSeed, the file has
// the seed of another user than the one of the JWT.
func writeCreds(t *testing.T, signer nkeys.KeyPair, otherSeed bool) string {
	t.Helper()
	user, err := nkeys.CreateUser()
	require.NoError(t, err)
	userPub, err := user.PublicKey()
	require.NoError(t, err)
	claims := jwt.NewUserClaims(userPub)
	claims.Name = "worker"
	token, err := claims.Encode(signer)
	require.NoError(t, err)
	seed, err := user.Seed()
	require.NoError(t, err)
	creds, err := jwt.FormatUserConfig(token, seed)
	require.NoError(t, err)
	if otherSeed {
		// FormatUserConfig checks that the seed is the JWT's user's.
		other, err := nkeys.CreateUser()
		require.NoError(t, err)
		otherSeed, err := other.Seed()
		require.NoError(t, err)
		creds = bytes.Replace(creds, seed, otherSeed, 1)
		require.True(t, bytes.Contains(creds, otherSeed))
	}
	path := filepath.Join(t.TempDir(), "user.creds")
	require.NoError(t, os.WriteFile(path, creds, 0o600))
	return path
}

// connectCreds connects to urls as the user of a credentials file.
func connectCreds(t *testing.T, urls, creds string) *nats.Conn {
	t.Helper()
	nc, err := fleet.Connect(fleet.ConnectOptions{URLs: urls, Creds: creds, Name: t.Name()})
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// TestConnectCredsRunsTheFleet: against a server in operator mode, which
// lets in only users its trusted account signed, a worker and a client
// connected with a credentials file (ConnectOptions.Creds, the --creds
// flag) set up the fleet's streams, consumer and presence bucket in the
// account's JetStream, and a task goes through the queue and is
// answered.
func TestConnectCredsRunsTheFleet(t *testing.T) {
	ops := startOperatorServer(t)
	creds := writeCreds(t, ops.account, false)

	// The server listens before its JetStream is up: wait for it,
	// through the creds, which also proves the account has JetStream.
	nc := connectCreds(t, ops.srv.URL, creds)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		assert.NoError(c, err)
	}, 30*time.Second, 50*time.Millisecond, "JetStream through the creds")

	w, err := fleet.NewWorker(connectCreds(t, ops.srv.URL, creds), newFakeExec(),
		fleet.WithCatalog(catalog()), fleet.WithRuntimes("sh"), fleet.WithCapacity(1),
		fleet.WithPollWait(500*time.Millisecond), fleet.WithID("creds-worker"),
		fleet.WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil))))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Errorf("the worker did not stop")
		}
	})
	waitForWorker(t, nc, w.ID())

	c, err := fleet.NewClient(connectCreds(t, ops.srv.URL, creds))
	require.NoError(t, err)
	require.NoError(t, c.Submit(context.Background(), shTask("creds-1", "echo through the creds")))
	a := wait(t, c, "creds-1", 30*time.Second)
	require.NoError(t, a.Err())
	assert.Equal(t, "through the creds\n", string(a.Result.Stdout.Data))
	assert.Equal(t, "creds-worker", a.Worker)

	for _, name := range []string{fleet.TaskStream, fleet.ResultStream, fleet.DeadStream} {
		_, err := js.Stream(context.Background(), name)
		assert.NoError(t, err, "stream %s in the account", name)
	}
	tasks, err := js.Stream(context.Background(), fleet.TaskStream)
	require.NoError(t, err)
	_, err = tasks.Consumer(context.Background(), fleet.ConsumerName("sh"))
	assert.NoError(t, err, "the sh consumer in the account")
}

// TestConnectCredsRefused: the same server refuses, as an authorization
// failure, a client without creds, a user that an account the server
// does not trust signed, and a creds file whose seed is not the JWT's
// user's (the seed signs the server's nonce).
func TestConnectCredsRefused(t *testing.T) {
	ops := startOperatorServer(t)
	untrusted, err := nkeys.CreateAccount()
	require.NoError(t, err)

	for _, tc := range []struct {
		name, creds string
	}{
		{"no creds", ""},
		{"untrusted account", writeCreds(t, untrusted, false)},
		{"wrong seed", writeCreds(t, ops.account, true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := fleet.Connect(fleet.ConnectOptions{URLs: ops.srv.URL, Creds: tc.creds, Timeout: 5 * time.Second})
			if !assert.Error(t, err, "let in") {
				nc.Close()
				return
			}
			assert.ErrorIs(t, err, nats.ErrAuthorization)
			assert.True(t, errdefs.IsPermissionDenied(err), "a refused login is permission denied, not unavailable: %v", err)
			assert.False(t, errdefs.IsUnavailable(err), "a refused login is not the server being out of reach: %v", err)
			assert.Contains(t, strings.ToLower(err.Error()), "authorization violation")
		})
	}
}

// TestConnectCredsFileUnusable: a credentials file that is not there,
// cannot be read, or holds no user's JWT and seed is an error in what
// the user gave, which names the file, and not the server being out of
// reach. The server lets anyone in: an empty file is not taken for no
// creds.
func TestConnectCredsFileUnusable(t *testing.T) {
	srv := fleettest.Start(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	user, err := nkeys.CreateUser()
	require.NoError(t, err)
	seed, err := user.Seed()
	require.NoError(t, err)
	missing := filepath.Join(dir, "missing.creds")

	for _, path := range []string{
		missing,
		dir,
		write("empty.creds", ""),
		write("text.creds", "not a creds file\n"),
		write("seed-only.nk", string(seed)+"\n"),
	} {
		nc, err := fleet.Connect(fleet.ConnectOptions{URLs: srv.URL, Creds: path})
		if !assert.Error(t, err, path) {
			nc.Close()
			continue
		}
		t.Log(err)
		assert.Contains(t, err.Error(), "NATS credentials file "+path)
		assert.True(t, errdefs.IsInvalidArgument(err), "%v: not invalid input", err)
		assert.False(t, errdefs.IsUnavailable(err), "%v: not the server out of reach", err)
		if path == missing {
			assert.ErrorIs(t, err, fs.ErrNotExist)
		}
	}
}
