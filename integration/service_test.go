//go:build linux

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/fleet"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// serveConfig points the runtimes the service tests use at the test
// image: sh, and shc, a "compiled" runtime made of busybox sh whose
// compile stage copies the code to /tmp, so that the run stage only
// works when the scratch tmpfs the runner mounts on the host is shared.
const serveConfig = `
[runtimes.sh]
image = "` + testImage + `"

[runtimes.shc]
image = "` + testImage + `"
file = "main.sh"
compile = ["sh", "-c", "cp {file} /tmp/prog.sh"]
run = ["sh", "/tmp/prog.sh"]

[service]
required_runtimes = ["sh", "shc"]
`

// serveProc is one `sandbox-runner serve` process on the harness's
// containerd, with a socket, config and state dir of its own.
type serveProc struct {
	t        *testing.T
	h        *Harness
	dir      string
	socket   string
	config   string
	stateDir string
	cmd      *exec.Cmd
	stderr   *lockedBuffer
	http     *http.Client
	exited   chan struct{}
	waitErr  error
}

// serveSetup is how a test wants its service started.
type serveSetup struct {
	args  []string
	env   []string
	files []*os.File
	// config replaces serveConfig.
	config string
	// wrap runs serve through sh, which sets LISTEN_PID to its own pid
	// and execs serve: the pid systemd would set after its fork.
	withListenPID bool
	// noWait skips waiting for the socket to answer.
	noWait bool
	// wrapper is a command serve runs under, such as setpriv.
	wrapper []string
}

// serveDir returns a fresh dir with a short path, for unix sockets.
func serveDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "srsv-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startServe(t *testing.T, s serveSetup) *serveProc {
	t.Helper()
	h := RequiresRoot(t)
	bin := h.CLI(t)
	p := &serveProc{t: t, h: h, dir: serveDir(t), stateDir: h.StateDir(t), stderr: &lockedBuffer{}, exited: make(chan struct{})}
	p.socket = filepath.Join(p.dir, "api.sock")
	p.config = filepath.Join(p.dir, "config.toml")
	config := serveConfig
	if s.config != "" {
		config = s.config
	}
	require.NoError(t, os.WriteFile(p.config, []byte(config), 0o644))
	p.http = socketClient(p.socket)

	args := append([]string{"serve",
		"--config", p.config,
		"--address", h.Address,
		"--namespace", h.Namespace,
		"--snapshotter", testSnapshotter,
		"--state-dir", p.stateDir,
		"--socket", p.socket,
		"--log-level", "debug",
	}, s.args...)
	name := bin
	if s.withListenPID {
		args = append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, bin}, args...)
		name = "/bin/sh"
	}
	if len(s.wrapper) > 0 {
		args = append(append(s.wrapper[1:], name), args...)
		name = s.wrapper[0]
	}
	p.cmd = exec.Command(name, args...)
	p.cmd.Env = append(cleanEnv(), s.env...)
	p.cmd.ExtraFiles = s.files
	p.cmd.Stdout = p.stderr
	p.cmd.Stderr = p.stderr
	require.NoError(t, p.cmd.Start())
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if p.stop() == 0 && !t.Failed() {
			// Not a terminal: the log is JSON, every line of it,
			// containerd's client library's lines included.
			for _, line := range strings.Split(strings.TrimSpace(p.stderr.String()), "\n") {
				assert.True(t, line == "" || json.Valid([]byte(line)), "serve's log has a line that is not JSON: %q", line)
			}
		}
		if t.Failed() {
			t.Logf("serve's log:\n%s", p.stderr.String())
		}
	})
	if !s.noWait {
		p.waitReady()
	}
	return p
}

// waitReady waits until the service answers /healthz on its socket.
func (p *serveProc) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.exited:
			p.t.Fatalf("serve exited before it served: %v\n%s", p.waitErr, p.stderr.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/healthz", nil)
		resp, err := p.http.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("serve did not answer on %s: %v\n%s", p.socket, err, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and returns the exit status, waiting at most a
// minute; later calls return the same.
func (p *serveProc) stop() int {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(time.Minute):
			_ = p.cmd.Process.Kill()
			<-p.exited
			p.t.Errorf("serve did not stop within a minute of SIGTERM")
		}
	}
	return p.cmd.ProcessState.ExitCode()
}

func socketClient(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
}

// apiAnswer is one answer of the service.
type apiAnswer struct {
	status  int
	header  http.Header
	body    string
	elapsed time.Duration
}

func (a apiAnswer) String() string {
	return fmt.Sprintf("%d after %s: %s", a.status, a.elapsed.Round(time.Millisecond), a.body)
}

func (a apiAnswer) result(t *testing.T) (runner.Result, map[string]any) {
	t.Helper()
	require.Equal(t, http.StatusOK, a.status, "%s", a)
	var res runner.Result
	require.NoError(t, json.Unmarshal([]byte(a.body), &res), "%s", a)
	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(a.body), &raw))
	return res, raw
}

func (a apiAnswer) errorDoc(t *testing.T) service.ErrorResponse {
	t.Helper()
	var e service.ErrorResponse
	require.NoError(t, json.Unmarshal([]byte(a.body), &e), "%s", a)
	return e
}

func doRequest(t *testing.T, c *http.Client, ctx context.Context, method, url, body string, header http.Header) (apiAnswer, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return apiAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return apiAnswer{}, err
	}
	return apiAnswer{status: resp.StatusCode, header: resp.Header, body: string(b), elapsed: time.Since(start)}, nil
}

func (p *serveProc) do(ctx context.Context, method, path, body string) (apiAnswer, error) {
	return doRequest(p.t, p.http, ctx, method, "http://svc"+path, body, nil)
}

func (p *serveProc) post(body string) apiAnswer {
	p.t.Helper()
	a, err := p.do(context.Background(), http.MethodPost, "/v1/exec", body)
	require.NoError(p.t, err)
	p.t.Logf("POST /v1/exec: %s", a)
	return a
}

