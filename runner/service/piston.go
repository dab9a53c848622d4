package service

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/api"
)

// Piston's v2 API (POST /api/v2/execute, GET /api/v2/runtimes), answered
// on a listener of its own so that clients written for Piston run
// unchanged. Piston has no authentication and its clients send none, so
// the listener must be on a loopback address unless the service has a
// bearer token, which every request to it must then carry.

// MetricPistonRequests counts the requests to Piston's API.
const MetricPistonRequests = "sandbox_runner_piston_requests_total"

// pistonLanguage is how Piston names one of the catalog's runtimes.
type pistonLanguage struct {
	language string
	// runtime is Piston's name of the package that provides the
	// language, where Piston gives one.
	runtime string
	aliases []string
}

// pistonLanguages are Piston's names of the built-in runtimes, with the
// aliases Piston's packages give them. A runtime the table lacks (one a
// config file adds) is offered under its own name, without aliases.
var pistonLanguages = map[string]pistonLanguage{
	"python": {language: "python", aliases: []string{"py", "py3", "python3"}},
	"node":   {language: "javascript", runtime: "node", aliases: []string{"node-javascript", "node-js", "js", "node"}},
	"c":      {language: "c", runtime: "gcc", aliases: []string{"gcc"}},
	"cpp":    {language: "c++", runtime: "gcc", aliases: []string{"cpp", "g++"}},
	"java":   {language: "java"},
	"dotnet": {language: "csharp", runtime: "dotnet", aliases: []string{"cs", "c#", "csharp.net", "dotnet"}},
	"bash":   {language: "bash", aliases: []string{"sh"}},
	"sh":     {language: "sh"},
}

// pistonRuntime is one entry of GET /api/v2/runtimes, and what a request
// naming it runs.
type pistonRuntime struct {
	Language string   `json:"language"`
	Version  string   `json:"version"`
	Aliases  []string `json:"aliases"`
	Runtime  string   `json:"runtime,omitempty"`
	// name is the catalog's runtime.
	name string
	ver  semver
}

// pistonRuntimes lists the catalog's runtimes as Piston names them. An
// alias that is another runtime's language, or an earlier runtime's
// alias, is left out, so every name resolves to one runtime: "sh" is
// the sh runtime, not bash's alias, when the catalog has both.
func pistonRuntimes(cat images.Catalog, versions map[string]string) ([]pistonRuntime, error) {
	var out []pistonRuntime
	languages := map[string]bool{}
	for _, name := range cat.Names() {
		pl, ok := pistonLanguages[name]
		if !ok || (pl.language != name && hasRuntime(cat, pl.language)) {
			// A runtime of the catalog's own by that name keeps it.
			pl = pistonLanguage{language: name}
		}
		languages[pl.language] = true
		v, ok := versions[name]
		if !ok {
			v = ImageVersion(cat[name].Image)
		}
		sv, err := parseSemver(v)
		if err != nil {
			return nil, fmt.Errorf("piston version of runtime %s: %q is not a version such as 3.11.2", name, v)
		}
		out = append(out, pistonRuntime{Language: pl.language, Version: v, Runtime: pl.runtime, name: name, ver: sv, Aliases: pl.aliases})
	}
	for name := range versions {
		if _, ok := cat[name]; !ok {
			return nil, fmt.Errorf("piston version of runtime %s: no such runtime in the catalog", name)
		}
	}
	taken := map[string]bool{}
	for i := range out {
		var keep []string
		for _, a := range out[i].Aliases {
			if a != out[i].Language && !languages[a] && !taken[a] {
				keep = append(keep, a)
				taken[a] = true
			}
		}
		out[i].Aliases = append([]string{}, keep...)
	}
	slices.SortFunc(out, func(a, b pistonRuntime) int { return strings.Compare(a.Language, b.Language) })
	return out, nil
}

func hasRuntime(cat images.Catalog, name string) bool {
	_, ok := cat[name]
	return ok
}

