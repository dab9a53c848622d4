package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/host"
)

// imagesHelp lists the images subcommands.
const imagesHelp = `Usage: sandbox-runner images COMMAND [FLAGS]

Gets the runtimes' images into containerd's store, and manages them.

Commands:
  build [RUNTIME...]   build runtime images from this host's Debian mirror
                       (debootstrap); no RUNTIME: every one that can be
  pull REF...|--all    pull images from their registries (--all: the catalog's)
  import FILE|-        import an OCI or 'docker save' archive
  import --from-docker REF
                       import an image from the local Docker engine
  ls                   list the images in the namespace
  rm REF...            remove images

Run 'sandbox-runner images COMMAND --help' for a command's flags.
`

func runImages(ctx context.Context, args []string, std stdio) int {
	if len(args) == 0 {
		fmt.Fprint(std.err, imagesHelp)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(std.out, imagesHelp)
		return exitOK
	case "build", "pull", "import", "ls", "rm":
	default:
		return report(std.err, usageError("unknown images command %q%s: use build, pull, import, ls or rm", args[0], suggestImages(args[0])))
	}
	var g globalFlags
	var reg registryFlags
	var all, asJSON bool
	var fromDocker string
	var build images.BuildOptions
	sub, args := args[0], args[1:]
	fs := newFlagSet("images "+sub, map[string]string{"import": "FILE|- | --from-docker REF", "rm": "REF...", "pull": "REF... | --all",
		"build": "[RUNTIME...]", "ls": "[FLAGS]"}[sub], std.err)
	if sub == "build" {
		fs.StringVar(&build.Suite, "suite", "", "Debian release to build from (default: the host's, from "+images.OSRelease+")")
		fs.StringVar(&build.Mirror, "mirror", "", "Debian archive URL (default: the one the host's apt sources name)")
		fs.StringVar(&build.CacheDir, "cache-dir", images.DefaultCacheDir, "where built images and downloaded packages are kept")
		fs.BoolVar(&asJSON, "json", false, "print the result as one JSON object, and nothing else on stdout")
	}
	if sub == "pull" {
		fs.BoolVar(&all, "all", false, "pull the image of every runtime in the catalog")
		fs.BoolVar(&asJSON, "json", false, "print one JSON object per image, and nothing else")
		reg.register(fs)
	}
	if sub == "import" {
		fs.StringVar(&fromDocker, "from-docker", "", fromDockerUsage)
	}
	if sub == "ls" {
		fs.BoolVar(&asJSON, "json", false, "print the images as a JSON array")
	}
	g.register(fs)
	if code, ok := parse(fs, args, &g, std.out); !ok {
		return code
	}
	args = fs.Args()
	switch {
	case sub == "import" && importArgs(fromDocker, args) != nil:
		return reportJSON(std, asJSON, importArgs(fromDocker, args))
	case sub == "rm" && len(args) == 0:
		return reportJSON(std, asJSON, usageError("images rm takes one or more image references"))
	case sub == "pull" && all == (len(args) > 0):
		return reportJSON(std, asJSON, usageError("images pull takes image references, or --all for the whole catalog"))
	}
	cat, err := g.file.Catalog()
	if err != nil {
		return reportJSON(std, asJSON, err)
	}
	var plan images.BuildPlan
	if sub == "build" {
		// Checked before anything is started: bad names are exit 2.
		if plan, err = images.PlanBuild(cat, args); err != nil {
			return reportJSON(std, asJSON, err)
		}
	}
	var refs []string
	if sub == "pull" {
		if refs, err = pullRefs(cat, args, all); err != nil {
			return reportJSON(std, asJSON, err)
		}
	}
	log, err := g.logger(std.err)
	if err != nil {
		return reportJSON(std, asJSON, err)
	}
	quietContainerd(g.logLevel)
	conn, err := g.connect(ctx, log)
	if err != nil {
		return reportJSON(std, asJSON, err)
	}
	defer conn.Close()
	ctx = namespaces.WithNamespace(ctx, g.namespace)
	if sub == "pull" || sub == "import" || sub == "build" {
		// What a pull or an import fetches is held by a lease this
		// process owns until the image is recorded, so that no runner's
		// sweep takes it away however long that takes.
		var done func()
		if ctx, done, err = runner.OwnedLease(ctx, conn.Client); err != nil {
			return reportJSON(std, asJSON, err)
		}
		defer done()
	}

	switch sub {
	case "build":
		build.Snapshotter = g.snapshotter
		return buildImages(ctx, conn, cat, plan, build, asJSON, std)
	case "pull":
		return pullImages(ctx, conn, refs, reg.pullOptions(&g), asJSON, std)
	case "import":
		if fromDocker != "" {
			return importFromDocker(ctx, conn, fromDocker, g.snapshotter, std)
		}
		return importImages(ctx, conn, args[0], g.snapshotter, std)
	case "ls":
		return listImages(ctx, conn, cat, g.snapshotter, asJSON, std)
	case "rm":
		return removeImages(ctx, conn, args, std)
	}
	return exitOK
}

