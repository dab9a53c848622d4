package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

// fakeExec is an Executor whose tasks do what run says; by default they
// exit 0 at once.
type fakeExec struct {
	mu    sync.Mutex
	tasks []runner.Task
	run   func(ctx context.Context, t runner.Task) (*runner.Result, error)
}

func (f *fakeExec) Run(ctx context.Context, t runner.Task) (*runner.Result, error) {
	f.mu.Lock()
	f.tasks = append(f.tasks, t)
	f.mu.Unlock()
	if f.run != nil {
		return f.run(ctx, t)
	}
	return &runner.Result{ID: t.ID, Runtime: t.Runtime, Stage: runner.Stage{Outcome: runner.OutcomeExited}}, nil
}

func (f *fakeExec) seen() []runner.Task {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]runner.Task(nil), f.tasks...)
}

// blockUntilCancelled is a task that runs until its context ends, as a
// real one is killed then.
func blockUntilCancelled(ctx context.Context, t runner.Task) (*runner.Result, error) {
	<-ctx.Done()
	return &runner.Result{ID: t.ID, Stage: runner.Stage{Outcome: runner.OutcomeCancelled, Cancelled: true, ExitCode: runner.ExitCancelled}}, nil
}

// testServer is a Service serving on a unix socket of its own.
type testServer struct {
	svc    *Service
	socket string
	http   *http.Client
	stop   context.CancelFunc
	done   chan error
}

// shortDir returns a fresh directory with a short path: unix socket
// paths must stay under 108 bytes, and test names make long ones.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "srsvc-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startService(t *testing.T, exec Executor, opts ...Option) *testServer {
	t.Helper()
	return startServiceOn(t, exec, nil, opts...)
}

// startServiceOn serves on a unix socket and on extra listeners.
func startServiceOn(t *testing.T, exec Executor, extra []net.Listener, opts ...Option) *testServer {
	t.Helper()
	opts = append([]Option{WithLogger(slog.New(slog.NewTextHandler(t.Output(), nil)))}, opts...)
	svc, err := New(exec, opts...)
	require.NoError(t, err)
	socket := filepath.Join(shortDir(t), "s.sock")
	ls, err := Listen(ListenConfig{Socket: socket})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{svc: svc, socket: socket, http: unixHTTP(socket), stop: cancel, done: make(chan error, 1)}
	go func() { ts.done <- svc.Serve(ctx, append(ls, extra...)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-ts.done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("the service did not stop")
		}
	})
	return ts
}

func unixHTTP(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (a answer) String() string { return fmt.Sprintf("%d %s", a.status, a.body) }

func (a answer) errorDoc(t *testing.T) ErrorResponse {
	t.Helper()
	var e ErrorResponse
	require.NoError(t, json.Unmarshal([]byte(a.body), &e), "%s", a)
	return e
}

func (ts *testServer) do(t *testing.T, ctx context.Context, method, path, body string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://svc"+path, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := ts.http.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (ts *testServer) post(t *testing.T, body string) answer {
	t.Helper()
	return ts.do(t, context.Background(), http.MethodPost, "/v1/exec", body)
}

func (ts *testServer) get(t *testing.T, path string) answer {
	t.Helper()
	return ts.do(t, context.Background(), http.MethodGet, path, "")
}

// scrape returns the service's metrics, parsed as Prometheus text.
func (ts *testServer) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	a := ts.get(t, "/metrics")
	require.Equal(t, http.StatusOK, a.status, "%s", a)
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(a.body))
	require.NoError(t, err)
	return mfs
}

