package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

const full = `
address = "/run/containerd/containerd.sock"
namespace = "sr"
snapshotter = "native"
state_dir = "/var/lib/sr"

[registry]
config_path = "/etc/containerd/certs.d"
docker_config = "/root/.docker/config.json"

[limits]
timeout = "10s"
memory = "256m"
cpus = 0.5
pids = 64
output_limit = "64k"
tmp_size = "32m"
cpu_time = "2s"
output_files = 4
output_files_size = "64k"

[runtimes.python]
image = "example.invalid/python:3"
[runtimes.python.limits]
memory = "1g"

[runtimes.ruby]
image = "example.invalid/ruby:3"
file = "main.rb"
run = ["ruby", "{file}"]
env = ["RUBYOPT=-W0"]

[service]
socket = "/run/sr/sr.sock"
max_concurrent = 4
queue = 8
max_body = "8m"
grace = "20s"
`

func TestDecodeFull(t *testing.T) {
	c, err := Decode(strings.NewReader(full))
	require.NoError(t, err)
	assert.Equal(t, "sr", c.Namespace)
	assert.Equal(t, "/etc/containerd/certs.d", c.Registry.ConfigPath)
	assert.Equal(t, 4, c.Service.MaxConcurrent)

	l, err := c.TaskLimits("python")
	require.NoError(t, err)
	assert.Equal(t, runner.Limits{Timeout: 10 * time.Second, Memory: 1 << 30, CPUs: 0.5, Pids: 64, OutputLimit: 64 << 10, TmpSize: 32 << 20,
		CPUTime: 2 * time.Second, OutputFiles: 4, OutputFilesSize: 64 << 10}, l,
		"[runtimes.python.limits] overrides [limits] field by field")
	l, err = c.TaskLimits("sh")
	require.NoError(t, err)
	assert.Equal(t, int64(256<<20), l.Memory)
}

func TestCatalogOverridesAndAdds(t *testing.T) {
	c, err := Decode(strings.NewReader(full))
	require.NoError(t, err)
	cat, err := c.Catalog()
	require.NoError(t, err)
	py := cat["python"]
	assert.Equal(t, "example.invalid/python:3", py.Image)
	assert.NotEmpty(t, py.Run, "fields not given keep the built-in values")
	assert.Equal(t, "main.py", py.FileName)
	rb := cat["ruby"]
	assert.Equal(t, []string{"ruby", "{file}"}, rb.Run)
	assert.Equal(t, "ruby", rb.Name)
}

func TestNewRuntimeNeedsImageFileAndRun(t *testing.T) {
	c, err := Decode(strings.NewReader("[runtimes.lua]\nimage = \"example.invalid/lua:5\"\n"))
	require.NoError(t, err)
	_, err = c.Catalog()
	require.Error(t, err)
	assert.True(t, errdefs.IsInvalidArgument(err))
	assert.Contains(t, err.Error(), "[runtimes.lua]")
	assert.Contains(t, err.Error(), "file, run")
}

func TestUnknownKeysAreRejectedWithTheirLine(t *testing.T) {
	_, err := Decode(strings.NewReader("namespace = \"x\"\n\n[limits]\nmemroy = \"1g\"\n"))
	require.Error(t, err)
	assert.True(t, errdefs.IsInvalidArgument(err))
	assert.Contains(t, err.Error(), `line 4: unknown key "limits.memroy"`)
}

func TestBadValues(t *testing.T) {
	for name, doc := range map[string]string{
		"type":          "[limits]\ntimeout = true\n",
		"size":          "[limits]\nmemory = \"12qb\"\n",
		"duration":      "[limits]\ntimeout = \"soon\"\n",
		"negative cpus": "[limits]\ncpus = -1.0\n",
		"cpu time":      "[limits]\ncpu_time = \"lots\"\n",
		"zero cpu time": "[limits]\ncpu_time = \"0s\"\n",
		"output files":  "[limits]\noutput_files = -1\n",
		"files size":    "[limits]\noutput_files_size = \"big\"\n",
		"runtime limit": "[runtimes.sh.limits]\ntmp_size = \"lots\"\n",
		"env":           "[runtimes.sh]\nenv = [\"NOEQUALS\"]\n",
		"grace":         "[service]\ngrace = \"x\"\n",
		"max body":      "[service]\nmax_body = \"x\"\n",
		"queue":         "[service]\nqueue = -1\n",
		"syntax":        "[limits\n",
		"bad image":     "[runtimes.sh]\nimage = \"UPPER/Case:\"\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Decode(strings.NewReader(doc))
			if err == nil {
				_, err = c.Catalog()
			}
			require.Error(t, err)
			assert.True(t, errdefs.IsInvalidArgument(err), "%v", err)
		})
	}
}

func TestLoadMissingDefaultIsEmpty(t *testing.T) {
	if _, err := os.Stat(DefaultPath); err == nil {
		t.Skip(DefaultPath + " exists on this host")
	}
	c, err := Load("")
	require.NoError(t, err)
	assert.Equal(t, &File{}, c)
}

func TestLoadMissingGivenFileIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.toml")
	_, err := Load(path)
	require.Error(t, err)
	assert.True(t, errdefs.IsInvalidArgument(err), "a named file that is not there is bad input: %v", err)
	assert.Contains(t, err.Error(), path)
}

func TestOversizedConfigIsRejected(t *testing.T) {
	_, err := Decode(strings.NewReader("# " + strings.Repeat("x", maxSize)))
	require.Error(t, err)
	assert.True(t, errdefs.IsInvalidArgument(err))
}