// ImageVersion is the version an image's tag starts with, as three
// numbers, which Piston's API gives a runtime by default: python:3.11-slim
// is 3.11.0, gcc:14 is 14.0.0. A tag that starts with no number (a
// Debian suite, "latest") gives 0.0.0.
func ImageVersion(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	tag := ""
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		tag = ref[i+1:]
	}
	end := 0
	for end < len(tag) && (tag[end] == '.' || (tag[end] >= '0' && tag[end] <= '9')) {
		end++
	}
	var parts []string
	for _, p := range strings.Split(strings.Trim(tag[:end], "."), ".") {
		if p == "" {
			break
		}
		if n, err := strconv.Atoi(p); err == nil {
			parts = append(parts, strconv.Itoa(n))
		}
		if len(parts) == 3 {
			break
		}
	}
	for len(parts) < 3 {
		parts = append(parts, "0")
	}
	return strings.Join(parts, ".")
}

// semver is a version's three numbers; anything after them
// (pre-release, build) is ignored.
type semver [3]int64

func parseSemver(s string) (semver, error) {
	var v semver
	core, _, _ := strings.Cut(strings.TrimPrefix(s, "v"), "+")
	core, _, _ = strings.Cut(core, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return v, fmt.Errorf("%q is not major.minor.patch", s)
	}
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 {
			return v, fmt.Errorf("%q is not major.minor.patch", s)
		}
		v[i] = n
	}
	return v, nil
}

func (v semver) less(w semver) bool { return slices.Compare(v[:], w[:]) < 0 }

// versionRange is what a request's version selects, as npm's semver
// reads it: "*", an exact version, a partial one or X-range ("3",
// "3.x", "3.11.*"), a tilde (~3.11: 3.11.x) or caret (^3.1: 3.x from
// 3.1.0) range.
type versionRange struct {
	lo semver
	// hi is exclusive; unbounded when set is false.
	hi    semver
	bound bool
}

func parseVersionRange(s string) (versionRange, error) {
	bad := fmt.Errorf("%q: give *, an exact version such as 3.11.2, or a range such as 3.x, ~3.11 or ^3.1", s)
	s = strings.TrimSpace(s)
	op := ""
	switch {
	case strings.HasPrefix(s, "^"), strings.HasPrefix(s, "~"), strings.HasPrefix(s, "="):
		op, s = s[:1], strings.TrimSpace(s[1:])
	}
	s = strings.TrimPrefix(s, "v")
	if s == "" {
		return versionRange{}, bad
	}
	core, _, _ := strings.Cut(s, "+")
	core, _, _ = strings.Cut(core, "-")
	parts := strings.Split(core, ".")
	if len(parts) > 3 {
		return versionRange{}, bad
	}
	var v semver
	n := 0 // the numbers given before the first wildcard
	for i, p := range parts {
		if p == "*" || p == "x" || p == "X" {
			for _, rest := range parts[i+1:] {
				if rest != "*" && rest != "x" && rest != "X" {
					return versionRange{}, bad
				}
			}
			break
		}
		x, err := strconv.ParseInt(p, 10, 64)
		if err != nil || x < 0 {
			return versionRange{}, bad
		}
		v[i] = x
		n++
	}
	r := versionRange{lo: v}
	switch {
	case n == 0:
		// "*": any version.
	case op == "^":
		// The leftmost non-zero number may not change.
		i := 0
		for i < n-1 && v[i] == 0 {
			i++
		}
		r.hi, r.bound = bump(v, i), true
	case op == "~" && n > 1:
		r.hi, r.bound = bump(v, 1), true
	case n < 3 || op == "~":
		r.hi, r.bound = bump(v, n-1), true
	default:
		r.hi, r.bound = bump(v, 2), true
	}
	return r, nil
}

// bump returns v with number i one up and the ones after it zero.
func bump(v semver, i int) semver {
	v[i]++
	for j := i + 1; j < 3; j++ {
		v[j] = 0
	}
	return v
}

func (r versionRange) matches(v semver) bool {
	return !v.less(r.lo) && (!r.bound || v.less(r.hi))
}

