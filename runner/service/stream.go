package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

// The streamed answer's and the interactive session's messages are
// defined in api, where a client on any OS reads and writes them; these
// aliases keep their service names.

// ContentTypeNDJSON is the media type of a streamed answer of POST
// /v1/exec (api.ContentTypeNDJSON).
const ContentTypeNDJSON = api.ContentTypeNDJSON

// Types of Message.
const (
	MessageOutput = api.MessageOutput
	MessageResult = api.MessageResult
	MessageError  = api.MessageError
)

// Streams of an output Message.
const (
	StreamStdout = api.StreamStdout
	StreamStderr = api.StreamStderr
)

// Message is one line of a streamed answer and one frame of an
// interactive session (api.Message).
type Message = api.Message

func decodeData(data, encoding string) ([]byte, error) { return api.DecodeData(data, encoding) }

func outputMessage(stage, stream string, b []byte) Message {
	return api.OutputMessage(stage, stream, b)
}

// Request modes, the labels of MetricRequestsByMode.
const (
	ModeBuffered    = "buffered"
	ModeStreamed    = "streamed"
	ModeInteractive = "interactive"
)

// MetricRequestsByMode counts the tasks that got a slot, by how their
// answer went: buffered (one result document), streamed (ndjson) or
// interactive (WebSocket).
const MetricRequestsByMode = "sandbox_runner_tasks_by_mode_total"

func newModeCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricRequestsByMode,
		Help: "Tasks that got a slot, by how their answer went: buffered (one result document), streamed (application/x-ndjson) or interactive (the WebSocket).",
	}, []string{"mode"})
	for _, m := range []string{ModeBuffered, ModeStreamed, ModeInteractive} {
		c.WithLabelValues(m)
	}
	reg.MustRegister(c)
	return c
}

// wantsStream tells whether the request's Accept names ndjson (with a
// q above zero).
func wantsStream(r *http.Request) bool {
	for _, h := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(h, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || mt != ContentTypeNDJSON {
				continue
			}
			if q, ok := params["q"]; ok {
				if v, err := strconv.ParseFloat(q, 64); err != nil || v <= 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}

// errClientGone is why a task is cancelled when its client stopped
// reading or went away.
var errClientGone = errors.New("the client went away")

// handleStream answers POST /v1/exec with the task's output as it comes,
// then the result, one Message per line. Until the first line, a refusal
// or failure is answered as handleExec answers it.
func (s *Service) handleStream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	body, ok := s.readBody(w, r, rc)
	if !ok {
		return
	}
	task, err := s.decode(body)
	if err != nil {
		s.reject(w, r, RejectInvalid, http.StatusBadRequest, KindInvalidInput, err.Error())
		return
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	// The connection may serve more requests: no deadline outlives this one.
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	started := false
	out := s.newStreamOut(task, func(m Message) error {
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		if !started {
			started = true
			w.Header().Set("Content-Type", ContentTypeNDJSON)
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusOK)
		}
		// A client that reads nothing for the idle time is gone.
		_ = rc.SetWriteDeadline(time.Now().Add(s.idleTimeout()))
		if _, err := w.Write(append(b, '\n')); err != nil {
			return err
		}
		return rc.Flush()
	}, func() { cancel(errClientGone) })
	res, fail := s.runStreamed(ctx, r, task, ModeStreamed, out)
	if fail != nil && !out.begun() {
		// Nothing was sent yet: an answer like a buffered one.
		out.finish(nil)
		if fail.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(fail.RetryAfter/time.Second)))
		}
		writeError(w, fail.Status, fail.Kind, fail.Message)
		return
	}
	out.finish(res, lastMessage(res, fail))
}

// lastMessage is the result, or the error when the task did not run.
func lastMessage(res *runner.Result, fail *Error) Message {
	if fail != nil {
		return Message{Type: MessageError, Error: fail.Message, Kind: fail.Kind}
	}
	return Message{Type: MessageResult, Result: res}
}