func (p *serveProc) get(path string) apiAnswer {
	p.t.Helper()
	a, err := p.do(context.Background(), http.MethodGet, path, "")
	require.NoError(p.t, err)
	return a
}

// execBody is a request for an sh task running code.
func execBody(code string, extra ...string) string {
	b, _ := json.Marshal(code)
	fields := append([]string{`"runtime": "sh"`, `"files": [{"content": ` + string(b) + `}]`}, extra...)
	return "{" + strings.Join(fields, ", ") + "}"
}

// scrape returns the service's metrics, parsed as Prometheus text.
func (p *serveProc) scrape() map[string]*dto.MetricFamily {
	p.t.Helper()
	a := p.get("/metrics")
	require.Equal(p.t, http.StatusOK, a.status, "%s", a)
	assert.Contains(p.t, a.header.Get("Content-Type"), "text/plain")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(a.body))
	require.NoError(p.t, err, "/metrics is not Prometheus text:\n%s", a.body)
	return mfs
}

// metric adds up the series of family name whose label has value (every
// series when label is empty): counters' or gauges' values, or
// histograms' sample counts and sums.
func metric(t *testing.T, mfs map[string]*dto.MetricFamily, name, label, value string) (v float64, sum float64) {
	t.Helper()
	mf, ok := mfs[name]
	require.True(t, ok, "no metric %s", name)
	found := false
	for _, m := range mf.GetMetric() {
		match := label == ""
		for _, lp := range m.GetLabel() {
			match = match || (lp.GetName() == label && lp.GetValue() == value)
		}
		if !match {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Histogram != nil:
			v += float64(m.GetHistogram().GetSampleCount())
			sum += m.GetHistogram().GetSampleSum()
		}
	}
	if !found {
		t.Fatalf("no series %s{%s=%q}", name, label, value)
	}
	return v, sum
}

// waitMetric waits until the metric reaches want.
func (p *serveProc) waitMetric(name, label, value string, want float64) {
	p.t.Helper()
	var got float64
	ok := assert.Eventually(p.t, func() bool {
		got, _ = metric(p.t, p.scrape(), name, label, value)
		return got == want
	}, 30*time.Second, 20*time.Millisecond)
	require.True(p.t, ok, "%s{%s=%q} is %g, not %g", name, label, value, got, want)
}

// waitLog waits until serve's log holds want: the service logs a task
// after its teardown, which may end after the client has its result.
func (p *serveProc) waitLog(want string) {
	p.t.Helper()
	ok := assert.Eventually(p.t, func() bool { return strings.Contains(p.stderr.String(), want) },
		10*time.Second, 20*time.Millisecond)
	require.True(p.t, ok, "serve's log has no %s", want)
}

// runningTasks returns the containerd tasks in the test namespace.
func runningTasks(t *testing.T, h *Harness) []string {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), h.Namespace)
	ts, err := h.Client.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
	require.NoError(t, err)
	var ids []string
	for _, task := range ts.Tasks {
		ids = append(ids, task.ID)
	}
	return ids
}

func TestServiceExecEndToEnd(t *testing.T) {
	p := startServe(t, serveSetup{})
	body := `{
		"runtime": "sh",
		"files": [
			{"name": "main.sh", "content": ". /code/lib/greet.sh\ngreet \"$@\"\necho \"stdin: $(cat)\"\necho \"env: $GREETING\"\necho \"uid: $(id -u)\"\n/code/bin.sh\nls -l /code/blob | cut -c1-10\necho oops >&2\nexit 3"},
			{"name": "lib/greet.sh", "content": "greet() { echo \"hello $1 and $2\"; }"},
			{"name": "bin.sh", "content": "IyEvYmluL3NoCmVjaG8gZXhlY3V0YWJsZQo=", "encoding": "base64", "executable": true},
			{"name": "blob", "content": "AAEC/w==", "encoding": "base64"}
		],
		"stdin": "piped in",
		"args": ["one", "two words"],
		"env": {"GREETING": "hi there"},
		"limits": {"timeout": "20s", "memory": "64m", "cpus": 0.5, "pids": 32, "output_limit": 4096, "tmp_size": 2097152}
	}`
	a := p.post(body)
	res, _ := a.result(t)
	assert.Equal(t, runner.OutcomeExited, res.Outcome, "%s", a)
	assert.Equal(t, 3, res.ExitCode)
	out := string(res.Stdout.Data)
	_, after, _ := strings.Cut(out, "uid: ")
	uid, _, _ := strings.Cut(after, "\n")
	assertTaskUID(t, uid)
	assert.Equal(t, "hello one and two words\nstdin: piped in\nenv: hi there\nuid: "+uid+"\nexecutable\n-r--------\n", out)
	assert.Equal(t, "oops\n", string(res.Stderr.Data))
	assert.Equal(t, testImage, res.Image)
	assert.Equal(t, "sh", res.Runtime)
	assert.Equal(t, res.ID, a.header.Get("X-Sandbox-Runner-Task"))
	t.Logf("a task through the API took %s; the task itself %s", a.elapsed, res.Duration)
}

func TestServiceResultIsExecJSONDocument(t *testing.T) {
	p := startServe(t, serveSetup{})
	code := "echo out; echo err >&2; exit 5"
	viaAPI, rawAPI := p.post(execBody(code)).result(t)

	c := newCLI(t)
	r := c.exec(nil, "--json", "-c", code)
	viaCLI, rawCLI := decodeResult(t, r)

	keys := func(m map[string]any) []string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		return ks
	}
	assert.ElementsMatch(t, keys(rawCLI), keys(rawAPI), "one schema for exec --json and the API")
	for _, res := range []*runner.Result{&viaAPI, &viaCLI} {
		res.ID, res.Duration, res.Usage = "", 0, runner.Usage{}
	}
	assert.Equal(t, viaCLI, viaAPI)
}

