package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

// DefaultIdleTimeout is how long an interactive client may send nothing
// (no message, no ping) before its session ends and its task is killed;
// a streamed answer's client may read nothing for as long.
const DefaultIdleTimeout = time.Minute

// WithIdleTimeout sets how long the client of an interactive session
// (GET /v1/exec/ws) may send nothing, neither a message nor a ping,
// before the session ends and its task is killed; and how long the
// client of a streamed answer may read nothing. Default
// DefaultIdleTimeout.
func WithIdleTimeout(d time.Duration) Option { return func(o *options) { o.idle = d } }

func (s *Service) idleTimeout() time.Duration {
	if s.opts.idle > 0 {
		return s.opts.idle
	}
	return DefaultIdleTimeout
}

// Types of Input (api's).
const (
	InputStdin      = api.InputStdin
	InputCloseStdin = api.InputCloseStdin
	InputSignal     = api.InputSignal
	InputKill       = api.InputKill
)

// Input is a message a client sends GET /v1/exec/ws after its request
// (api.Input).
type Input = api.Input

// StdinInput returns the message that sends b to the task's stdin.
func StdinInput(b []byte) Input { return api.StdinInput(b) }

// SignalInput returns the message that sends sig to the task.
func SignalInput(sig syscall.Signal) Input { return api.SignalInput(sig) }

// The causes of an interactive task's cancellation, besides the client's
// going away.
var (
	errIdle       = errors.New("the client was idle")
	errKilled     = errors.New("the client asked to kill the task")
	errBadMessage = errors.New("bad message")
)

// signalBacklog is how many signals may wait for the run stage.
const signalBacklog = 16

// handleWS runs an interactive session: the first message is the request
// of POST /v1/exec; then the client sends Inputs while the server sends
// output Messages, then the result, and closes normally.
func (s *Service) handleWS(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		w.Header().Set("Upgrade", "websocket")
		writeError(w, http.StatusUpgradeRequired, KindInvalidInput,
			"GET /v1/exec/ws is a WebSocket: connect with a WebSocket client (Connection: Upgrade, Upgrade: websocket), or POST /v1/exec for one answer")
		return
	}
	// Serve waits for sessions as it does for requests: a hijacked
	// connection is no longer the http.Server's to wait for.
	s.sessions.add()
	defer s.sessions.done()

	idle := s.idleTimeout()
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	watch := newIdleWatch(idle, func() { cancel(errIdle) })
	defer watch.stop()
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		OnPingReceived: func(context.Context, []byte) bool { watch.touch(); return true },
	})
	if err != nil {
		// Accept has answered the request.
		s.opts.log.Info("websocket refused", "error", err, "remote", r.RemoteAddr)
		return
	}
	defer conn.CloseNow()
	conn.SetReadLimit(s.opts.maxBody)
	// Writes go on after a cancellation, for the result; the idle time
	// bounds each, so a client that reads nothing is gone.
	wctx := context.WithoutCancel(ctx)
	send := func(m Message) error {
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		c, done := context.WithTimeout(wctx, idle)
		defer done()
		return conn.Write(c, websocket.MessageText, b)
	}
	refuse := func(code websocket.StatusCode, kind, msg string) {
		_ = send(Message{Type: MessageError, Error: msg, Kind: kind})
		_ = conn.Close(code, closeReason(msg))
	}

	fctx, fdone := context.WithTimeout(ctx, idle)
	typ, body, err := conn.Read(fctx)
	fdone()
	if err != nil {
		s.opts.log.Info("websocket session ended before its request", "error", err, "remote", r.RemoteAddr)
		return
	}
	watch.touch()
	if typ != websocket.MessageText {
		s.metrics.rejected.WithLabelValues(RejectInvalid).Inc()
		refuse(websocket.StatusPolicyViolation, KindInvalidInput, "the first message must be a text message holding the request, as POST /v1/exec takes it")
		return
	}
	task, err := s.decode(body)
	if err != nil {
		s.metrics.rejected.WithLabelValues(RejectInvalid).Inc()
		refuse(websocket.StatusPolicyViolation, KindInvalidInput, err.Error())
		return
	}

	stdin := newStdinPipe(s.opts.maxBody)
	if task.Stdin != nil {
		// The request's stdin comes first, then what the client sends.
		b, _ := io.ReadAll(task.Stdin)
		_ = stdin.write(b)
	}
	task.Stdin = stdin
	defer stdin.abort()
	sigs := make(chan syscall.Signal, signalBacklog)
	out := s.newStreamOut(task, send, func() { cancel(errClientGone) })

	var (
		badMu  sync.Mutex
		badMsg error
	)
	readCtx, stopRead := context.WithCancel(wctx)
	defer stopRead()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for n := 2; ; n++ {
			typ, b, err := conn.Read(readCtx)
			if err != nil {
				cancel(errClientGone)
				return
			}
			watch.touch()
			badMu.Lock()
			if badMsg == nil {
				if err := s.input(typ, b, stdin, sigs, func() { cancel(errKilled) }); err != nil {
					badMsg = fmt.Errorf("message %d: %w", n, err)
					cancel(fmt.Errorf("%w: %w", errBadMessage, badMsg))
				}
			}
			badMu.Unlock()
		}
	}()

	res, fail := s.runStreamed(runner.WithSignals(ctx, sigs), r, task, ModeInteractive, out)
	stdin.abort()
	var last []Message
	code, reason := websocket.StatusNormalClosure, ""
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errIdle):
		msg := fmt.Sprintf("no message from the client for %s (the idle timeout): the task was killed", idle)
		last, code, reason = append(last, Message{Type: MessageError, Error: msg, Kind: KindIdle}), websocket.StatusPolicyViolation, "idle"
	case errors.Is(cause, errBadMessage):
		badMu.Lock()
		msg := badMsg.Error()
		badMu.Unlock()
		last, code, reason = append(last, Message{Type: MessageError, Error: msg, Kind: KindInvalidInput}), websocket.StatusPolicyViolation, closeReason(msg)
	}
	if fail != nil {
		code, reason = failCode(fail), closeReason(fail.Message)
	}
	last = append(last, lastMessage(res, fail))
	out.finish(res, last...)
	_ = conn.Close(code, reason)
	stopRead()
	<-readerDone
}

