// Package units parses the sizes ("512m") and durations ("30s", "1.5")
// that limits are written in, on the command line, in the config file
// and in API requests alike. It imports nothing but the standard
// library and errdefs, so that runner/api builds on any OS.
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// Error is a value that does not parse. It is errdefs.ErrInvalidArgument;
// its text is the message alone, for callers to put their own context
// (and their own sentinels) around.
type Error struct{ msg string }

func (e *Error) Error() string { return e.msg }

// Is makes an Error errdefs.ErrInvalidArgument.
func (e *Error) Is(target error) bool { return target == errdefs.ErrInvalidArgument }

func invalid(format string, args ...any) error {
	return &Error{msg: fmt.Sprintf(format, args...)}
}

// sizeUnits are the suffixes ParseSize accepts, as Docker's and the
// kernel's: k, m, g, t are powers of 1024, with or without "b"/"ib".
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}

// ParseSize parses a byte size such as "512m", "1.5GiB", "64k" or "4096".
// Units are powers of 1024, case-insensitive.
func ParseSize(s string) (int64, error) {
	in := strings.ToLower(strings.TrimSpace(s))
	i := strings.IndexFunc(in, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(in)
	}
	num, unit := in[:i], strings.TrimSpace(in[i:])
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, invalid("size %q: give a number with an optional unit, such as 512m, 1g or 65536", s)
	}
	if !strings.Contains(num, ".") {
		// A whole number is exact in int64 and not in float64 past 2^53.
		v, err := strconv.ParseInt(num, 10, 64)
		if err != nil || v > math.MaxInt64/mult {
			return 0, invalid("size %q is too large", s)
		}
		return v * mult, nil
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, invalid("size %q: %q is not a number", s, num)
	}
	bytes := v * float64(mult)
	if bytes >= math.MaxInt64 {
		return 0, invalid("size %q is too large", s)
	}
	return int64(bytes), nil
}

// ParseDuration parses a duration such as "30s", "1m30s", "250ms", or a
// plain number of seconds ("30", "1.5").
func ParseDuration(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if v, err := strconv.ParseFloat(in, 64); err == nil {
		// Checked after scaling: seconds just under MaxInt64/1e9 still
		// overflow, and float-to-int conversion out of range is undefined.
		d := v * float64(time.Second)
		if math.IsNaN(d) || math.Abs(d) >= math.MaxInt64 {
			return 0, invalid("duration %q is out of range", s)
		}
		return time.Duration(d), nil
	}
	d, err := time.ParseDuration(in)
	if err != nil {
		return 0, invalid("duration %q: give a number of seconds or a duration such as 30s, 1m30s or 250ms", s)
	}
	return d, nil
}
