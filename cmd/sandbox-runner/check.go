package main

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"

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
	findings = append(findings, runner.Check(ctx, runner.ConnectOptions{Address: g.address, StateDir: g.stateDir}, ocis)...)
	code := exitOK
	for _, f := range findings {
		if !f.OK && !f.Optional {
			code = exitFailed
		}
	}
	if asJSON {
		enc := json.NewEncoder(std.out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(findings)
		return code
	}
	for _, f := range findings {
		mark := "ok  "
		switch {
		case !f.OK && f.Optional:
			mark = "no  "
		case !f.OK:
			mark = "FAIL"
		}
		fmt.Fprintf(std.out, "%s  %-10s %s\n", mark, f.Name, f.Detail)
		if f.Fix != "" {
			fmt.Fprintf(std.out, "      %-10s fix: %s\n", "", f.Fix)
		}
	}
	fmt.Fprintf(std.out, "      %-10s tasks run in containerd namespace %q; other namespaces (Docker's \"moby\" included) are never touched\n", "namespace", g.namespace)
	return code
}

func runVersion(_ context.Context, args []string, std stdio) int {
	fs := newFlagSet("version", "", std.err)
	if code, ok := parse(fs, args, nil, std.out); !ok {
		return code
	}
	fmt.Fprintf(std.out, "sandbox-runner %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}
