package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

const shBody = `{"runtime": "bash", "files": [{"content": "true"}]}`

// streamPost sends a streamed request and returns the response, whose
// body the test reads.
func (ts *testServer) streamPost(t *testing.T, ctx context.Context, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://svc/v1/exec", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Accept", ContentTypeNDJSON)
	resp, err := ts.http.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// nextMessage reads one line of a streamed answer.
func nextMessage(t *testing.T, r *bufio.Reader) (Message, map[string]any) {
	t.Helper()
	line, err := r.ReadBytes('\n')
	require.NoError(t, err, "partial line %q", line)
	var m Message
	require.NoError(t, json.Unmarshal(line, &m), "%s", line)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(line, &raw))
	return m, raw
}

func TestStreamSendsOutputAsTheTaskWritesIt(t *testing.T) {
	release := make(chan struct{})
	exec := &fakeExec{run: func(ctx context.Context, task runner.Task) (*runner.Result, error) {
		_, _ = task.Stdout.Write([]byte("first\n"))
		select {
		case <-release:
		case <-time.After(10 * time.Second):
			return nil, errors.New("the client never saw the first chunk")
		}
		_, _ = task.Stderr.Write([]byte("oops\n"))
		_, _ = task.Stdout.Write([]byte("second\n"))
		return &runner.Result{ID: "t1", Runtime: task.Runtime, Stage: runner.Stage{Outcome: runner.OutcomeExited,
			Stdout: runner.Stream{Data: []byte("first\nsecond\n")}, Stderr: runner.Stream{Data: []byte("oops\n")}}}, nil
	}}
	ts := startService(t, exec)
	resp := ts.streamPost(t, context.Background(), shBody)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, ContentTypeNDJSON, resp.Header.Get("Content-Type"))
	r := bufio.NewReader(resp.Body)

	// The task is still blocked: this chunk came while it ran.
	m, raw := nextMessage(t, r)
	assert.Equal(t, map[string]any{"type": "output", "stage": "run", "stream": "stdout", "data": "first\n", "encoding": "utf-8"}, raw)
	close(release)

	var out, errs string
	for {
		m, raw = nextMessage(t, r)
		if m.Type != MessageOutput {
			break
		}
		b, err := m.Bytes()
		require.NoError(t, err)
		if m.Stream == StreamStderr {
			errs += string(b)
		} else {
			out += string(b)
		}
	}
	assert.Equal(t, "second\n", out)
	assert.Equal(t, "oops\n", errs)
	require.Equal(t, MessageResult, m.Type, "the result comes last")
	assert.Equal(t, "t1", m.Result.ID)
	assert.Equal(t, "first\nsecond\n", string(m.Result.Stdout.Data), "the result is the whole document")
	assert.Contains(t, raw["result"], "duration_ms")
	_, err := r.ReadByte()
	assert.ErrorIs(t, err, io.EOF, "nothing after the result")
}

func TestStreamKeepsCharactersWholeAndBytesSafe(t *testing.T) {
	exec := &fakeExec{run: func(ctx context.Context, task runner.Task) (*runner.Result, error) {
		// é cut between two writes, then bytes that are no UTF-8.
		_, _ = task.Stdout.Write([]byte("caf\xc3"))
		time.Sleep(50 * time.Millisecond)
		_, _ = task.Stdout.Write([]byte("\xa9\n"))
		_, _ = task.Stderr.Write([]byte{0xff, 0xfe, 0})
		// A stream cut at its limit mid-character: the result drops
		// the character's first byte, and so must the stream.
		return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeExited,
			Stdout: runner.Stream{Data: []byte("café\n")}, Stderr: runner.Stream{Data: []byte{0xff, 0xfe, 0}}}}, nil
	}}
	ts := startService(t, exec)
	r := bufio.NewReader(ts.streamPost(t, context.Background(), shBody).Body)
	streams := map[string][]byte{}
	var encodings []string
	var m Message
	for m, _ = nextMessage(t, r); m.Type == MessageOutput; m, _ = nextMessage(t, r) {
		b, err := m.Bytes()
		require.NoError(t, err)
		streams[m.Stream] = append(streams[m.Stream], b...)
		encodings = append(encodings, m.Stream+":"+m.Encoding)
	}
	assert.Equal(t, "café\n", string(streams[StreamStdout]))
	assert.Equal(t, []byte{0xff, 0xfe, 0}, streams[StreamStderr])
	assert.Contains(t, encodings, "stdout:utf-8")
	assert.NotContains(t, encodings, "stdout:base64", "the cut character waited for its end")
	assert.Contains(t, encodings, "stderr:base64")
	assert.Equal(t, MessageResult, m.Type)
}