// importImages imports the images of the archive at path ("-": stdin),
// showing the bytes read on a terminal, and says what each image is.
func importImages(ctx context.Context, conn *host.Connection, path, snapshotter string, std stdio) int {
	var r io.Reader = std.in
	name := "stdin"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return report(std.err, usageError("%v", err))
		}
		defer f.Close()
		r, name = f, path
	}
	start := time.Now()
	progress := newReadProgress(r, std.err, name, 250*time.Millisecond)
	names, err := images.Import(ctx, conn.Client, progress, snapshotter)
	read := progress.stop()
	for _, n := range names {
		fmt.Fprintln(std.out, importedLine(ctx, conn.Client, n))
	}
	if err != nil {
		return report(std.err, fmt.Errorf("%s: %w", name, err))
	}
	fmt.Fprintf(std.err, "read %s from %s in %s\n", humanBytes(read), name, time.Since(start).Round(time.Millisecond))
	return exitOK
}

// listImages lists the images in the store with the runtimes each
// serves, as a table or as JSON.
func listImages(ctx context.Context, conn *host.Connection, cat images.Catalog, snapshotter string, asJSON bool, std stdio) int {
	cat, err := images.WithLocalImages(ctx, conn.Client, cat)
	if err != nil {
		return reportJSON(std, asJSON, err)
	}
	list, err := images.List(ctx, conn.Client, snapshotter, cat)
	if err != nil {
		return reportJSON(std, asJSON, err)
	}
	if asJSON {
		if list == nil {
			list = []images.Info{}
		}
		enc := json.NewEncoder(std.out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(list)
		return exitOK
	}
	tw := tabwriter.NewWriter(std.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tRUNTIMES\tUNPACKED\tSIZE")
	for _, i := range list {
		rts := strings.Join(i.Runtimes, ",")
		if rts == "" {
			rts = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%t\t%s\n", i.Name, rts, i.Unpacked, formatSize(i.Size))
	}
	tw.Flush()
	return exitOK
}

// removeImages removes refs from the store, stopping at the first that
// cannot be.
func removeImages(ctx context.Context, conn *host.Connection, refs []string, std stdio) int {
	for _, ref := range refs {
		name, err := images.Remove(ctx, conn.Client, ref)
		if err != nil {
			return report(std.err, err)
		}
		fmt.Fprintf(std.out, "removed %s\n", name)
	}
	return exitOK
}

// buildImages builds the runtimes of plan into one image, showing
// debootstrap's progress on a terminal.
func buildImages(ctx context.Context, conn *host.Connection, cat images.Catalog, plan images.BuildPlan,
	opts images.BuildOptions, asJSON bool, std stdio) int {
	suite := opts.Suite
	if suite == "" {
		var err error
		if suite, err = images.HostSuite(images.OSRelease); err != nil {
			return reportJSON(std, asJSON, err)
		}
		opts.Suite = suite
	}
	if !asJSON {
		fmt.Fprintf(std.err, "building %s from Debian %s with debootstrap (packages: %s); the first build takes minutes, later ones come from %s\n",
			strings.Join(plan.Runtimes, ", "), suite, strings.Join(append([]string{"minbase"}, plan.Packages...), " "), opts.CacheDir)
	}
	var status *statusLine
	if !asJSON && isTerminalWriter(std.err) {
		status = &statusLine{w: std.err}
		opts.Log = status
	}
	built, err := images.BuildRuntimes(ctx, conn.Client, cat, plan, opts)
	if status != nil {
		status.clear()
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return reportJSON(std, asJSON, err)
		}
		return reportJSON(std, asJSON, fmt.Errorf("images build: %w", err))
	}
	if asJSON {
		enc := json.NewEncoder(std.out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			*images.Built
			Runtimes   []string `json:"runtimes"`
			Packages   []string `json:"packages"`
			Suite      string   `json:"suite"`
			DurationMS int64    `json:"duration_ms"`
		}{built, plan.Runtimes, plan.Packages, suite, built.Duration.Milliseconds()})
		return exitOK
	}
	how := "built with debootstrap"
	if built.Cached {
		how = "from the cache"
	}
	for _, n := range built.Names {
		fmt.Fprintf(std.out, "built %s\n", n)
	}
	fmt.Fprintf(std.out, "one image for all of them: %s, %s, %s, in %s\n", built.Digest, humanBytes(built.Size), how,
		built.Duration.Round(time.Second))
	fmt.Fprintf(std.out, "the runtimes use these images when their own (`sandbox-runner runtimes`) is not in the store\n")
	return exitOK
}

// reportJSON reports err, also as a JSON document on stdout with --json.
func reportJSON(std stdio, asJSON bool, err error) int {
	if asJSON {
		writeJSONError(std.out, err)
	}
	return report(std.err, err)
}

// statusLine shows the last "I: ..." line debootstrap wrote, on one
// terminal line that it rewrites.
type statusLine struct {
	w       io.Writer
	partial []byte
	shown   bool
}

func (s *statusLine) Write(p []byte) (int, error) {
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		line := string(s.partial[:i])
		s.partial = s.partial[i+1:]
		if msg, ok := strings.CutPrefix(line, "I: "); ok {
			if len(msg) > 70 {
				msg = msg[:70]
			}
			fmt.Fprintf(s.w, "\r\033[K  %s", msg)
			s.shown = true
		}
	}
	return len(p), nil
}

