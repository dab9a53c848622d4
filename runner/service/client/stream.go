package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

// ExecStream sends one task asking for its output as it comes
// (application/x-ndjson), writes that output to stdout and stderr as it
// arrives (the compile stage's too, as a direct run does), and returns
// the result. A service that answers with one document has its output
// written at the end. A failed write ends the request, which kills the
// task, and is returned; so is a cancelled ctx.
func (c *Client) ExecStream(ctx context.Context, req api.Request, stdout, stderr io.Writer) (*api.Result, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encoding the request: %w", err)
	}
	resp, err := c.doHeader(ctx, http.MethodPost, "/v1/exec", body, http.Header{"Accept": {api.ContentTypeNDJSON}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	readErr := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for the service: %w", context.Cause(ctx))
		}
		return fmt.Errorf("reading the service's answer: %w", err)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); resp.StatusCode != http.StatusOK || mt != api.ContentTypeNDJSON {
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		if err != nil {
			return nil, readErr(err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, answerError(resp, b)
		}
		// A service that does not stream.
		var res api.Result
		if err := json.Unmarshal(b, &res); err != nil {
			return nil, fmt.Errorf("decoding the service's answer: %w", err)
		}
		for _, st := range []*api.Stage{res.Compile, &res.Stage} {
			if st != nil {
				if _, err := stdout.Write(st.Stdout.Data); err != nil {
					return nil, fmt.Errorf("writing the task's stdout: %w", err)
				}
				if _, err := stderr.Write(st.Stderr.Data); err != nil {
					return nil, fmt.Errorf("writing the task's stderr: %w", err)
				}
			}
		}
		return &res, nil
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer))
	for {
		var m api.Message
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, readErr(err)
		}
		res, err := deliver(m, stdout, stderr)
		if res != nil || err != nil {
			return res, err
		}
	}
}

// deliver writes an output message to its stream and returns the result
// or error a last message holds.
func deliver(m api.Message, stdout, stderr io.Writer) (*api.Result, error) {
	switch m.Type {
	case api.MessageOutput:
		b, err := m.Bytes()
		if err != nil {
			return nil, fmt.Errorf("the service's %s: %w", m.Stream, err)
		}
		w := stdout
		if m.Stream == api.StreamStderr {
			w = stderr
		}
		if _, err := w.Write(b); err != nil {
			return nil, fmt.Errorf("writing the task's %s: %w", m.Stream, err)
		}
	case api.MessageResult:
		if m.Result == nil {
			return nil, errors.New("the service's result message holds no result")
		}
		return m.Result, nil
	case api.MessageError:
		return nil, &Error{Status: kindStatus(m.Kind), Kind: m.Kind, Message: m.Error}
	}
	// Types this client does not know yet are skipped.
	return nil, nil
}

// kindStatus is the HTTP status an error of kind has in a buffered
// answer, for an error that came as a message.
func kindStatus(kind string) int {
	switch kind {
	case api.KindInvalidInput:
		return http.StatusBadRequest
	case api.KindImageNotFound:
		return http.StatusNotFound
	case api.KindQueueFull:
		return http.StatusTooManyRequests
	case api.KindSandboxUnavailable, api.KindCancelled, api.KindShuttingDown:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// doHeader sends one request with header's fields added; on a socket the
// host is a placeholder, as the transport dials the socket.
func (c *Client) doHeader(ctx context.Context, method, path string, body []byte, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var de *dialError
		if errors.As(err, &de) {
			return nil, fmt.Errorf("no service at %s: %w: %w", c.socket, de.err, ErrUnreachable)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("waiting for the service: %w", context.Cause(ctx))
		}
		return nil, fmt.Errorf("talking to the service at %s: %w", c.socket, err)
	}
	return resp, nil
}

// Timings of an interactive session's client.
const (
	// pingEvery keeps a session whose user types nothing alive: the
	// service ends sessions idle for its idle timeout (a minute by
	// default).
	pingEvery = 10 * time.Second
	// killWait bounds the wait for the result of a task killed because
	// ctx ended.
	killWait = 15 * time.Second
)

// Interactive runs one task in an interactive session, GET /v1/exec/ws:
// what stdin yields is sent to the task as it comes and its end closes
// the task's stdin; the task's output is written to stdout and stderr as
// it comes; each signal on signals (which may be nil) is sent to the
// task. When ctx ends the task is killed and its result, cancelled, is
// returned. A goroutine may still be reading stdin after Interactive
// returns, until stdin ends: pass one that ends in long-lived programs.
func (c *Client) Interactive(ctx context.Context, req api.Request, stdin io.Reader, stdout, stderr io.Writer, signals <-chan syscall.Signal) (*api.Result, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encoding the request: %w", err)
	}
	header := http.Header{}
	if c.token != "" {
		header.Set("Authorization", "Bearer "+c.token)
	}
	url := "ws" + strings.TrimPrefix(c.base, "http") + "/v1/exec/ws"
	conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: c.http, HTTPHeader: header})
	if err != nil {
		var de *dialError
		switch {
		case errors.As(err, &de):
			return nil, fmt.Errorf("no service at %s: %w: %w", c.socket, de.err, ErrUnreachable)
		case resp != nil && resp.StatusCode != http.StatusSwitchingProtocols:
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			return nil, answerError(resp, b)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("waiting for the service: %w", context.Cause(ctx))
		}
		return nil, fmt.Errorf("talking to the service at %s: %w", c.socket, err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(maxAnswer)
	// The session outlives ctx by the wait for the killed task's result.
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	write := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return conn.Write(sctx, websocket.MessageText, b)
	}
	if err := conn.Write(sctx, websocket.MessageText, body); err != nil {
		return nil, fmt.Errorf("sending the request: %w", err)
	}

	go func() {
		t := time.NewTicker(pingEvery)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-ctx.Done():
				// Killed; the result follows, or the session ends.
				_ = write(api.Input{Type: api.InputKill})
				select {
				case <-sctx.Done():
				case <-time.After(killWait):
					conn.CloseNow()
				}
				return
			case sig := <-signals:
				_ = write(api.SignalInput(sig))
			case <-t.C:
				pctx, cancel := context.WithTimeout(sctx, pingEvery)
				_ = conn.Ping(pctx)
				cancel()
			}
		}
	}()
	if stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := stdin.Read(buf)
				if n > 0 {
					if werr := write(api.StdinInput(buf[:n])); werr != nil {
						return
					}
				}
				if err != nil {
					_ = write(api.Input{Type: api.InputCloseStdin})
					return
				}
			}
		}()
	} else {
		_ = write(api.Input{Type: api.InputCloseStdin})
	}

	var res *api.Result
	var last error
	for {
		typ, b, err := conn.Read(sctx)
		if err != nil {
			if res != nil {
				return res, nil
			}
			if last != nil {
				return nil, last
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("waiting for the service: %w", context.Cause(ctx))
			}
			return nil, fmt.Errorf("the session ended before the result: %w", err)
		}
		if typ != websocket.MessageText {
			continue
		}
		var m api.Message
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("decoding the service's message: %w", err)
		}
		r, err := deliver(m, stdout, stderr)
		switch {
		case r != nil:
			res = r
		case err != nil && m.Type == api.MessageError:
			// A result may still follow, saying how the task ended.
			last = err
		case err != nil:
			// Nobody reads the output: the task is killed.
			_ = conn.Close(websocket.StatusGoingAway, "the output's reader went away")
			return nil, err
		}
	}
}