func TestStreamCutAtTheLimitMatchesTheResult(t *testing.T) {
	exec := &fakeExec{run: func(ctx context.Context, task runner.Task) (*runner.Result, error) {
		// The runner tees what it keeps: up to the limit, here ending
		// in the first byte of a character it then drops.
		_, _ = task.Stdout.Write([]byte("ab\xc3"))
		return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeExited, OutputTruncated: true,
			Stdout: runner.Stream{Data: []byte("ab"), Dropped: 5}}}, nil
	}}
	ts := startService(t, exec)
	r := bufio.NewReader(ts.streamPost(t, context.Background(), `{"runtime": "bash", "files": [{"content": "true"}], "limits": {"output_limit": 3}}`).Body)
	var got []byte
	var m Message
	for m, _ = nextMessage(t, r); m.Type == MessageOutput; m, _ = nextMessage(t, r) {
		b, _ := m.Bytes()
		got = append(got, b...)
	}
	assert.Equal(t, "ab", string(got), "the stream holds what the result holds")
	require.Equal(t, MessageResult, m.Type)
	assert.Equal(t, int64(5), m.Result.Stdout.Dropped)
	assert.True(t, m.Result.OutputTruncated)
}

func TestStreamCompileStageIsTagged(t *testing.T) {
	svc, err := New(&fakeExec{})
	require.NoError(t, err)
	var mu sync.Mutex
	var got []string
	out := svc.newStreamOut(runner.Task{Runtime: "c"}, func(m Message) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m.Type+" "+m.Stage+"/"+m.Stream+":"+m.Data)
		return nil
	}, func() { t.Error("no send failed") })
	_, _ = out.writer(StreamStderr).Write([]byte("warning\n"))
	// What the runner tells its observer between the stages.
	times := &taskTimes{m: svc.metrics}
	observers{times, stageSwitch{out}}.ObserveStep(runner.StageCompile, runner.StepTeardown, time.Millisecond)
	_, _ = out.writer(StreamStdout).Write([]byte("ran\n"))
	out.finish(&runner.Result{}, Message{Type: MessageResult})
	assert.Equal(t, []string{"output compile/stderr:warning\n", "output run/stdout:ran\n", "result /:"}, got)
	assert.Equal(t, time.Millisecond, times.teardown, "the metrics' observer still hears")
}

func TestStreamRefusalsAndFailures(t *testing.T) {
	var fail error
	var mu sync.Mutex
	exec := &fakeExec{run: func(ctx context.Context, task runner.Task) (*runner.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		if strings.Contains(task.Runtime, "bash") {
			_, _ = task.Stdout.Write([]byte("partial\n"))
		}
		return nil, fail
	}}
	ts := startService(t, exec)

	// Refused before anything ran: a plain error answer.
	resp := ts.streamPost(t, context.Background(), `{"runtime": "cobol", "files": [{"content": "x"}]}`)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))

	// A batch is one document, never a stream.
	resp = ts.streamPost(t, context.Background(), `{"runtime": "sh", "files": [{"content": "x"}], "runs": [{"stdin": "1"}]}`)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	var refused ErrorResponse
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&refused))
	assert.Contains(t, refused.Error, "runs: a batch is answered as one document")

	// Failed before any output: the status it has unstreamed.
	mu.Lock()
	fail = runner.ErrImageNotFound
	mu.Unlock()
	resp = ts.streamPost(t, context.Background(), `{"runtime": "python", "files": [{"content": "x"}]}`)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	var e ErrorResponse
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
	assert.Equal(t, KindImageNotFound, e.Kind)

	// Failed after output: the error is the last line.
	mu.Lock()
	fail = errors.New("containerd went away")
	mu.Unlock()
	resp = ts.streamPost(t, context.Background(), shBody)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	r := bufio.NewReader(resp.Body)
	m, _ := nextMessage(t, r)
	assert.Equal(t, "partial\n", m.Data)
	m, raw := nextMessage(t, r)
	assert.Equal(t, map[string]any{"type": "error", "error": "containerd went away", "kind": KindRunnerFailed}, raw)
}

