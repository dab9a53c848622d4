//go:build linux

package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// runtimeStateFile is the file each OCI runtime keeps for a live
// container under the root the runc shim gives it
// (/run/containerd/runc/NAMESPACE/ID): how a test tells from outside
// which binary really made the container.
var runtimeStateFile = map[string]string{"runc": "state.json", "crun": "status"}

// requireUsable fails t unless this host can run tasks under name: CI
// prepares the host as the README says, so crun and runc both work.
func requireUsable(t *testing.T, name string) {
	t.Helper()
	o, err := runner.NewOCIRuntimes("", nil)
	require.NoError(t, err)
	rt := o.Find(name)
	require.True(t, rt.Usable, "%s is not usable here: %s; fix: %s", name, rt.Reason, rt.Fix)
}

func TestOCIRuntimePerTask(t *testing.T) {
	h := RequiresRoot(t)
	r := h.NewRunner(t)
	for _, name := range []string{"crun", "runc"} {
		t.Run(name, func(t *testing.T) {
			requireUsable(t, name)
			task := shTask("sleep 1; id -u")
			task.ID = "oci-" + name
			task.OCIRuntime = name
			state := filepath.Join("/run/containerd/runc", h.Namespace, task.ID)
			seen := make(chan []string, 1)
			go func() {
				var files []string
				// Until the runtime has written its state, which it does
				// once the container is created.
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
					entries, _ := os.ReadDir(state)
					files = files[:0]
					done := false
					for _, e := range entries {
						files = append(files, e.Name())
						done = done || e.Name() == "state.json" || e.Name() == "status"
					}
					if done {
						break
					}
				}
				seen <- files
			}()
			res, err := r.Run(t.Context(), task)
			require.NoError(t, err)
			requireExit(t, res, 0)
			assertTaskUID(t, strings.TrimSpace(string(res.Stdout.Data)))
			assert.Equal(t, name, res.OCIRuntime)
			files := <-seen
			assert.Contains(t, files, runtimeStateFile[name], "the container's state under %s is %s's", state, name)
			for other, f := range runtimeStateFile {
				if other != name {
					assert.NotContains(t, files, f, "%s made the container, not %s", other, name)
				}
			}
		})
	}
}

func TestDefaultOCIRuntimeIsTheFastestUsable(t *testing.T) {
	RequiresRoot(t)
	requireUsable(t, "crun")
	o, err := runner.NewOCIRuntimes("", nil)
	require.NoError(t, err)
	def, err := o.Default()
	require.NoError(t, err)
	assert.Equal(t, "crun", def.Name, "crun is usable here and costs less than half of runc's CPU per task")
}

// fakeCrunPATH returns a PATH whose crun is a script that says it was
// built without seccomp, ahead of the real one: a crun check must find
// unusable.
func fakeCrunPATH(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	script := "#!/bin/sh\necho 'crun version 0.1-fake'\necho 'spec: 1.0.0'\necho '+CAP'\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "crun"), []byte(script), 0o755))
	return "PATH=" + dir + ":" + os.Getenv("PATH")
}

// runscWithoutShimPATH returns a PATH with a runsc (a script that says
// its version) and no gVisor shim anywhere on it.
func runscWithoutShimPATH(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	script := "#!/bin/sh\necho 'runsc version 0.0~20221219.0'\necho 'spec: 1.0.2-dev'\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "runsc"), []byte(script), 0o755))
	var keep []string
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if _, err := os.Stat(filepath.Join(d, "containerd-shim-runsc-v1")); err != nil {
			keep = append(keep, d)
		}
	}
	return "PATH=" + dir + string(filepath.ListSeparator) + strings.Join(keep, string(filepath.ListSeparator))
}

// noOCIEnv clears the suite's $SANDBOX_RUNNER_OCI_RUNTIME for the CLI,
// which then picks its default itself.
const noOCIEnv = ociRuntimeEnv + "="

// runEnv runs the CLI with args and env added to its environment.
func (c *cli) runEnv(env []string, args ...string) cliRun {
	c.t.Helper()
	return c.runCmd(func(cmdEnv []string) []string { return append(cmdEnv, env...) }, args...)
}