func TestServiceCompiledRuntimeSharesScratch(t *testing.T) {
	p := startServe(t, serveSetup{})
	a := p.post(`{"runtime": "shc", "files": [{"content": "echo compiled and ran from $0"}]}`)
	res, _ := a.result(t)
	require.NotNil(t, res.Compile, "%s", a)
	assert.Equal(t, runner.OutcomeExited, res.Compile.Outcome, "%s", a)
	assert.Equal(t, runner.OutcomeExited, res.Outcome, "%s", a)
	assert.Equal(t, "compiled and ran from /tmp/prog.sh\n", string(res.Stdout.Data))
}

func TestServiceQueuesThenRefusesWith429(t *testing.T) {
	p := startServe(t, serveSetup{args: []string{"--max-concurrent", "1", "--queue", "1"}})
	answers := make(chan apiAnswer, 2)
	go func() { answers <- p.post(execBody("sleep 2; echo first")) }()
	p.waitMetric(service.MetricInFlight, "", "", 1)
	go func() { answers <- p.post(execBody("echo second")) }()
	p.waitMetric(service.MetricQueueDepth, "", "", 1)

	a := p.post(execBody("echo third"))
	require.Equal(t, http.StatusTooManyRequests, a.status, "%s", a)
	assert.Equal(t, "1", a.header.Get("Retry-After"))
	e := a.errorDoc(t)
	assert.Equal(t, service.KindQueueFull, e.Kind)
	assert.Contains(t, e.Error, "queue is full")

	var outs []string
	for range 2 {
		res, _ := (<-answers).result(t)
		outs = append(outs, string(res.Stdout.Data))
	}
	assert.Equal(t, []string{"first\n", "second\n"}, outs, "the queued task runs after the first, not beside it")

	mfs := p.scrape()
	n, waited := metric(t, mfs, service.MetricStageDuration, "stage", service.StageQueueWait)
	assert.Equal(t, 2.0, n)
	assert.Greater(t, waited, 1.0, "the second task waited for the first's slot (seconds)")
	rejected, _ := metric(t, mfs, service.MetricRejected, "reason", service.RejectQueueFull)
	assert.Equal(t, 1.0, rejected)
}

func TestServiceCancelledRequestLeavesNothingBehind(t *testing.T) {
	p := startServe(t, serveSetup{})
	marker := fmt.Sprintf("svc-cancel-%d", time.Now().UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := p.do(ctx, http.MethodPost, "/v1/exec", execBody("sleep 100 # "+marker, `"args": ["`+marker+`"]`, `"limits": {"timeout": "60s"}`))
		errc <- err
	}()
	require.Eventually(t, func() bool { return len(runningTasks(t, p.h)) == 1 && len(hostProcesses([]byte(marker))) > 0 },
		30*time.Second, 20*time.Millisecond, "the task should be running")
	cancelled := time.Now()
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)

	p.waitMetric(service.MetricTasks, "outcome", string(runner.OutcomeCancelled), 1)
	t.Logf("the task was killed and cleaned %s after the client hung up", time.Since(cancelled).Round(time.Millisecond))
	assert.Less(t, time.Since(cancelled), 10*time.Second)
	assert.Empty(t, runningTasks(t, p.h))
	assert.Empty(t, hostProcesses([]byte(marker)), "the task's processes are gone")
	p.h.CheckNoLeaks(t, p.stateDir)
	p.waitLog(`"cancelled_by":"client"`)
}

func TestServiceRefusesBadRequests(t *testing.T) {
	p := startServe(t, serveSetup{args: []string{"--max-body", "1k"}})
	for _, tc := range []struct {
		name, body string
		status     int
		kind, want string
	}{
		{"malformed JSON", `{"runtime": "sh", "files": [`, 400, service.KindInvalidInput, "malformed JSON"},
		{"not JSON at all", `runtime=sh`, 400, service.KindInvalidInput, "malformed JSON at byte"},
		{"unknown field", `{"runtime": "sh", "files": [{"content": "true"}], "privileged": true}`, 400, service.KindInvalidInput, `unknown field "privileged"`},
		{"unknown limit", `{"runtime": "sh", "files": [{"content": "true"}], "limits": {"network": "on"}}`, 400, service.KindInvalidInput, `unknown field "network"`},
		{"bad memory", `{"runtime": "sh", "files": [{"content": "true"}], "limits": {"memory": "12qb"}}`, 400, service.KindInvalidInput, "limits.memory"},
		{"zero timeout", `{"runtime": "sh", "files": [{"content": "true"}], "limits": {"timeout": 0}}`, 400, service.KindInvalidInput, "limits.timeout"},
		{"unknown runtime", `{"runtime": "cobol", "files": [{"content": "true"}]}`, 400, service.KindInvalidInput, "cobol"},
		{"no files", `{"runtime": "sh"}`, 400, service.KindInvalidInput, "files: required"},
		{"oversized body", execBody(strings.Repeat("#", 2048)), 413, service.KindTooLarge, "larger than 1024 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := p.post(tc.body)
			require.Equal(t, tc.status, a.status, "%s", a)
			assert.Equal(t, "application/json", a.header.Get("Content-Type"))
			e := a.errorDoc(t)
			assert.Equal(t, tc.kind, e.Kind)
			assert.Contains(t, e.Error, tc.want)
		})
	}
	mfs := p.scrape()
	invalid, _ := metric(t, mfs, service.MetricRejected, "reason", service.RejectInvalid)
	assert.Equal(t, 8.0, invalid)
	ran, _ := metric(t, mfs, service.MetricStageDuration, "stage", service.StageQueueWait)
	assert.Equal(t, 0.0, ran, "no refused request was queued")
}

