//go:build linux

package integration

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/fleet/fleettest"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// writeOutputs leaves in /tmp a text file, a binary one, a file in a
// subdirectory, and what must never be returned: a link to the host's
// /etc/passwd (the sandbox's own, as seen from inside, but a link the
// runner would follow on the host), a link to a directory, a FIFO.
const writeOutputs = `set -e
mkdir -p /tmp/out/sub /tmp/elsewhere
printf 'hello\n' > /tmp/out/a.txt
printf '\000\001\002\377' > /tmp/out/b.bin
echo deep > /tmp/out/sub/c.txt
echo hidden > /tmp/elsewhere/d.txt
ln -s /etc/passwd /tmp/out/passwd.txt
ln -s /tmp/elsewhere /tmp/out/link
mkfifo /tmp/out/fifo.txt
echo written`

// outputPatterns match every file of writeOutputs, links and FIFO too.
var outputPatterns = []string{"/tmp/out/*", "/tmp/out/sub/*.txt", "/tmp/out/link/*", "/tmp/out/passwd.txt"}

// fileMap returns the files by name.
func fileMap(files []runner.OutputFile) map[string]runner.OutputFile {
	m := map[string]runner.OutputFile{}
	for _, f := range files {
		m[f.Name] = f
	}
	return m
}

// requireOutputs asserts that files are exactly writeOutputs' regular
// files under /tmp/out, whole.
func requireOutputs(t *testing.T, res *runner.Result) {
	t.Helper()
	requireExit(t, res, 0)
	var names []string
	for _, f := range res.Files {
		names = append(names, f.Name)
	}
	require.Equal(t, []string{"out/a.txt", "out/b.bin", "out/sub/c.txt"}, names, "regular files only, in name order: no link followed, no FIFO")
	m := fileMap(res.Files)
	assert.Equal(t, "hello\n", string(m["out/a.txt"].Content))
	assert.Equal(t, []byte{0, 1, 2, 0xff}, m["out/b.bin"].Content)
	assert.Equal(t, "deep\n", string(m["out/sub/c.txt"].Content))
	for _, f := range res.Files {
		assert.False(t, f.Truncated, f.Name)
		assert.Equal(t, int64(len(f.Content)), f.Size, f.Name)
	}
	assert.False(t, res.FilesTruncated)
}

func TestOutputsReturnsRegularFilesAndFollowsNoLink(t *testing.T) {
	res := runSh(t, writeOutputs, func(task *runner.Task) { task.Outputs = outputPatterns })
	requireOutputs(t, res)
	assert.Equal(t, "written\n", string(res.Stdout.Data))
}

func TestOutputsCapsTruncateAndSaySo(t *testing.T) {
	res := runSh(t, writeOutputs, func(task *runner.Task) {
		task.Outputs = outputPatterns
		task.Limits.OutputFiles = 2
		task.Limits.OutputFilesSize = 8
	})
	requireExit(t, res, 0)
	require.Len(t, res.Files, 2, "the count cap")
	assert.Equal(t, runner.OutputFile{Name: "out/a.txt", Content: []byte("hello\n"), Size: 6}, res.Files[0])
	assert.Equal(t, runner.OutputFile{Name: "out/b.bin", Content: []byte{0, 1}, Size: 4, Truncated: true}, res.Files[1],
		"cut at the 8 bytes all files may hold")
	assert.True(t, res.FilesTruncated)
}

