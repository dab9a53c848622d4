package runner

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
)

// testHost is a made-up host, so limit checks do not depend on the machine.
var testHost = hostFacts{cpus: 4, memory: 8 << 30}

func TestLimitsDefaults(t *testing.T) {
	got, err := withDefaults(Limits{}, testHost)
	require.NoError(t, err)
	assert.Equal(t, Limits{
		Timeout:        DefaultTimeout,
		CompileTimeout: DefaultCompileTimeout,
		Memory:         DefaultMemory,
		CompileMemory:  DefaultCompileMemory,
		CPUs:           DefaultCPUs,
		Pids:           DefaultPids,
		OutputLimit:    DefaultOutputLimit,
		TmpSize:        DefaultTmpSize,
		// No CPU-time limit: the wall clock alone.
		CPUTime:         0,
		OutputFiles:     DefaultOutputFiles,
		OutputFilesSize: DefaultOutputFilesSize,
	}, got)
}

func TestLimitsCompileMemory(t *testing.T) {
	got, err := withDefaults(Limits{Memory: 2 << 30}, testHost)
	require.NoError(t, err)
	assert.Equal(t, int64(2<<30), got.CompileMemory, "a run limit above the default is the compile stage's too")

	got, err = withDefaults(Limits{}, hostFacts{cpus: 1, memory: 768 << 20})
	require.NoError(t, err)
	assert.Equal(t, int64(768<<20), got.CompileMemory, "a small host's default is what it has")

	got, err = withDefaults(Limits{CompileMemory: 256 << 20}, testHost)
	require.NoError(t, err)
	assert.Equal(t, int64(256<<20), got.CompileMemory)

	for _, l := range []Limits{{CompileMemory: 1 << 20}, {CompileMemory: testHost.memory + 1}} {
		_, err = withDefaults(l, testHost)
		requireInvalid(t, err)
	}
}

func TestLimitsKeepsGivenValues(t *testing.T) {
	in := Limits{
		Timeout:        MaxTimeout,
		CompileTimeout: MaxTimeout,
		Memory:         testHost.memory,
		CompileMemory:  testHost.memory,
		CPUs:           float64(testHost.cpus),
		Pids:           MaxPids,
		OutputLimit:    MaxOutputLimit,
		TmpSize:        1 << 20,
		// Given values are kept, as they are.
		CPUTime:         MaxTimeout,
		OutputFiles:     MaxOutputFiles,
		OutputFilesSize: MaxOutputLimit,
	}
	got, err := withDefaults(in, testHost)
	require.NoError(t, err)
	assert.Equal(t, in, got)

	in = Limits{Memory: 4 << 20, CPUs: 0.01, Pids: 1, OutputLimit: 1}
	got, err = withDefaults(in, testHost)
	require.NoError(t, err)
	assert.Equal(t, 4<<20, int(got.Memory))
	assert.Equal(t, 0.01, got.CPUs)
	assert.Equal(t, int64(1), got.Pids)
	assert.Equal(t, int64(1), got.OutputLimit)
}

func TestLimitsRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    Limits
	}{
		{"negative timeout", Limits{Timeout: -time.Second}},
		{"timeout over max", Limits{Timeout: MaxTimeout + time.Nanosecond}},
		{"negative compile timeout", Limits{CompileTimeout: -time.Second}},
		{"compile timeout over max", Limits{CompileTimeout: MaxTimeout + time.Nanosecond}},
		{"memory under 4MiB", Limits{Memory: 4<<20 - 1}},
		{"negative memory", Limits{Memory: -1}},
		{"memory over host", Limits{Memory: testHost.memory + 1}},
		{"cpus under 0.01", Limits{CPUs: 0.001}},
		{"negative cpus", Limits{CPUs: -1}},
		{"cpus over host", Limits{CPUs: float64(testHost.cpus) + 0.5}},
		{"cpus NaN", Limits{CPUs: math.NaN()}},
		{"cpus Inf", Limits{CPUs: math.Inf(1)}},
		{"negative pids", Limits{Pids: -1}},
		{"pids over max", Limits{Pids: MaxPids + 1}},
		{"negative output limit", Limits{OutputLimit: -1}},
		{"output limit over max", Limits{OutputLimit: MaxOutputLimit + 1}},
		{"tmp under 1MiB", Limits{TmpSize: 1<<20 - 1}},
		{"negative tmp", Limits{TmpSize: -1}},
		{"negative cpu time", Limits{CPUTime: -time.Millisecond}},
		{"cpu time over max", Limits{CPUTime: MaxTimeout + time.Nanosecond}},
		{"negative output files", Limits{OutputFiles: -1}},
		{"output files over max", Limits{OutputFiles: MaxOutputFiles + 1}},
		{"negative output files size", Limits{OutputFilesSize: -1}},
		{"output files size over max", Limits{OutputFilesSize: MaxOutputLimit + 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := withDefaults(tc.l, testHost)
			requireInvalid(t, err)
		})
	}
}

func validTask() Task {
	return Task{
		ID:      "t-1",
		Runtime: "python",
		Files:   []File{{Content: []byte("print(1)")}},
	}
}

func TestValidateAcceptsValidTask(t *testing.T) {
	require.NoError(t, Validate(validTask(), images.DefaultCatalog()))
}

