//go:build linux

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// streamed is one streamed answer: its messages with when each came.
type streamed struct {
	msgs []service.Message
	at   []time.Time
}

// output joins the data of the output messages of stage and stream.
func (s streamed) output(t *testing.T, stage, stream string) []byte {
	t.Helper()
	var b []byte
	for _, m := range s.msgs {
		if m.Type == service.MessageOutput && m.Stage == stage && m.Stream == stream {
			d, err := m.Bytes()
			require.NoError(t, err)
			b = append(b, d...)
		}
	}
	return b
}

// last is the last message, which must be the result.
func (s streamed) result(t *testing.T) *runner.Result {
	t.Helper()
	require.NotEmpty(t, s.msgs)
	last := s.msgs[len(s.msgs)-1]
	require.Equal(t, service.MessageResult, last.Type, "the last message: %+v", last)
	require.NotNil(t, last.Result)
	return last.Result
}

// streamPost sends body to POST /v1/exec asking for ndjson and returns
// the response, whose body the caller reads.
func (p *serveProc) streamPost(ctx context.Context, body string) *http.Response {
	p.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://svc/v1/exec", strings.NewReader(body))
	require.NoError(p.t, err)
	req.Header.Set("Accept", service.ContentTypeNDJSON)
	resp, err := p.http.Do(req)
	require.NoError(p.t, err)
	p.t.Cleanup(func() { resp.Body.Close() })
	require.Equal(p.t, http.StatusOK, resp.StatusCode)
	require.Equal(p.t, service.ContentTypeNDJSON, resp.Header.Get("Content-Type"))
	return resp
}

// readStream reads every line of a streamed answer.
func readStream(t *testing.T, r io.Reader) streamed {
	t.Helper()
	var s streamed
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		var m service.Message
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "%s", sc.Bytes())
		s.msgs, s.at = append(s.msgs, m), append(s.at, time.Now())
	}
	require.NoError(t, sc.Err())
	return s
}

func TestStreamOutputArrivesWhileTheTaskRuns(t *testing.T) {
	p := startServe(t, serveSetup{})
	start := time.Now()
	s := readStream(t, p.streamPost(context.Background(), execBody("echo first; sleep 2; echo second >&2; echo third")).Body)
	res := s.result(t)
	assert.Equal(t, runner.OutcomeExited, res.Outcome)
	require.GreaterOrEqual(t, len(s.msgs), 3)
	first := s.msgs[0]
	assert.Equal(t, service.Message{Type: service.MessageOutput, Stage: "run", Stream: "stdout", Data: "first\n", Encoding: "utf-8"}, first)
	ahead := s.at[len(s.at)-1].Sub(s.at[0])
	t.Logf("first chunk %s after the request, %s before the result", s.at[0].Sub(start).Round(time.Millisecond), ahead.Round(time.Millisecond))
	assert.Greater(t, ahead, 1500*time.Millisecond, "the first chunk came before the task's sleep ended")
	assert.Equal(t, "first\nthird\n", string(s.output(t, "run", "stdout")))
	assert.Equal(t, "second\n", string(s.output(t, "run", "stderr")))
	assert.Equal(t, "first\nthird\n", string(res.Stdout.Data), "the result is the whole document")
	mfs := p.scrape()
	n, _ := metric(t, mfs, service.MetricRequestsByMode, "mode", service.ModeStreamed)
	assert.Equal(t, 1.0, n)
	p.h.CheckNoLeaks(t, p.stateDir)
}

