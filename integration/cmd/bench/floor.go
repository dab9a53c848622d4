package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	ctrdoci "github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sandbox-runner/sandbox-runner/integration/testimage"
	"github.com/sandbox-runner/sandbox-runner/oci"
	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/initcmd"
)

// runcFloor runs the cold path's sandbox with runc alone: the same
// hardened spec (the one oci.Options writes, with the default limits), the
// same busybox and the same script, but no containerd, no shim and no
// snapshot. It is the floor under every path that goes through
// containerd and runc, which is where "cold exec vs ctr" is bounded.
type runcFloor struct {
	state  string // runc's --root
	bundle string
}

// newRuncFloor writes the floor's bundle under dir. With init set (the
// host path of sandbox-runner-init), the sandbox's process is the init
// running the script, as every sandbox of the runner's is; without, the
// script is PID 1: the two rows side by side are the init's cost.
func newRuncFloor(ctx context.Context, dir, init string) (*runcFloor, error) {
	f := &runcFloor{state: filepath.Join(dir, "runc-state"), bundle: filepath.Join(dir, "bundle")}
	rootfs, code := filepath.Join(f.bundle, "rootfs"), filepath.Join(f.bundle, "code")
	for _, d := range []string{rootfs, code} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := testimage.BusyboxRootfs(rootfs, ""); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(code, "main.sh"), []byte("true\n"), 0o644); err != nil {
		return nil, err
	}
	cfg := oci.Config{
		Args:       []string{"sh", "/code/main.sh"},
		CodeSource: code,
		Resources: oci.Resources{MemoryBytes: runner.DefaultMemory, CPUs: runner.DefaultCPUs,
			Pids: runner.DefaultPids, TmpBytes: runner.DefaultTmpSize},
	}
	if init != "" {
		cmdDir := filepath.Join(dir, "cmd")
		if err := os.MkdirAll(cmdDir, 0o755); err != nil {
			return nil, err
		}
		b, err := initcmd.Encode(initcmd.Command{Args: cfg.Args, Env: []string{oci.DefaultPATH}, Dir: oci.ScratchDir, Deadline: runner.DefaultTimeout})
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(cmdDir, initcmd.File), b, 0o644); err != nil {
			return nil, err
		}
		cfg.Args = initcmd.Argv()
		cfg.ReadOnlyBinds = []oci.Bind{{Source: init, Destination: initcmd.Path}, {Source: cmdDir, Destination: initcmd.Dir}}
	}
	opts, err := oci.Options(cfg)
	if err != nil {
		return nil, err
	}
	opts = append(opts, ctrdoci.WithCgroup("/"+namespace+"-runc/"+filepath.Base(dir)))
	spec, err := ctrdoci.GenerateSpecWithPlatform(namespaces.WithNamespace(ctx, namespace), nil, "linux",
		&containers.Container{ID: "floor"}, opts...)
	if err != nil {
		return nil, err
	}
	spec.Root = &specs.Root{Path: "rootfs", Readonly: true}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	return f, os.WriteFile(filepath.Join(f.bundle, "config.json"), b, 0o644)
}

// run is `runc run`, which creates, starts, waits for and deletes the
// container.
func (f *runcFloor) run(i int) error {
	out, err := combinedOutput(exec.Command("runc", "--root", f.state, "run", "--bundle", f.bundle,
		fmt.Sprintf("%s-%d-%d", filepath.Base(filepath.Dir(f.bundle)), os.Getpid(), i)))
	if err != nil {
		return fmt.Errorf("runc run: %w: %s", err, out)
	}
	return nil
}

// close removes any container a failed run left.
func (f *runcFloor) close() {
	out, err := exec.Command("runc", "--root", f.state, "list", "-q").Output()
	if err != nil {
		return
	}
	for _, id := range strings.Fields(string(out)) {
		_ = exec.Command("runc", "--root", f.state, "delete", "-f", id).Run()
	}
}
