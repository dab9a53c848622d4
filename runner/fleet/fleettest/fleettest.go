// Package fleettest starts real NATS servers with JetStream on loopback
// for tests: one, or a cluster whose nodes can be stopped one by one.
// It runs the nats-server binary (Debian's nats-server package, or
// $SANDBOX_RUNNER_NATS_SERVER), each server on ports picked at random,
// with its own store in a temp dir, and stops it when the test ends.
//
// Where no nats-server is installed the tests that need one skip,
// unless CI=true or SANDBOX_RUNNER_INTEGRATION=1 demand that they run.
package fleettest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startTimeout bounds a server's or a cluster's start.
const startTimeout = 30 * time.Second

// Binary returns the nats-server binary to run.
func Binary() (string, error) {
	if b := os.Getenv("SANDBOX_RUNNER_NATS_SERVER"); b != "" {
		return b, nil
	}
	b, err := exec.LookPath("nats-server")
	if err != nil {
		return "", fmt.Errorf("no nats-server on PATH (Debian: apt-get install nats-server; or set SANDBOX_RUNNER_NATS_SERVER): %w", err)
	}
	return b, nil
}

// Require returns the nats-server binary, or skips t when there is none
// and the environment does not demand the test.
func Require(t testing.TB) string {
	t.Helper()
	b, err := Binary()
	if err != nil {
		if mustRun() {
			t.Fatalf("the NATS tests must run here but cannot: %v", err)
		}
		t.Skipf("NATS test: %v", err)
	}
	return b
}

func mustRun() bool {
	for _, key := range []string{"CI", "SANDBOX_RUNNER_INTEGRATION"} {
		if v, err := strconv.ParseBool(os.Getenv(key)); err == nil && v {
			return true
		}
	}
	return false
}

// Server is one nats-server process.
type Server struct {
	// Name is the server's name in its cluster.
	Name string
	// URL is its client URL, nats://127.0.0.1:PORT.
	URL string
	// Dir holds its config and JetStream store.
	Dir string

	t         testing.TB
	bin       string
	config    string
	cmd       *exec.Cmd
	out       *lockedBuffer
	exited    chan struct{}
	stopOnce  sync.Once
	clientURL string
}

// Start starts a single server with JetStream.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWithConfig(t, "")
}

// StartWithConfig starts a single server with JetStream and extra
// lines of configuration, such as a tls block. It waits until the
// server listens, not for JetStream (a client may need TLS or a login).
func StartWithConfig(t testing.TB, extra string) *Server {
	t.Helper()
	bin := Require(t)
	s := newServer(t, bin, "n1", freePort(t))
	s.writeConfig(extra)
	s.start()
	if extra == "" {
		WaitJetStream(t, s.URL)
	}
	return s
}

// StartCluster starts n servers routed to one another as one cluster
// with JetStream, and waits until JetStream has a leader.
func StartCluster(t testing.TB, n int) []*Server {
	t.Helper()
	bin := Require(t)
	routes := make([]int, n)
	var servers []*Server
	for i := range n {
		routes[i] = freePort(t)
		servers = append(servers, newServer(t, bin, fmt.Sprintf("n%d", i+1), freePort(t)))
	}
	var urls []string
	for _, p := range routes {
		urls = append(urls, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	for i, s := range servers {
		s.writeConfig(fmt.Sprintf("cluster {\n  name: sandbox-test\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n",
			routes[i], strings.Join(urls, ", ")))
		s.start()
	}
	WaitJetStream(t, URLs(servers))
	return servers
}

// URLs joins the servers' client URLs with commas, as clients take them.
func URLs(servers []*Server) string {
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.URL)
	}
	return strings.Join(urls, ",")
}

func newServer(t testing.TB, bin, name string, port int) *Server {
	dir, err := os.MkdirTemp("", "srnats-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &Server{
		Name: name, URL: fmt.Sprintf("nats://127.0.0.1:%d", port), Dir: dir,
		t: t, bin: bin, config: filepath.Join(dir, "nats.conf"), out: &lockedBuffer{}, exited: make(chan struct{}),
		clientURL: fmt.Sprintf("127.0.0.1:%d", port),
	}
}

func (s *Server) writeConfig(extra string) {
	conf := fmt.Sprintf("server_name: %s\nlisten: %s\njetstream {\n  store_dir: %q\n  max_memory_store: 64MB\n  max_file_store: 1GB\n}\n%s",
		s.Name, s.clientURL, filepath.Join(s.Dir, "js"), extra)
	if err := os.WriteFile(s.config, []byte(conf), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, "-c", s.config)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("starting nats-server: %v", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	s.t.Cleanup(func() {
		s.Stop()
		if s.t.Failed() {
			s.t.Logf("nats-server %s log:\n%s", s.Name, s.out.String())
		}
	})
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-s.exited:
			s.t.Fatalf("nats-server %s exited at start:\n%s", s.Name, s.out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", s.clientURL, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("nats-server %s does not listen on %s: %v\n%s", s.Name, s.clientURL, err, s.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the server (SIGTERM, SIGKILL after 10s) and waits for it.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		if s.cmd == nil || s.cmd.Process == nil {
			return
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
}

// Log returns what the server printed.
func (s *Server) Log() string { return s.out.String() }

// WaitJetStream waits until JetStream answers through urls: on a
// cluster, until it elected its meta leader.
func WaitJetStream(t testing.TB, urls string) {
	t.Helper()
	nc, err := nats.Connect(urls, nats.Timeout(time.Second))
	if err != nil {
		t.Fatalf("connecting to %s: %v", urls, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream at %s is not ready: %v", urls, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePort returns a loopback TCP port nobody listens on now.
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