func TestStreamClientGoingAwayCancelsTheTask(t *testing.T) {
	cancelled := make(chan error, 1)
	exec := &fakeExec{run: func(ctx context.Context, task runner.Task) (*runner.Result, error) {
		_, _ = task.Stdout.Write([]byte("started\n"))
		<-ctx.Done()
		cancelled <- context.Cause(ctx)
		return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeCancelled, Cancelled: true, ExitCode: runner.ExitCancelled}}, nil
	}}
	ts := startService(t, exec)
	ctx, cancel := context.WithCancel(context.Background())
	resp := ts.streamPost(t, ctx, shBody)
	m, _ := nextMessage(t, bufio.NewReader(resp.Body))
	assert.Equal(t, "started\n", m.Data)
	cancel()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the task was not cancelled when its client went away")
	}
	require.Eventually(t, func() bool {
		return metricValue(t, ts.scrape(t), MetricTasks, "outcome", string(runner.OutcomeCancelled)) == 1
	}, 5*time.Second, 10*time.Millisecond)
	running, _ := ts.svc.lim.counts()
	assert.Zero(t, running, "the slot is free")
}

func TestWantsStream(t *testing.T) {
	for accept, want := range map[string]bool{
		"":                     false,
		"application/json":     false,
		"application/x-ndjson": true,
		"application/json, application/x-ndjson;q=0.9": true,
		"application/x-ndjson;q=0":                     false,
		"text/html, */*":                               false,
	} {
		r, _ := http.NewRequest(http.MethodPost, "/v1/exec", nil)
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		assert.Equal(t, want, wantsStream(r), "Accept: %s", accept)
	}
}

// dialWS opens an interactive session on the test server.
func (ts *testServer) dialWS(t *testing.T) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://svc/v1/exec/ws", &websocket.DialOptions{HTTPClient: ts.http})
	require.NoError(t, err)
	t.Cleanup(func() { conn.CloseNow() })
	return conn
}

func wsSend(t *testing.T, c *websocket.Conn, v any) {
	t.Helper()
	b, ok := v.(string)
	if !ok {
		j, err := json.Marshal(v)
		require.NoError(t, err)
		b = string(j)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(b)))
}

// wsNext reads one message; ok is false once the server closed, with
// the close status.
func wsNext(t *testing.T, c *websocket.Conn) (m Message, status websocket.StatusCode, ok bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		st := websocket.CloseStatus(err)
		require.NotEqual(t, websocket.StatusCode(-1), st, "not a close: %v", err)
		return m, st, false
	}
	require.NoError(t, json.Unmarshal(b, &m), "%s", b)
	return m, 0, true
}

// wsRest reads until the close: the output, the messages and the status.
func wsRest(t *testing.T, c *websocket.Conn) (out string, msgs []Message, status websocket.StatusCode) {
	t.Helper()
	for {
		m, st, ok := wsNext(t, c)
		if !ok {
			return out, msgs, st
		}
		if m.Type == MessageOutput {
			b, err := m.Bytes()
			require.NoError(t, err)
			out += string(b)
			continue
		}
		msgs = append(msgs, m)
	}
}

// catExec copies stdin to stdout, as cat does, until stdin ends or the
// task is cancelled.
func catExec() *fakeExec {
	return &fakeExec{run: func(ctx context.Context, task runner.Task) (*runner.Result, error) {
		done := make(chan error, 1)
		go func() {
			_, err := io.Copy(task.Stdout, task.Stdin)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				return nil, err
			}
			return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeExited}}, nil
		case <-ctx.Done():
			return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeCancelled, Cancelled: true, ExitCode: runner.ExitCancelled}}, nil
		}
	}}
}

func TestWSEchoesAndCloseStdinEndsTheTask(t *testing.T) {
	ts := startService(t, catExec())
	c := ts.dialWS(t)
	wsSend(t, c, `{"runtime": "bash", "files": [{"content": "cat"}], "stdin": "from the request\n"}`)
	for _, line := range []string{"from the request\n", "hello\n", "wörld\n"} {
		if line != "from the request\n" {
			wsSend(t, c, StdinInput([]byte(line)))
		}
		m, _, ok := wsNext(t, c)
		require.True(t, ok)
		assert.Equal(t, Message{Type: MessageOutput, Stage: "run", Stream: "stdout", Data: line, Encoding: EncodingUTF8}, m)
	}
	wsSend(t, c, StdinInput([]byte{0xff, '\n'}))
	m, _, _ := wsNext(t, c)
	assert.Equal(t, EncodingBase64, m.Encoding)
	wsSend(t, c, Input{Type: InputCloseStdin})
	out, msgs, status := wsRest(t, c)
	assert.Empty(t, out)
	require.Len(t, msgs, 1, "%v", msgs)
	assert.Equal(t, MessageResult, msgs[0].Type)
	assert.Equal(t, runner.OutcomeExited, msgs[0].Result.Outcome, "end-of-file ended cat")
	assert.Equal(t, websocket.StatusNormalClosure, status)
	assert.Equal(t, 1.0, metricValue(t, ts.scrape(t), MetricRequestsByMode, "mode", ModeInteractive))
}