func TestServiceImageNotFound(t *testing.T) {
	p := startServe(t, serveSetup{})
	a := p.post(execBody("true", `"image": "sandbox-runner.test/absent:1"`, `"pull": "never"`))
	require.Equal(t, http.StatusNotFound, a.status, "%s", a)
	assert.Equal(t, service.KindImageNotFound, a.errorDoc(t).Kind)
	assert.Contains(t, a.errorDoc(t).Error, "sandbox-runner.test/absent:1")
}

func TestServiceMetricsCountWhatRan(t *testing.T) {
	p := startServe(t, serveSetup{})
	p.post(execBody("true")).result(t)
	p.post(execBody("exit 3")).result(t)
	res, _ := p.post(execBody("sleep 100", `"limits": {"timeout": "1s"}`)).result(t)
	require.Equal(t, runner.OutcomeTimedOut, res.Outcome)
	res, _ = p.post(`{"runtime": "shc", "files": [{"content": "echo hi"}]}`).result(t)
	require.Equal(t, runner.OutcomeExited, res.Outcome)
	require.Equal(t, http.StatusBadRequest, p.post(`{"runtime": "sh"}`).status)

	mfs := p.scrape()
	for outcome, want := range map[string]float64{"exited": 3, "timed_out": 1, "signaled": 0, "oom_killed": 0, "cancelled": 0, "compile_failed": 0, "error": 0} {
		got, _ := metric(t, mfs, service.MetricTasks, "outcome", outcome)
		assert.Equal(t, want, got, "tasks with outcome %s", outcome)
	}
	invalid, _ := metric(t, mfs, service.MetricRejected, "reason", service.RejectInvalid)
	assert.Equal(t, 1.0, invalid)
	// Four tasks, one of them in two stages (compile and run).
	for stage, want := range map[string]float64{
		service.StageQueueWait: 4, service.StageCreate: 5, service.StageCompile: 1, service.StageRun: 4, service.StageTeardown: 5,
	} {
		got, sum := metric(t, mfs, service.MetricStageDuration, "stage", stage)
		assert.Equal(t, want, got, "observations of stage %s", stage)
		t.Logf("stage %-10s %g observations, mean %.1f ms", stage, got, 1000*sum/max(got, 1))
	}
	total, _ := metric(t, mfs, service.MetricTaskDuration, "", "")
	assert.Equal(t, 4.0, total)
	inFlight, _ := metric(t, mfs, service.MetricInFlight, "", "")
	assert.Equal(t, 0.0, inFlight)
	slots, _ := metric(t, mfs, service.MetricSlots, "", "")
	assert.Positive(t, slots)
}

func TestServiceRuntimesAndProbes(t *testing.T) {
	p := startServe(t, serveSetup{})
	assert.Equal(t, http.StatusOK, p.get("/healthz").status)

	a := p.get("/readyz")
	require.Equal(t, http.StatusOK, a.status, "%s", a)
	var ready service.ReadyResponse
	require.NoError(t, json.Unmarshal([]byte(a.body), &ready))
	assert.True(t, ready.Ready)
	var names []string
	for _, c := range ready.Checks {
		names = append(names, c.Name)
		assert.True(t, c.OK, "%s: %s", c.Name, c.Detail)
	}
	assert.Equal(t, []string{"containerd", "seccomp", "images"}, names)

	a = p.get("/v1/runtimes")
	require.Equal(t, http.StatusOK, a.status, "%s", a)
	var rts service.RuntimesResponse
	require.NoError(t, json.Unmarshal([]byte(a.body), &rts))
	found := false
	for _, rt := range rts.Runtimes {
		if rt.Name == "shc" {
			found = true
			assert.Equal(t, testImage, rt.Image)
			assert.Equal(t, "30s", rt.Limits.Timeout.String())
		}
	}
	assert.True(t, found, "the config's runtime is listed: %s", a.body)
}

func TestServiceNotReadyWithoutRequiredImage(t *testing.T) {
	cfg := strings.Replace(serveConfig, `required_runtimes = ["sh", "shc"]`, `required_runtimes = ["sh", "absent"]`, 1) + `
[runtimes.absent]
image = "sandbox-runner.test/absent:1"
file = "main.sh"
run = ["sh", "{file}"]
`
	p := startServe(t, serveSetup{config: cfg})
	a := p.get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, a.status, "%s", a)
	assert.Contains(t, a.body, "sandbox-runner.test/absent:1 (runtime absent)")
	assert.Equal(t, http.StatusOK, p.get("/healthz").status, "alive, though not ready")
	// The runtimes whose images are there still run.
	res, _ := p.post(execBody("echo still serving")).result(t)
	assert.Equal(t, "still serving\n", string(res.Stdout.Data))
}

// freePort returns a loopback address nobody listens on just now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func TestServiceTCPNeedsTheToken(t *testing.T) {
	dir := serveDir(t)
	token := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(token, []byte("c0ffee-"+fmt.Sprint(time.Now().UnixNano())+"\n"), 0o600))
	secret, err := os.ReadFile(token)
	require.NoError(t, err)
	addr := freePort(t)
	p := startServe(t, serveSetup{args: []string{"--tcp", addr, "--token-file", token}})
	url := "http://" + addr

	for _, tc := range []struct {
		name, auth string
		status     int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "Bearer not-the-token", http.StatusUnauthorized},
		{"token without scheme", strings.TrimSpace(string(secret)), http.StatusUnauthorized},
		{"right token", "Bearer " + strings.TrimSpace(string(secret)), http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.auth != "" {
				h.Set("Authorization", tc.auth)
			}
			for _, r := range []struct{ method, path, body string }{
				{http.MethodGet, "/healthz", ""},
				{http.MethodGet, "/metrics", ""},
				{http.MethodPost, "/v1/exec", execBody("echo over tcp")},
			} {
				a, err := doRequest(t, http.DefaultClient, context.Background(), r.method, url+r.path, r.body, h)
				require.NoError(t, err)
				assert.Equal(t, tc.status, a.status, "%s %s: %s", r.method, r.path, a)
				if tc.status == http.StatusUnauthorized {
					assert.Equal(t, service.KindUnauthorized, a.errorDoc(t).Kind)
				} else if r.path == "/v1/exec" {
					res, _ := a.result(t)
					assert.Equal(t, "over tcp\n", string(res.Stdout.Data))
				}
			}
		})
	}
	// The unix socket needs no token: its mode is its access control.
	st, err := os.Stat(p.socket)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o660), st.Mode().Perm())
	assert.Equal(t, http.StatusOK, p.get("/healthz").status)
	rejected, _ := metric(t, p.scrape(), service.MetricRejected, "reason", service.RejectUnauthorized)
	assert.Equal(t, 9.0, rejected)
}

