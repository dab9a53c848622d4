package api

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"syscall"
	"unicode/utf8"
)

// ContentTypeNDJSON is the media type of a streamed answer of POST
// /v1/exec: a request whose Accept names it gets its task's output as it
// is written, one Message per line.
const ContentTypeNDJSON = "application/x-ndjson"

// Types of Message.
const (
	// MessageOutput carries a chunk of the task's output.
	MessageOutput = "output"
	// MessageResult carries the result document; it is the last message
	// of a task that ran.
	MessageResult = "result"
	// MessageError says why the task could not run, or why an interactive
	// session ends early; nothing but a result follows it.
	MessageError = "error"
)

// Streams of an output Message.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// Message is one line of a streamed answer of POST /v1/exec and one frame
// GET /v1/exec/ws sends:
//
//	{"type":"output","stage":"run","stream":"stdout","data":"hi\n","encoding":"utf-8"}
//	{"type":"result","result":{...the result document...}}
//	{"type":"error","error":"...","kind":"runner_failed"}
//
// Output comes as the task writes it, up to the output limit per stream
// and stage, exactly the bytes the result document holds: a character cut
// between two writes waits for its end, so data is text whenever the
// output is, and base64 (encoding "base64") only where it is not UTF-8.
type Message struct {
	Type string `json:"type"`
	// Stage is "compile" or "run", for output.
	Stage string `json:"stage,omitempty"`
	// Stream is "stdout" or "stderr", for output.
	Stream   string  `json:"stream,omitempty"`
	Data     string  `json:"data,omitempty"`
	Encoding string  `json:"encoding,omitempty"`
	Result   *Result `json:"result,omitempty"`
	// Error and Kind are an error answer's fields (ErrorResponse).
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"`
}

// Bytes returns an output message's data, decoded.
func (m Message) Bytes() ([]byte, error) { return DecodeData(m.Data, m.Encoding) }

// DecodeData decodes the data of a Message or an Input in its encoding.
func DecodeData(data, encoding string) ([]byte, error) {
	switch encoding {
	case EncodingUTF8, "":
		return []byte(data), nil
	case EncodingBase64:
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil, fmt.Errorf("decoding base64 data: %w", err)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("encoding %q: give utf-8 or base64", encoding)
	}
}

// OutputMessage is the output Message of b, written by stage to stream:
// text when b is UTF-8, base64 otherwise.
func OutputMessage(stage, stream string, b []byte) Message {
	m := Message{Type: MessageOutput, Stage: stage, Stream: stream, Encoding: EncodingUTF8}
	if utf8.Valid(b) {
		m.Data = string(b)
	} else {
		m.Encoding, m.Data = EncodingBase64, base64.StdEncoding.EncodeToString(b)
	}
	return m
}

// Types of Input, the messages a client sends an interactive session
// after its request.
const (
	// InputStdin is data for the task's standard input.
	InputStdin = "stdin"
	// InputCloseStdin ends the task's standard input: it reads
	// end-of-file once it has read what came before.
	InputCloseStdin = "close_stdin"
	// InputSignal sends a signal to the task.
	InputSignal = "signal"
	// InputKill kills the task: its result says cancelled.
	InputKill = "kill"
)

// Input is a message a client sends GET /v1/exec/ws after its request:
//
//	{"type":"stdin","data":"1 2\n"}            (encoding "base64" for bytes)
//	{"type":"close_stdin"}
//	{"type":"signal","signal":"SIGINT"}        (or "INT", or 2)
//	{"type":"kill"}
type Input struct {
	Type     string `json:"type"`
	Data     string `json:"data,omitempty"`
	Encoding string `json:"encoding,omitempty"`
	// Signal is a name (SIGTERM, TERM) or a number.
	Signal json.RawMessage `json:"signal,omitempty"`
}

// StdinInput returns the message that sends b to the task's stdin.
func StdinInput(b []byte) Input {
	m := OutputMessage("", "", b)
	return Input{Type: InputStdin, Data: m.Data, Encoding: m.Encoding}
}

// SignalInput returns the message that sends sig to the task.
func SignalInput(sig syscall.Signal) Input {
	return Input{Type: InputSignal, Signal: json.RawMessage(strconv.Itoa(int(sig)))}
}

// ErrorResponse is the body of every answer that is not a success.
type ErrorResponse struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}