// input acts on one message of the client's.
func (s *Service) input(typ websocket.MessageType, b []byte, stdin *stdinPipe, sigs chan<- syscall.Signal, kill func()) error {
	if typ != websocket.MessageText {
		return errors.New("a binary message: send JSON text messages, with base64 data for bytes")
	}
	var in Input
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return fmt.Errorf("not an input message (%v): send {\"type\": \"stdin\" | \"close_stdin\" | \"signal\" | \"kill\", ...}", err)
	}
	switch in.Type {
	case InputStdin:
		data, err := decodeData(in.Data, in.Encoding)
		if err != nil {
			return fmt.Errorf("stdin: %w", err)
		}
		return stdin.write(data)
	case InputCloseStdin:
		stdin.closeWrite()
		return nil
	case InputSignal:
		sig, err := parseSignal(in.Signal)
		if err != nil {
			return err
		}
		select {
		case sigs <- sig:
			return nil
		default:
			return fmt.Errorf("signal %s: %d signals already wait for the task to run", unix.SignalName(sig), signalBacklog)
		}
	case InputKill:
		kill()
		return nil
	default:
		return fmt.Errorf("type %q: give stdin, close_stdin, signal or kill", in.Type)
	}
}

// parseSignal reads a signal as a name (SIGINT, INT, int) or a number.
func parseSignal(raw json.RawMessage) (syscall.Signal, error) {
	if len(raw) == 0 {
		return 0, errors.New("signal: give one, as a name (\"SIGINT\", \"TERM\") or a number (2)")
	}
	var sig syscall.Signal
	var name string
	var num int
	switch {
	case json.Unmarshal(raw, &name) == nil:
		name = strings.ToUpper(strings.TrimSpace(name))
		if !strings.HasPrefix(name, "SIG") {
			name = "SIG" + name
		}
		if sig = unix.SignalNum(name); sig == 0 {
			return 0, fmt.Errorf("signal %s: no such signal; give a name such as SIGINT or SIGTERM, or a number", name)
		}
	case json.Unmarshal(raw, &num) == nil:
		if num < 1 || num > 64 {
			return 0, fmt.Errorf("signal %d: give 1 to 64", num)
		}
		sig = syscall.Signal(num)
	default:
		return 0, fmt.Errorf("signal %s: give a name (\"SIGINT\") or a number (2)", raw)
	}
	switch sig {
	case syscall.SIGKILL:
		return 0, errors.New("signal SIGKILL: send {\"type\": \"kill\"} to kill the task")
	case syscall.SIGSTOP:
		return 0, errors.New("signal SIGSTOP cannot be forwarded to the task: the sandbox's init would stop instead")
	}
	return sig, nil
}

