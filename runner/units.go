package runner

import (
	"time"

	"github.com/sandbox-runner/sandbox-runner/runner/internal/units"
)

// ParseSize parses a byte size such as "512m", "1.5GiB", "64k" or "4096".
// Units are powers of 1024, case-insensitive. A bad size is
// ErrInvalidTask.
func ParseSize(s string) (int64, error) {
	n, err := units.ParseSize(s)
	if err != nil {
		return 0, invalid("%s", err)
	}
	return n, nil
}

// ParseDuration parses a duration such as "30s", "1m30s", "250ms", or a
// plain number of seconds ("30", "1.5"). A bad duration is
// ErrInvalidTask.
func ParseDuration(s string) (time.Duration, error) {
	d, err := units.ParseDuration(s)
	if err != nil {
		return 0, invalid("%s", err)
	}
	return d, nil
}
