package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"

	"github.com/sandbox-runner/sandbox-runner/runner/internal/units"
)

// WrittenLimits are limits as a person or a program wrote them: in the
// config file's [limits] and [runtimes.NAME.limits], in an API
// request's "limits", or as exec's flags. Each is a string as on the
// command line ("512m", "30s", "1.5") or a number (bytes for sizes,
// seconds for durations); a limit left out keeps its base's value.
// Apply is the one place they are checked, with the same rules and
// messages for every caller: zero and negative are refused, since
// leaving a limit out is how one asks for the default.
type WrittenLimits struct {
	Timeout        Limit `json:"timeout,omitzero" toml:"timeout"`
	CompileTimeout Limit `json:"compile_timeout,omitzero" toml:"compile_timeout"`
	Memory         Limit `json:"memory,omitzero" toml:"memory"`
	CompileMemory  Limit `json:"compile_memory,omitzero" toml:"compile_memory"`
	CPUs           Limit `json:"cpus,omitzero" toml:"cpus"`
	Pids           Limit `json:"pids,omitzero" toml:"pids"`
	OutputLimit    Limit `json:"output_limit,omitzero" toml:"output_limit"`
	TmpSize        Limit `json:"tmp_size,omitzero" toml:"tmp_size"`
	// CPUTime is the run stage's CPU-time limit; left out: none.
	CPUTime Limit `json:"cpu_time,omitzero" toml:"cpu_time"`
	// OutputFiles and OutputFilesSize cap the files a task returns: how
	// many, and their bytes together. They are the operator's to set, in
	// the config file; a request cannot raise them.
	OutputFiles     Limit `json:"-" toml:"output_files"`
	OutputFilesSize Limit `json:"-" toml:"output_files_size"`
}

// Limit is one limit as written: a string or a number, in JSON or TOML,
// or a flag's value. It is checked by WrittenLimits.Apply, where the
// field is known, so that the error can name it.
type Limit struct {
	text string
	kind limitKind
}

type limitKind uint8

const (
	limitUnset limitKind = iota
	limitString
	limitNumber
	// limitOther is any other JSON or TOML value; Apply refuses it by
	// name.
	limitOther
)

// LimitString returns a limit written as a string, such as "512m".
func LimitString(s string) Limit { return Limit{text: s, kind: limitString} }

// LimitInt returns a limit written as an integer.
func LimitInt(n int64) Limit { return Limit{text: strconv.FormatInt(n, 10), kind: limitNumber} }

// LimitFloat returns a limit written as a number.
func LimitFloat(f float64) Limit {
	return Limit{text: strconv.FormatFloat(f, 'g', -1, 64), kind: limitNumber}
}

// IsZero tells whether the limit was left out.
func (l Limit) IsZero() bool { return l.kind == limitUnset }

// String returns the limit as written.
func (l Limit) String() string { return l.text }

// UnmarshalJSON accepts any JSON value and remembers its kind.
func (l *Limit) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*l = Limit{}
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*l = LimitString(s)
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		*l = Limit{text: string(b), kind: limitNumber}
	default:
		*l = Limit{text: string(b), kind: limitOther}
	}
	return nil
}

// MarshalJSON writes the limit as it was given.
func (l Limit) MarshalJSON() ([]byte, error) {
	switch l.kind {
	case limitUnset:
		return []byte("null"), nil
	case limitString:
		return json.Marshal(l.text)
	case limitNumber:
		if _, err := strconv.ParseFloat(l.text, 64); err == nil {
			return []byte(l.text), nil
		}
		return json.Marshal(l.text)
	default:
		if json.Valid([]byte(l.text)) {
			return []byte(l.text), nil
		}
		return json.Marshal(l.text)
	}
}

// UnmarshalTOML takes any TOML value, as UnmarshalJSON takes any JSON
// one: go-toml's unstable.Unmarshaler, which a Decoder calls when
// EnableUnmarshalerInterface is on (encoding.TextUnmarshaler would see
// strings only). data is the value as written in the document.
func (l *Limit) UnmarshalTOML(data []byte) error {
	var doc struct {
		V any `toml:"v"`
	}
	if err := toml.Unmarshal(append([]byte("v = "), data...), &doc); err != nil {
		return err
	}
	switch v := doc.V.(type) {
	case string:
		*l = LimitString(v)
	case int64:
		*l = LimitInt(v)
	case float64:
		*l = LimitFloat(v)
	default:
		*l = Limit{text: string(bytes.TrimSpace(data)), kind: limitOther}
	}
	return nil
}

// FlagName spells a limit's key as exec's flag: "cpu_time" is
// "--cpu-time".
func FlagName(key string) string { return "--" + strings.ReplaceAll(key, "_", "-") }