func TestValidateUnknownRuntime(t *testing.T) {
	task := validTask()
	task.Runtime = "cobol"
	err := Validate(task, images.DefaultCatalog())
	requireInvalid(t, err)
	assert.Contains(t, err.Error(), "cobol")
	for _, name := range []string{"bash", "node", "python", "sh"} {
		assert.Contains(t, err.Error(), name)
	}
}

func TestValidateNoRuntime(t *testing.T) {
	task := validTask()
	task.Runtime = ""
	requireInvalid(t, Validate(task, images.DefaultCatalog()))
}

func TestValidateNoFiles(t *testing.T) {
	task := validTask()
	task.Files = nil
	requireInvalid(t, Validate(task, images.DefaultCatalog()))
}

func TestValidateBadEnv(t *testing.T) {
	for _, e := range []string{"NOEQUALS", "=value", ""} {
		t.Run(e, func(t *testing.T) {
			task := validTask()
			task.Env = []string{"OK=1", e}
			requireInvalid(t, Validate(task, images.DefaultCatalog()))
		})
	}
}

func TestValidateEnvValueMayHoldEquals(t *testing.T) {
	task := validTask()
	task.Env = []string{"A=b=c", "EMPTY="}
	require.NoError(t, Validate(task, images.DefaultCatalog()))
}

func TestValidateBadID(t *testing.T) {
	for _, id := range []string{"-abc", ".abc", "a/b", "a b", "a:b", "ä", strings.Repeat("a", 65)} {
		t.Run(id, func(t *testing.T) {
			task := validTask()
			task.ID = id
			requireInvalid(t, Validate(task, images.DefaultCatalog()))
		})
	}
}

func TestValidateBadImage(t *testing.T) {
	task := validTask()
	task.Image = "Not A Reference"
	requireInvalid(t, Validate(task, images.DefaultCatalog()))
}

func TestValidateBadLimits(t *testing.T) {
	task := validTask()
	task.Limits.Pids = -1
	requireInvalid(t, Validate(task, images.DefaultCatalog()))
}

func TestPrepareNamesFirstFile(t *testing.T) {
	task := validTask()
	task.Files = append(task.Files, File{Name: "lib/util.py"})
	p, err := prepare(task, images.DefaultCatalog(), testHost)
	require.NoError(t, err)
	require.Len(t, p.files, 2)
	assert.Equal(t, "main.py", p.files[0].Name)
	assert.Equal(t, "lib/util.py", p.files[1].Name)
	assert.Empty(t, task.Files[0].Name, "prepare changed the caller's files")
}

func TestPrepareOnlyFirstFileGetsName(t *testing.T) {
	task := validTask()
	task.Files = append(task.Files, File{Content: []byte("x")})
	_, err := prepare(task, images.DefaultCatalog(), testHost)
	requireInvalid(t, err)
}

func TestPrepareArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		task Task
		want []string
	}{
		{"runtime's file name", Task{Runtime: "python", Files: []File{{}}, Args: []string{"a", "b c"}},
			[]string{"python3", "/code/main.py", "a", "b c"}},
		{"given name, cleaned", Task{Runtime: "bash", Files: []File{{Name: "./bin//run.sh"}}},
			[]string{"bash", "/code/bin/run.sh"}},
		{"node", Task{Runtime: "node", Files: []File{{}}, Args: []string{"--flag"}},
			[]string{"node", "--max-old-space-size=384", "/code/main.js", "--flag"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := prepare(tc.task, images.DefaultCatalog(), testHost)
			require.NoError(t, err)
			assert.Equal(t, tc.want, p.args)
			assert.Nil(t, p.compile, "an interpreted runtime has no compile stage")
		})
	}
}

func TestPrepareCompileArgs(t *testing.T) {
	cat := images.DefaultCatalog()
	rt, ok := cat["c"]
	if !ok || len(rt.Compile) == 0 {
		t.Skip("the catalog has no compiled runtime c")
	}
	p, err := prepare(Task{Runtime: "c", Files: []File{{}}, Args: []string{"x"}}, cat, testHost)
	require.NoError(t, err)
	assert.Contains(t, p.compile, "/code/main.c")
	assert.NotContains(t, p.compile, images.FilePlaceholder)
	require.NotEmpty(t, p.args)
	assert.Equal(t, "x", p.args[len(p.args)-1], "the task's args follow the run command")
	assert.NotContains(t, p.args, images.FilePlaceholder)

	// javac's heap follows the compile stage's limit, java's the run's.
	p, err = prepare(Task{Runtime: "java", Files: []File{{}}, Limits: Limits{Memory: 256 << 20, CompileMemory: 2 << 30}}, cat, testHost)
	require.NoError(t, err)
	assert.Contains(t, p.compile, "-J-Xmx1536m")
	assert.Contains(t, p.args, "-Xmx192m")
}

func TestPrepareResolves(t *testing.T) {
	task := validTask()
	task.ID = ""
	task.Image = "python:3.12"
	task.Env = []string{"A=1"}
	p, err := prepare(task, images.DefaultCatalog(), testHost)
	require.NoError(t, err)
	assert.Regexp(t, `^sr-[0-9a-f]{16}$`, p.id)
	assert.Equal(t, "docker.io/library/python:3.12", p.image)
	assert.Equal(t, []string{"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "A=1"}, p.env)
	assert.Equal(t, DefaultMemory, int(p.limits.Memory))
}

func TestNewIDIsValidAndFresh(t *testing.T) {
	a, b := NewID(), NewID()
	assert.Regexp(t, idPattern, a)
	assert.NotEqual(t, a, b)
}