func TestStreamLimitsAreTheBufferedOnes(t *testing.T) {
	p := startServe(t, serveSetup{})
	// stdout past its limit; stderr cut at the limit in the middle of a
	// two-byte character; the compile stage's own output tagged.
	code := `printf '%3000s' | tr ' ' a; i=0; while [ $i -lt 700 ]; do printf 'é'; i=$((i+1)); done >&2`
	body := execBody(code, `"limits": {"output_limit": 1001}`)
	buffered, _ := p.post(body).result(t)
	s := readStream(t, p.streamPost(context.Background(), body).Body)
	res := s.result(t)
	for _, r := range []*runner.Result{&buffered, res} {
		assert.True(t, r.OutputTruncated)
		assert.Equal(t, strings.Repeat("a", 1001), string(r.Stdout.Data))
		assert.Equal(t, int64(1999), r.Stdout.Dropped)
		assert.Equal(t, strings.Repeat("é", 500), string(r.Stderr.Data), "the character cut at the limit is dropped")
		assert.Equal(t, int64(1400-1000), r.Stderr.Dropped)
	}
	assert.Equal(t, res.Stdout.Data, s.output(t, "run", "stdout"), "the stream stops at the limit")
	assert.Equal(t, res.Stderr.Data, s.output(t, "run", "stderr"), "the stream drops the cut character too")
	for _, m := range s.msgs[:len(s.msgs)-1] {
		assert.Equal(t, "utf-8", m.Encoding, "text stays text: %+v", m)
	}

	s = readStream(t, p.streamPost(context.Background(),
		`{"runtime": "shc", "files": [{"content": "echo ran"}]}`).Body)
	res = s.result(t)
	assert.Equal(t, "ran\n", string(s.output(t, "run", "stdout")))
	assert.Equal(t, runner.OutcomeExited, res.Outcome)
	require.NotNil(t, res.Compile)
	p.h.CheckNoLeaks(t, p.stateDir)
}

func TestStreamClientGoingAwayLeavesNothingBehind(t *testing.T) {
	Parallel(t)
	p := startServe(t, serveSetup{})
	marker := fmt.Sprintf("stream-gone-%d", time.Now().UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	resp := p.streamPost(ctx, execBody("echo up; sleep 100 # "+marker, `"args": ["`+marker+`"]`, `"limits": {"timeout": "60s"}`))
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(t, err)
	assert.Contains(t, line, `"data":"up\n"`)
	require.NotEmpty(t, hostProcesses([]byte(marker)), "the task runs")
	gone := time.Now()
	cancel()

	p.waitMetric(service.MetricTasks, "outcome", string(runner.OutcomeCancelled), 1)
	t.Logf("killed and cleaned %s after the client went away", time.Since(gone).Round(time.Millisecond))
	assert.Empty(t, runningTasks(t, p.h))
	assert.Empty(t, hostProcesses([]byte(marker)))
	p.h.CheckNoLeaks(t, p.stateDir)
	p.waitLog(`"cancelled_by":"client"`)
}

// session is an interactive session with a serve.
type session struct {
	t    *testing.T
	conn *websocket.Conn
}

func (p *serveProc) dialWS(body string) *session {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://svc/v1/exec/ws", &websocket.DialOptions{HTTPClient: p.http})
	require.NoError(p.t, err)
	p.t.Cleanup(func() { conn.CloseNow() })
	s := &session{t: p.t, conn: conn}
	s.send(body)
	return s
}

func (s *session) send(v any) {
	s.t.Helper()
	b, ok := v.(string)
	if !ok {
		j, err := json.Marshal(v)
		require.NoError(s.t, err)
		b = string(j)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(s.t, s.conn.Write(ctx, websocket.MessageText, []byte(b)))
}

// next reads a message; ok is false once the service closed.
func (s *session) next(within time.Duration) (m service.Message, status websocket.StatusCode, ok bool) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	_, b, err := s.conn.Read(ctx)
	if err != nil {
		st := websocket.CloseStatus(err)
		require.NotEqual(s.t, websocket.StatusCode(-1), st, "not a close: %v", err)
		return m, st, false
	}
	require.NoError(s.t, json.Unmarshal(b, &m), "%s", b)
	return m, 0, true
}

// expectOutput reads output until it holds want.
func (s *session) expectOutput(want string) {
	s.t.Helper()
	var got string
	for !strings.Contains(got, want) {
		m, _, ok := s.next(30 * time.Second)
		require.True(s.t, ok, "closed before %q; got %q", want, got)
		require.Equal(s.t, service.MessageOutput, m.Type, "%+v", m)
		b, err := m.Bytes()
		require.NoError(s.t, err)
		got += string(b)
	}
}

// rest reads to the close: output, the other messages, the status.
func (s *session) rest(within time.Duration) (out string, msgs []service.Message, status websocket.StatusCode) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		m, st, ok := s.next(time.Until(deadline))
		if !ok {
			return out, msgs, st
		}
		if m.Type == service.MessageOutput {
			b, _ := m.Bytes()
			out += string(b)
			continue
		}
		msgs = append(msgs, m)
	}
}

