//go:build linux

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// Batches: one program compiled once and run on many inputs, each run in
// a fresh sandbox with the compiled program read-only in its /tmp.

// runsProgram is an shc program (see compiledCatalog): its compile
// stage writes /tmp/prog and a data file; each run says what it got,
// whether an earlier run's /tmp/x is there, whether it can change the
// compiled program, and writes /tmp/x for the next run to (not) see.
const runsProgram = `build() {
	cat > /tmp/prog <<'EOF'
echo "stdin=$(cat) args=$*"
[ -e /tmp/x ] && echo "saw an earlier run's /tmp/x"
echo mark > /tmp/x
if echo overwritten > /tmp/prog 2>/dev/null; then echo "changed the program"; else echo "program read-only"; fi
if rm -f /tmp/data 2>/dev/null && [ ! -e /tmp/data ]; then echo "removed the data"; fi
echo "data=$(cat /tmp/data) uid=$(id -u)"
EOF
	echo compiled > /tmp/data
}`

// checkRuns asserts that res holds the three runs of runsProgram on
// inputs a, b, c with args 1, 2 3, none: in order, each in a fresh
// sandbox of its own identity that saw the compiled program read-only.
func checkRuns(t *testing.T, res *runner.BatchResult) {
	t.Helper()
	require.NotNil(t, res.Compile, "a compiled runtime reports its compile stage once")
	assert.Equal(t, runner.OutcomeExited, res.Compile.Outcome)
	assert.False(t, res.CompileFailed)
	require.Len(t, res.Runs, 3)
	uids := map[string]bool{}
	ids := map[string]bool{}
	for i, want := range []string{"stdin=a args=1", "stdin=b args=2 3", "stdin=c args="} {
		run := res.Runs[i]
		require.Equal(t, runner.OutcomeExited, run.Outcome, describe(run))
		require.Equal(t, 0, run.ExitCode, describe(run))
		lines := strings.Split(strings.TrimSpace(string(run.Stdout.Data)), "\n")
		require.Len(t, lines, 3, "run %d: %s", i, describe(run))
		assert.Equal(t, want, lines[0], "run %d got its own input, in order", i)
		assert.Equal(t, "program read-only", lines[1], "run %d: %s", i, describe(run))
		uid, ok := strings.CutPrefix(lines[2], "data=compiled uid=")
		require.True(t, ok, "run %d sees what the compile stage left: %s", i, describe(run))
		assertTaskUID(t, uid)
		uids[uid] = true
		ids[run.ID] = true
		assert.Nil(t, run.Compile, "the compile stage is the batch's, not a run's")
	}
	assert.Len(t, uids, 3, "every run has an identity of its own")
	assert.Len(t, ids, 3, "every run has a sandbox of its own")
}

func runsBatch() runner.Batch {
	task := shTask(runsProgram)
	task.Runtime = "shc"
	return runner.Batch{Task: task, Runs: []runner.Run{
		{Stdin: strings.NewReader("a"), Args: []string{"1"}},
		{Stdin: strings.NewReader("b"), Args: []string{"2", "3"}},
		{Stdin: strings.NewReader("c")},
	}}
}

func TestRunsCompiledOnceFreshSandboxEach(t *testing.T) {
	r := RequiresRoot(t).NewRunner(t, runner.WithCatalog(compiledCatalog()))
	res, err := r.RunBatch(t.Context(), runsBatch())
	require.NoError(t, err)
	checkRuns(t, res)
	for i, run := range res.Runs {
		assert.Equal(t, res.ID+"-"+strconv.Itoa(i), run.ID)
	}
}

func TestRunsInParallel(t *testing.T) {
	r := RequiresRoot(t).NewRunner(t, runner.WithCatalog(compiledCatalog()))
	b := runsBatch()
	b.Parallel = 3
	b.Extra = func() (func(), bool) { return func() {}, true }
	res, err := r.RunBatch(t.Context(), b)
	require.NoError(t, err)
	checkRuns(t, res)
}

