package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sandbox-runner/sandbox-runner/runner/fleet"
)

func runWorkers(ctx context.Context, args []string, std stdio) int {
	var (
		g      globalFlags
		nf     natsFlags
		asJSON bool
	)
	fs := newFlagSet("workers", "--nats URL [--json]", std.err)
	nf.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print the presence entries as a JSON array")
	fs.StringVar(&g.configPath, "config", "", "config file (env SANDBOX_RUNNER_CONFIG)")
	if code, ok := parse(fs, args, &g, std.out); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return reportJSON(std, asJSON, usageError("workers takes no arguments, got %q", fs.Arg(0)))
	}
	nc, err := nf.connect(g.file.Fleet, "sandbox-runner workers")
	if err != nil {
		return reportJSON(std, asJSON, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return reportJSON(std, asJSON, err)
	}
	ws, err := fleet.ListWorkers(ctx, js)
	if err != nil {
		return reportJSON(std, asJSON, err)
	}
	if asJSON {
		if ws == nil {
			ws = []fleet.WorkerInfo{}
		}
		enc := json.NewEncoder(std.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(ws); err != nil {
			return reportJSON(std, asJSON, err)
		}
		return exitOK
	}
	if len(ws) == 0 {
		fmt.Fprintln(std.err, "sandbox-runner: no live workers")
		return exitOK
	}
	tw := tabwriter.NewWriter(std.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tHOST\tRUNTIMES\tIN FLIGHT\tVERSION\tSERVER\tSEEN")
	for _, w := range ws {
		state := ""
		if w.Draining {
			state = " (stopping)"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%d/%d\t%s\t%s\t%s ago\n", w.ID, state, w.Host, strings.Join(w.Runtimes, ","),
			w.InFlight, w.Capacity, w.Version, w.Server, time.Since(w.Updated).Round(100*time.Millisecond))
	}
	_ = tw.Flush()
	return exitOK
}