func TestWSKillCancelsTheTask(t *testing.T) {
	ts := startService(t, catExec())
	c := ts.dialWS(t)
	wsSend(t, c, shBody)
	wsSend(t, c, StdinInput([]byte("x\n")))
	_, _, ok := wsNext(t, c)
	require.True(t, ok)
	wsSend(t, c, Input{Type: InputKill})
	_, msgs, status := wsRest(t, c)
	require.Len(t, msgs, 1)
	assert.Equal(t, runner.OutcomeCancelled, msgs[0].Result.Outcome)
	assert.Equal(t, websocket.StatusNormalClosure, status)
}

func TestWSForwardsSignals(t *testing.T) {
	exec := &fakeExec{run: func(ctx context.Context, task runner.Task) (*runner.Result, error) {
		sig := <-runner.Signals(ctx)
		_, _ = task.Stdout.Write([]byte(sig.String()))
		sig = <-runner.Signals(ctx)
		_, _ = task.Stdout.Write([]byte(" " + sig.String()))
		return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeExited}}, nil
	}}
	ts := startService(t, exec)
	c := ts.dialWS(t)
	wsSend(t, c, shBody)
	wsSend(t, c, `{"type": "signal", "signal": "usr1"}`)
	wsSend(t, c, SignalInput(syscall.SIGTERM))
	out, msgs, status := wsRest(t, c)
	assert.Equal(t, "user defined signal 1 terminated", out)
	require.Len(t, msgs, 1)
	assert.Equal(t, MessageResult, msgs[0].Type)
	assert.Equal(t, websocket.StatusNormalClosure, status)
}

func TestWSBadMessageEndsTheSession(t *testing.T) {
	for _, tc := range []struct{ msg, want string }{
		{`{"type": "signal", "signal": "KILL"}`, `send {"type": "kill"}`},
		{`{"type": "signal", "signal": "SIGNOPE"}`, "no such signal"},
		{`{"type": "signal", "signal": 99}`, "give 1 to 64"},
		{`{"type": "dance"}`, `type "dance"`},
		{`{"type": "stdin", "data": "x", "colour": 1}`, "colour"},
		{`{"type": "stdin", "data": "!!", "encoding": "base64"}`, "base64"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			ts := startService(t, catExec())
			c := ts.dialWS(t)
			wsSend(t, c, shBody)
			wsSend(t, c, tc.msg)
			_, msgs, status := wsRest(t, c)
			require.Len(t, msgs, 2, "%v", msgs)
			assert.Equal(t, MessageError, msgs[0].Type)
			assert.Equal(t, KindInvalidInput, msgs[0].Kind)
			assert.Contains(t, msgs[0].Error, "message 2: ")
			assert.Contains(t, msgs[0].Error, tc.want)
			assert.Equal(t, runner.OutcomeCancelled, msgs[1].Result.Outcome, "the task was killed")
			assert.Equal(t, websocket.StatusPolicyViolation, status)
		})
	}
}

func TestWSStdinAfterCloseIsRefused(t *testing.T) {
	ts := startService(t, &fakeExec{run: blockUntilCancelled})
	c := ts.dialWS(t)
	wsSend(t, c, shBody)
	wsSend(t, c, Input{Type: InputCloseStdin})
	wsSend(t, c, StdinInput([]byte("late")))
	_, msgs, _ := wsRest(t, c)
	require.NotEmpty(t, msgs)
	assert.Contains(t, msgs[0].Error, "stdin after close_stdin")
}

func TestWSIdleClientEndsTheTask(t *testing.T) {
	ts := startService(t, &fakeExec{run: blockUntilCancelled}, WithIdleTimeout(300*time.Millisecond))
	c := ts.dialWS(t)
	start := time.Now()
	wsSend(t, c, shBody)
	_, msgs, status := wsRest(t, c)
	took := time.Since(start)
	require.Len(t, msgs, 2, "%v", msgs)
	assert.Equal(t, KindIdle, msgs[0].Kind)
	assert.Contains(t, msgs[0].Error, "300ms")
	assert.Equal(t, runner.OutcomeCancelled, msgs[1].Result.Outcome)
	assert.Equal(t, websocket.StatusPolicyViolation, status)
	assert.Less(t, took, 5*time.Second)
	assert.GreaterOrEqual(t, took, 300*time.Millisecond)
}

