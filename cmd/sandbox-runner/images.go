package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner/config"
)

func runImages(ctx context.Context, args []string, std stdio) int {
	if len(args) == 0 {
		fmt.Fprintln(std.err, "Usage: sandbox-runner images import FILE|- | ls | rm REF...")
		return exitUsage
	}
	var g globalFlags
	sub, args := args[0], args[1:]
	fs := newFlagSet("images "+sub, map[string]string{"import": "FILE|-", "rm": "REF..."}[sub], std.err)
	g.register(fs)
	if code, ok := parse(fs, args, &g); !ok {
		return code
	}
	args = fs.Args()
	switch {
	case sub == "import" && len(args) != 1:
		return report(std.err, usageError("images import takes one FILE, or - for stdin"))
	case sub == "rm" && len(args) == 0:
		return report(std.err, usageError("images rm takes one or more image references"))
	case sub != "import" && sub != "rm" && sub != "ls":
		return report(std.err, usageError("unknown images command %q: use import, ls or rm", sub))
	}
	log, err := g.logger(std.err)
	if err != nil {
		return report(std.err, err)
	}
	conn, err := g.connect(ctx, log)
	if err != nil {
		return report(std.err, err)
	}
	defer conn.Close()
	ctx = namespaces.WithNamespace(ctx, g.namespace)

	switch sub {
	case "import":
		var r io.Reader = std.in
		if args[0] != "-" {
			f, err := os.Open(args[0])
			if err != nil {
				return report(std.err, usageError("%v", err))
			}
			defer f.Close()
			r = f
		}
		names, err := images.Import(ctx, conn.Client, r, g.snapshotter)
		for _, n := range names {
			fmt.Fprintf(std.out, "imported %s\n", n)
		}
		if err != nil {
			return report(std.err, err)
		}
	case "ls":
		cat, err := g.file.Catalog()
		if err != nil {
			return report(std.err, err)
		}
		list, err := images.List(ctx, conn.Client, g.snapshotter, cat)
		if err != nil {
			return report(std.err, err)
		}
		tw := tabwriter.NewWriter(std.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "IMAGE\tRUNTIMES\tUNPACKED\tSIZE")
		for _, i := range list {
			fmt.Fprintf(tw, "%s\t%s\t%t\t%s\n", i.Name, strings.Join(i.Runtimes, ","), i.Unpacked, formatSize(i.Size))
		}
		tw.Flush()
	case "rm":
		for _, ref := range args {
			name, err := images.Remove(ctx, conn.Client, ref)
			if err != nil {
				return report(std.err, err)
			}
			fmt.Fprintf(std.out, "removed %s\n", name)
		}
	}
	return exitOK
}

func runRuntimes(_ context.Context, args []string, std stdio) int {
	var g globalFlags
	fs := newFlagSet("runtimes", "", std.err)
	fs.StringVar(&g.configPath, "config", "", "config file (env SANDBOX_RUNNER_CONFIG; default "+config.DefaultPath+", if it exists)")
	if code, ok := parse(fs, args, &g); !ok {
		return code
	}
	cat, err := g.file.Catalog()
	if err != nil {
		return report(std.err, err)
	}
	tw := tabwriter.NewWriter(std.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUNTIME\tIMAGE\tFILE\tCOMPILE\tRUN")
	for _, name := range cat.Names() {
		rt := cat[name]
		compile := strings.Join(rt.Compile, " ")
		if compile == "" {
			compile = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, rt.Image, rt.FileName, compile, strings.Join(rt.Run, " "))
	}
	tw.Flush()
	return exitOK
}
