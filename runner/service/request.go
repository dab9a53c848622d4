package service

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

// The request is defined in api, where a client on any OS builds it;
// these aliases keep its service names.

// Encodings of file contents and stdin in a Request.
const (
	EncodingUTF8   = api.EncodingUTF8
	EncodingBase64 = api.EncodingBase64
)

// Request is the body of POST /v1/exec: one task, as JSON (api.Request).
// TaskOf and BatchOf turn it into what the runner runs.
type Request = api.Request

// File is one file of a Request (api.File).
type File = api.File

// Limits are a Request's limits, as written: each a string as on the
// command line ("512m", "30s", "1.5") or a JSON number (bytes for sizes,
// seconds for durations). A limit left out takes the service's default
// for the runtime; zero and negative values are refused. They are
// api.WrittenLimits, which the config file and exec's flags use too.
type Limits = api.WrittenLimits

// Limit is one limit as written (api.Limit).
type Limit = api.Limit

// LimitString returns a limit written as a string, such as "512m".
func LimitString(s string) Limit { return api.LimitString(s) }

// LimitInt returns a limit written as a JSON integer.
func LimitInt(n int64) Limit { return api.LimitInt(n) }

// LimitFloat returns a limit written as a JSON number.
func LimitFloat(f float64) Limit { return api.LimitFloat(f) }

// badField is bad input in one field of a request (api.FieldError): it
// is runner.ErrInvalidTask and errdefs.ErrInvalidArgument, as the
// runner's own refusals are.
func badField(field, format string, args ...any) error {
	return &api.FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// DecodeRequest decodes one request body strictly (api.DecodeRequest):
// unknown fields, a second JSON value and wrong types are refused with an
// error that names the field. The error is runner.ErrInvalidTask.
func DecodeRequest(body []byte) (*Request, error) { return api.DecodeRequest(body) }

// TaskOf turns the request into a runner.Task, on top of base, the limits
// the runtime gets by default. Every error names its field and is
// runner.ErrInvalidTask; what only the runner can check (the runtime,
// file names, limits against the host) is left to runner.Validate.
func TaskOf(r *Request, base runner.Limits) (runner.Task, error) {
	t := runner.Task{Runtime: r.Runtime, Image: r.Image, OCIRuntime: r.OCIRuntime}
	if r.OCIRuntime != "" && !slices.Contains(runner.OCIRuntimeNames, r.OCIRuntime) {
		return t, badField("oci_runtime", "unknown OCI runtime %q: give one of %s", r.OCIRuntime, strings.Join(runner.OCIRuntimeNames, ", "))
	}
	if r.Pull != "" {
		pull, err := images.ParsePullPolicy(r.Pull)
		if err != nil {
			return t, badField("pull", "%q: give %q (the default), %q or %q", r.Pull, images.PullMissing, images.PullAlways, images.PullNever)
		}
		t.Pull = pull
	}
	if r.Runtime == "" {
		return t, badField("runtime", "required: name a runtime (GET /v1/runtimes lists them)")
	}
	if len(r.Files) == 0 {
		return t, badField("files", "required: give at least one file; the first is the entry point")
	}
	for i, f := range r.Files {
		field := fmt.Sprintf("files[%d]", i)
		content, err := decodeContent(field+".content", f.Content, field+".encoding", f.Encoding)
		if err != nil {
			return t, err
		}
		t.Files = append(t.Files, runner.File{Name: f.Name, Content: content, Executable: f.Executable})
	}
	if r.Stdin != "" || r.StdinEncoding != "" {
		stdin, err := decodeContent("stdin", r.Stdin, "stdin_encoding", r.StdinEncoding)
		if err != nil {
			return t, err
		}
		t.Stdin = bytes.NewReader(stdin)
	}
	for i, a := range r.Args {
		if strings.ContainsRune(a, 0) {
			return t, badField(fmt.Sprintf("args[%d]", i), "holds a NUL byte, which no argument can")
		}
	}
	if len(r.Args) > 0 {
		// "args": [] is the same task as no args at all.
		t.Args = slices.Clone(r.Args)
	}
	keys := make([]string, 0, len(r.Env))
	for k := range r.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := r.Env[k]
		switch {
		case k == "":
			return t, badField("env", "a variable has an empty name")
		case strings.ContainsAny(k, "=\x00"):
			return t, badField(fmt.Sprintf("env[%q]", k), "a variable name cannot hold '=' or a NUL byte")
		case strings.ContainsRune(v, 0):
			return t, badField(fmt.Sprintf("env[%q]", k), "the value holds a NUL byte")
		}
		t.Env = append(t.Env, k+"="+v)
	}
	if len(r.Outputs) > runner.MaxOutputPatterns {
		return t, badField("outputs", "%d patterns given: at most %d are allowed", len(r.Outputs), runner.MaxOutputPatterns)
	}
	for i, p := range r.Outputs {
		if err := runner.CheckOutputPattern(p); err != nil {
			return t, fmt.Errorf("outputs[%d]: %w", i, err)
		}
	}
	if len(r.Outputs) > 0 {
		t.Outputs = slices.Clone(r.Outputs)
	}
	var err error
	t.Limits, err = r.Limits.Apply(base, requestField)
	return t, err
}