// pistonFile is one file of a Piston request.
type pistonFile struct {
	Name     string  `json:"name"`
	Content  *string `json:"content"`
	Encoding string  `json:"encoding"`
}

// pistonRequest is the body of POST /api/v2/execute. Numbers are
// milliseconds for timeouts and bytes for memory; absent, null or 0
// means the runtime's default, and -1 does too for memory (Piston's
// "no limit": a task here always has one).
type pistonRequest struct {
	Language           string       `json:"language"`
	Version            string       `json:"version"`
	Files              []pistonFile `json:"files"`
	Stdin              string       `json:"stdin"`
	Args               []string     `json:"args"`
	CompileTimeout     *float64     `json:"compile_timeout"`
	RunTimeout         *float64     `json:"run_timeout"`
	CompileMemoryLimit *float64     `json:"compile_memory_limit"`
	RunMemoryLimit     *float64     `json:"run_memory_limit"`
	CompileCPUTime     *float64     `json:"compile_cpu_time"`
	RunCPUTime         *float64     `json:"run_cpu_time"`
}

// pistonStage is the "run" or "compile" object of Piston's answer. As
// Piston's: code is null when a signal ended the stage, signal is null
// when it exited; status is null, "RE" (exited non-zero), "SG" (killed
// by a signal), "TO" (timed out), "OL"/"EL" (stdout/stderr over the
// output limit) or "XX" (cancelled), and message says it in words.
type pistonStage struct {
	Stdout   string  `json:"stdout"`
	Stderr   string  `json:"stderr"`
	Output   string  `json:"output"`
	Code     *int    `json:"code"`
	Signal   *string `json:"signal"`
	Message  *string `json:"message"`
	Status   *string `json:"status"`
	Memory   *uint64 `json:"memory"`
	CPUTime  float64 `json:"cpu_time"`
	WallTime float64 `json:"wall_time"`
}

// pistonResponse is the body of a successful POST /api/v2/execute.
type pistonResponse struct {
	Language string       `json:"language"`
	Version  string       `json:"version"`
	Run      pistonStage  `json:"run"`
	Compile  *pistonStage `json:"compile,omitempty"`
}

// pistonError is Piston's error body.
type pistonError struct {
	Message string `json:"message"`
}

// WithPistonVersions sets the version GET /api/v2/runtimes gives each
// runtime (by catalog name) and requests are matched against. Default:
// the number the runtime's image tag starts with, as major.minor.patch
// (python:3.11-slim is 3.11.0), or 0.0.0 for a tag without one.
func WithPistonVersions(v map[string]string) Option {
	return func(o *options) { o.pistonVersions = v }
}

// piston is the service's Piston API.
type piston struct {
	runtimes []pistonRuntime
	requests *prometheus.CounterVec
	handler  http.Handler
}

func (s *Service) newPiston() error {
	rts, err := pistonRuntimes(s.opts.catalog, s.opts.pistonVersions)
	if err != nil {
		return err
	}
	p := &piston{runtimes: rts, requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricPistonRequests,
		Help: "Requests to Piston's API (serve --piston-addr), by endpoint and HTTP status. Their tasks count in tasks_total and the stage metrics as any other.",
	}, []string{"endpoint", "code"})}
	if err := s.metrics.registry.Register(p.requests); err != nil {
		return fmt.Errorf("registering the Piston API's metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v2/execute", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writePistonError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: use POST", r.Method, r.URL.Path))
			return
		}
		s.handlePistonExecute(w, r)
	})
	mux.HandleFunc("/api/v2/runtimes", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", http.MethodGet)
			writePistonError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: use GET", r.Method, r.URL.Path))
			return
		}
		writeJSON(w, http.StatusOK, p.runtimes)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writePistonError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint %s: this listener answers Piston's POST /api/v2/execute and GET /api/v2/runtimes", r.URL.Path))
	})
	p.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		mux.ServeHTTP(sw, r)
		endpoint := "other"
		switch r.URL.Path {
		case "/api/v2/execute":
			endpoint = "execute"
		case "/api/v2/runtimes":
			endpoint = "runtimes"
		}
		p.requests.WithLabelValues(endpoint, strconv.Itoa(sw.code)).Inc()
	})
	s.piston = p
	return nil
}

