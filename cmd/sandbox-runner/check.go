package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"golang.org/x/sys/unix"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner/host"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

func runCheck(ctx context.Context, args []string, std stdio) int {
	var g globalFlags
	var asJSON bool
	fs := newFlagSet("check", "[FLAGS]", std.err)
	fs.BoolVar(&asJSON, "json", false, "print the findings as JSON")
	g.register(fs)
	if code, ok := parse(fs, args, &g, std.out); !ok {
		return code
	}
	// A config whose OCI runtimes cannot run here is a finding too; the
	// host's own are checked either way.
	var findings []runner.Finding
	ocis, err := g.ociRuntimes()
	if err != nil {
		findings = append(findings, runner.Finding{Name: "config", Detail: err.Error(),
			Fix: "name an OCI runtime that is usable here, or apply the fix given for it below"})
		ocis = nil
	}
	findings = append(findings, runner.Check(ctx, host.ConnectOptions{Address: g.address, StateDir: g.stateDir}, ocis)...)
	if f, ok := accessFinding(g.address, g.stateDir); !ok {
		findings = append([]runner.Finding{f}, findings...)
	}
	cat, err := g.file.Catalog()
	if err != nil {
		return report(std.err, err)
	}
	rts := g.runtimeImages(ctx, cat)
	code := exitOK
	for _, f := range findings {
		if !f.OK && !f.Optional {
			code = exitFailed
		}
	}
	if asJSON {
		enc := json.NewEncoder(std.out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(append(findings, rts...))
		return code
	}
	for _, f := range findings {
		mark := "ok  "
		switch {
		case !f.OK && f.Optional:
			mark = "no  "
		case !f.OK:
			mark = "FAIL"
		case f.Warning:
			mark = "warn"
		}
		fmt.Fprintf(std.out, "%s  %-10s %s\n", mark, f.Name, f.Detail)
		if f.Fix != "" {
			fmt.Fprintf(std.out, "      %-10s fix: %s\n", "", f.Fix)
		}
	}
	fmt.Fprintf(std.out, "      %-10s tasks run in containerd namespace %q; other namespaces (Docker's \"moby\" included) are never touched\n", "namespace", g.namespace)
	fmt.Fprintln(std.out, "\nRuntime images (a missing one only keeps its runtime from running):")
	for _, f := range rts {
		mark := "ok  "
		if !f.OK {
			mark = "no  "
		}
		fmt.Fprintf(std.out, "%s  %-10s %s\n", mark, strings.TrimPrefix(f.Name, "runtime "), f.Detail)
		if f.Fix != "" {
			fmt.Fprintf(std.out, "      %-10s get it: %s\n", "", f.Fix)
		}
	}
	return code
}

// accessFinding says, for a user other than root, that the runner
// cannot work here and how to fix that; ok when there is nothing to say.
func accessFinding(address, stateDir string) (runner.Finding, bool) {
	uid := os.Geteuid()
	if uid == 0 {
		return runner.Finding{}, true
	}
	sock := address
	if sock == "" {
		sock = host.DefaultAddress
	}
	var problems []string
	if _, err := os.Stat(sock); errors.Is(err, fs.ErrPermission) {
		problems = append(problems, "the containerd socket "+sock+" is not reachable by this user (permission denied)")
	} else if err == nil && unix.Access(sock, unix.W_OK) != nil {
		problems = append(problems, "the containerd socket "+sock+" is not writable by this user"+ownerOf(sock))
	}
	dir := stateDir
	for {
		if _, err := os.Stat(dir); err == nil || dir == "/" {
			break
		}
		dir = filepath.Dir(dir)
	}
	if unix.Access(dir, unix.W_OK) != nil {
		problems = append(problems, "the state dir "+stateDir+" is not writable by this user"+ownerOf(dir))
	}
	problems = append(problems, "tasks need root for their mounts and cgroups")
	return runner.Finding{
		Name:   "privileges",
		Detail: fmt.Sprintf("running as uid %d, not root: %s", uid, strings.Join(problems, "; ")),
		Fix: "run sandbox-runner as root (sudo), or send tasks to a service that does (sandbox-runner serve; " +
			"a user in the group of its socket may use it); the containerd socket's group lets a user list images, no more",
	}, false
}

// ownerOf returns " (owner:group mode)" of path, or "".
func ownerOf(path string) string {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return ""
	}
	return fmt.Sprintf(" (uid %d, gid %d, mode %o)", st.Uid, st.Gid, st.Mode&0o7777)
}

// runtimeImages says for each runtime of cat whether its image is in
// the store, and the command that gets it when it is not.
func (g *globalFlags) runtimeImages(ctx context.Context, cat images.Catalog) []runner.Finding {
	status := func(string) images.Status { return "" }
	if conn := g.connectNoStart(ctx); conn != nil {
		defer conn.Close()
		if local, err := g.withLocalImages(ctx, conn.Client, cat); err == nil {
			cat = local
		}
		nctx := namespaces.WithNamespace(ctx, g.namespace)
		status = func(ref string) images.Status {
			st, err := images.StatusOf(nctx, conn.Client, ref, g.snapshotter)
			if err != nil {
				return ""
			}
			return st
		}
	}
	var out []runner.Finding
	for _, name := range cat.Names() {
		rt := cat[name]
		f := runner.Finding{Name: "runtime " + name, OK: true}
		switch st := status(rt.Image); st {
		case images.StatusPresent:
			f.Detail = rt.Image + " is present"
			out = append(out, f)
			continue
		case "":
			f.OK, f.Detail = false, rt.Image+": unknown (no containerd answers)"
		default:
			f.OK, f.Detail = false, rt.Image+" is not present ("+string(st)+")"
		}
		switch {
		case rt.Local != "":
			f.Fix = fmt.Sprintf("sandbox-runner images build %s (from this host's Debian mirror), or sandbox-runner images pull %s", name, rt.Image)
		default:
			f.Fix = fmt.Sprintf("sandbox-runner images pull %s, or sandbox-runner images import FILE of an archive saved where a registry is reachable", rt.Image)
		}
		out = append(out, f)
	}
	return out
}

func runVersion(_ context.Context, args []string, std stdio) int {
	fs := newFlagSet("version", "", std.err)
	var asJSON bool
	fs.BoolVar(&asJSON, "json", false, "print the version as JSON")
	if code, ok := parse(fs, args, nil, std.out); !ok {
		return code
	}
	if asJSON {
		_ = json.NewEncoder(std.out).Encode(map[string]string{"version": version, "go": runtime.Version(),
			"os": runtime.GOOS, "arch": runtime.GOARCH})
		return exitOK
	}
	fmt.Fprintf(std.out, "sandbox-runner %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}