// readBody reads a request body as handleExec does, answering the
// request itself when it cannot.
func (s *Service) readBody(w http.ResponseWriter, r *http.Request, rc *http.ResponseController) ([]byte, bool) {
	_ = rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.maxBody))
	// Lifted before the task runs, as handleExec does: the server then
	// watches the connection to cancel the request when the client goes.
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.reject(w, r, RejectTooLarge, http.StatusRequestEntityTooLarge, KindTooLarge,
				fmt.Sprintf("the request body is larger than %d bytes, the service's max body (max_body)", tooLarge.Limit))
			return nil, false
		}
		s.reject(w, r, RejectInvalid, http.StatusBadRequest, KindInvalidInput, fmt.Sprintf("reading the request body: %v", err))
		return nil, false
	}
	return body, true
}

// runStreamed runs task in a slot, with its output going to out, and
// counts and logs it as handleExec does a buffered one (runAdmitted).
func (s *Service) runStreamed(ctx context.Context, r *http.Request, task runner.Task, mode string, out *streamOut) (*runner.Result, *Error) {
	task.Stdout, task.Stderr = out.writer(StreamStdout), out.writer(StreamStderr)
	return s.runAdmitted(ctx, r, task, admission{received: time.Now(), mode: mode, obs: stageSwitch{out}})
}

// endedBy names who cancelled a streamed or interactive task.
func (s *Service) endedBy(ctx context.Context) string {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errIdle):
		return "idle"
	case errors.Is(cause, errKilled):
		return "kill_message"
	case errors.Is(cause, errBadMessage):
		return "bad_message"
	default:
		return cancelCause(ctx)
	}
}

// stageSwitch tells out when a compiled task's run stage begins: the
// compile stage's teardown comes after its last output and before the
// run stage's first.
type stageSwitch struct{ out *streamOut }

func (w stageSwitch) ObserveStep(stage string, step runner.Step, _ time.Duration) {
	if stage == runner.StageCompile && step == runner.StepTeardown {
		w.out.runStage()
	}
}

// streamOut queues a task's output for a sender goroutine that sends it
// to the client, so the task's pipes are drained at once whatever the
// client's pace, as in a buffered answer: the queue holds at most the
// output the runner keeps, the output limit per stream and stage.
type streamOut struct {
	send func(Message) error
	// gone is called once, when a send fails: the client is gone.
	gone  func()
	limit int64

	mu    sync.Mutex
	wake  chan struct{} // a buffered channel of one: the queue grew
	queue []queued
	stage string
	any   bool // something was queued: the answer has begun
	final []Message
	ended bool
	res   *runner.Result
	done  chan struct{} // the sender ended
}

// queued is a chunk of output, or the start of the run stage.
type queued struct {
	stage, stream string
	data          []byte
	runStage      bool
}