// failCode is the close status of a session whose task did not run.
func failCode(e *Error) websocket.StatusCode {
	switch e.Kind {
	case KindInvalidInput:
		return websocket.StatusPolicyViolation
	case KindQueueFull, KindShuttingDown, KindSandboxUnavailable:
		return websocket.StatusTryAgainLater
	default:
		return websocket.StatusInternalError
	}
}

// closeReason fits msg in a close frame, which holds 123 bytes of reason.
func closeReason(msg string) string {
	if len(msg) <= 123 {
		return msg
	}
	cut := 120
	for cut > 0 && !utf8RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + "..."
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// waitSessions waits for the interactive sessions to end, or ctx.
func (s *Service) waitSessions(ctx context.Context) error { return s.sessions.wait(ctx) }

// sessionCount counts the sessions under way. Unlike a sync.WaitGroup,
// it may be waited for while sessions still begin.
type sessionCount struct {
	mu   sync.Mutex
	n    int
	none chan struct{} // closed when n drops to zero
}

func (c *sessionCount) add() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == 0 {
		c.none = make(chan struct{})
	}
	c.n++
}

func (c *sessionCount) done() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n--; c.n == 0 {
		close(c.none)
	}
}

func (c *sessionCount) wait(ctx context.Context) error {
	c.mu.Lock()
	if c.n == 0 {
		c.mu.Unlock()
		return nil
	}
	none := c.none
	c.mu.Unlock()
	select {
	case <-none:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stdinPipe is an interactive task's stdin: the client's data waits in
// it, up to max bytes, for the task to read it, so that reading the
// client's messages (a kill, a ping) never waits on the task.
type stdinPipe struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	max    int64
	closed bool // close_stdin: end-of-file once buf is read
	err    error
}

func newStdinPipe(max int64) *stdinPipe {
	p := &stdinPipe{max: max}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *stdinPipe) write(b []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return errors.New("stdin after close_stdin: the task's stdin is closed")
	case int64(len(p.buf)+len(b)) > p.max:
		return fmt.Errorf("stdin: more than %d bytes (the service's max body) wait for the task to read them", p.max)
	}
	p.buf = append(p.buf, b...)
	p.cond.Broadcast()
	return nil
}

func (p *stdinPipe) closeWrite() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// abort ends reads at once: the session is over.
func (p *stdinPipe) abort() {
	p.mu.Lock()
	if p.err == nil {
		p.err = io.ErrClosedPipe
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *stdinPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && !p.closed && p.err == nil {
		p.cond.Wait()
	}
	switch {
	case p.err != nil:
		return 0, p.err
	case len(p.buf) > 0:
		n := copy(b, p.buf)
		p.buf = p.buf[n:]
		return n, nil
	default:
		return 0, io.EOF
	}
}

// idleWatch calls onIdle once nothing touched it for d.
type idleWatch struct {
	d       time.Duration
	last    atomic.Int64
	stopped atomic.Bool
	timer   *time.Timer
	mu      sync.Mutex
}

func newIdleWatch(d time.Duration, onIdle func()) *idleWatch {
	w := &idleWatch{d: d}
	w.touch()
	w.mu.Lock()
	defer w.mu.Unlock()
	var check func()
	check = func() {
		if w.stopped.Load() {
			return
		}
		since := time.Since(time.Unix(0, w.last.Load()))
		if since >= d {
			onIdle()
			return
		}
		w.mu.Lock()
		w.timer.Reset(d - since)
		w.mu.Unlock()
	}
	w.timer = time.AfterFunc(d, check)
	return w
}

func (w *idleWatch) touch() { w.last.Store(time.Now().UnixNano()) }

func (w *idleWatch) stop() {
	w.stopped.Store(true)
	w.mu.Lock()
	w.timer.Stop()
	w.mu.Unlock()
}