func (s *statusLine) clear() {
	if s.shown {
		fmt.Fprint(s.w, "\r\033[K")
	}
}

// pullRefs returns what `images pull` pulls: the references given,
// normalized (a malformed one is bad usage), or with --all every image
// of the catalog once.
func pullRefs(cat images.Catalog, args []string, all bool) ([]string, error) {
	if all {
		refs, _, err := cat.Images()
		return refs, err
	}
	var refs []string
	for _, a := range args {
		ref, err := images.Normalize(a)
		if err != nil {
			return nil, err
		}
		refs = append(refs, ref)
	}
	return refs, nil
}

// pullImages pulls each ref, going on after a failure, and returns the
// exit status of the worst failure.
func pullImages(ctx context.Context, conn *host.Connection, refs []string, opts images.PullOptions, asJSON bool, std stdio) int {
	code := exitOK
	enc := json.NewEncoder(std.out)
	for _, ref := range refs {
		res := pullResult{Ref: ref}
		var img client.Image
		var took time.Duration
		var err error
		if asJSON {
			start := time.Now()
			img, err = images.Pull(ctx, conn.Client, ref, opts)
			took = time.Since(start)
		} else {
			fmt.Fprintf(std.out, "pulling %s\n", ref)
			img, took, err = pullOne(ctx, conn.Client, ref, opts, std.out)
		}
		res.DurationMS = float64(took.Microseconds()) / 1000
		if err == nil {
			res.Image, res.Digest = img.Name(), img.Target().Digest.String()
			res.Size, _ = img.Size(ctx)
			if !asJSON {
				fmt.Fprintf(std.out, "pulled %s (%s, %s) in %s\n", res.Image, res.Digest, humanBytes(res.Size), took.Round(time.Millisecond))
			}
		} else {
			res.Error, res.Kind = err.Error(), errorKind(err)
			if !asJSON {
				fmt.Fprintf(std.err, "sandbox-runner: %v\n", err)
			}
			code = max(code, exitCode(err))
		}
		if asJSON {
			_ = enc.Encode(res)
		}
		if errors.Is(err, context.Canceled) {
			return runner.ExitCancelled
		}
	}
	return code
}