func TestWSCatRoundTripAndCloseStdin(t *testing.T) {
	p := startServe(t, serveSetup{})
	s := p.dialWS(execBody("cat"))
	for _, line := range []string{"hello\n", "wörld\n"} {
		start := time.Now()
		s.send(service.StdinInput([]byte(line)))
		s.expectOutput(line)
		t.Logf("echoed %q in %s", line, time.Since(start).Round(time.Microsecond))
	}
	s.send(service.Input{Type: service.InputCloseStdin})
	out, msgs, status := s.rest(30 * time.Second)
	assert.Empty(t, out)
	require.Len(t, msgs, 1, "%+v", msgs)
	res := msgs[0].Result
	require.NotNil(t, res)
	assert.Equal(t, runner.OutcomeExited, res.Outcome, "end-of-file ended cat")
	assert.Equal(t, "hello\nwörld\n", string(res.Stdout.Data))
	assert.Equal(t, websocket.StatusNormalClosure, status)
	n, _ := metric(t, p.scrape(), service.MetricRequestsByMode, "mode", service.ModeInteractive)
	assert.Equal(t, 1.0, n)
	p.h.CheckNoLeaks(t, p.stateDir)
}

func TestWSKillAndSignal(t *testing.T) {
	Parallel(t)
	p := startServe(t, serveSetup{})
	marker := fmt.Sprintf("ws-kill-%d", time.Now().UnixNano())
	s := p.dialWS(execBody("echo up; sleep 100 # "+marker, `"args": ["`+marker+`"]`))
	s.expectOutput("up\n")
	s.send(service.Input{Type: service.InputKill})
	_, msgs, status := s.rest(30 * time.Second)
	require.Len(t, msgs, 1, "%+v", msgs)
	assert.Equal(t, runner.OutcomeCancelled, msgs[0].Result.Outcome)
	assert.Equal(t, runner.ExitCancelled, msgs[0].Result.ExitCode)
	assert.Equal(t, websocket.StatusNormalClosure, status)
	assert.Empty(t, hostProcesses([]byte(marker)))
	p.waitLog(`"cancelled_by":"kill_message"`)

	// A signal reaches the task through the sandbox's init.
	s = p.dialWS(execBody(`trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done`))
	s.expectOutput("ready\n")
	s.send(`{"type": "signal", "signal": "TERM"}`)
	out, msgs, status := s.rest(30 * time.Second)
	assert.Equal(t, "got TERM\n", out)
	require.Len(t, msgs, 1, "%+v", msgs)
	assert.Equal(t, runner.OutcomeExited, msgs[0].Result.Outcome)
	assert.Equal(t, 7, msgs[0].Result.ExitCode)
	assert.Equal(t, websocket.StatusNormalClosure, status)
	p.h.CheckNoLeaks(t, p.stateDir)
}

func TestWSIdleClientAndDeadline(t *testing.T) {
	Parallel(t)
	p := startServe(t, serveSetup{args: []string{"--idle-timeout", "1s"}})
	marker := fmt.Sprintf("ws-idle-%d", time.Now().UnixNano())
	start := time.Now()
	s := p.dialWS(execBody("sleep 100 # "+marker, `"args": ["`+marker+`"]`))
	_, msgs, status := s.rest(30 * time.Second)
	took := time.Since(start)
	require.Len(t, msgs, 2, "%+v", msgs)
	assert.Equal(t, service.KindIdle, msgs[0].Kind)
	assert.Equal(t, runner.OutcomeCancelled, msgs[1].Result.Outcome)
	assert.Equal(t, websocket.StatusPolicyViolation, status)
	assert.GreaterOrEqual(t, took, time.Second)
	assert.Less(t, took, 15*time.Second)
	assert.Empty(t, hostProcesses([]byte(marker)))
	p.waitLog(`"cancelled_by":"idle"`)

	// The task's own timeout holds for a client that keeps the session
	// alive.
	s = p.dialWS(execBody("cat", `"limits": {"timeout": "2s"}`))
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = s.conn.Ping(ctx)
				cancel()
			}
		}
	}()
	_, msgs, status = s.rest(30 * time.Second)
	require.Len(t, msgs, 1, "%+v", msgs)
	assert.Equal(t, runner.OutcomeTimedOut, msgs[0].Result.Outcome)
	assert.Equal(t, runner.ExitTimedOut, msgs[0].Result.ExitCode)
	assert.Equal(t, websocket.StatusNormalClosure, status)
	p.h.CheckNoLeaks(t, p.stateDir)
}