// statusWriter remembers the status of the answer.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// PistonHandler returns Piston's API. Requests through it are not
// authenticated: Serve adds that for a Piston listener that needs it.
func (s *Service) PistonHandler() http.Handler { return s.piston.handler }

// pistonConnKey marks the context of a connection to the Piston
// listener; its value says whether requests must carry the token.
type pistonConnKey struct{}

// withPiston sends the requests of Piston listeners' connections to
// Piston's API, the others to next.
func (s *Service) withPiston(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		needsToken, ok := r.Context().Value(pistonConnKey{}).(bool)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if needsToken && !s.tokenOK(r.Header.Get("Authorization")) {
			s.metrics.rejected.WithLabelValues(RejectUnauthorized).Inc()
			s.opts.log.Warn("request refused: no valid bearer token", "api", "piston", "remote", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("WWW-Authenticate", `Bearer realm="sandbox-runner"`)
			writePistonError(w, http.StatusUnauthorized, "this Piston listener is not on a loopback address, so it needs an Authorization: Bearer TOKEN header with the service's token")
			return
		}
		s.piston.handler.ServeHTTP(w, r)
	})
}

// PistonListener is the listener of Piston's API, made by ListenPiston.
type PistonListener struct {
	net.Listener
	loopback bool
}

// pistonConn is a connection accepted on a PistonListener.
type pistonConn struct {
	net.Conn
	needsToken bool
}

// Accept marks the connections it returns as the Piston API's.
func (l *PistonListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &pistonConn{Conn: c, needsToken: !l.loopback}, nil
}

// CheckPistonAddr checks addr, a host:port, for Piston's API: a host
// that is not a loopback address (127.0.0.0/8, ::1, or a name that
// resolves to one) is refused unless haveToken, because Piston's clients
// send no credentials and anybody who reaches the port could run code.
// With a token, every request on a non-loopback address must carry it.
func CheckPistonAddr(addr string, haveToken bool) error {
	_, err := resolvePiston(addr, haveToken)
	return err
}

func resolvePiston(addr string, haveToken bool) (*net.TCPAddr, error) {
	tcp, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%q: give host:port, such as 127.0.0.1:2000: %w", addr, err)
	}
	if !IsLoopback(tcp) && !haveToken {
		return nil, fmt.Errorf("%s is not a loopback address: Piston's API has no authentication, so it listens on 127.0.0.1 or ::1 only, unless the service has a token_file (then every request must carry the token)", addr)
	}
	return tcp, nil
}

// IsLoopback tells whether a is a TCP address on a loopback interface.
func IsLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP != nil && tcp.IP.IsLoopback()
}

// ListenPiston listens for Piston's API on addr, as CheckPistonAddr
// allows.
func ListenPiston(addr string, haveToken bool) (*PistonListener, error) {
	tcp, err := resolvePiston(addr, haveToken)
	if err != nil {
		return nil, fmt.Errorf("piston address %w", err)
	}
	l, err := net.ListenTCP("tcp", tcp)
	if err != nil {
		return nil, fmt.Errorf("listening for Piston's API on %s: %w", addr, err)
	}
	return &PistonListener{Listener: l, loopback: IsLoopback(l.Addr())}, nil
}

// pistonContext marks connections from a PistonListener; it is false
// for any other connection.
func pistonContext(ctx context.Context, c net.Conn) (context.Context, bool) {
	pc, ok := c.(*pistonConn)
	if !ok {
		return ctx, false
	}
	return context.WithValue(ctx, pistonConnKey{}, pc.needsToken), true
}

