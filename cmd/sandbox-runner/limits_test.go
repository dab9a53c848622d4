package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/api"
	"github.com/sandbox-runner/sandbox-runner/runner/config"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// limitsVia applies one limit, key = text (a number when number is
// set, else a string), as the config file's [limits], as an API
// request's limits and as exec's flag. It returns each one's limits, or
// its error with the field's name, in that caller's own spelling, cut
// off the front.
func limitsVia(t *testing.T, key, text string, number bool) (got [3]runner.Limits, errs [3]string) {
	t.Helper()
	value := text
	if !number {
		value = fmt.Sprintf("%q", text)
	}
	cut := func(i int, err error, field string) {
		if err == nil {
			return
		}
		msg, ok := strings.CutPrefix(err.Error(), field+": ")
		assert.True(t, ok, "the error names %s first: %v", field, err)
		errs[i] = msg
	}

	c, err := config.Decode(strings.NewReader("[limits]\n" + key + " = " + value + "\n"))
	if err == nil {
		got[0], err = c.TaskLimits("sh")
	}
	cut(0, err, "[limits] "+key)

	req, err := service.DecodeRequest([]byte(`{"runtime": "sh", "files": [{"content": "x"}], "limits": {"` + key + `": ` + value + `}}`))
	require.NoError(t, err)
	task, err := service.TaskOf(req, runner.Limits{})
	got[1] = task.Limits
	cut(1, err, "limits."+key)

	var o execOptions
	o.global.file = &config.File{}
	fs := newFlagSet("exec", "", os.Stderr)
	o.registerTask(fs, "")
	require.NoError(t, fs.Parse([]string{api.FlagName(key) + "=" + text}))
	o.changed = fs.Changed
	got[2], err = o.limits()
	cut(2, err, api.FlagName(key))
	return got, errs
}

// TestLimitsAgreeAcrossConfigRequestAndFlags: one limit as written gives
// the same limits, or the same refusal, from the config file, a request
// and exec's flags.
func TestLimitsAgreeAcrossConfigRequestAndFlags(t *testing.T) {
	for _, tc := range []struct {
		key, text string
		number    bool
		want      runner.Limits
		err       string
	}{
		{"memory", "512m", false, runner.Limits{Memory: 512 << 20}, ""},
		{"memory", "1048576", true, runner.Limits{Memory: 1 << 20}, ""},
		{"tmp_size", "2m", false, runner.Limits{TmpSize: 2 << 20}, ""},
		{"output_limit", "4096", true, runner.Limits{OutputLimit: 4096}, ""},
		{"timeout", "1m30s", false, runner.Limits{Timeout: 90 * time.Second}, ""},
		{"compile_timeout", "1.5", true, runner.Limits{CompileTimeout: 1500 * time.Millisecond}, ""},
		{"cpu_time", "2.5", true, runner.Limits{CPUTime: 2500 * time.Millisecond}, ""},
		{"cpus", "0.5", true, runner.Limits{CPUs: 0.5}, ""},
		{"pids", "64", true, runner.Limits{Pids: 64}, ""},

		{"memory", "0", true, runner.Limits{}, `"0": give a size above zero, or leave it out for the default`},
		{"memory", "0", false, runner.Limits{}, `"0": give a size above zero, or leave it out for the default`},
		{"memory", "12qb", false, runner.Limits{}, `size "12qb": give a number with an optional unit`},
		{"timeout", "0", true, runner.Limits{}, `"0": give a duration above zero, or leave it out for the default`},
		{"timeout", "-1s", false, runner.Limits{}, `"-1s": give a duration above zero, or leave it out for the default`},
		{"timeout", "soon", false, runner.Limits{}, `duration "soon": give a number of seconds`},
		{"cpu_time", "25h", false, runner.Limits{}, `"25h": give at most 24h0m0s, the longest cpu time a task may have`},
		{"cpus", "0", true, runner.Limits{}, `"0": give a number of CPUs above zero, such as 0.5, or leave it out for the default`},
		{"cpus", "-1", true, runner.Limits{}, `"-1": give a number of CPUs above zero, such as 0.5, or leave it out for the default`},
		{"pids", "0", true, runner.Limits{}, `"0": give a whole number above zero, such as 64, or leave it out for the default`},
	} {
		t.Run(tc.key+"="+tc.text, func(t *testing.T) {
			got, errs := limitsVia(t, tc.key, tc.text, tc.number)
			for i, via := range []string{"config", "request", "flag"} {
				if tc.err == "" {
					assert.Empty(t, errs[i], via)
					assert.Equal(t, tc.want, got[i], via)
				} else {
					assert.Contains(t, errs[i], tc.err, via)
				}
			}
			assert.Equal(t, errs[0], errs[1], "config and request")
			assert.Equal(t, errs[1], errs[2], "request and flag")
		})
	}
}

