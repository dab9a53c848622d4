package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	ctrdlog "github.com/containerd/log"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/sandbox-runner/sandbox-runner/images"
)

// registryFlags are the flags of the commands that pull.
type registryFlags struct {
	hostsDir string
}

func (r *registryFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&r.hostsDir, "registry-config", "",
		"directory of registry hosts.toml files, containerd's certs.d layout (config [registry] config_path; default "+images.DefaultHostsDir+")")
}

// pullOptions settles the pull settings: flag, then config file, then
// the built-in defaults.
func (r *registryFlags) pullOptions(g *globalFlags) images.PullOptions {
	o := images.PullOptions{
		Snapshotter: g.snapshotter,
		HostsDir:    first(r.hostsDir, images.DefaultHostsDir),
	}
	if g.file != nil {
		o.HostsDir = first(r.hostsDir, g.file.Registry.ConfigPath, images.DefaultHostsDir)
		o.DockerConfig = g.file.Registry.DockerConfig
	}
	return o
}

// pullOne pulls ref, drawing per-blob progress in place on w when it is
// a terminal; otherwise the caller's lines before and after are all.
func pullOne(ctx context.Context, c *client.Client, ref string, opts images.PullOptions, w io.Writer) (client.Image, time.Duration, error) {
	if isTerminalWriter(w) {
		opts.Progress = (&progressPrinter{w: w}).update
	}
	start := time.Now()
	img, err := images.Pull(ctx, c, ref, opts)
	return img, time.Since(start), err
}

func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressPrinter draws a pull's progress on a terminal, one line per
// blob, redrawing the lines it drew before.
type progressPrinter struct {
	w     io.Writer
	lines int
}

func (p *progressPrinter) update(pr images.Progress) {
	var b strings.Builder
	if p.lines > 0 {
		// Back to the first line drawn last time.
		fmt.Fprintf(&b, "\x1b[%dA", p.lines)
	}
	lines := progressLines(pr)
	for _, l := range lines {
		b.WriteString("\x1b[2K")
		b.WriteString(l)
		b.WriteByte('\n')
	}
	p.lines = len(lines)
	_, _ = io.WriteString(p.w, b.String())
}

// progressLines renders one report: a title, then a line per blob.
func progressLines(pr images.Progress) []string {
	state := "resolving"
	if len(pr.Blobs) > 0 {
		// Layers are applied as they arrive; once all are in, what is
		// left is unpacking.
		state = "unpacking"
		for _, b := range pr.Blobs {
			if b.Status == images.BlobWaiting || b.Status == images.BlobDownloading {
				state = "downloading"
			}
		}
	}
	switch {
	case pr.Failed:
		// Ctrl-C or an error: the last drawing says so, not "done".
		state = "stopped"
	case pr.Done:
		state = "done"
	}
	lines := []string{fmt.Sprintf("%s: %s (%s)", pr.Ref, state, pr.Elapsed.Round(100*time.Millisecond))}
	for _, b := range pr.Blobs {
		// Not Digest.Encoded, which panics on a malformed digest.
		_, short, _ := strings.Cut(string(b.Digest), ":")
		if len(short) > 12 {
			short = short[:12]
		}
		var amount string
		switch b.Status {
		case images.BlobDownloading:
			amount = fmt.Sprintf("%s / %s", humanBytes(b.Offset), humanBytes(b.Size))
		default:
			amount = humanBytes(b.Size)
		}
		lines = append(lines, fmt.Sprintf("  %-8s %s  %-11s %s", b.Kind, short, b.Status, amount))
	}
	return lines
}

// humanBytes prints n with one decimal in the largest fitting unit.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// pullResult is one image of `images pull --json`.
type pullResult struct {
	Ref        string  `json:"ref"`
	Image      string  `json:"image,omitempty"`
	Digest     string  `json:"digest,omitempty"`
	Size       int64   `json:"size,omitempty"`
	DurationMS float64 `json:"duration_ms"`
	Error      string  `json:"error,omitempty"`
	Kind       string  `json:"kind,omitempty"`
}

// quietContainerd sets the level of the containerd client's own logger
// (logrus, to stderr) to ours: it logs every registry host it tries at
// info level, which is noise unless asked for.
func quietContainerd(level string) {
	if err := ctrdlog.SetLevel(level); err != nil {
		_ = ctrdlog.SetLevel("warn")
	}
}