func runRuntimes(ctx context.Context, args []string, std stdio) int {
	var g globalFlags
	var asJSON bool
	fs := newFlagSet("runtimes", "", std.err)
	fs.BoolVar(&asJSON, "json", false, "print the runtimes as a JSON array")
	g.register(fs)
	if code, ok := parse(fs, args, &g, std.out); !ok {
		return code
	}
	cat, err := g.file.Catalog()
	if err != nil {
		return report(std.err, err)
	}
	present := func(string) string { return "unknown" }
	if conn := g.connectNoStart(ctx); conn != nil {
		defer conn.Close()
		if local, err := g.withLocalImages(ctx, conn.Client, cat); err == nil {
			cat = local
		}
		nctx := namespaces.WithNamespace(ctx, g.namespace)
		present = func(ref string) string {
			st, err := images.StatusOf(nctx, conn.Client, ref, g.snapshotter)
			if err != nil {
				return "unknown"
			}
			return string(st)
		}
	}
	if asJSON {
		type runtimeDoc struct {
			Name    string   `json:"name"`
			Image   string   `json:"image"`
			File    string   `json:"file"`
			Present string   `json:"present"`
			Compile []string `json:"compile,omitempty"`
			Run     []string `json:"run"`
			Local   string   `json:"local_image,omitempty"`
		}
		docs := []runtimeDoc{}
		for _, name := range cat.Names() {
			rt := cat[name]
			docs = append(docs, runtimeDoc{Name: name, Image: rt.Image, File: rt.FileName, Present: present(rt.Image),
				Compile: rt.Compile, Run: rt.Run, Local: rt.Local})
		}
		enc := json.NewEncoder(std.out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(docs)
		return exitOK
	}
	tw := tabwriter.NewWriter(std.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUNTIME\tIMAGE\tFILE\tPRESENT\tCOMPILE\tRUN")
	for _, name := range cat.Names() {
		rt := cat[name]
		compile := formatCommand(rt.Compile)
		if compile == "" {
			compile = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, rt.Image, rt.FileName, present(rt.Image), compile, formatCommand(rt.Run))
	}
	tw.Flush()
	return exitOK
}

// connectNoStart returns a connection to the containerd the runner would
// use, without starting a private one, or nil when none answers.
func (g *globalFlags) connectNoStart(ctx context.Context) *host.Connection {
	addrs := []string{g.address}
	if g.address == "" {
		addrs = []string{host.DefaultAddress, host.DockerAddress, filepath.Join(g.stateDir, "containerd", "containerd.sock")}
	}
	for _, a := range addrs {
		if _, err := os.Stat(a); err != nil {
			continue
		}
		if conn, err := host.Connect(ctx, host.ConnectOptions{Address: a, NoPrivate: true}); err == nil {
			return conn
		}
	}
	return nil
}

// formatCommand prints a command on one line: arguments with spaces or
// newlines quoted, long scripts shortened.
func formatCommand(args []string) string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		if strings.ContainsAny(a, " \t\n'\"") {
			if len(a) > 40 {
				a = a[:37] + "..."
			}
			a = strconv.Quote(a)
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
}