// FuzzDecode: any input either decodes into a config whose catalog and
// limits are usable, or is an invalid-argument error; never a panic.
func FuzzDecode(f *testing.F) {
	f.Add(full)
	f.Add("[limits]\ntimeout = \"1s\"\n")
	f.Add("[runtimes.x]\nimage = \"a/b\"\nfile = \"f\"\nrun = [\"x\"]\n")
	f.Add("a = [")
	f.Fuzz(func(t *testing.T, doc string) {
		c, err := Decode(strings.NewReader(doc))
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error is not invalid-argument: %v", err)
			}
			return
		}
		if _, err := c.Catalog(); err != nil && !errdefs.IsInvalidArgument(err) {
			t.Fatalf("catalog error is not invalid-argument: %v", err)
		}
		for name := range c.Runtimes {
			if _, err := c.TaskLimits(name); err != nil {
				t.Fatalf("validated config has bad limits for %s: %v", name, err)
			}
		}
	})
}

func TestTaskLimitsFollowAliases(t *testing.T) {
	c, err := Decode(strings.NewReader("[runtimes.dotnet.limits]\nmemory = \"1g\"\n"))
	require.NoError(t, err)
	l, err := c.TaskLimits("csharp")
	require.NoError(t, err)
	assert.Equal(t, int64(1<<30), l.Memory)
}

func TestOCIRuntimeKeys(t *testing.T) {
	c, err := Decode(strings.NewReader(`
oci_runtime = "runc"
[runtimes.python]
oci_runtime = "runsc"
[runtimes.node]
oci_runtime = "crun"
oci_runtimes = ["crun", "runsc"]
[runtimes.sh]
run = ["sh", "{file}"]
`))
	require.NoError(t, err)
	assert.Equal(t, "runc", c.OCIRuntime)
	assert.Equal(t, map[string]runner.OCIRuntimeRule{
		"python": {Default: "runsc"},
		"node":   {Default: "crun", Allowed: []string{"crun", "runsc"}},
	}, c.OCIRuntimeRules(), "a runtime that says nothing has no rule")
}

func TestBadOCIRuntimeKeys(t *testing.T) {
	for doc, want := range map[string]string{
		`oci_runtime = "kata"`:                                                  `oci_runtime: unknown OCI runtime "kata": give one of crun, runc, runsc`,
		"[runtimes.python]\noci_runtime = \"gvisor\"":                           `[runtimes.python] oci_runtime: unknown OCI runtime "gvisor"`,
		"[runtimes.python]\noci_runtimes = [\"runc\", \"kvm\"]":                 `[runtimes.python] oci_runtimes: unknown OCI runtime "kvm"`,
		"[runtimes.python]\noci_runtime = \"runc\"\noci_runtimes = [\"runsc\"]": `[runtimes.python] oci_runtime "runc" is not among its oci_runtimes`,
	} {
		_, err := Decode(strings.NewReader(doc))
		assert.ErrorIs(t, err, errdefs.ErrInvalidArgument, doc)
		assert.ErrorContains(t, err, want, doc)
	}
}

func TestMaxRuns(t *testing.T) {
	c, err := Decode(strings.NewReader("max_runs = 200\n"))
	require.NoError(t, err)
	assert.Equal(t, 200, c.MaxRuns)
	_, err = Decode(strings.NewReader("max_runs = -1\n"))
	require.Error(t, err)
	assert.True(t, errdefs.IsInvalidArgument(err))
	assert.Contains(t, err.Error(), "max_runs -1 cannot be negative")
}

// TestZeroLimitIsRefused: 0 is no longer a silent "default"; the error
// names the key as the file spells it and says to leave it out.
func TestZeroLimitIsRefused(t *testing.T) {
	for doc, want := range map[string]string{
		"[limits]\ncpus = 0\n":                       `[limits] cpus: "0": give a number of CPUs above zero, such as 0.5, or leave it out for the default`,
		"[limits]\npids = 0\n":                       `[limits] pids: "0": give a whole number above zero`,
		"[limits]\noutput_files = 0\n":               `[limits] output_files: "0": give a whole number above zero`,
		"[limits]\ntimeout = \"0\"\n":                `[limits] timeout: "0": give a duration above zero, or leave it out for the default`,
		"[runtimes.python.limits]\nmemory = \"0\"\n": `[runtimes.python.limits] memory: "0": give a size above zero, or leave it out for the default`,
	} {
		_, err := Decode(strings.NewReader(doc))
		require.Error(t, err, doc)
		assert.True(t, errdefs.IsInvalidArgument(err), "%v", err)
		assert.Contains(t, err.Error(), want)
	}
}

// TestLimitsAsStringsOrNumbers: a limit is a string as on the command
// line or a TOML number (bytes, seconds); other TOML values are refused
// by name.
func TestLimitsAsStringsOrNumbers(t *testing.T) {
	c, err := Decode(strings.NewReader("[limits]\nmemory = 1_048_576\ntimeout = 1.5\ncpus = \"0.5\"\npids = \"64\"\noutput_files_size = '2k'\n"))
	require.NoError(t, err)
	l, err := c.TaskLimits("sh")
	require.NoError(t, err)
	assert.Equal(t, runner.Limits{Memory: 1 << 20, Timeout: 1500 * time.Millisecond, CPUs: 0.5, Pids: 64, OutputFilesSize: 2 << 10}, l)

	for doc, want := range map[string]string{
		"[limits]\ntimeout = true\n":        "[limits] timeout: expected a string or a number",
		"[limits]\nmemory = [1]\n":          "[limits] memory: expected a string or a number",
		"[limits]\ncpu_time = 2024-01-01\n": "[limits] cpu_time: expected a string or a number",
		"[limits]\nmemory = 1.5\n":          "[limits] memory: 1.5: give a whole number of bytes",
	} {
		_, err := Decode(strings.NewReader(doc))
		require.Error(t, err, doc)
		assert.Contains(t, err.Error(), want)
	}
}
