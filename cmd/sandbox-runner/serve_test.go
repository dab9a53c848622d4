package main

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/config"
)

const exampleConfig = "../../contrib/systemd/config.toml"

func TestExampleConfigLoads(t *testing.T) {
	f, err := config.Load(exampleConfig)
	require.NoError(t, err)
	_, err = f.Catalog()
	require.NoError(t, err)
}

// The example shows every key with a value: uncommented, it must load too.
func TestExampleConfigWithEveryKeySetLoads(t *testing.T) {
	b, err := os.ReadFile(exampleConfig)
	require.NoError(t, err)
	setting := regexp.MustCompile(`(?m)^#(\[|[a-z_]+ = )`)
	uncommented := setting.ReplaceAllString(string(b), "$1")
	path := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(path, []byte(uncommented), 0o644))
	f, err := config.Load(path)
	require.NoError(t, err, "%s", uncommented)
	cat, err := f.Catalog()
	require.NoError(t, err)
	assert.Equal(t, "registry.example.internal/python:3.12-slim", cat["python"].Image)
	require.NotNil(t, f.Service.Queue)
	assert.Equal(t, 16, *f.Service.Queue)
	assert.Equal(t, []string{"python", "node"}, f.Service.RequiredRuntimes)
	l, err := f.TaskLimits("python")
	require.NoError(t, err)
	assert.Equal(t, runner.Limits{Timeout: time.Minute, CompileTimeout: time.Minute, Memory: 1 << 30, CPUs: 1,
		Pids: 128, OutputLimit: 1 << 20, TmpSize: 64 << 20, CPUTime: 10 * time.Second, OutputFiles: 16, OutputFilesSize: 1 << 20}, l)
}

func TestExampleConfigDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile(exampleConfig)
	require.NoError(t, err)
	text := string(b)
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, table string) {
		for f := range typ.Fields() {
			key, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if key == "" {
				continue
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Map {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && key != "limits" {
				path := key
				if table != "" {
					path = table + "." + key
				}
				assert.Regexp(t, `(?m)^#?\[`+regexp.QuoteMeta(path), text, "table [%s]", path)
				walk(ft, path)
				continue
			}
			assert.Regexp(t, `(?m)^#?`+regexp.QuoteMeta(key)+` = `, text, "key %s in [%s] is not in the example", key, table)
		}
	}
	walk(reflect.TypeOf(config.File{}), "")
}

func TestServeTCPWithoutTokenFailsBeforeStarting(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "s.sock")
	code, _, stderr := runCLI(t, nil, "serve", "--socket", socket, "--tcp", "127.0.0.1:0",
		"--address", filepath.Join(t.TempDir(), "absent.sock"))
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, "--tcp 127.0.0.1:0 needs --token-file")
	_, err := os.Stat(socket)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestServePistonOffLoopbackWithoutTokenFailsBeforeStarting(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "s.sock")
	code, _, stderr := runCLI(t, nil, "serve", "--socket", socket, "--piston-addr", "0.0.0.0:2000",
		"--address", filepath.Join(t.TempDir(), "absent.sock"))
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, "--piston-addr: 0.0.0.0:2000 is not a loopback address: Piston's API has no authentication")
	_, err := os.Stat(socket)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestServeBadSettings(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-body", "lots"}, "--max-body"},
		{[]string{"--grace", "soon"}, "--grace"},
		{[]string{"extra"}, "no arguments"},
		{[]string{"--log-level", "loud"}, "--log-level"},
	} {
		code, _, stderr := runCLI(t, nil, append([]string{"serve", "--address", filepath.Join(t.TempDir(), "absent.sock")}, tc.args...)...)
		assert.Equal(t, exitUsage, code, "%v: %s", tc.args, stderr)
		assert.Contains(t, stderr, tc.want)
	}
}

func TestServeWithoutContainerdFailsWithHint(t *testing.T) {
	absent := filepath.Join(t.TempDir(), "absent.sock")
	code, _, stderr := runCLI(t, nil, "serve", "--socket", filepath.Join(t.TempDir(), "s.sock"), "--address", absent)
	assert.Equal(t, exitRunner, code)
	assert.Contains(t, stderr, absent)
}

func TestServeLogsJSONWhenNotOnATerminal(t *testing.T) {
	var b strings.Builder
	log, err := serviceLogger(&b, "info")
	require.NoError(t, err)
	log.Info("task done", "task", "sr-1", "outcome", "exited")
	assert.JSONEq(t, `{"level":"INFO","msg":"task done","task":"sr-1","outcome":"exited"}`,
		regexp.MustCompile(`"time":"[^"]*",`).ReplaceAllString(b.String(), ""))
}

func TestRunnerLoggerKeepsOnlyWarnings(t *testing.T) {
	var b strings.Builder
	log, err := serviceLogger(&b, "info")
	require.NoError(t, err)
	rl := runnerLogger(log, "info").With("task", "sr-1")
	rl.Info("stage done")
	assert.Empty(t, b.String())
	rl.Warn("cleanup failed")
	assert.Contains(t, b.String(), `"task":"sr-1"`)
	assert.True(t, runnerLogger(log, "debug").Enabled(context.Background(), -4) == log.Enabled(context.Background(), -4))
}