func TestServeRefusesTCPWithoutToken(t *testing.T) {
	h := RequiresRoot(t)
	dir := serveDir(t)
	socket := filepath.Join(dir, "api.sock")
	cmd := exec.Command(h.CLI(t), "serve", "--address", h.Address, "--namespace", h.Namespace,
		"--state-dir", h.StateDir(t), "--socket", socket, "--tcp", freePort(t))
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr, "%s", out)
	assert.Equal(t, 2, exitErr.ExitCode(), "%s", out)
	assert.Contains(t, string(out), "needs --token-file")
	_, err = os.Stat(socket)
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing was listened on")

	// A token file anybody can read is refused too.
	token := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(token, []byte("t0ken"), 0o644))
	require.NoError(t, os.Chmod(token, 0o644))
	cmd = exec.Command(h.CLI(t), "serve", "--address", h.Address, "--namespace", h.Namespace,
		"--state-dir", h.StateDir(t), "--socket", socket, "--tcp", freePort(t), "--token-file", token)
	cmd.Env = cleanEnv()
	out, err = cmd.CombinedOutput()
	require.ErrorAs(t, err, &exitErr, "%s", out)
	assert.Equal(t, 2, exitErr.ExitCode(), "%s", out)
	assert.Contains(t, string(out), "readable by everyone")
}

func TestServeSIGTERMFinishesOrKillsRunningTasks(t *testing.T) {
	Parallel(t)
	p := startServe(t, serveSetup{args: []string{"--max-concurrent", "2", "--queue", "2", "--grace", "3s"}})
	marker := fmt.Sprintf("svc-term-%d", time.Now().UnixNano())
	quick := make(chan apiAnswer, 1)
	slow := make(chan apiAnswer, 1)
	go func() { quick <- p.post(execBody("sleep 1; echo finished")) }()
	go func() {
		slow <- p.post(execBody("sleep 100 # "+marker, `"args": ["`+marker+`"]`, `"limits": {"timeout": "60s"}`))
	}()
	p.waitMetric(service.MetricInFlight, "", "", 2)

	termed := time.Now()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	// Once shutdown began, nothing new is accepted.
	require.Eventually(t, func() bool {
		_, err := p.do(context.Background(), http.MethodGet, "/healthz", "")
		return err != nil
	}, 5*time.Second, 10*time.Millisecond, "the socket should stop accepting")

	res, _ := (<-quick).result(t)
	assert.Equal(t, runner.OutcomeExited, res.Outcome, "a task that ends within the grace period finishes")
	assert.Equal(t, "finished\n", string(res.Stdout.Data))

	a := <-slow
	res, _ = a.result(t)
	assert.Equal(t, runner.OutcomeCancelled, res.Outcome, "a task still running after the grace period is killed")
	assert.True(t, res.Cancelled)
	assert.Equal(t, runner.ExitCancelled, res.ExitCode)
	assert.GreaterOrEqual(t, time.Since(termed), 3*time.Second, "not before the grace period")

	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit after its tasks were cleaned")
	}
	t.Logf("serve exited %s after SIGTERM (grace 3s)", time.Since(termed).Round(time.Millisecond))
	assert.Equal(t, 0, p.cmd.ProcessState.ExitCode(), "%s", p.stderr.String())
	assert.Less(t, time.Since(termed), 15*time.Second)
	assert.Empty(t, hostProcesses([]byte(marker)))
	_, err := os.Stat(p.socket)
	assert.ErrorIs(t, err, os.ErrNotExist, "the socket is removed")
	assert.Contains(t, p.stderr.String(), `"cancelled_by":"shutdown"`)
	p.h.CheckNoLeaks(t, p.stateDir)
}

func TestServeStartupSweepsWhatACrashLeft(t *testing.T) {
	p := startServe(t, serveSetup{})
	marker := fmt.Sprintf("svc-crash-%d", time.Now().UnixNano())
	go func() {
		_, _ = p.do(context.Background(), http.MethodPost, "/v1/exec", execBody("sleep 100 # "+marker, `"args": ["`+marker+`"]`))
	}()
	// Killed while containerd is still creating the task, the service
	// would leave a half-made task that containerd 2.4 itself abandons
	// (its shim included): the kill comes once the task's own process
	// runs, which is the case this test is about.
	require.Eventually(t, func() bool { return len(hostProcesses([]byte(marker))) > 0 }, 30*time.Second, 20*time.Millisecond)
	require.Len(t, runningTasks(t, p.h), 1)
	// The service dies without cleaning up.
	require.NoError(t, p.cmd.Process.Kill())
	<-p.exited
	require.NotEmpty(t, runningTasks(t, p.h), "a killed service leaves its task running")

	// The next one removes it before it serves.
	q := startServe(t, serveSetup{args: []string{"--state-dir", p.stateDir}})
	assert.Empty(t, runningTasks(t, p.h))
	assert.Empty(t, hostProcesses([]byte(marker)))
	assert.Contains(t, q.stderr.String(), "removed what a dead runner left behind")
	q.h.CheckNoLeaks(t, p.stateDir)
}