func (c *cli) runCmd(editEnv func([]string) []string, args ...string) cliRun {
	c.t.Helper()
	cmd := c.command(nil, args...)
	cmd.Env = editEnv(cmd.Env)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	_ = cmd.Run()
	r := cliRun{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	c.t.Logf("sandbox-runner %s: %s", strings.Join(args, " "), r)
	return r
}

func TestCLIExecOCIRuntime(t *testing.T) {
	c := newCLI(t)
	for _, name := range []string{"crun", "runc"} {
		requireUsable(t, name)
		r := c.exec(nil, "--oci-runtime", name, "--json", "-c", "echo hi")
		require.Equal(t, 0, r.code, "%s", r)
		var res runner.Result
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
		assert.Equal(t, name, res.OCIRuntime)
		assert.Equal(t, "hi\n", string(res.Stdout.Data))
	}
}

func TestCLIRefusesBadOCIRuntimes(t *testing.T) {
	c := newCLI(t)
	config := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(config, []byte("[runtimes.sh]\nimage = \""+testImage+"\"\noci_runtimes = [\"runc\"]\n"), 0o644))
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"unknown", nil, []string{"--oci-runtime", "kata"}, []string{`--oci-runtime "kata": give one of crun, runc, runsc`}},
		{"unusable", []string{fakeCrunPATH(t), noOCIEnv}, []string{"--oci-runtime", "crun"},
			[]string{"OCI runtime crun cannot run tasks on this host: built without seccomp", "usable here: runc"}},
		{"unusable default", []string{fakeCrunPATH(t), "SANDBOX_RUNNER_OCI_RUNTIME=crun"}, nil,
			[]string{"default OCI runtime crun cannot run tasks on this host"}},
		{"forbidden by the config", nil, []string{"--config", config, "--oci-runtime", "crun"},
			[]string{"OCI runtime crun is not allowed for runtime sh by the configuration: give one of runc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.runEnv(tc.env, c.execArgs(append(tc.args, "-c", "touch /tmp/ran; echo ran")...)...)
			assert.Equal(t, 2, r.code, "%s", r)
			assert.Empty(t, r.stdout, "the task never ran")
			for _, w := range tc.want {
				assert.Contains(t, r.stderr, w)
			}
			entries, err := os.ReadDir(filepath.Join(c.stateDir, "tasks"))
			if err == nil {
				assert.Empty(t, entries, "nothing was written")
			}
		})
	}
	// The config's rule is the default too: sh tasks run under runc.
	r := c.exec(nil, "--config", config, "--json", "-c", "true")
	require.Equal(t, 0, r.code, "%s", r)
	var res runner.Result
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
	assert.Equal(t, "runc", res.OCIRuntime)
}

func TestCheckReportsEachOCIRuntime(t *testing.T) {
	c := newCLI(t)
	check := func(env ...string) (cliRun, map[string]runner.Finding) {
		r := c.runEnv(append([]string{noOCIEnv}, env...), "check", "--json", "--address", c.h.Address, "--state-dir", c.stateDir)
		var fs []runner.Finding
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &fs), "%s", r)
		byName := map[string]runner.Finding{}
		for _, f := range fs {
			byName[f.Name] = f
		}
		return r, byName
	}

	r, fs := check()
	assert.Equal(t, 0, r.code, "%s", r)
	for _, name := range []string{"crun", "runc", "runsc"} {
		require.Contains(t, fs, name)
	}
	assert.True(t, fs["crun"].OK, "%+v", fs["crun"])
	assert.Contains(t, fs["crun"].Detail, "crun version")
	assert.Contains(t, fs["crun"].Detail, "ociVersion 1.0.0", "crun 1.8.1 gets the spec version it knows")
	assert.Contains(t, fs["crun"].Detail, "the default")
	assert.False(t, fs["crun"].Optional, "the default must work")
	assert.True(t, fs["runc"].OK, "%+v", fs["runc"])
	assert.True(t, fs["runc"].Optional)
	// gVisor is never the default, so its absence fails nothing.
	assert.True(t, fs["runsc"].Optional)
	if fs["runsc"].OK {
		// `make test` builds runsc and its shim and puts them on PATH.
		assert.Contains(t, fs["runsc"].Detail, "runsc version")
		assert.Contains(t, fs["runsc"].Detail, "through ")
		assert.Contains(t, fs["runsc"].Detail, "containerd-shim-runsc-v1")
	} else {
		assert.Contains(t, fs["runsc"].Fix, "make gvisor")
	}

	// A runsc without gVisor's shim (Debian's package alone): not usable,
	// why, and the fix; check still passes.
	r, fs = check(runscWithoutShimPATH(t))
	assert.Equal(t, 0, r.code, "%s", r)
	assert.False(t, fs["runsc"].OK)
	assert.True(t, fs["runsc"].Optional)
	assert.Contains(t, fs["runsc"].Detail, "not usable: gVisor's containerd shim containerd-shim-runsc-v1 is not on PATH")
	assert.Contains(t, fs["runsc"].Fix, "make gvisor")

	// A crun that cannot run tasks: a line that says why and what to do;
	// runc becomes the default and check still passes.
	r, fs = check(fakeCrunPATH(t))
	assert.Equal(t, 0, r.code, "%s", r)
	assert.False(t, fs["crun"].OK)
	assert.True(t, fs["crun"].Optional)
	assert.Contains(t, fs["crun"].Detail, "not usable: built without seccomp")
	assert.Contains(t, fs["crun"].Fix, "libseccomp")
	assert.Contains(t, fs["runc"].Detail, "the default")

	// ...unless the configuration asks for it.
	r, fs = check(fakeCrunPATH(t), "SANDBOX_RUNNER_OCI_RUNTIME=crun")
	assert.Equal(t, 1, r.code, "%s", r)
	require.Contains(t, fs, "config")
	assert.False(t, fs["config"].OK)
	assert.Contains(t, fs["config"].Detail, "default OCI runtime crun cannot run tasks on this host")
}