func TestOutputsNoMatchIsAnEmptyList(t *testing.T) {
	res := runSh(t, "true", func(task *runner.Task) { task.Outputs = []string{"/tmp/none/*.png"} })
	requireExit(t, res, 0)
	assert.NotNil(t, res.Files)
	assert.Empty(t, res.Files)
	b, err := json.Marshal(res)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"files":[]`)
}

func TestOutputsThroughTheService(t *testing.T) {
	p := startServe(t, serveSetup{})
	patterns, _ := json.Marshal(outputPatterns)
	res, raw := p.post(execBody(writeOutputs, `"outputs": `+string(patterns))).result(t)
	requireOutputs(t, &res)
	files := raw["files"].([]any)
	require.Len(t, files, 3)
	bin := files[1].(map[string]any)
	assert.Equal(t, map[string]any{"name": "out/b.bin", "content": base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 0xff}),
		"encoding": "base64", "truncated": false, "size": 4.0}, bin)
	assert.Equal(t, "utf-8", files[0].(map[string]any)["encoding"])

	// A compiled runtime returns the run stage's files from the /tmp
	// both stages share.
	res, _ = p.post(`{"runtime": "shc", "files": [{"content": "echo ran > /tmp/r.txt"}], "outputs": ["/tmp/*.txt", "/tmp/*.sh"]}`).result(t)
	requireExit(t, &res, 0)
	require.Len(t, res.Files, 2)
	assert.Equal(t, "prog.sh", res.Files[0].Name)
	assert.Equal(t, runner.OutputFile{Name: "r.txt", Content: []byte("ran\n"), Size: 4}, res.Files[1])

	many, _ := json.Marshal(make([]string, runner.MaxOutputPatterns+1))
	for _, tc := range []struct{ outputs, want string }{
		{`["/etc/passwd"]`, "outputs[0]"},
		{`["/tmp/a", "/tmp/../etc/*"]`, "outputs[1]"},
		{`["/tmp"]`, "outputs[0]"},
		{`["out/*.txt"]`, "outputs[0]"},
		{`["/tmp/[a-"]`, "outputs[0]"},
		{`"/tmp/a"`, "outputs"},
		{string(many), "outputs"},
	} {
		a := p.post(execBody("true", `"outputs": `+tc.outputs))
		require.Equal(t, http.StatusBadRequest, a.status, "outputs %s: %s", tc.outputs, a)
		e := a.errorDoc(t)
		assert.Equal(t, service.KindInvalidInput, e.Kind)
		assert.Contains(t, e.Error, tc.want, "outputs %s", tc.outputs)
	}
}

func TestOutputsCLICopyOut(t *testing.T) {
	c := newCLI(t)
	args := []string{"-c", writeOutputs}
	for _, p := range outputPatterns {
		args = append(args, "--output", p)
	}
	dir := filepath.Join(t.TempDir(), "out-dir")
	r := c.exec(nil, append([]string{"--json", "--copy-out", dir}, args...)...)
	require.Equal(t, 0, r.code, r)
	res, _ := decodeResult(t, r)
	requireOutputs(t, &res)
	for name, want := range map[string]string{"out/a.txt": "hello\n", "out/b.bin": "\x00\x01\x02\xff", "out/sub/c.txt": "deep\n"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.Equal(t, want, string(b), name)
	}
	var found []string
	require.NoError(t, filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			found = append(found, rel)
		}
		return err
	}))
	assert.ElementsMatch(t, []string{"out/a.txt", "out/b.bin", "out/sub/c.txt"}, found, "nothing else written")

	// Existing files are never overwritten: the copy fails, they stay.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "out/a.txt"), []byte("mine"), 0o644))
	r = c.exec(nil, append([]string{"--copy-out", dir}, args...)...)
	assert.Equal(t, 125, r.code, r)
	assert.Contains(t, r.stderr, "never overwritten", r)
	b, err := os.ReadFile(filepath.Join(dir, "out/a.txt"))
	require.NoError(t, err)
	assert.Equal(t, "mine", string(b))

	// A link in the directory is not written through.
	target := t.TempDir()
	linked := filepath.Join(t.TempDir(), "linked")
	require.NoError(t, os.Mkdir(linked, 0o755))
	require.NoError(t, os.Symlink(target, filepath.Join(linked, "out")))
	r = c.exec(nil, append([]string{"--copy-out", linked}, args...)...)
	assert.Equal(t, 125, r.code, r)
	entries, err := os.ReadDir(target)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing written through the link")

	for _, bad := range [][]string{
		{"--output", "/etc/*", "-c", "true"},
		{"--output", "/tmp/../x", "-c", "true"},
		{"--copy-out", dir, "-c", "true"},
	} {
		r = c.exec(nil, bad...)
		assert.Equal(t, 2, r.code, "%v\n%s", bad, r)
		assert.True(t, strings.Contains(r.stderr, "--output") || strings.Contains(r.stderr, "output pattern"), r)
	}
}

func TestOutputsTakeTheColdPathAroundThePool(t *testing.T) {
	h := RequiresRoot(t)
	_, p := newPool(t, h, 1, runner.Limits{})
	res := pooledRun(t, p, writeOutputs, func(task *runner.Task) { task.Outputs = outputPatterns })
	requireOutputs(t, res)
	st := p.Stats()[0]
	assert.Equal(t, uint64(0), st.Hits, "a pooled /tmp goes with its sandbox: the cold path returns the files")
	assert.Equal(t, uint64(1), st.Misses)
}

func TestOutputsCLIViaTheService(t *testing.T) {
	p := startServe(t, serveSetup{})
	bin := p.h.CLI(t)
	dir := filepath.Join(t.TempDir(), "copied")
	args := []string{"exec", "--via", "service", "--config", p.config, "--socket", p.socket, "--runtime", "sh", "--json", "--copy-out", dir, "-c", writeOutputs}
	for _, pat := range outputPatterns {
		args = append(args, "--output", pat)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	out, err := cmd.Output()
	require.NoError(t, err, "%s", out)
	var res runner.Result
	require.NoError(t, json.Unmarshal(out, &res))
	requireOutputs(t, &res)
	b, err := os.ReadFile(filepath.Join(dir, "out/b.bin"))
	require.NoError(t, err)
	assert.Equal(t, []byte{0, 1, 2, 0xff}, b)
	n, _ := metric(t, p.scrape(), service.MetricTasks, "outcome", "exited")
	assert.Equal(t, 1.0, n, "the task ran in the service")
}

// TestOutputsAndCPUTimeThroughTheFleet: submit sends --cpu-time and
// --output in the task message; the worker's answer carries the verdict
// and the files, which --copy-out writes here.
func TestOutputsAndCPUTimeThroughTheFleet(t *testing.T) {
	srv := fleettest.Start(t)
	e := newFleetEnv(t, srv.URL)
	e.startWorker(e.h.StateDir(t))

	code, _, stderr := e.cli("", "submit", "--config", e.config, "--nats", srv.URL, "--runtime", "sh",
		"--cpu-time", "300ms", "--timeout", "10s", "-c", busyLoop)
	assert.Equal(t, runner.ExitCPUTimeExceeded, code)
	assert.Contains(t, stderr, "CPU time over its limit of 300ms")

	dir := filepath.Join(t.TempDir(), "from-fleet")
	args := []string{"submit", "--config", e.config, "--nats", srv.URL, "--runtime", "sh", "--json", "--copy-out", dir, "-c", writeOutputs}
	for _, p := range outputPatterns {
		args = append(args, "--output", p)
	}
	code, stdout, _ := e.cli("", args...)
	require.Equal(t, 0, code)
	var res runner.Result
	require.NoError(t, json.Unmarshal([]byte(stdout), &res))
	requireOutputs(t, &res)
	b, err := os.ReadFile(filepath.Join(dir, "out/sub/c.txt"))
	require.NoError(t, err)
	assert.Equal(t, "deep\n", string(b))
}
