package runner

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestParseCPUUsage(t *testing.T) {
	d, err := parseCPUUsage([]byte("1234567890\n"), false)
	require.NoError(t, err)
	assert.Equal(t, 1234567890*time.Nanosecond, d, "cgroup v1 cpuacct.usage is nanoseconds")

	stat := "usage_usec 305993\nuser_usec 300000\nsystem_usec 5993\nnr_periods 0\n"
	d, err = parseCPUUsage([]byte(stat), true)
	require.NoError(t, err)
	assert.Equal(t, 305993*time.Microsecond, d, "cgroup v2 cpu.stat usage_usec is microseconds")

	for _, bad := range []struct {
		in string
		v2 bool
	}{{"", false}, {"abc", false}, {"-1", false}, {"user_usec 1\n", true}, {"usage_usec x\n", true}} {
		_, err := parseCPUUsage([]byte(bad.in), bad.v2)
		assert.Error(t, err, "%q", bad.in)
	}
}

func TestCPUWatchPollsNoLaterThanTheLimitCouldBeReached(t *testing.T) {
	w := &cpuWatch{cpus: 4}
	// With 4 CPUs busy, 200ms of CPU take 50ms of wall time at least.
	assert.Equal(t, 50*time.Millisecond, w.next(200*time.Millisecond))
	assert.Equal(t, minCPUPoll, w.next(time.Microsecond), "never a busy loop")
	assert.Equal(t, maxCPUPoll, w.next(time.Hour), "a long limit is still watched")

	w = &cpuWatch{limit: 300 * time.Millisecond, base: 20 * time.Millisecond}
	assert.False(t, w.over(320*time.Millisecond), "counted from the start: the sandbox's making is not the task's")
	assert.True(t, w.over(321*time.Millisecond))
}

func TestClassifyCPUTimeExceeded(t *testing.T) {
	st := &Stage{CPUTimeExceeded: true}
	classify(st, 137, 0)
	assert.Equal(t, OutcomeCPUTimeExceeded, st.Outcome)
	assert.Equal(t, 152, st.ExitCode)

	// The wall clock's verdict comes first: the runner decided it.
	st = &Stage{CPUTimeExceeded: true, TimedOut: true}
	classify(st, 137, 0)
	assert.Equal(t, OutcomeTimedOut, st.Outcome)
}

func TestExitCPUTimeExceededIsSIGXCPUs(t *testing.T) {
	assert.Equal(t, 128+int(unix.SIGXCPU), ExitCPUTimeExceeded, "api's constant is the shell's status of a SIGXCPU death")
}