func TestServiceOCIRuntime(t *testing.T) {
	requireUsable(t, "runc")
	p := startServe(t, serveSetup{})
	a := p.post(execBody("echo hi", `"oci_runtime": "runc"`))
	res, _ := a.result(t)
	assert.Equal(t, "runc", res.OCIRuntime, "%s", a)
	assert.Equal(t, "hi\n", string(res.Stdout.Data))

	a = p.post(execBody("echo hi", `"oci_runtime": "kata"`))
	require.Equal(t, 400, a.status, "%s", a)
	e := a.errorDoc(t)
	assert.Equal(t, service.KindInvalidInput, e.Kind)
	assert.Contains(t, e.Error, `oci_runtime: unknown OCI runtime "kata"`)
	assert.Empty(t, runningTasks(t, p.h))
}

// otherOCIRuntime is a usable OCI runtime other than the suite's default.
func otherOCIRuntime(t *testing.T, h *Harness) string {
	t.Helper()
	other := "runc"
	if h.OCIRuntime == "runc" {
		other = "crun"
	}
	requireUsable(t, other)
	return other
}

func TestPoolKeepsSlotsPerOCIRuntime(t *testing.T) {
	h := RequiresRoot(t)
	_, p := newPool(t, h, 1, runner.Limits{})
	other := otherOCIRuntime(t, h)

	res := pooledRun(t, p, "true", func(t *runner.Task) { t.OCIRuntime = other })
	assert.Equal(t, other, res.OCIRuntime)
	st := p.Stats()[0]
	assert.Equal(t, uint64(0), st.Hits, "the pool's sandboxes are %s's, so a task naming %s takes the cold path", h.OCIRuntime, other)
	assert.Equal(t, uint64(1), st.Misses)

	res = pooledRun(t, p, "true", func(t *runner.Task) { t.OCIRuntime = h.OCIRuntime })
	assert.Equal(t, h.OCIRuntime, res.OCIRuntime)
	assert.Equal(t, uint64(1), p.Stats()[0].Hits)
}

func TestPoolOfAnotherOCIRuntime(t *testing.T) {
	h := RequiresRoot(t)
	other := otherOCIRuntime(t, h)
	cat := images.DefaultCatalog()
	rt := cat[testRuntime]
	rt.Image = testImage
	cat[testRuntime] = rt
	r := h.NewRunner(t, runner.WithCatalog(cat))
	p, err := r.NewPool(context.Background(), runner.PoolOptions{
		Runtimes: map[string]runner.PoolRuntime{testRuntime: {Size: 1, OCIRuntime: other}},
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, p.Close(ctx))
	})
	waitFull(t, p, 1)
	res := pooledRun(t, p, "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status", func(t *runner.Task) { t.OCIRuntime = other })
	assert.Equal(t, other, res.OCIRuntime)
	assert.Equal(t, "NoNewPrivs:\t1\nSeccomp:\t2\n", string(res.Stdout.Data))
	assert.Equal(t, uint64(1), p.Stats()[0].Hits)

	_, err = r.NewPool(context.Background(), runner.PoolOptions{
		Runtimes: map[string]runner.PoolRuntime{testRuntime: {Size: 1, OCIRuntime: "kata"}},
	})
	assert.ErrorIs(t, err, runner.ErrInvalidTask)
}
