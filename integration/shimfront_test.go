//go:build linux

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

// TestShimFrontAnswersOnlyTheCleanupOfWhatIsGone runs sandbox-runner-shim
// as containerd does, with a stand-in for containerd's runc shim on PATH:
// the cleanup of a sandbox with nothing left is answered without it, the
// way the runc shim answers; anything else, and that cleanup whenever the
// OCI runtime still has state for the container or its rootfs is still
// mounted, goes to the runc shim, with the same arguments and directory.
func TestShimFrontAnswersOnlyTheCleanupOfWhatIsGone(t *testing.T) {
	h := RequiresRoot(t)
	front := filepath.Join(filepath.Dir(h.InitBinary(t)), runner.ShimName)
	fake := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(fake, "containerd-shim-runc-v2"),
		[]byte("#!/bin/sh\necho \"runc shim in $PWD: $*\"\n"), 0o755))
	ns := fmt.Sprintf("srit-front-%d", time.Now().UnixNano())
	const id = "sr-front"
	bundle := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755))
	state := filepath.Join("/run/containerd/runc", ns, id)
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Dir(state)) })

	run := func(t *testing.T, action string) []byte {
		t.Helper()
		args := []string{"-namespace", ns, "-address", "/run/containerd/containerd.sock", "-publish-binary", "/usr/bin/containerd",
			"-id", id, "-bundle", bundle, action}
		cmd := exec.Command(front, args...)
		cmd.Dir = bundle
		cmd.Env = []string{"PATH=/nonexistent:" + fake}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, "stderr: %s", stderr.String())
		return out
	}
	toRuncShim := func(t *testing.T, action string) {
		t.Helper()
		want := fmt.Sprintf("runc shim in %s: -namespace %s -address /run/containerd/containerd.sock -publish-binary /usr/bin/containerd -id %s -bundle %s %s\n",
			bundle, ns, id, bundle, action)
		assert.Equal(t, want, string(run(t, action)))
	}

	t.Run("nothing left: answered here", func(t *testing.T) {
		before := time.Now()
		out := run(t, "delete")
		var resp taskapi.DeleteResponse
		require.NoError(t, proto.Unmarshal(out, &resp), "the answer must be a DeleteResponse, as containerd reads it: %q", out)
		assert.Equal(t, uint32(128+int(syscall.SIGKILL)), resp.ExitStatus, "the runc shim's cleanup answers 137")
		assert.Zero(t, resp.Pid)
		at := resp.ExitedAt.AsTime()
		assert.WithinRange(t, at, before.Add(-time.Second), time.Now().Add(time.Second))
		assert.NotContains(t, string(out), "runc shim")
	})
	t.Run("runtime state left: the runc shim cleans up", func(t *testing.T) {
		require.NoError(t, os.MkdirAll(state, 0o700))
		defer os.RemoveAll(state)
		toRuncShim(t, "delete")
	})
	t.Run("rootfs mounted: the runc shim cleans up", func(t *testing.T) {
		rootfs := filepath.Join(bundle, "rootfs")
		require.NoError(t, syscall.Mount("tmpfs", rootfs, "tmpfs", 0, "size=1m"))
		defer func() { require.NoError(t, syscall.Unmount(rootfs, 0)) }()
		toRuncShim(t, "delete")
	})
	t.Run("a start with no group to join goes to the runc shim", func(t *testing.T) {
		toRuncShim(t, "start")
	})
	t.Run("a start that joins a running group's shim: answered here", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "shim.sock")
		l, err := net.Listen("unix", sock)
		require.NoError(t, err)
		defer l.Close()
		spec := func(address, socket string) {
			t.Helper()
			b, err := json.Marshal(map[string]any{"ociVersion": "1.0.2", "annotations": map[string]string{
				"io.containerd.runc.v2.group": "g", "io.sandbox-runner/shim-address": address, "io.sandbox-runner/shim-socket": socket}})
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644))
		}
		defer os.Remove(filepath.Join(bundle, "config.json"))

		spec("/run/containerd/containerd.sock", "unix://"+sock)
		assert.Equal(t, "unix://"+sock, string(run(t, "start")), "the group's socket, as the runc shim prints it")
		b, err := os.ReadFile(filepath.Join(bundle, "address"))
		require.NoError(t, err)
		assert.Equal(t, "unix://"+sock, string(b), "where containerd 1.6 finds the shim after a restart")

		spec("/run/other/containerd.sock", "unix://"+sock)
		toRuncShim(t, "start")
		spec("/run/containerd/containerd.sock", "unix://"+sock+".gone")
		toRuncShim(t, "start")
	})
	t.Run("an id that is not a plain name goes to the runc shim", func(t *testing.T) {
		cmd := exec.Command(front, "-namespace", ns, "-id", "../x", "-bundle", bundle, "delete")
		cmd.Dir = bundle
		cmd.Env = []string{"PATH=" + fake}
		out, err := cmd.Output()
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(string(out), "runc shim in "), "got %q", out)
	})
}

// TestSandboxesRunUnderTheShimFront checks that containerd runs a crun or
// runc sandbox through sandbox-runner-shim, found beside the init, and that
// the sandbox then leaves nothing behind.
func TestSandboxesRunUnderTheShimFront(t *testing.T) {
	h := RequiresRoot(t)
	front := filepath.Join(filepath.Dir(h.InitBinary(t)), runner.ShimName)
	r := h.NewRunner(t)
	task := shTask("sleep 1")
	task.ID = fmt.Sprintf("front-%d", time.Now().UnixNano())
	seen := make(chan string, 1)
	go func() {
		ctx := namespaces.WithNamespace(t.Context(), h.Namespace)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if c, err := h.Client.LoadContainer(ctx, task.ID); err == nil {
				if info, err := c.Info(ctx); err == nil {
					seen <- info.Runtime.Name
					return
				}
			}
		}
		seen <- ""
	}()
	res, err := r.Run(t.Context(), task)
	require.NoError(t, err)
	requireExit(t, res, 0)
	assert.Equal(t, front, <-seen, "the container's runtime is the shim front")
	_, err = os.Stat(filepath.Join("/run/containerd/runc", h.Namespace, task.ID))
	assert.ErrorIs(t, err, os.ErrNotExist, "the OCI runtime keeps no state for the sandbox")
}
