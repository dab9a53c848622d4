package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

func runGC(ctx context.Context, args []string, std stdio) int {
	var g globalFlags
	var all, asJSON bool
	fs := newFlagSet("gc", "[FLAGS]", std.err)
	fs.BoolVar(&all, "all", false, "remove every task of ours, live runners' too: only when no runner is running")
	fs.BoolVar(&asJSON, "json", false, "print what was removed as JSON")
	g.register(fs)
	if code, ok := parse(fs, args, &g, std.out); !ok {
		return code
	}
	log, err := g.logger(std.err)
	if err != nil {
		return reportJSON(std, asJSON, err)
	}
	conn, err := g.connect(ctx, log)
	if err != nil {
		return reportJSON(std, asJSON, err)
	}
	defer conn.Close()
	cat, err := g.file.Catalog()
	if err != nil {
		return reportJSON(std, asJSON, err)
	}
	r, err := runner.New(conn.Client, g.runnerOptions(log, cat)...)
	if err != nil {
		return reportJSON(std, asJSON, err)
	}
	rep, err := r.Sweep(ctx, all)
	if asJSON {
		_ = json.NewEncoder(std.out).Encode(rep)
	} else {
		fmt.Fprintf(std.out, "removed %d tasks, %d containers, %d snapshots, %d leases, %d task dirs, %d scratch mounts, %d task identities in namespace %q\n",
			rep.Tasks, rep.Containers, rep.Snapshots, rep.Leases, rep.Dirs, rep.Mounts, rep.Identities, g.namespace)
		if f := rep.Failed; f.Total() > 0 {
			fmt.Fprintf(std.out, "could not remove %d tasks, %d containers, %d snapshots, %d leases, %d task dirs, %d scratch mounts, %d task identities\n",
				f.Tasks, f.Containers, f.Snapshots, f.Leases, f.Dirs, f.Mounts, f.Identities)
		}
	}
	if err != nil {
		return reportJSON(std, asJSON, err)
	}
	return exitOK
}