// readNotify reads one sd_notify datagram, failing after timeout.
func readNotify(t *testing.T, c *net.UnixConn, timeout time.Duration) string {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(timeout)))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	require.NoError(t, err, "no sd_notify notification within %s", timeout)
	return string(buf[:n])
}

func TestServeSystemdNotifyAndSocketActivation(t *testing.T) {
	RequiresRoot(t)
	dir := serveDir(t)
	notifyPath := filepath.Join(dir, "notify")
	notifyConn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	require.NoError(t, err)
	defer notifyConn.Close()

	// The socket systemd would make from sandbox-runner.socket.
	activated := filepath.Join(dir, "activated.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: activated, Net: "unix"})
	require.NoError(t, err)
	lf, err := l.File()
	require.NoError(t, err)
	l.SetUnlinkOnClose(false)
	require.NoError(t, l.Close())

	p := startServe(t, serveSetup{
		env:           []string{"NOTIFY_SOCKET=" + notifyPath, "LISTEN_FDS=1", "LISTEN_FDNAMES=sandbox-runner.socket"},
		files:         []*os.File{lf}, // fd 3, as systemd passes it
		withListenPID: true,
		noWait:        true,
	})
	lf.Close()

	msg := readNotify(t, notifyConn, 30*time.Second)
	assert.Contains(t, strings.Split(msg, "\n"), "READY=1", msg)
	assert.Contains(t, msg, "STATUS=serving on unix:"+activated)

	// Tasks come in through the passed socket; the one --socket names
	// is never made.
	c := socketClient(activated)
	a, err := doRequest(t, c, context.Background(), http.MethodPost, "http://svc/v1/exec", execBody("echo activated"), nil)
	require.NoError(t, err)
	res, _ := a.result(t)
	assert.Equal(t, "activated\n", string(res.Stdout.Data))
	_, err = os.Stat(p.socket)
	assert.ErrorIs(t, err, os.ErrNotExist, "serve made its own socket though systemd passed one")

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, "STOPPING=1", readNotify(t, notifyConn, 10*time.Second))
	<-p.exited
	assert.Equal(t, 0, p.cmd.ProcessState.ExitCode(), "%s", p.stderr.String())
	_, err = os.Stat(activated)
	assert.NoError(t, err, "the socket systemd owns stays for the next activation")
}

// installedUnit returns the unit file at path with ExecStart's binary
// replaced by bin, in dir: verify wants the binary to exist.
func installedUnit(t *testing.T, path, dir, bin string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	out := strings.ReplaceAll(string(b), "/usr/local/bin/sandbox-runner", bin)
	dst := filepath.Join(dir, filepath.Base(path))
	require.NoError(t, os.WriteFile(dst, []byte(out), 0o644))
	return dst
}

// The systemd units, as the tests (in integration/) find them.
const (
	serviceUnit = "../contrib/systemd/sandbox-runner.service"
	socketUnit  = "../contrib/systemd/sandbox-runner.socket"
	workerUnit  = "../contrib/systemd/sandbox-runner-worker.service"
)

// systemdAnalyze returns the systemd-analyze binary, or skips t (fails
// it where the tests must run) when there is none.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if mustRun() {
			t.Fatalf("systemd-analyze is not installed (Debian: apt-get install systemd): %v", err)
		}
		t.Skip("systemd-analyze is not installed")
	}
	return analyze
}

// verifyUnits runs `systemd-analyze verify` on each unit, which must pass
// without a word about the unit.
func verifyUnits(t *testing.T, analyze, dir string, units ...string) {
	t.Helper()
	for _, unit := range units {
		cmd := exec.Command(analyze, "verify", "--man=no", unit)
		// The units want containerd.service, which this machine need
		// not have; verify looks for units on the path it is given too.
		cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+dir+":")
		out, err := cmd.CombinedOutput()
		t.Logf("systemd-analyze verify %s:\n%s", filepath.Base(unit), out)
		require.NoError(t, err, "%s", out)
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, filepath.Base(unit)) {
				assert.Failf(t, "verify complains about the unit", "%s", line)
			}
		}
	}
}

// unitSettings returns the settings of a unit file, by key, in order
// (comments and section headers left out).
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	settings := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		require.True(t, ok, "%s: not a setting: %q", path, line)
		settings[key] = append(settings[key], value)
	}
	return settings
}

func TestServeSystemdUnitsVerify(t *testing.T) {
	h := RequiresRoot(t)
	analyze := systemdAnalyze(t)
	dir := serveDir(t)
	bin := h.CLI(t)
	service := installedUnit(t, serviceUnit, dir, bin)
	socket := installedUnit(t, socketUnit, dir, bin)
	verifyUnits(t, analyze, dir, service, socket)

	// ExecStart runs what the unit says, with the config it names.
	b, err := os.ReadFile(service)
	require.NoError(t, err)
	assert.Contains(t, string(b), "ExecStart="+bin+" serve --config /etc/sandbox-runner/config.toml")
	// Bad flags or config exit 2 (cmd's tests hold the CLI to that), which
	// no restart mends.
	assert.Contains(t, string(b), "\nRestartPreventExitStatus=2\n")
}