func TestRunsPerRunLimits(t *testing.T) {
	r := RequiresRoot(t).NewRunner(t, runner.WithCatalog(compiledCatalog()))
	task := shTask(`build() { echo 'sleep "$1"; echo slept' > /tmp/prog; }`)
	task.Runtime = "shc"
	task.Limits.Timeout = 5 * taskTimeout
	res, err := r.RunBatch(t.Context(), runner.Batch{Task: task, Runs: []runner.Run{
		{Args: []string{"0"}},
		{Args: []string{"10"}, Limits: runner.Limits{Timeout: 300 * time.Millisecond}},
	}})
	require.NoError(t, err)
	require.Len(t, res.Runs, 2)
	assert.Equal(t, runner.OutcomeExited, res.Runs[0].Outcome, describe(res.Runs[0]))
	assert.Equal(t, "slept\n", string(res.Runs[0].Stdout.Data))
	assert.Equal(t, runner.OutcomeTimedOut, res.Runs[1].Outcome, "the run's own timeout: %s", describe(res.Runs[1]))
	assert.Equal(t, runner.ExitTimedOut, res.Runs[1].ExitCode)
}

func TestRunsCompileErrorRunsNothing(t *testing.T) {
	r := RequiresRoot(t).NewRunner(t, runner.WithCatalog(compiledCatalog()))
	task := shTask(`build() { echo "syntax error" >&2; return 3; }`)
	task.Runtime = "shc"
	res, err := r.RunBatch(t.Context(), runner.Batch{Task: task, Runs: []runner.Run{{}, {Stdin: strings.NewReader("x")}}})
	require.NoError(t, err)
	assert.True(t, res.CompileFailed)
	require.NotNil(t, res.Compile)
	assert.Equal(t, 3, res.Compile.ExitCode)
	assert.Contains(t, string(res.Compile.Stderr.Data), "syntax error")
	require.Len(t, res.Runs, 2)
	for _, run := range res.Runs {
		assert.Equal(t, runner.OutcomeNotRun, run.Outcome)
		assert.Equal(t, 3, run.ExitCode, "the compile stage's status")
		assert.Zero(t, run.Duration)
		assert.Empty(t, run.Stdout.Data)
	}
}

func TestRunsInterpretedEachInItsOwnSandbox(t *testing.T) {
	r := RequiresRoot(t).NewRunner(t)
	task := shTask(`echo "in=$(cat) args=$*"; [ -e /tmp/x ] && echo seen; echo > /tmp/x; id -u`)
	res, err := r.RunBatch(t.Context(), runner.Batch{Task: task, Parallel: 2, Extra: func() (func(), bool) { return func() {}, true },
		Runs: []runner.Run{{Stdin: strings.NewReader("1")}, {Stdin: strings.NewReader("2"), Args: []string{"z"}}, {Stdin: strings.NewReader("3")}}})
	require.NoError(t, err)
	assert.Nil(t, res.Compile)
	require.Len(t, res.Runs, 3)
	for i, want := range []string{"in=1 args=", "in=2 args=z", "in=3 args="} {
		lines := strings.Split(strings.TrimSpace(string(res.Runs[i].Stdout.Data)), "\n")
		require.Len(t, lines, 2, describe(res.Runs[i]))
		assert.Equal(t, want, lines[0])
		assertTaskUID(t, lines[1])
	}
}

// runsServeConfig is serveConfig with shcc, a compiled runtime of sh
// whose compile stage is runsProgram's build, and a bound of 3 runs.
const runsServeConfig = `
max_runs = 3

[runtimes.sh]
image = "` + testImage + `"

[runtimes.shcc]
image = "` + testImage + `"
file = "main.sh"
compile = ["sh", "-c", ". \"$1\" && build", "compile", "{file}"]
run = ["sh", "/tmp/prog"]
`

func runsBody(t *testing.T, code string, runs string) string {
	t.Helper()
	b, err := json.Marshal(code)
	require.NoError(t, err)
	return `{"runtime": "shcc", "files": [{"content": ` + string(b) + `}], "limits": {"timeout": "10s"}, "runs": ` + runs + `}`
}

