package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
)

// Encodings of file contents and stdin in a Request.
const (
	EncodingUTF8   = "utf-8"
	EncodingBase64 = "base64"
)

// Request is the body of POST /v1/exec: one task, as JSON.
type Request struct {
	// Runtime names the catalog entry (GET /v1/runtimes).
	Runtime string `json:"runtime"`
	// Image overrides the runtime's image.
	Image string `json:"image,omitempty"`
	// Files are written, read-only, to /code; the first is the entry point
	// and may leave its name out to get the runtime's.
	Files []File `json:"files"`
	// Stdin is the task's standard input, in StdinEncoding.
	Stdin         string `json:"stdin,omitempty"`
	StdinEncoding string `json:"stdin_encoding,omitempty"`
	// Args are appended to the runtime's command.
	Args []string `json:"args,omitempty"`
	// Env is added to the image's and the runtime's environment.
	Env map[string]string `json:"env,omitempty"`
	// Limits override the service's defaults for the runtime.
	Limits WrittenLimits `json:"limits,omitzero"`
	// Pull says when the image is pulled: "missing" (the default),
	// "always" or "never".
	Pull string `json:"pull,omitempty"`
	// OCIRuntime is the OCI runtime the task runs under: "crun", "runc"
	// or "runsc" (gVisor). Default: the runtime's as configured, else
	// the service's.
	OCIRuntime string `json:"oci_runtime,omitempty"`
	// Outputs are glob patterns under /tmp, such as "/tmp/out/*.png", of
	// the files to return in the result's files when the task ends.
	Outputs []string `json:"outputs,omitempty"`
	// Runs, when given, make the request a batch: the program is
	// compiled once and run on each input (see RunRequest).
	Runs []RunRequest `json:"runs,omitempty"`
}

// File is one file of a Request.
type File struct {
	Name string `json:"name,omitempty"`
	// Content is the file's bytes: text when Encoding is "utf-8" (the
	// default), base64 when it is "base64".
	Content    string `json:"content"`
	Encoding   string `json:"encoding,omitempty"`
	Executable bool   `json:"executable,omitempty"`
}

// RunRequest is one input of a batch request: POST /v1/exec with
// "runs" compiles the program once and runs it on each input, every run
// in a fresh sandbox of its own, and answers a BatchResult.
//
//	{"runtime": "cpp", "files": [...], "limits": {"timeout": "2s"},
//	 "runs": [{"stdin": "1 2\n"}, {"stdin": "3 4\n", "args": ["-v"], "limits": {"memory": "64m"}}]}
type RunRequest struct {
	// Stdin is the run's standard input, in StdinEncoding.
	Stdin         string `json:"stdin,omitempty"`
	StdinEncoding string `json:"stdin_encoding,omitempty"`
	// Args are appended to the runtime's command; left out, the
	// request's args are (an empty list means none).
	Args []string `json:"args"`
	// Limits override the request's limits field by field. The compile
	// stage's (compile_timeout, compile_memory) are the request's alone.
	Limits WrittenLimits `json:"limits,omitzero"`
}

// DecodeRequest decodes one request body strictly: unknown fields, a
// second JSON value and wrong types are refused with an error that names
// the field. The error is ErrInvalidTask.
func DecodeRequest(body []byte) (*Request, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, badField("", "the request body is empty: send a JSON object such as {\"runtime\": \"python\", \"files\": [{\"content\": \"print(1)\"}]}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req Request
	if err := dec.Decode(&req); err != nil {
		return nil, DescribeJSONError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, badField("", "the request body holds more than one JSON value: send exactly one object")
	}
	return &req, nil
}

// DescribeJSONError turns an encoding/json decoding error into a
// FieldError a client can act on: it names the field and says what was
// expected.
func DescribeJSONError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return badField("", "malformed JSON at byte %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badField("", "malformed JSON: the body ends before the object does")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return badField("", "the request body must be a JSON object, not %s", typ.Value)
		}
		return badField(typ.Field, "expected %s, got %s", jsonKind(typ.Type), typ.Value)
	}
	// encoding/json's unknown-field error has no type of its own; its
	// text ("json: unknown field \"x\"") already names the field.
	return badField("", "%s", strings.TrimPrefix(err.Error(), "json: "))
}

// jsonKind names what JSON value a Go type is decoded from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}