func writePistonError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(pistonError{Message: msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func (s *Service) pistonReject(w http.ResponseWriter, r *http.Request, reason string, status int, msg string) {
	s.metrics.rejected.WithLabelValues(reason).Inc()
	s.opts.log.Info("request refused", "api", "piston", "reason", reason, "status", status, "error", msg, "remote", r.RemoteAddr)
	writePistonError(w, status, msg)
}

// lookup finds the newest runtime called language (by Piston's name or
// an alias) whose version version selects.
func (p *piston) lookup(language, version string) (*pistonRuntime, error) {
	vr, err := parseVersionRange(version)
	if err != nil {
		return nil, badField("version", "%v", err)
	}
	var best *pistonRuntime
	for i := range p.runtimes {
		rt := &p.runtimes[i]
		if (rt.Language == language || slices.Contains(rt.Aliases, language)) && vr.matches(rt.ver) {
			if best == nil || best.ver.less(rt.ver) {
				best = rt
			}
		}
	}
	if best == nil {
		// Piston's own words.
		return nil, badField("", "%s-%s runtime is unknown", language, version)
	}
	return best, nil
}

// decodePiston decodes a Piston request strictly (unknown fields and
// wrong types are refused by name) and turns it into a task, on top of
// the runtime's default limits.
func (s *Service) decodePiston(body []byte) (runner.Task, *pistonRuntime, error) {
	var req pistonRequest
	if len(bytes.TrimSpace(body)) == 0 {
		return runner.Task{}, nil, badField("", `the request body is empty: send a JSON object such as {"language": "python", "version": "*", "files": [{"content": "print(1)"}]}`)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return runner.Task{}, nil, api.DescribeJSONError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return runner.Task{}, nil, badField("", "the request body holds more than one JSON value: send exactly one object")
	}
	// Piston's own checks, in its order and words.
	switch {
	case req.Language == "":
		return runner.Task{}, nil, badField("", "language is required as a string")
	case req.Version == "":
		return runner.Task{}, nil, badField("", "version is required as a string")
	case req.Files == nil:
		return runner.Task{}, nil, badField("", "files is required as an array")
	case len(req.Files) == 0:
		return runner.Task{}, nil, badField("files", "give at least one file; the first is the entry point")
	}
	for i, f := range req.Files {
		if f.Content == nil {
			return runner.Task{}, nil, badField("", "files[%d].content is required as a string", i)
		}
	}
	rt, err := s.piston.lookup(req.Language, req.Version)
	if err != nil {
		return runner.Task{}, nil, err
	}
	base, err := s.opts.limits(rt.name)
	if err != nil {
		return runner.Task{}, nil, err
	}
	t := runner.Task{Runtime: rt.name}
	for i, f := range req.Files {
		content, err := decodePistonContent(fmt.Sprintf("files[%d]", i), *f.Content, f.Encoding)
		if err != nil {
			return t, nil, err
		}
		name := f.Name
		if name == "" && i > 0 {
			// Piston's name for a file without one; the first file
			// gets the runtime's (main.py, main.c, Main.java).
			name = fmt.Sprintf("file%d.code", i)
		}
		t.Files = append(t.Files, runner.File{Name: name, Content: content})
	}
	if req.Stdin != "" {
		stdin := req.Stdin
		// As Piston does: a line-reading program gets its last line.
		if !strings.HasSuffix(stdin, "\n") {
			stdin += "\n"
		}
		t.Stdin = strings.NewReader(stdin)
	}
	for i, a := range req.Args {
		if strings.ContainsRune(a, 0) {
			return t, nil, badField(fmt.Sprintf("args[%d]", i), "holds a NUL byte, which no argument can")
		}
	}
	if len(req.Args) > 0 {
		t.Args = slices.Clone(req.Args)
	}
	t.Limits = base
	for _, d := range []struct {
		field string
		v     *float64
		dst   *time.Duration
	}{
		{"compile_timeout", req.CompileTimeout, &t.Limits.CompileTimeout},
		{"run_timeout", req.RunTimeout, &t.Limits.Timeout},
	} {
		if d.v == nil || *d.v == 0 {
			continue
		}
		if *d.v < 0 || math.IsInf(*d.v, 0) || *d.v > float64(runner.MaxTimeout/time.Millisecond) {
			return t, nil, badField(d.field, "%v: give milliseconds above zero, up to %d, or leave it out for the default", *d.v, runner.MaxTimeout/time.Millisecond)
		}
		*d.dst = time.Duration(*d.v * float64(time.Millisecond))
	}
	for _, m := range []struct {
		field string
		v     *float64
		dst   *int64
	}{
		{"compile_memory_limit", req.CompileMemoryLimit, &t.Limits.CompileMemory},
		{"run_memory_limit", req.RunMemoryLimit, &t.Limits.Memory},
	} {
		if m.v == nil || *m.v == 0 || *m.v == -1 {
			continue
		}
		if *m.v < 0 || *m.v != math.Trunc(*m.v) || *m.v >= math.MaxInt64 {
			return t, nil, badField(m.field, "%v: give a whole number of bytes above zero, or -1 (or leave it out) for the default", *m.v)
		}
		*m.dst = int64(*m.v)
	}
	// The run stage's CPU time is the runner's cpu_time limit; a compile
	// stage has none (its compile_timeout bounds it).
	if c := req.CompileCPUTime; c != nil && *c != 0 && *c != -1 {
		return t, nil, badField("compile_cpu_time", "%v: the compile stage has no CPU-time limit here: leave it out; compile_timeout applies", *c)
	}
	if c := req.RunCPUTime; c != nil && *c != 0 && *c != -1 {
		if *c < 0 || math.IsInf(*c, 0) || *c > float64(runner.MaxTimeout/time.Millisecond) {
			return t, nil, badField("run_cpu_time", "%v: give milliseconds above zero, up to %d, or -1 (or leave it out) for none", *c, runner.MaxTimeout/time.Millisecond)
		}
		t.Limits.CPUTime = time.Duration(*c * float64(time.Millisecond))
	}
	return t, rt, runner.Validate(t, s.opts.catalog)
}

// decodePistonContent decodes a file's content in one of Piston's
// encodings: utf8 (the default), base64 or hex.
func decodePistonContent(field, content, encoding string) ([]byte, error) {
	switch encoding {
	case "", "utf8", "utf-8":
		return []byte(content), nil
	case "base64":
		// Piston (node's Buffer) takes padded and unpadded base64.
		b, err := base64.StdEncoding.DecodeString(content)
		if err != nil {
			if b, err2 := base64.RawStdEncoding.DecodeString(content); err2 == nil {
				return b, nil
			}
			return nil, badField(field+".content", "is not valid base64: %v", err)
		}
		return b, nil
	case "hex":
		b, err := hex.DecodeString(content)
		if err != nil {
			return nil, badField(field+".content", "is not valid hex: %v", err)
		}
		return b, nil
	}
	return nil, badField(field+".encoding", "%q is not an encoding: give utf8 (the default), base64 or hex", encoding)
}

func (s *Service) handlePistonExecute(w http.ResponseWriter, r *http.Request) {
	received := time.Now()
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(received.Add(bodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.maxBody))
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.pistonReject(w, r, RejectTooLarge, http.StatusRequestEntityTooLarge,
				fmt.Sprintf("the request body is larger than %d bytes, the service's max body (max_body)", tooLarge.Limit))
			return
		}
		s.pistonReject(w, r, RejectInvalid, http.StatusBadRequest, fmt.Sprintf("reading the request body: %v", err))
		return
	}
	task, rt, err := s.decodePiston(body)
	if err != nil {
		status, _ := classify(err)
		if status != http.StatusBadRequest {
			// Not the request's fault, such as the host's facts
			// being unreadable.
			s.opts.log.Error("checking a task", "api", "piston", "error", err)
			writePistonError(w, status, err.Error())
			return
		}
		s.pistonReject(w, r, RejectInvalid, status, err.Error())
		return
	}
	out := &combinedOutput{}
	task.Stdout, task.Stderr = out, out
	res, e := s.runAdmitted(r.Context(), r, task, admission{received: received, api: "piston", obs: out})
	if e != nil {
		if e.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(e.RetryAfter/time.Second)))
		}
		writePistonError(w, e.Status, e.Message)
		return
	}
	w.Header().Set("X-Sandbox-Runner-Task", res.ID)
	writeJSON(w, http.StatusOK, pistonResult(rt, res, out))
}