func TestRunsThroughTheService(t *testing.T) {
	p := startServe(t, serveSetup{config: runsServeConfig, args: []string{"--max-concurrent", "2"}})
	a := p.post(runsBody(t, runsProgram, `[{"stdin": "a", "args": ["1"]}, {"stdin": "Yg==", "stdin_encoding": "base64", "args": ["2", "3"]}, {"stdin": "c", "args": []}]`))
	require.Equal(t, http.StatusOK, a.status, "%s", a)
	var res runner.BatchResult
	require.NoError(t, json.Unmarshal([]byte(a.body), &res))
	checkRuns(t, &res)

	// A compile error: every run not run.
	a = p.post(runsBody(t, `build() { echo nope >&2; return 2; }`, `[{}, {}]`))
	require.Equal(t, http.StatusOK, a.status, "%s", a)
	res = runner.BatchResult{}
	require.NoError(t, json.Unmarshal([]byte(a.body), &res))
	assert.True(t, res.CompileFailed)
	require.Len(t, res.Runs, 2)
	for _, run := range res.Runs {
		assert.Equal(t, runner.OutcomeNotRun, run.Outcome)
		assert.Equal(t, 2, run.ExitCode)
	}

	// Over max_runs, a bad run limit: 400 naming the field, nothing run.
	a = p.post(runsBody(t, runsProgram, `[{}, {}, {}, {}]`))
	require.Equal(t, http.StatusBadRequest, a.status, "%s", a)
	assert.Contains(t, a.errorDoc(t).Error, "runs: 4 given: give 1 to 3")
	a = p.post(runsBody(t, runsProgram, `[{}, {"limits": {"memory": "-5"}}]`))
	require.Equal(t, http.StatusBadRequest, a.status, "%s", a)
	assert.Contains(t, a.errorDoc(t).Error, "runs[1].limits.memory")

	mfs := p.scrape()
	v, _ := metric(t, mfs, service.MetricRuns, "outcome", "exited")
	assert.Equal(t, 3.0, v)
	v, _ = metric(t, mfs, service.MetricRuns, "outcome", "not_run")
	assert.Equal(t, 2.0, v)
	v, _ = metric(t, mfs, service.MetricRejected, "reason", service.RejectInvalid)
	assert.Equal(t, 2.0, v)
}

func TestRunsClientHangsUpMidBatch(t *testing.T) {
	p := startServe(t, serveSetup{config: runsServeConfig, args: []string{"--max-concurrent", "2"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Once two runs are going, the client goes away.
		p.waitMetric(service.MetricInFlight, "", "", 2)
		time.Sleep(300 * time.Millisecond)
		cancel()
	}()
	_, err := p.do(ctx, http.MethodPost, "/v1/exec", runsBody(t, `build() { echo 'echo started; sleep 20' > /tmp/prog; }`, `[{}, {}, {}]`))
	require.ErrorIs(t, err, context.Canceled)
	// Every run is killed or never starts; the leak check at the end
	// finds nothing of the compile stage or the runs.
	p.waitMetric(service.MetricRuns, "outcome", "cancelled", 3)
	p.waitMetric(service.MetricInFlight, "", "", 0)
}

// runsCLIConfig is the CLI's config with shcc.
func runsCLIConfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(path, []byte(runsServeConfig), 0o644))
	return path
}

func TestRunsCLIInputs(t *testing.T) {
	c := newCLI(t)
	cfg := runsCLIConfig(t)
	code := writeFile(t, "main.sh", runsProgram, 0o644)
	dir := t.TempDir()
	var inputs []string
	for _, in := range []string{"a", "b", "c"} {
		path := filepath.Join(dir, in+".in")
		require.NoError(t, os.WriteFile(path, []byte(in), 0o644))
		inputs = append(inputs, "--input", path)
	}
	args := append([]string{"--config", cfg, "--runtime", "shcc", "--image", testImage, "--via", "direct", code}, inputs...)

	r := c.exec(nil, append(args, "--json", "--parallel", "2", "--", "x")...)
	require.Equal(t, 0, r.code, r)
	var res runner.BatchResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r)
	require.Len(t, res.Runs, 3)
	for i, in := range []string{"a", "b", "c"} {
		assert.True(t, strings.HasPrefix(string(res.Runs[i].Stdout.Data), "stdin="+in+" args=x\nprogram read-only\n"), describe(res.Runs[i]))
	}

	// Without --json: a header per input, then its output.
	r = c.exec(nil, args...)
	require.Equal(t, 0, r.code, r)
	for _, in := range []string{"a", "b", "c"} {
		assert.Contains(t, r.stdout, fmt.Sprintf("==> %s <==\nstdin=%s args=\nprogram read-only\n", filepath.Join(dir, in+".in"), in), r)
	}

	// A compile error: the compiler's status, nothing run.
	bad := writeFile(t, "bad.sh", `build() { echo nope >&2; return 4; }`, 0o644)
	r = c.exec(nil, append([]string{"--config", cfg, "--runtime", "shcc", "--image", testImage, "--via", "direct", bad}, inputs...)...)
	assert.Equal(t, 4, r.code, r)
	assert.Contains(t, r.stderr, "none of the 3 inputs was run", r)

	// Over max_runs: refused before anything starts.
	r = c.exec(nil, append(args, "--input", inputs[1])...)
	assert.Equal(t, 2, r.code, r)
	assert.Contains(t, r.stderr, "runs: 4 given: give 1 to 3", r)
}