func TestWSPingsKeepAnIdleSessionAlive(t *testing.T) {
	release := make(chan struct{})
	exec := &fakeExec{run: func(ctx context.Context, task runner.Task) (*runner.Result, error) {
		select {
		case <-release:
			return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeExited}}, nil
		case <-ctx.Done():
			return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeCancelled, Cancelled: true}}, nil
		}
	}}
	ts := startService(t, exec, WithIdleTimeout(300*time.Millisecond))
	c := ts.dialWS(t)
	wsSend(t, c, shBody)
	done := make(chan struct{})
	var out []Message
	go func() {
		defer close(done)
		_, out, _ = wsRest(t, c)
	}()
	for range 8 {
		time.Sleep(100 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		require.NoError(t, c.Ping(ctx))
		cancel()
	}
	close(release)
	<-done
	require.Len(t, out, 1, "%v", out)
	assert.Equal(t, runner.OutcomeExited, out[0].Result.Outcome, "pings are activity")
}

func TestWSVanishedClientCancelsTheTask(t *testing.T) {
	cancelled := make(chan struct{})
	exec := &fakeExec{run: func(ctx context.Context, task runner.Task) (*runner.Result, error) {
		_, _ = task.Stdout.Write([]byte("up\n"))
		<-ctx.Done()
		close(cancelled)
		return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeCancelled, Cancelled: true}}, nil
	}}
	ts := startService(t, exec)
	c := ts.dialWS(t)
	wsSend(t, c, shBody)
	_, _, ok := wsNext(t, c)
	require.True(t, ok)
	c.CloseNow()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the task outlived its client")
	}
}

func TestWSRefusals(t *testing.T) {
	ts := startService(t, &fakeExec{})
	a := ts.get(t, "/v1/exec/ws")
	assert.Equal(t, http.StatusUpgradeRequired, a.status, "%s", a)
	assert.Equal(t, KindInvalidInput, a.errorDoc(t).Kind)

	c := ts.dialWS(t)
	wsSend(t, c, `{"runtime": "cobol", "files": [{"content": "x"}]}`)
	_, msgs, status := wsRest(t, c)
	require.Len(t, msgs, 1)
	assert.Equal(t, KindInvalidInput, msgs[0].Kind)
	assert.Contains(t, msgs[0].Error, "cobol")
	assert.Equal(t, websocket.StatusPolicyViolation, status)
	assert.Empty(t, ts.svc.exec.(*fakeExec).seen(), "nothing ran")
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{`"SIGINT"`: syscall.SIGINT, `"term"`: syscall.SIGTERM, `" HUP "`: syscall.SIGHUP, `10`: syscall.SIGUSR1} {
		got, err := parseSignal(json.RawMessage(in))
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{``, `"KILL"`, `19`, `0`, `"SIGFOO"`, `true`, `2.5`} {
		_, err := parseSignal(json.RawMessage(in))
		assert.Error(t, err, in)
	}
}

func TestClientStreamsAndInteracts(t *testing.T) {
	exec := catExec()
	ts := startService(t, exec)
	c := NewClient(ts.socket)

	var stdout, stderr bytes.Buffer
	res, err := c.ExecStream(context.Background(), Request{Runtime: "bash", Files: []File{{Content: "cat"}}, Stdin: "piped\n"}, &stdout, &stderr)
	require.NoError(t, err)
	assert.Equal(t, runner.OutcomeExited, res.Outcome)
	assert.Equal(t, "piped\n", stdout.String())

	var live lockedBuf
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err = c.Interactive(context.Background(), Request{Runtime: "bash", Files: []File{{Content: "cat"}}}, pr, &live, &stderr, nil)
	}()
	_, _ = pw.Write([]byte("typed\n"))
	require.Eventually(t, func() bool { return live.String() == "typed\n" }, 5*time.Second, 10*time.Millisecond,
		"the task's output came while it ran")
	pw.Close()
	<-done
	require.NoError(t, err)
	assert.Equal(t, runner.OutcomeExited, res.Outcome, "the end of stdin closed the task's")

	_, err = c.ExecStream(context.Background(), Request{Runtime: "cobol"}, &stdout, &stderr)
	assert.ErrorIs(t, err, runner.ErrInvalidTask)
	_, err = c.Interactive(context.Background(), Request{Runtime: "cobol"}, nil, &stdout, &stderr, nil)
	assert.ErrorIs(t, err, runner.ErrInvalidTask)
}

type lockedBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestShutdownWaitsForSessionsThenCancelsThem(t *testing.T) {
	quick := make(chan struct{})
	fe := &fakeExec{run: func(ctx context.Context, task runner.Task) (*runner.Result, error) {
		if len(task.Args) > 0 && task.Args[0] == "quick" {
			<-quick
			return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeExited}}, nil
		}
		return blockUntilCancelled(ctx, task)
	}}
	ts := startService(t, fe, WithGrace(500*time.Millisecond))
	quickConn, slowConn := ts.dialWS(t), ts.dialWS(t)
	wsSend(t, quickConn, `{"runtime": "bash", "files": [{"content": "x"}], "args": ["quick"]}`)
	wsSend(t, slowConn, shBody)
	require.Eventually(t, func() bool { return len(fe.seen()) == 2 }, 5*time.Second, 10*time.Millisecond)

	stopped := time.Now()
	ts.stop()
	close(quick)
	_, msgs, status := wsRest(t, quickConn)
	require.Len(t, msgs, 1)
	assert.Equal(t, runner.OutcomeExited, msgs[0].Result.Outcome, "a session finishes within the grace period")
	assert.Equal(t, websocket.StatusNormalClosure, status)
	_, msgs, _ = wsRest(t, slowConn)
	require.Len(t, msgs, 1)
	assert.Equal(t, runner.OutcomeCancelled, msgs[0].Result.Outcome, "a session still running after the grace period is cancelled")
	assert.GreaterOrEqual(t, time.Since(stopped), 500*time.Millisecond)
	select {
	case err := <-ts.done:
		assert.NoError(t, err)
		ts.done <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func TestStreamAndSessionsOnTCPNeedTheToken(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	startServiceOn(t, catExec(), []net.Listener{tcp}, WithToken("s3cret-token"))
	addr := tcp.Addr().String()
	req := Request{Runtime: "bash", Files: []File{{Content: "cat"}}, Stdin: "in\n"}
	var stdout, stderr lockedBuf

	_, err = NewTCPClient(addr, "wrong").ExecStream(context.Background(), req, &stdout, &stderr)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, http.StatusUnauthorized, e.Status)
	_, err = NewTCPClient(addr, "wrong").Interactive(context.Background(), req, nil, &stdout, &stderr, nil)
	require.ErrorAs(t, err, &e)
	assert.Equal(t, http.StatusUnauthorized, e.Status)
	assert.Empty(t, stdout.String())

	c := NewTCPClient(addr, "s3cret-token")
	res, err := c.ExecStream(context.Background(), req, &stdout, &stderr)
	require.NoError(t, err)
	assert.Equal(t, runner.OutcomeExited, res.Outcome)
	res, err = c.Interactive(context.Background(), req, nil, &stdout, &stderr, nil)
	require.NoError(t, err)
	assert.Equal(t, runner.OutcomeExited, res.Outcome)
	assert.Equal(t, "in\nin\n", stdout.String(), "the request's stdin, streamed and then in a session")
}

func TestStreamClientThatReadsNothingIsGone(t *testing.T) {
	cause := make(chan error, 1)
	exec := &fakeExec{run: func(ctx context.Context, task runner.Task) (*runner.Result, error) {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for range 64 { // 4 MiB, far more than the socket buffers hold
			_, _ = task.Stdout.Write(chunk)
		}
		<-ctx.Done()
		cause <- context.Cause(ctx)
		return &runner.Result{Stage: runner.Stage{Outcome: runner.OutcomeCancelled, Cancelled: true}}, nil
	}}
	ts := startService(t, exec, WithIdleTimeout(300*time.Millisecond))
	resp := ts.streamPost(t, context.Background(), shBody)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	// The client reads nothing more. The write that timed out ends the
	// task, or the server's noticing the connection it broke does.
	start := time.Now()
	select {
	case err := <-cause:
		assert.True(t, errors.Is(err, errClientGone) || errors.Is(err, context.Canceled), "%v", err)
		assert.GreaterOrEqual(t, time.Since(start), 250*time.Millisecond, "not before the idle time")
	case <-time.After(10 * time.Second):
		t.Fatal("a client that read nothing for the idle time kept its task")
	}
}