// Apply puts the limits that were written on top of base. name spells a
// limit's key ("compile_timeout") as the caller's input does
// ("limits.compile_timeout", "--compile-timeout",
// "[runtimes.java.limits] compile_timeout"); nil leaves it as it is.
// Every error names the limit so, and is ErrInvalidTask and
// errdefs.ErrInvalidArgument. What only the runner can check (limits
// against the host, a /tmp larger than the memory) is left to it.
func (w WrittenLimits) Apply(base Limits, name func(key string) string) (Limits, error) {
	if name == nil {
		name = func(key string) string { return key }
	}
	out := base
	var err error
	for _, d := range []struct {
		key, what string
		v         Limit
		dst       *time.Duration
	}{
		{"timeout", "timeout", w.Timeout, &out.Timeout},
		{"compile_timeout", "compile timeout", w.CompileTimeout, &out.CompileTimeout},
		{"cpu_time", "cpu time", w.CPUTime, &out.CPUTime},
	} {
		if d.v.IsZero() {
			continue
		}
		if *d.dst, err = d.v.duration(name(d.key), d.what); err != nil {
			return out, err
		}
	}
	for _, s := range []struct {
		key string
		v   Limit
		dst *int64
	}{
		{"memory", w.Memory, &out.Memory},
		{"compile_memory", w.CompileMemory, &out.CompileMemory},
		{"output_limit", w.OutputLimit, &out.OutputLimit},
		{"tmp_size", w.TmpSize, &out.TmpSize},
		{"output_files_size", w.OutputFilesSize, &out.OutputFilesSize},
	} {
		if s.v.IsZero() {
			continue
		}
		if *s.dst, err = s.v.size(name(s.key)); err != nil {
			return out, err
		}
	}
	if !w.CPUs.IsZero() {
		field := name("cpus")
		if err := w.CPUs.checkKind(field, "a number of CPUs such as 0.5"); err != nil {
			return out, err
		}
		f, perr := strconv.ParseFloat(strings.TrimSpace(w.CPUs.text), 64)
		if perr != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
			return out, badField(field, "%q: give a number of CPUs above zero, such as 0.5, or leave it out for the default", w.CPUs.text)
		}
		out.CPUs = f
	}
	if !w.Pids.IsZero() {
		if out.Pids, err = w.Pids.whole(name("pids"), "64"); err != nil {
			return out, err
		}
	}
	if !w.OutputFiles.IsZero() {
		n, err := w.OutputFiles.whole(name("output_files"), "16")
		if err != nil {
			return out, err
		}
		if n > MaxOutputFiles {
			return out, badField(name("output_files"), "%q: give at most %d", w.OutputFiles.text, MaxOutputFiles)
		}
		out.OutputFiles = int(n)
	}
	return out, nil
}

func (l Limit) checkKind(field, want string) error {
	if l.kind == limitOther {
		return badField(field, "expected a string or a number (%s), got %s", want, l.text)
	}
	return nil
}

// duration reads a duration: a string as units.ParseDuration takes it,
// or a number of seconds. what names it in the upper bound's message.
func (l Limit) duration(field, what string) (time.Duration, error) {
	if err := l.checkKind(field, `seconds, or a string such as "30s"`); err != nil {
		return 0, err
	}
	d, err := units.ParseDuration(l.text)
	if err != nil {
		return 0, badField(field, "%s", err)
	}
	if d <= 0 {
		return 0, badField(field, "%q: give a duration above zero, or leave it out for the default", l.text)
	}
	if d > MaxTimeout {
		return 0, badField(field, "%q: give at most %s, the longest %s a task may have", l.text, MaxTimeout, what)
	}
	return d, nil
}

// size reads a size: a string as units.ParseSize takes it, or a number
// of bytes.
func (l Limit) size(field string) (int64, error) {
	if err := l.checkKind(field, `bytes, or a string such as "512m"`); err != nil {
		return 0, err
	}
	var n int64
	var err error
	if l.kind == limitNumber {
		// JSON and TOML allow 1e6 and 1.0, which are fine numbers of
		// bytes but not sizes ParseSize reads.
		if n, err = parseWhole(l.text); err != nil {
			return 0, badField(field, "%s: give a whole number of bytes, or a string such as \"512m\"", l.text)
		}
	} else if n, err = units.ParseSize(l.text); err != nil {
		return 0, badField(field, "%s", err)
	}
	if n <= 0 {
		return 0, badField(field, "%q: give a size above zero, or leave it out for the default", l.text)
	}
	return n, nil
}

// whole reads a count above zero; example is one for the message.
func (l Limit) whole(field, example string) (int64, error) {
	if err := l.checkKind(field, "a whole number such as "+example); err != nil {
		return 0, err
	}
	n, err := parseWhole(l.text)
	if err != nil || n <= 0 {
		return 0, badField(field, "%q: give a whole number above zero, such as %s, or leave it out for the default", l.text, example)
	}
	return n, nil
}

// parseWhole parses a whole number written as an integer or as a float
// without a fraction (64, 64.0, 6.4e1).
func parseWhole(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	if f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, fmt.Errorf("%s is not a whole number in range", s)
	}
	return int64(f), nil
}

// FieldError is bad input in one field of what a caller wrote: a
// request's, the config file's, a flag. It is ErrInvalidTask and
// errdefs.ErrInvalidArgument, as the runner's own refusals are.
type FieldError struct {
	// Field is the field as the caller spells it; empty for the input
	// as a whole.
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Is makes a FieldError ErrInvalidTask and errdefs.ErrInvalidArgument.
func (e *FieldError) Is(target error) bool {
	return target == ErrInvalidTask || target == errdefs.ErrInvalidArgument
}

func badField(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}