func TestRunsCLIThroughTheService(t *testing.T) {
	p := startServe(t, serveSetup{config: runsServeConfig})
	c := newCLI(t)
	code := writeFile(t, "main.sh", runsProgram, 0o644)
	dir := t.TempDir()
	args := []string{"exec", "--config", p.config, "--via", "service", "--socket", p.socket, "--runtime", "shcc", "--json", code}
	for _, in := range []string{"a", "b"} {
		path := filepath.Join(dir, in+".in")
		require.NoError(t, os.WriteFile(path, []byte(in), 0o644))
		args = append(args, "--input", path)
	}
	r := c.run(nil, args...)
	require.Equal(t, 0, r.code, r)
	var res runner.BatchResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r)
	require.Len(t, res.Runs, 2)
	assert.True(t, strings.HasPrefix(string(res.Runs[0].Stdout.Data), "stdin=a args=\nprogram read-only\n"), describe(res.Runs[0]))
	assert.True(t, strings.HasPrefix(string(res.Runs[1].Stdout.Data), "stdin=b args=\nprogram read-only\n"), describe(res.Runs[1]))
	v, _ := metric(t, p.scrape(), service.MetricRuns, "outcome", "exited")
	assert.Equal(t, 2.0, v, "the runs went through the service")
}

// TestRunsCProgram runs a real C program, compiled once by gcc in the
// image `images build` makes, on three inputs.
func TestRunsCProgram(t *testing.T) {
	e := debianEnv(t)
	code := writeFile(t, "main.c", `#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
	int a = 0, b = 0;
	if (scanf("%d %d", &a, &b) != 2) return 5;
	printf("%d", a + b);
	for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
	printf("\n");
	if (access("/tmp/x", F_OK) == 0) printf("saw an earlier run's /tmp/x\n");
	FILE *x = fopen("/tmp/x", "w");
	if (!x) return 6;
	fclose(x);
	FILE *self = fopen("/tmp/main", "w");
	printf("%s\n", self ? "changed the program" : "program read-only");
	return 0;
}
`, 0o644)
	dir := t.TempDir()
	var args []string
	for i, in := range []string{"1 2\n", "40 2\n", "-3 3\n"} {
		path := filepath.Join(dir, strconv.Itoa(i)+".in")
		require.NoError(t, os.WriteFile(path, []byte(in), 0o644))
		args = append(args, "--input", path)
	}
	r := e.execIn(nil, append([]string{"--runtime", "c", "--json", code}, append(args, "--", "q")...)...)
	require.Equal(t, 0, r.code, r)
	var res runner.BatchResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r)
	require.NotNil(t, res.Compile, r)
	assert.Equal(t, runner.OutcomeExited, res.Compile.Outcome)
	require.Len(t, res.Runs, 3)
	for i, want := range []string{"3 q\nprogram read-only\n", "42 q\nprogram read-only\n", "0 q\nprogram read-only\n"} {
		assert.Equal(t, want, string(res.Runs[i].Stdout.Data), describe(res.Runs[i]))
	}

	// A compile error: every input not run.
	bad := writeFile(t, "bad.c", "int main(void) { return undefined_name; }\n", 0o644)
	r = e.execIn(nil, append([]string{"--runtime", "c", "--json", bad}, args...)...)
	require.NotEqual(t, 0, r.code, r)
	res = runner.BatchResult{}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res), r)
	assert.True(t, res.CompileFailed)
	assert.Contains(t, string(res.Compile.Stderr.Data), "undefined_name")
	for _, run := range res.Runs {
		assert.Equal(t, runner.OutcomeNotRun, run.Outcome)
	}
}
