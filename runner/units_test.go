package runner

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// requireInvalid asserts that err is an invalid-task error callers can
// tell apart both ways.
func requireInvalid(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrInvalidTask)
	assert.True(t, errdefs.IsInvalidArgument(err), "errdefs.IsInvalidArgument(%v)", err)
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"512m", 512 << 20},
		{"1g", 1 << 30},
		{"1.5GiB", 3 << 29},
		{"64k", 64 << 10},
		{"64KB", 64 << 10},
		{"4096", 4096},
		{"4096b", 4096},
		{"  2M ", 2 << 20},
		{"2t", 2 << 40},
		{"0", 0},
		{"0.5k", 512},
		// Whole numbers are exact, also past float64's 2^53.
		{"9007199254740993", 9007199254740993},
		{"9223372036854775807", math.MaxInt64},
		{"8388607t", 8388607 << 40},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseSizeInvalid(t *testing.T) {
	for _, in := range []string{
		"", "   ", "12qb", "m", "k1", ".", "1.2.3", "1e3", "0x10", "1 2",
		// A sign is not part of a size: a negative size must never turn
		// into a valid positive limit.
		"-1", "-1m", "+1m",
	} {
		t.Run(in, func(t *testing.T) {
			_, err := ParseSize(in)
			requireInvalid(t, err)
		})
	}
}

func TestParseSizeTooLarge(t *testing.T) {
	for _, in := range []string{
		"9223372036854775808",
		"99999999999999999999999",
		"8388608t",
		"8388607.9999999999t",
		"1" + strings.Repeat("0", 400) + ".5",
		"16777216tib",
	} {
		t.Run(in, func(t *testing.T) {
			_, err := ParseSize(in)
			requireInvalid(t, err)
		})
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"30s", 30 * time.Second},
		{"1m30s", 90 * time.Second},
		{"250ms", 250 * time.Millisecond},
		{"30", 30 * time.Second},
		{"1.5", 1500 * time.Millisecond},
		{" 2 ", 2 * time.Second},
		{"0", 0},
		// ParseDuration parses; ranges are the caller's to check.
		{"-1s", -time.Second},
		{"-1", -time.Second},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDuration(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseDurationInvalid(t *testing.T) {
	for _, in := range []string{
		"abc", "", "1x", "NaN", "Inf", "-Inf",
		// Out of range once scaled to nanoseconds: these must not wrap.
		"9223372036.9", "-9223372036.9", "1e300",
	} {
		t.Run(in, func(t *testing.T) {
			_, err := ParseDuration(in)
			requireInvalid(t, err)
		})
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{
		"512m", "1g", "1.5GiB", "64k", "4096", "  2M ", "", "12qb", "m", "-1",
		"1e3", "9223372036854775807", "9223372036854775808", "8388608t", "0.5k",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSize(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidTask) || !errdefs.IsInvalidArgument(err) {
				t.Fatalf("ParseSize(%q) error %v is not an invalid-task error", s, err)
			}
			return
		}
		if got < 0 {
			t.Fatalf("ParseSize(%q) = %d, a negative size", s, got)
		}
		// A plain whole number of bytes is exact, or an error when it does
		// not fit.
		if n, perr := strconv.ParseInt(strings.TrimSpace(s), 10, 64); perr == nil && n >= 0 && got != n {
			t.Fatalf("ParseSize(%q) = %d, want %d", s, got, n)
		}
	})
}

func FuzzParseSizeRoundTrip(f *testing.F) {
	f.Add(int64(0), uint8(0))
	f.Add(int64(4096), uint8(1))
	f.Add(int64(math.MaxInt64), uint8(0))
	f.Add(int64(9007199254740993), uint8(0))
	f.Add(int64(8388607), uint8(4))
	units := []string{"", "k", "m", "g", "t"}
	f.Fuzz(func(t *testing.T, n int64, u uint8) {
		if n < 0 {
			n = -(n + 1)
		}
		u %= uint8(len(units))
		mult := int64(1) << (10 * u)
		got, err := ParseSize(strconv.FormatInt(n, 10) + units[u])
		if n > math.MaxInt64/mult {
			if err == nil {
				t.Fatalf("ParseSize(%d%s) = %d, want a too-large error", n, units[u], got)
			}
			return
		}
		if err != nil || got != n*mult {
			t.Fatalf("ParseSize(%d%s) = %d, %v; want %d", n, units[u], got, err, n*mult)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{
		"30s", "1m30s", "250ms", "30", "1.5", "abc", "", "1x", "-1s",
		"9223372036", "9223372036.9", "-9223372036.9", "1e300", "NaN",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseDuration(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidTask) || !errdefs.IsInvalidArgument(err) {
				t.Fatalf("ParseDuration(%q) error %v is not an invalid-task error", s, err)
			}
			return
		}
		// A plain number of seconds keeps its sign: out-of-range values are
		// errors, never wrapped around.
		v, perr := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if perr != nil {
			return
		}
		if (v > 0 && got < 0) || (v < 0 && got > 0) {
			t.Fatalf("ParseDuration(%q) = %v, the sign of %g flipped", s, got, v)
		}
		if want := v * float64(time.Second); math.Abs(float64(got)-want) > math.Max(1, math.Abs(want)*1e-9) {
			t.Fatalf("ParseDuration(%q) = %v, want about %gns", s, got, want)
		}
	})
}