// TestExecLimitFlagsDefaultToTheConfig: the config's [limits] are the
// limit flags' defaults, shown by --help, and a task that gives no flag
// gets them.
func TestExecLimitFlagsDefaultToTheConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(path, []byte("[limits]\nmemory = \"256m\"\ncpus = 0.5\ntimeout = 10\n"), 0o644))
	code, stdout, _ := runCLI(t, nil, "exec", "--config", path, "--help")
	require.Equal(t, exitOK, code)
	for _, want := range []string{`--memory string`, `(default "256m")`, `--cpus float`, `(default 0.5)`, `(default "10")`, `(default "64m")`} {
		assert.Contains(t, stdout, want)
	}

	var o execOptions
	o.global.preload([]string{"--config=" + path})
	fs := newFlagSet("exec", "", os.Stderr)
	o.registerTask(fs, "")
	require.NoError(t, fs.Parse([]string{"-r", "sh", "--timeout", "5s"}))
	o.changed = fs.Changed
	l, err := o.limits()
	require.NoError(t, err)
	assert.Equal(t, runner.Limits{Memory: 256 << 20, CPUs: 0.5, Timeout: 5 * time.Second}, l)
}

// TestServeAndWorkerFlagsDefaultToTheConfig: serve's and worker's flags
// show the config's [service] and [fleet] values (and serve's socket,
// $SANDBOX_RUNNER_SOCKET before them) as their defaults.
func TestServeAndWorkerFlagsDefaultToTheConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(path, []byte("[service]\nsocket = \"/run/x/api.sock\"\ngrace = \"7s\"\nmax_concurrent = 3\n\n[fleet]\nretry_delay = \"2s\"\nmax_deliveries = 9\n"), 0o644))
	code, stdout, _ := runCLI(t, nil, "serve", "--config", path, "--help")
	require.Equal(t, exitOK, code)
	for _, want := range []string{`(default "/run/x/api.sock")`, `(default "7s")`, `(default 3)`} {
		assert.Contains(t, stdout, want)
	}
	code, stdout, _ = runCLI(t, nil, "worker", "--config="+path, "--help")
	require.Equal(t, exitOK, code)
	for _, want := range []string{`(default "2s")`, `(default 9)`} {
		assert.Contains(t, stdout, want)
	}

	t.Setenv("SANDBOX_RUNNER_CONFIG", path)
	var o serveOptions
	fs := newFlagSet("serve", "", os.Stderr)
	fs.StringVar(&o.socket, "socket", "", "")
	o.global.preload(nil)
	configDefaults(fs, map[string]string{"socket": first(os.Getenv("SANDBOX_RUNNER_SOCKET"), o.global.file.Service.Socket)})
	require.NoError(t, fs.Parse(nil))
	assert.Equal(t, "/run/x/api.sock", o.socket, "a flag not given has the config's value")
	t.Setenv("SANDBOX_RUNNER_SOCKET", "/run/env.sock")
	code, stdout, _ = runCLI(t, nil, "serve", "--config", path, "--help")
	require.Equal(t, exitOK, code)
	assert.Contains(t, stdout, `(default "/run/env.sock")`, "the environment comes before the config")
}