// metricValue returns the value of the series of family name with the
// label given (or the only one, when label is empty): a counter's or
// gauge's value, a histogram's sample count.
// metricValue sums the series of name that have label=value (all of
// them when label is ""): a counter's or gauge's value, a histogram's
// sample count. It fails when there is none.
func metricValue(t *testing.T, mfs map[string]*dto.MetricFamily, name, label, value string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	require.True(t, ok, "no metric %s", name)
	var sum float64
	found := false
	for _, m := range mf.GetMetric() {
		match := label == ""
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label && lp.GetValue() == value {
				match = true
			}
		}
		if !match {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	if !found {
		t.Fatalf("no series %s{%s=%q}", name, label, value)
	}
	return sum
}

const shTask = `{"runtime": "sh", "files": [{"content": "echo hi"}]}`

func TestExecReturnsTheResultDocument(t *testing.T) {
	fe := &fakeExec{run: func(_ context.Context, t runner.Task) (*runner.Result, error) {
		return &runner.Result{ID: t.ID, Runtime: t.Runtime, Image: "img", Stage: runner.Stage{
			Outcome: runner.OutcomeExited, ExitCode: 3, Stdout: runner.Stream{Data: []byte("hi\n")}, Duration: 12 * time.Millisecond,
		}}, nil
	}}
	ts := startService(t, fe, WithLimits(func(rt string) (runner.Limits, error) {
		return runner.Limits{Timeout: 7 * time.Second, Memory: 128 << 20}, nil
	}))
	a := ts.post(t, `{"runtime": "sh", "files": [{"content": "echo hi"}], "stdin": "x", "env": {"A": "1"}, "args": ["z"],
		"limits": {"memory": "64m"}}`)
	require.Equal(t, http.StatusOK, a.status, "%s", a)
	assert.Equal(t, "application/json", a.header.Get("Content-Type"))

	var res runner.Result
	require.NoError(t, json.Unmarshal([]byte(a.body), &res))
	assert.Equal(t, runner.OutcomeExited, res.Outcome)
	assert.Equal(t, 3, res.ExitCode)
	assert.Equal(t, "hi\n", string(res.Stdout.Data))
	assert.Equal(t, res.ID, a.header.Get("X-Sandbox-Runner-Task"))
	// The body is exactly the document exec --json prints.
	want, err := json.Marshal(res)
	require.NoError(t, err)
	assert.JSONEq(t, string(want), a.body)

	tasks := fe.seen()
	require.Len(t, tasks, 1)
	assert.Empty(t, tasks[0].ID, "the executor names the task: a pooled sandbox has its id already")
	assert.Equal(t, runner.Limits{Timeout: 7 * time.Second, Memory: 64 << 20}, tasks[0].Limits,
		"the runtime's defaults, with the request's limits on top")
	assert.Equal(t, []string{"A=1"}, tasks[0].Env)
	assert.Equal(t, []string{"z"}, tasks[0].Args)
}

func TestExecRefusesBadRequests(t *testing.T) {
	fe := &fakeExec{}
	ts := startService(t, fe, WithMaxBody(512))
	for _, tc := range []struct {
		name   string
		method string
		path   string
		body   string
		status int
		kind   string
		want   string
	}{
		{"malformed JSON", "POST", "/v1/exec", `{"runtime": `, 400, KindInvalidInput, "malformed JSON"},
		{"unknown field", "POST", "/v1/exec", `{"runtime": "sh", "files": [{"content": "x"}], "network": true}`, 400, KindInvalidInput, `unknown field "network"`},
		{"bad limit", "POST", "/v1/exec", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"memory": "lots"}}`, 400, KindInvalidInput, "limits.memory"},
		{"unknown runtime", "POST", "/v1/exec", `{"runtime": "cobol", "files": [{"content": "x"}]}`, 400, KindInvalidInput, "cobol"},
		{"limit over the host's", "POST", "/v1/exec", `{"runtime": "sh", "files": [{"content": "x"}], "limits": {"cpus": 100000}}`, 400, KindInvalidInput, "cpus"},
		{"bad file name", "POST", "/v1/exec", `{"runtime": "sh", "files": [{"name": "../x", "content": "x"}]}`, 400, KindInvalidInput, "leaves /code"},
		{"oversized body", "POST", "/v1/exec", `{"runtime": "sh", "files": [{"content": "` + strings.Repeat("x", 1000) + `"}]}`, 413, KindTooLarge, "larger than 512 bytes"},
		{"wrong method", "GET", "/v1/exec", "", 405, KindMethodNotAllowed, "use POST"},
		{"no such endpoint", "GET", "/v2/exec", "", 404, KindNotFound, "/v2/exec"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := ts.do(t, context.Background(), tc.method, tc.path, tc.body)
			require.Equal(t, tc.status, a.status, "%s", a)
			e := a.errorDoc(t)
			assert.Equal(t, tc.kind, e.Kind)
			assert.Contains(t, e.Error, tc.want)
		})
	}
	assert.Empty(t, fe.seen(), "no refused request reaches the runner")
	mfs := ts.scrape(t)
	assert.Equal(t, 6.0, metricValue(t, mfs, MetricRejected, "reason", RejectInvalid))
	assert.Equal(t, 1.0, metricValue(t, mfs, MetricRejected, "reason", RejectTooLarge))
}

func TestExecQueuesThenRefusesWith429(t *testing.T) {
	release := make(chan struct{})
	fe := &fakeExec{run: func(ctx context.Context, t runner.Task) (*runner.Result, error) {
		<-release
		return &runner.Result{ID: t.ID, Stage: runner.Stage{Outcome: runner.OutcomeExited}}, nil
	}}
	ts := startService(t, fe, WithMaxConcurrent(1), WithQueue(1))
	answers := make(chan answer, 2)
	go func() { answers <- ts.post(t, shTask) }()
	eventually(t, func() bool { r, _ := ts.svc.lim.counts(); return r == 1 }, "first task running")
	go func() { answers <- ts.post(t, shTask) }()
	eventually(t, func() bool { _, w := ts.svc.lim.counts(); return w == 1 }, "second task queued")

	mfs := ts.scrape(t)
	assert.Equal(t, 1.0, metricValue(t, mfs, MetricInFlight, "", ""))
	assert.Equal(t, 1.0, metricValue(t, mfs, MetricQueueDepth, "", ""))

	a := ts.post(t, shTask)
	require.Equal(t, http.StatusTooManyRequests, a.status, "%s", a)
	assert.Equal(t, "1", a.header.Get("Retry-After"))
	assert.Equal(t, KindQueueFull, a.errorDoc(t).Kind)

	close(release)
	for range 2 {
		a := <-answers
		assert.Equal(t, http.StatusOK, a.status, "%s", a)
	}
	mfs = ts.scrape(t)
	assert.Equal(t, 2.0, metricValue(t, mfs, MetricTasks, "outcome", "exited"))
	assert.Equal(t, 1.0, metricValue(t, mfs, MetricRejected, "reason", RejectQueueFull))
	assert.Equal(t, 2.0, metricValue(t, mfs, MetricStageDuration, "stage", StageQueueWait))
	assert.Equal(t, 0.0, metricValue(t, mfs, MetricInFlight, "", ""))
	assert.Equal(t, 0.0, metricValue(t, mfs, MetricQueueDepth, "", ""))
}

func TestClientHangingUpCancelsItsTask(t *testing.T) {
	cancelled := make(chan error, 1)
	fe := &fakeExec{run: func(ctx context.Context, t runner.Task) (*runner.Result, error) {
		<-ctx.Done()
		cancelled <- ctx.Err()
		return blockUntilCancelled(ctx, t)
	}}
	ts := startService(t, fe)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://svc/v1/exec", strings.NewReader(shTask))
		_, err := ts.http.Do(req)
		errc <- err
	}()
	eventually(t, func() bool { return len(fe.seen()) == 1 }, "task running")
	cancel()
	assert.Error(t, <-errc)
	select {
	case err := <-cancelled:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("the task's context was not cancelled when the client hung up")
	}
	eventually(t, func() bool {
		return metricValue(t, ts.scrape(t), MetricTasks, "outcome", "cancelled") == 1
	}, "the cancelled task is counted")
}

func TestClientHangingUpWhileQueuedLeavesTheQueue(t *testing.T) {
	release := make(chan struct{})
	fe := &fakeExec{run: func(ctx context.Context, t runner.Task) (*runner.Result, error) {
		<-release
		return &runner.Result{ID: t.ID, Stage: runner.Stage{Outcome: runner.OutcomeExited}}, nil
	}}
	ts := startService(t, fe, WithMaxConcurrent(1), WithQueue(1))
	defer close(release)
	go ts.post(t, shTask)
	eventually(t, func() bool { r, _ := ts.svc.lim.counts(); return r == 1 }, "first task running")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://svc/v1/exec", strings.NewReader(shTask))
		if resp, err := ts.http.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	eventually(t, func() bool { _, w := ts.svc.lim.counts(); return w == 1 }, "second task queued")
	cancel()
	eventually(t, func() bool { _, w := ts.svc.lim.counts(); return w == 0 }, "the queue empties")
	assert.Len(t, fe.seen(), 1, "the task that gave up never ran")
}

func TestRunnerErrorsMapToStatusAndKind(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		kind   string
		is     error
	}{
		{fmt.Errorf("%w: image x is not in containerd's store", runner.ErrImageNotFound), 404, KindImageNotFound, runner.ErrImageNotFound},
		{fmt.Errorf("%w: no seccomp", runner.ErrSandboxUnavailable), 503, KindSandboxUnavailable, runner.ErrSandboxUnavailable},
		{fmt.Errorf("dialing: %w", errdefs.ErrUnavailable), 503, KindUnavailable, errdefs.ErrUnavailable},
		{errors.New("creating task: runc exploded"), 500, KindRunnerFailed, nil},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			ts := startService(t, &fakeExec{run: func(context.Context, runner.Task) (*runner.Result, error) { return nil, tc.err }})
			a := ts.post(t, shTask)
			require.Equal(t, tc.status, a.status, "%s", a)
			e := a.errorDoc(t)
			assert.Equal(t, tc.kind, e.Kind)
			assert.Equal(t, tc.err.Error(), e.Error)

			// The client hands back an error of the same class.
			_, err := NewClient(ts.socket).Exec(context.Background(), Request{Runtime: "sh", Files: []File{{Content: "x"}}})
			var se *Error
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tc.status, se.Status)
			assert.Equal(t, tc.err.Error(), err.Error())
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			assert.Equal(t, 2.0, metricValue(t, ts.scrape(t), MetricTasks, "outcome", OutcomeError))
		})
	}
}

func TestClientExec(t *testing.T) {
	fe := &fakeExec{run: func(_ context.Context, t runner.Task) (*runner.Result, error) {
		stdin, _ := io.ReadAll(t.Stdin)
		return &runner.Result{ID: t.ID, Stage: runner.Stage{Outcome: runner.OutcomeExited, ExitCode: 4,
			Stdout: runner.Stream{Data: stdin}, Stderr: runner.Stream{Data: []byte{0xff, 0xfe}, Dropped: 3}}}, nil
	}}
	ts := startService(t, fe)
	c := NewClient(ts.socket)
	require.NoError(t, c.Ping(context.Background()))
	task := runner.Task{Runtime: "sh", Files: []runner.File{{Content: []byte("cat")}}, Limits: runner.Limits{Timeout: time.Second}}
	res, err := c.Exec(context.Background(), NewRequest(task, []byte("piped")))
	require.NoError(t, err)
	assert.Equal(t, 4, res.ExitCode)
	assert.Equal(t, "piped", string(res.Stdout.Data))
	assert.Equal(t, []byte{0xff, 0xfe}, res.Stderr.Data, "binary output survives the trip")
	assert.Equal(t, int64(3), res.Stderr.Dropped)
	assert.Equal(t, time.Second, fe.seen()[0].Limits.Timeout)

	_, err = c.Exec(context.Background(), Request{Runtime: "sh"})
	assert.ErrorIs(t, err, runner.ErrInvalidTask)
	assert.ErrorIs(t, err, errdefs.ErrInvalidArgument)
	assert.Contains(t, err.Error(), "files: required")
}

func TestClientWithoutService(t *testing.T) {
	c := NewClient(filepath.Join(shortDir(t), "absent.sock"))
	err := c.Ping(context.Background())
	assert.ErrorIs(t, err, ErrUnreachable)
	_, err = c.Exec(context.Background(), Request{Runtime: "sh"})
	assert.ErrorIs(t, err, ErrUnreachable)
	assert.Contains(t, err.Error(), "absent.sock")
}

func TestTCPNeedsTheToken(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ts := startServiceOn(t, &fakeExec{}, []net.Listener{tcp}, WithToken("s3cret-token"))
	url := "http://" + tcp.Addr().String()
	for _, tc := range []struct {
		name, header string
		status       int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"wrong token", "Bearer s3cret-tokeN", http.StatusUnauthorized},
		{"token prefix", "Bearer s3cret", http.StatusUnauthorized},
		{"other scheme", "Basic s3cret-token", http.StatusUnauthorized},
		{"right token", "Bearer s3cret-token", http.StatusOK},
		{"scheme in lower case", "bearer s3cret-token", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/healthz", "/metrics"} {
				req, _ := http.NewRequest(http.MethodGet, url+path, nil)
				if tc.header != "" {
					req.Header.Set("Authorization", tc.header)
				}
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				assert.Equal(t, tc.status, resp.StatusCode, "%s: %s", path, body)
				if tc.status == http.StatusUnauthorized {
					assert.Equal(t, `Bearer realm="sandbox-runner"`, resp.Header.Get("WWW-Authenticate"))
					assert.Contains(t, string(body), "Bearer")
				}
			}
		})
	}
	// The unix socket's permissions are its authentication.
	assert.Equal(t, http.StatusOK, ts.get(t, "/healthz").status)
}

func TestServeRefusesTCPWithoutToken(t *testing.T) {
	svc, err := New(&fakeExec{})
	require.NoError(t, err)
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	err = svc.Serve(context.Background(), []net.Listener{tcp})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "needs a bearer token")
	_, err = net.Dial("tcp", tcp.Addr().String())
	assert.Error(t, err, "the refused listener is closed")
}

func TestShutdownLetsTasksFinishThenCancelsThem(t *testing.T) {
	var states []string
	var mu sync.Mutex
	oldNotify := notify
	notify = func(s string) error { mu.Lock(); states = append(states, s); mu.Unlock(); return nil }
	t.Cleanup(func() { notify = oldNotify })

	quick := make(chan struct{})
	fe := &fakeExec{run: func(ctx context.Context, t runner.Task) (*runner.Result, error) {
		if t.Args[0] == "quick" {
			<-quick
			return &runner.Result{ID: t.ID, Stage: runner.Stage{Outcome: runner.OutcomeExited}}, nil
		}
		return blockUntilCancelled(ctx, t)
	}}
	ts := startService(t, fe, WithMaxConcurrent(2), WithQueue(1), WithGrace(500*time.Millisecond))
	answers := map[string]chan answer{"quick": make(chan answer, 1), "slow": make(chan answer, 1), "queued": make(chan answer, 1)}
	// Each request is in its place before the next is sent.
	for i, name := range []string{"quick", "slow", "queued"} {
		go func() {
			answers[name] <- ts.post(t, `{"runtime": "sh", "files": [{"content": "x"}], "args": ["`+name+`"]}`)
		}()
		eventually(t, func() bool {
			r, w := ts.svc.lim.counts()
			return r+w == i+1 && len(fe.seen()) == r
		}, name+" in place")
	}

	stopped := time.Now()
	ts.stop()
	a := <-answers["queued"]
	assert.Equal(t, http.StatusServiceUnavailable, a.status, "a queued task is refused at shutdown: %s", a)
	assert.Equal(t, KindShuttingDown, a.errorDoc(t).Kind)
	close(quick)
	a = <-answers["quick"]
	require.Equal(t, http.StatusOK, a.status, "%s", a)
	assert.Contains(t, a.body, `"outcome":"exited"`)

	a = <-answers["slow"]
	require.Equal(t, http.StatusOK, a.status, "%s", a)
	assert.Contains(t, a.body, `"outcome":"cancelled"`, "the task still running after the grace period is cancelled")
	assert.GreaterOrEqual(t, time.Since(stopped), 500*time.Millisecond, "not before the grace period is over")
	select {
	case err := <-ts.done:
		assert.NoError(t, err)
		ts.done <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, states, 2)
	assert.True(t, strings.HasPrefix(states[0], "READY=1\n"), states[0])
	assert.Equal(t, "STOPPING=1", states[1])
}

func TestReadyz(t *testing.T) {
	healthy := true
	var mu sync.Mutex
	check := Check{Name: "images", Run: func(context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if !healthy {
			return "", errors.New("image x is missing")
		}
		return "present: x", nil
	}}
	ts := startService(t, &fakeExec{}, WithReadiness(check))
	a := ts.get(t, "/readyz")
	require.Equal(t, http.StatusOK, a.status, "%s", a)
	var r ReadyResponse
	require.NoError(t, json.Unmarshal([]byte(a.body), &r))
	assert.True(t, r.Ready)
	assert.Equal(t, []runner.Finding{{Name: "images", OK: true, Detail: "present: x"}}, r.Checks)

	mu.Lock()
	healthy = false
	mu.Unlock()
	a = ts.get(t, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, a.status, "%s", a)
	assert.Contains(t, a.body, "image x is missing")
	assert.Equal(t, http.StatusOK, ts.get(t, "/healthz").status, "alive though not ready")
}

func TestRuntimesListsTheCatalogWithDefaults(t *testing.T) {
	ts := startService(t, &fakeExec{}, WithLimits(func(rt string) (runner.Limits, error) {
		if rt == "python" {
			return runner.Limits{Memory: 1 << 30}, nil
		}
		return runner.Limits{}, nil
	}))
	a := ts.get(t, "/v1/runtimes")
	require.Equal(t, http.StatusOK, a.status, "%s", a)
	var doc struct {
		Runtimes []struct {
			Name   string         `json:"name"`
			Image  string         `json:"image"`
			Run    []string       `json:"run"`
			Limits map[string]any `json:"limits"`
		} `json:"runtimes"`
	}
	require.NoError(t, json.Unmarshal([]byte(a.body), &doc))
	byName := map[string]int{}
	for i, rt := range doc.Runtimes {
		byName[rt.Name] = i
	}
	require.Contains(t, byName, "python")
	py := doc.Runtimes[byName["python"]]
	assert.Equal(t, "docker.io/library/python:3.11-slim", py.Image)
	assert.Equal(t, float64(1<<30), py.Limits["memory"])
	assert.Equal(t, "30s", py.Limits["timeout"])
	sh := doc.Runtimes[byName["sh"]]
	assert.Equal(t, float64(runner.DefaultMemory), sh.Limits["memory"])
}

func TestTaskTimesFeedTheStageHistograms(t *testing.T) {
	m := newMetrics(metricsConfig{slots: 1, queue: 1})
	tt := &taskTimes{m: m}
	tt.ObserveStep(runner.StageCompile, runner.StepCreate, 30*time.Millisecond)
	tt.ObserveStep(runner.StageRun, runner.StepCreate, 20*time.Millisecond)
	tt.ObserveStep(runner.StageRun, runner.StepTeardown, 5*time.Millisecond)
	tt.observeResult(&runner.Result{Compile: &runner.Stage{Duration: time.Second}, Stage: runner.Stage{Outcome: runner.OutcomeExited, Duration: time.Second}})
	assert.True(t, tt.hooked)
	assert.Equal(t, 50*time.Millisecond, tt.create, "both stages' creates add up")
	mfs, err := m.registry.Gather()
	require.NoError(t, err)
	counts := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != MetricStageDuration {
			continue
		}
		for _, s := range mf.GetMetric() {
			counts[s.GetLabel()[0].GetValue()] = s.GetHistogram().GetSampleCount()
		}
	}
	assert.Equal(t, map[string]uint64{StageQueueWait: 0, StageCreate: 2, StageCompile: 1, StageRun: 1, StageTeardown: 1}, counts)
}

func TestMetricsReportThePool(t *testing.T) {
	stats := []runner.PoolStats{{Runtime: "python", Size: 4, Idle: 3, Hits: 10, Misses: 2, Recycled: 1, InitExits: 9, IdleMemoryBytes: 5 << 20}}
	ts := startService(t, &fakeExec{}, WithPoolStats(func() []runner.PoolStats { return stats }))
	mfs := ts.scrape(t)
	for name, want := range map[string]float64{
		"sandbox_runner_pool_size": 4, "sandbox_runner_pool_idle": 3, "sandbox_runner_pool_hits_total": 10,
		"sandbox_runner_pool_misses_total": 2, "sandbox_runner_pool_recycled_total": 1, "sandbox_runner_pool_idle_memory_bytes": 5 << 20,
		"sandbox_runner_pool_init_exits_total": 9,
	} {
		assert.Equal(t, want, metricValue(t, mfs, name, "runtime", "python"), name)
	}
	_, ok := startService(t, &fakeExec{}).scrape(t)["sandbox_runner_pool_size"]
	assert.False(t, ok, "no pool, no pool metrics")
}