func (s *Service) newStreamOut(task runner.Task, send func(Message) error, gone func()) *streamOut {
	stage := runner.StageRun
	if rt, err := s.opts.catalog.Lookup(task.Runtime); err == nil && task.Runtime != "" && len(rt.Compile) > 0 {
		stage = runner.StageCompile
	}
	o := &streamOut{send: send, gone: gone, limit: task.Limits.Filled().OutputLimit, stage: stage,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go o.run()
	return o
}

// writer returns the io.Writer of one stream, for runner.Task: the
// runner writes it what it keeps, up to the limit.
func (o *streamOut) writer(stream string) io.Writer { return streamWriter{o, stream} }

type streamWriter struct {
	o      *streamOut
	stream string
}

func (w streamWriter) Write(p []byte) (int, error) {
	w.o.push(func(stage string) queued {
		return queued{stage: stage, stream: w.stream, data: append([]byte(nil), p...)}
	})
	return len(p), nil
}

// runStage marks the start of the run stage: what comes after is its.
func (o *streamOut) runStage() {
	o.push(func(string) queued {
		o.stage = runner.StageRun
		return queued{runStage: true}
	})
}

// push queues what item returns, given the current stage, and wakes the
// sender.
func (o *streamOut) push(item func(stage string) queued) {
	o.mu.Lock()
	q := item(o.stage)
	o.queue = append(o.queue, q)
	o.any = o.any || !q.runStage
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// begun tells whether output was queued: the answer has begun.
func (o *streamOut) begun() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.any
}

// finish sends what is queued, then last (with res, the task's result,
// telling how much of each stream the result kept; nil when the task did
// not run), and waits for the sender to end.
func (o *streamOut) finish(res *runner.Result, last ...Message) {
	o.mu.Lock()
	o.final, o.res, o.ended = last, res, true
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	<-o.done
}

// run is the sender: it merges what is queued into as few messages as it
// can, holds back the start of a character cut between two writes, and
// stops sending at the first failure.
func (o *streamOut) run() {
	defer close(o.done)
	type key struct{ stage, stream string }
	held := map[key][]byte{}
	total := map[key]int64{} // bytes queued
	sent := map[key]int64{}  // bytes sent
	failed := false
	send := func(m Message) {
		if failed {
			return
		}
		if err := o.send(m); err != nil {
			failed = true
			o.gone()
		}
	}
	emit := func(k key, b []byte) {
		if len(b) > 0 {
			sent[k] += int64(len(b))
			send(outputMessage(k.stage, k.stream, b))
		}
	}
	// flush ends a stage's stream before its result is known: the bytes
	// held back are sent, unless the stream reached its limit, where the
	// result drops a character cut short, and so does the stream.
	flush := func(k key) {
		b := held[k]
		delete(held, k)
		if total[k] < o.limit {
			emit(k, b)
		}
	}
	for {
		<-o.wake
		o.mu.Lock()
		items, final, ended, res := o.queue, o.final, o.ended, o.res
		o.queue = nil
		o.mu.Unlock()
		for i := 0; i < len(items); i++ {
			it := items[i]
			if it.runStage {
				for _, stream := range []string{StreamStdout, StreamStderr} {
					flush(key{runner.StageCompile, stream})
				}
				continue
			}
			k := key{it.stage, it.stream}
			b := append(held[k], it.data...)
			total[k] += int64(len(it.data))
			// Adjacent chunks of the same stream go as one message.
			for i+1 < len(items) && !items[i+1].runStage && items[i+1].stage == it.stage && items[i+1].stream == it.stream {
				i++
				b = append(b, items[i].data...)
				total[k] += int64(len(items[i].data))
			}
			n := partialRune(b)
			held[k] = append([]byte(nil), b[len(b)-n:]...)
			emit(k, b[:len(b)-n])
		}
		if !ended {
			continue
		}
		// The streams end as the result has them: what it kept of the
		// bytes held back, and all of it from an executor that does not
		// tee (the chunks are then what the result holds after them).
		for _, stage := range []string{runner.StageCompile, runner.StageRun} {
			for _, stream := range []string{StreamStdout, StreamStderr} {
				k := key{stage, stream}
				st := stageOf(res, stage)
				if st == nil {
					flush(k)
					continue
				}
				data := st.Stdout.Data
				if stream == StreamStderr {
					data = st.Stderr.Data
				}
				delete(held, k)
				if int64(len(data)) > sent[k] {
					emit(k, data[sent[k]:])
				}
			}
		}
		for _, m := range final {
			send(m)
		}
		return
	}
}

func stageOf(res *runner.Result, stage string) *runner.Stage {
	switch {
	case res == nil:
		return nil
	case stage == runner.StageCompile:
		return res.Compile
	case res.Outcome == runner.OutcomeCompileFailed:
		return nil
	default:
		return &res.Stage
	}
}

// partialRune returns the length of the incomplete UTF-8 character b
// ends with, 0 when it ends on a character boundary or in bytes that are
// no UTF-8 at all (as the runner judges a stream cut at its limit).
func partialRune(b []byte) int {
	for i := 1; i <= utf8.UTFMax-1 && i <= len(b); i++ {
		c := b[len(b)-i]
		if utf8.RuneStart(c) {
			if c < utf8.RuneSelf || utf8.FullRune(b[len(b)-i:]) {
				return 0
			}
			return i
		}
	}
	return 0
}