// TestWorkerSystemdUnitVerify: the worker's unit passes `systemd-analyze
// verify`, runs `worker` with the config, is Type=notify, and fits next
// to the service's on one host.
func TestWorkerSystemdUnitVerify(t *testing.T) {
	h := RequiresRoot(t)
	analyze := systemdAnalyze(t)
	dir := serveDir(t)
	bin := h.CLI(t)
	worker := installedUnit(t, workerUnit, dir, bin)
	verifyUnits(t, analyze, dir, worker)

	b, err := os.ReadFile(worker)
	require.NoError(t, err)
	assert.Contains(t, string(b), "\nExecStart="+bin+" worker --config /etc/sandbox-runner/config.toml\n")

	w, svc := unitSettings(t, workerUnit), unitSettings(t, serviceUnit)
	assert.Equal(t, []string{"notify"}, w["Type"], "READY=1 is what the worker sends")
	assert.Equal(t, []string{"main"}, w["NotifyAccess"])
	assert.Equal(t, []string{"containerd.service", "network-online.target"}, w["After"])
	assert.Equal(t, []string{"containerd.service", "network-online.target"}, w["Wants"])
	assert.Equal(t, []string{"on-failure"}, w["Restart"])
	assert.Equal(t, []string{"2"}, w["RestartPreventExitStatus"], "bad flags or config exit 2, which no restart mends")
	assert.Equal(t, []string{"mixed"}, w["KillMode"])
	assert.Equal(t, []string{"-500"}, w["OOMScoreAdjust"])
	// The stop timeout covers the grace period, with room to spare for
	// cancelling what is left and giving it back.
	require.Len(t, w["TimeoutStopSec"], 1)
	stop, err := time.ParseDuration(w["TimeoutStopSec"][0])
	require.NoError(t, err)
	assert.GreaterOrEqual(t, stop, 2*fleet.DefaultGrace, "TimeoutStopSec against [fleet] grace's default")
	// Sharing the state directory with the service: the same one, the
	// same mode, so that neither start changes it under the other ...
	assert.Equal(t, svc["StateDirectory"], w["StateDirectory"])
	assert.Equal(t, svc["StateDirectoryMode"], w["StateDirectoryMode"])
	// ... and no RuntimeDirectory=: it would be /run/sandbox-runner, and
	// removed with the service's socket in it whenever the worker stops.
	assert.NotContains(t, w, "RuntimeDirectory")
	// The same sandboxing, with no mount namespace of its own (the
	// scratch tmpfs must be seen by containerd and runc).
	for _, key := range []string{"ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts",
		"PrivateNetwork", "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "BindPaths", "TemporaryFileSystem",
		"ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectProc",
		"ProcSubset", "ProtectHostname"} {
		assert.NotContains(t, w, key, "a private mount namespace hides the scratch tmpfs from containerd")
	}
	for _, key := range []string{"NoNewPrivileges", "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime",
		"RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute", "SystemCallArchitectures"} {
		assert.Equal(t, svc[key], w[key], key)
	}
}

func TestExecViaService(t *testing.T) {
	p := startServe(t, serveSetup{})
	bin := p.h.CLI(t)
	run := func(stdin io.Reader, args ...string) cliRun {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"exec", "--config", p.config, "--socket", p.socket, "--runtime", "sh"}, args...)...)
		cmd.Env = cleanEnv()
		cmd.Stdin = stdin
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd.Run()
		var exitErr *exec.ExitError
		if err != nil && !errors.As(err, &exitErr) {
			require.NoError(t, err)
		}
		r := cliRun{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
		t.Logf("exec %s: %s", strings.Join(args, " "), r)
		return r
	}
	tasks := func() float64 {
		var n float64
		for _, o := range []string{"exited", "timed_out"} {
			v, _ := metric(t, p.scrape(), service.MetricTasks, "outcome", o)
			n += v
		}
		return n
	}

	r := run(nil, "--via", "service", "-c", "echo out; echo err >&2; exit 3")
	assert.Equal(t, 3, r.code, r)
	assert.Equal(t, "out\n", r.stdout)
	assert.Equal(t, "err\n", r.stderr)
	assert.Equal(t, 1.0, tasks(), "the task went through the service")

	r = run(strings.NewReader("from a pipe\n"), "--via", "auto", "-c", "cat; exit 0")
	assert.Equal(t, 0, r.code, r)
	assert.Equal(t, "from a pipe\n", r.stdout)
	assert.Equal(t, 2.0, tasks(), "auto uses the service when its socket answers")

	r = run(nil, "--via", "service", "--timeout", "1s", "-c", "sleep 100")
	assert.Equal(t, runner.ExitTimedOut, r.code, r)
	assert.Contains(t, r.stderr, "timed out after 1s", r)

	r = run(nil, "--via", "service", "--json", "-c", "echo json")
	assert.Equal(t, 0, r.code, r)
	res, raw := decodeResult(t, r)
	assert.Equal(t, "json\n", string(res.Stdout.Data))
	assert.Contains(t, raw, "duration_ms")

	r = run(nil, "--via", "service", "--runtime", "cobol", "-c", "true")
	assert.Equal(t, 2, r.code, "bad input is refused as it is without the service: %s", r)

	r = run(nil, "--via", "service", "--address", p.h.Address, "-c", "true")
	assert.Equal(t, 2, r.code, "the service has its own containerd: %s", r)
	assert.Contains(t, r.stderr, "--address")

	absent := filepath.Join(p.dir, "absent.sock")
	cmd := exec.Command(bin, "exec", "--config", p.config, "--via", "service", "--socket", absent, "--runtime", "sh", "-c", "true")
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr, "%s", out)
	assert.Equal(t, 125, exitErr.ExitCode(), "%s", out)
	assert.Contains(t, string(out), absent)
}