// observers is more than one Observer.
type observers []runner.Observer

func (obs observers) ObserveStep(stage string, step runner.Step, d time.Duration) {
	for _, o := range obs {
		o.ObserveStep(stage, step, d)
	}
}

// combinedOutput keeps stdout and stderr as they arrive, interleaved, as
// Piston's "output" is: the compile stage's apart from the run stage's,
// which begins once the compile stage's sandbox is gone.
type combinedOutput struct {
	mu      sync.Mutex
	compile bytes.Buffer
	run     bytes.Buffer
	// inRun is set once the compile stage is torn down.
	inRun bool
	// compiled is set when there was a compile stage.
	compiled bool
}

// Write takes a chunk of either stream.
func (o *combinedOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.compiled && !o.inRun {
		o.compile.Write(p)
	} else {
		o.run.Write(p)
	}
	return len(p), nil
}

// ObserveStep tells the stages apart: the compile stage's create comes
// before its output, its teardown after it.
func (o *combinedOutput) ObserveStep(stage string, step runner.Step, _ time.Duration) {
	if stage != runner.StageCompile {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	switch step {
	case runner.StepCreate:
		o.compiled = true
	case runner.StepTeardown:
		o.inRun = true
	}
}

// pistonResult writes a result as Piston answers it. When the compile
// stage failed, "run" repeats "compile", as Piston's own answer does.
func pistonResult(rt *pistonRuntime, res *runner.Result, out *combinedOutput) pistonResponse {
	out.mu.Lock()
	defer out.mu.Unlock()
	resp := pistonResponse{Language: rt.Language, Version: rt.Version}
	if res.Compile != nil {
		c := pistonStageOf(*res.Compile, out.compile.String())
		resp.Compile = &c
		if res.Outcome == runner.OutcomeCompileFailed {
			resp.Run = c
			return resp
		}
	}
	resp.Run = pistonStageOf(res.Stage, out.run.String())
	return resp
}

func pistonStageOf(st runner.Stage, output string) pistonStage {
	ps := pistonStage{
		Stdout: string(st.Stdout.Data), Stderr: string(st.Stderr.Data), Output: output,
		CPUTime: ms(st.Usage.CPU), WallTime: ms(st.Duration),
	}
	if st.Usage.MemoryPeak > 0 {
		mem := st.Usage.MemoryPeak
		ps.Memory = &mem
	}
	set := func(status, msg string) { ps.Status, ps.Message = &status, &msg }
	kill := "SIGKILL"
	switch st.Outcome {
	case runner.OutcomeTimedOut:
		ps.Signal = &kill
		set("TO", "Time limit exceeded (wall clock)")
	case runner.OutcomeCPUTimeExceeded:
		ps.Signal = &kill
		set("TO", "Time limit exceeded (CPU time)")
	case runner.OutcomeOOMKilled:
		ps.Signal = &kill
		set("SG", "Out of memory: killed at the memory limit")
	case runner.OutcomeCancelled:
		ps.Signal = &kill
		set("XX", "Cancelled")
	case runner.OutcomeSignaled:
		sig := st.Signal
		ps.Signal = &sig
		set("SG", fmt.Sprintf("Caught fatal signal %d", st.ExitCode-128))
	default:
		code := st.ExitCode
		ps.Code = &code
		if code != 0 {
			set("RE", fmt.Sprintf("Exited with error status %d", code))
		}
	}
	if ps.Status == nil || *ps.Status == "RE" {
		switch {
		case st.Stdout.Truncated():
			set("OL", "stdout length exceeded")
		case st.Stderr.Truncated():
			set("EL", "stderr length exceeded")
		}
	}
	return ps
}