func TestWSVanishedClientLeavesNothingBehind(t *testing.T) {
	Parallel(t)
	p := startServe(t, serveSetup{})
	marker := fmt.Sprintf("ws-gone-%d", time.Now().UnixNano())
	s := p.dialWS(execBody("echo up; sleep 100 # "+marker, `"args": ["`+marker+`"]`))
	s.expectOutput("up\n")
	s.conn.CloseNow()
	p.waitMetric(service.MetricTasks, "outcome", string(runner.OutcomeCancelled), 1)
	assert.Empty(t, runningTasks(t, p.h))
	assert.Empty(t, hostProcesses([]byte(marker)))
	p.h.CheckNoLeaks(t, p.stateDir)
}

// lineReader reads a running CLI's stdout line by line.
func lineReader(t *testing.T, cmd *exec.Cmd) *bufio.Reader {
	t.Helper()
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	return bufio.NewReader(out)
}

func TestStreamCLIExecInteractive(t *testing.T) {
	p := startServe(t, serveSetup{})
	bin := p.h.CLI(t)
	c := newCLI(t)
	loop := `while read l; do echo "got $l"; done; echo bye`
	for _, via := range []struct {
		name string
		args []string
	}{
		{"service", []string{"exec", "--config", p.config, "--socket", p.socket, "--via", "service", "--runtime", "sh"}},
		{"direct", c.execArgs("--via", "direct")},
	} {
		t.Run(via.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, append(via.args, "-i", "-c", loop)...)
			cmd.Env = cleanEnv()
			var stderr lockedBuffer
			cmd.Stderr = &stderr
			in, err := cmd.StdinPipe()
			require.NoError(t, err)
			out := lineReader(t, cmd)
			require.NoError(t, cmd.Start())
			// Each line is answered while the task runs and stdin is open.
			for _, word := range []string{"one", "two"} {
				_, err := io.WriteString(in, word+"\n")
				require.NoError(t, err)
				line, err := out.ReadString('\n')
				require.NoError(t, err, "stderr: %s", stderr.String())
				assert.Equal(t, "got "+word+"\n", line)
			}
			require.NoError(t, in.Close())
			rest, err := io.ReadAll(out)
			require.NoError(t, err)
			assert.Equal(t, "bye\n", string(rest), "the end of stdin reached the task")
			require.NoError(t, cmd.Wait(), "stderr: %s", stderr.String())
		})
	}

	// Ctrl-C kills the task of a session, which reports it cancelled.
	marker := fmt.Sprintf("cli-ws-int-%d", time.Now().UnixNano())
	cmd := exec.Command(bin, "exec", "--config", p.config, "--socket", p.socket, "--via", "service", "-i",
		"--runtime", "sh", "-c", "echo up; sleep 100 # "+marker, "--", marker)
	cmd.Env = cleanEnv()
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	out := lineReader(t, cmd)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { in.Close(); _ = cmd.Process.Kill() })
	line, err := out.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "up\n", line)
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	err = cmd.Wait()
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr, "stderr: %s", stderr.String())
	assert.Equal(t, runner.ExitCancelled, exitErr.ExitCode())
	assert.Contains(t, stderr.String(), "cancelled; killed")
	assert.Empty(t, hostProcesses([]byte(marker)))

	// Without -i, --via service streams the output too.
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd = exec.CommandContext(ctx, bin, "exec", "--config", p.config, "--socket", p.socket, "--via", "service",
		"--runtime", "sh", "-c", "echo first; sleep 2; echo second")
	cmd.Env = cleanEnv()
	out = lineReader(t, cmd)
	require.NoError(t, cmd.Start())
	start := time.Now()
	line, err = out.ReadString('\n')
	require.NoError(t, err)
	firstAt := time.Since(start)
	assert.Equal(t, "first\n", line)
	rest, err := io.ReadAll(out)
	require.NoError(t, err)
	assert.Equal(t, "second\n", string(rest))
	require.NoError(t, cmd.Wait())
	t.Logf("first line after %s, the end after %s", firstAt.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	assert.Greater(t, time.Since(start)-firstAt, 1500*time.Millisecond, "the first line came before the task's sleep ended")
	n, _ := metric(t, p.scrape(), service.MetricRequestsByMode, "mode", service.ModeStreamed)
	assert.Equal(t, 1.0, n)
	n, _ = metric(t, p.scrape(), service.MetricRequestsByMode, "mode", service.ModeInteractive)
	assert.Equal(t, 2.0, n)
	p.h.CheckNoLeaks(t, p.stateDir)
}