func TestServiceLatencyOfATrivialTask(t *testing.T) {
	p := startServe(t, serveSetup{})
	const n = 20
	var api []time.Duration
	for range n {
		a := p.post(execBody("true"))
		res, _ := a.result(t)
		require.Equal(t, runner.OutcomeExited, res.Outcome)
		api = append(api, a.elapsed)
	}
	// What a shell user sees: the CLI on its own, and through the service.
	c := newCLI(t)
	var direct, via []time.Duration
	for range n / 4 {
		r := c.exec(nil, "--via", "direct", "-c", "true")
		require.Equal(t, 0, r.code, r)
		direct = append(direct, r.elapsed)
		r = c.run(nil, "exec", "--config", p.config, "--socket", p.socket, "--runtime", "sh", "-c", "true")
		require.Equal(t, 0, r.code, r)
		via = append(via, r.elapsed)
	}
	mfs := p.scrape()
	median := func(ds []time.Duration) time.Duration {
		s := append([]time.Duration(nil), ds...)
		for i := range s {
			for j := i + 1; j < len(s); j++ {
				if s[j] < s[i] {
					s[i], s[j] = s[j], s[i]
				}
			}
		}
		return s[len(s)/2]
	}
	line := fmt.Sprintf("trivial task through the API: median %s over %d", median(api).Round(100*time.Microsecond), n)
	for _, stage := range []string{service.StageQueueWait, service.StageCreate, service.StageRun, service.StageTeardown} {
		count, sum := metric(t, mfs, service.MetricStageDuration, "stage", stage)
		line += fmt.Sprintf("; %s mean %.1f ms", stage, 1000*sum/max(count, 1))
	}
	t.Log(line)
	t.Logf("sandbox-runner exec -c true: median %s direct, %s through the service",
		median(direct).Round(100*time.Microsecond), median(via).Round(100*time.Microsecond))
}

// unitCapabilities returns what a unit's CapabilityBoundingSet= keeps,
// as setpriv names capabilities, and whether it sets NoNewPrivileges=.
func unitCapabilities(t *testing.T, unit string) (caps []string, noNewPrivs bool) {
	t.Helper()
	b, err := os.ReadFile(unit)
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		key, value, ok := strings.Cut(line, "=")
		switch {
		case !ok:
		case key == "CapabilityBoundingSet":
			for _, c := range strings.Fields(value) {
				caps = append(caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
		case key == "NoNewPrivileges":
			noNewPrivs = value == "yes"
		}
	}
	require.NotEmpty(t, caps, "the unit bounds its capabilities")
	return caps, noNewPrivs
}

// TestServeWithinTheUnitsCapabilities runs the service with no more than
// the unit grants (the capability bounding set, no_new_privs), as systemd
// would, and has it do everything that needs privilege: give its socket
// to a group, mount a compiled runtime's scratch tmpfs, cancel a task,
// stop and clean up.
func TestServeWithinTheUnitsCapabilities(t *testing.T) {
	RequiresRoot(t)
	setpriv, err := exec.LookPath("setpriv")
	require.NoError(t, err, "setpriv (util-linux) runs serve with the unit's capabilities")
	caps, nnp := unitCapabilities(t, serviceUnit)
	require.True(t, nnp)
	wrap := []string{"--bounding-set", "-all,+" + strings.Join(caps, ",+"), "--inh-caps", "-all", "--no-new-privs", "--"}
	p := startServe(t, serveSetup{wrapper: append([]string{setpriv}, wrap...), args: []string{"--socket-group", "nogroup"}})

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	require.NoError(t, err)
	assert.Contains(t, string(status), "NoNewPrivs:\t1")
	st, err := os.Stat(p.socket)
	require.NoError(t, err)
	assert.NotEqual(t, uint32(0), st.Sys().(*syscall.Stat_t).Gid, "the socket went to its group")

	res, _ := p.post(`{"runtime": "shc", "files": [{"content": "echo compiled"}]}`).result(t)
	assert.Equal(t, runner.OutcomeExited, res.Outcome)
	assert.Equal(t, "compiled\n", string(res.Stdout.Data))
	res, _ = p.post(execBody("sleep 100", `"limits": {"timeout": "1s"}`)).result(t)
	assert.Equal(t, runner.OutcomeTimedOut, res.Outcome)

	assert.Equal(t, 0, p.stop(), "%s", p.stderr.String())
	assert.NotContains(t, p.stderr.String(), `"level":"ERROR"`)
	assert.NotContains(t, p.stderr.String(), "operation not permitted")
	p.h.CheckNoLeaks(t, p.stateDir)
}

func TestServeMakeInstallLaysOutTheFiles(t *testing.T) {
	RequiresRoot(t)
	mk, err := exec.LookPath("make")
	require.NoError(t, err, "make is needed (Debian: apt-get install make)")
	dest := t.TempDir()
	bin := filepath.Join(t.TempDir(), "sandbox-runner")
	install := func() string {
		cmd := exec.Command(mk, "--no-print-directory", "install", "DESTDIR="+dest, "PREFIX=/usr", "BIN="+bin)
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	install()
	for path, mode := range map[string]os.FileMode{
		"usr/bin/sandbox-runner":                               0o755,
		"usr/lib/systemd/system/sandbox-runner.service":        0o644,
		"usr/lib/systemd/system/sandbox-runner.socket":         0o644,
		"usr/lib/systemd/system/sandbox-runner-worker.service": 0o644,
		"usr/share/sandbox-runner/config.toml.example":         0o644,
		"etc/sandbox-runner/config.toml":                       0o644,
	} {
		st, err := os.Stat(filepath.Join(dest, path))
		if assert.NoError(t, err, path) {
			assert.Equal(t, mode, st.Mode().Perm(), path)
		}
	}
	unit, err := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/sandbox-runner.service"))
	require.NoError(t, err)
	assert.Contains(t, string(unit), "\nExecStart=/usr/bin/sandbox-runner serve --config /etc/sandbox-runner/config.toml\n")
	unit, err = os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/sandbox-runner-worker.service"))
	require.NoError(t, err)
	assert.Contains(t, string(unit), "\nExecStart=/usr/bin/sandbox-runner worker --config /etc/sandbox-runner/config.toml\n")

	// A second install keeps the operator's config.
	cfg := filepath.Join(dest, "etc/sandbox-runner/config.toml")
	require.NoError(t, os.WriteFile(cfg, []byte("# mine\n"), 0o644))
	assert.Contains(t, install(), "kept ")
	b, err := os.ReadFile(cfg)
	require.NoError(t, err)
	assert.Equal(t, "# mine\n", string(b))
}