func decodeContent(field, content, encField, encoding string) ([]byte, error) {
	switch encoding {
	case "", EncodingUTF8:
		return []byte(content), nil
	case EncodingBase64:
		b, err := base64.StdEncoding.DecodeString(content)
		if err != nil {
			return nil, badField(field, "is not valid base64 (standard alphabet, padded): %v", err)
		}
		return b, nil
	}
	return nil, badField(encField, "%q is not an encoding: give %q (the default) or %q", encoding, EncodingUTF8, EncodingBase64)
}

// requestField spells a limit's key as a request does.
func requestField(key string) string { return "limits." + key }

// NewRequest turns a task into a request, for clients of the service.
// stdin is the task's whole standard input (a request cannot stream it);
// Task.Stdin, Stdout and Stderr are ignored. Limits left zero are left
// out, so the service's defaults apply.
func NewRequest(t runner.Task, stdin []byte) Request {
	r := Request{Runtime: t.Runtime, Image: t.Image, Args: t.Args, Pull: string(t.Pull), OCIRuntime: t.OCIRuntime, Outputs: t.Outputs}
	for _, f := range t.Files {
		content, enc := encodeContent(f.Content)
		r.Files = append(r.Files, File{Name: f.Name, Content: content, Encoding: enc, Executable: f.Executable})
	}
	if len(stdin) > 0 {
		r.Stdin, r.StdinEncoding = encodeContent(stdin)
	}
	for _, e := range t.Env {
		if r.Env == nil {
			r.Env = map[string]string{}
		}
		k, v, _ := strings.Cut(e, "=")
		r.Env[k] = v
	}
	l := t.Limits
	if l.Timeout != 0 {
		r.Limits.Timeout = LimitString(l.Timeout.String())
	}
	if l.CompileTimeout != 0 {
		r.Limits.CompileTimeout = LimitString(l.CompileTimeout.String())
	}
	if l.CPUTime != 0 {
		r.Limits.CPUTime = LimitString(l.CPUTime.String())
	}
	for _, s := range []struct {
		v   int64
		dst *Limit
	}{{l.Memory, &r.Limits.Memory}, {l.CompileMemory, &r.Limits.CompileMemory}, {l.OutputLimit, &r.Limits.OutputLimit}, {l.TmpSize, &r.Limits.TmpSize}, {l.Pids, &r.Limits.Pids}} {
		if s.v != 0 {
			*s.dst = LimitInt(s.v)
		}
	}
	if l.CPUs != 0 {
		r.Limits.CPUs = LimitFloat(l.CPUs)
	}
	return r
}

// encodeContent returns b as text when it is valid UTF-8 (the form a
// person reading the request expects), base64 otherwise.
func encodeContent(b []byte) (string, string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), EncodingBase64
}
