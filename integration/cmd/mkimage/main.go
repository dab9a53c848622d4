// Command mkimage writes an OCI image layout archive of a small test image,
// for tests and the demo to import into containerd without a registry.
//
//	mkimage --busybox [--busybox-bin /bin/busybox] --ref REF -o FILE
//	mkimage --rootfs DIR --ref REF -o FILE [--env K=V]... [--cmd ARG]...
//
// --cmd and --entrypoint take one argument each and may be repeated:
// --cmd /bin/sh --cmd=-c --cmd 'echo hi'. Import the result with
// `ctr images import FILE` or containerd's client.Import.
//
// It exits 2 on bad usage and 1 when the build fails.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	flag "github.com/spf13/pflag"

	"github.com/sandbox-runner/sandbox-runner/integration/testimage"
)

// busyboxEnv and busyboxCmd are the defaults of a busybox image, the same
// as testimage.BuildBusyboxArchive's.
var (
	busyboxEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	busyboxCmd = []string{"/bin/sh"}
)

type options struct {
	busybox    bool
	busyboxBin string
	rootfs     string
	output     string
	image      testimage.Options
}

// errUsage marks errors that are the caller's, for exit code 2.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "mkimage: %v\n", err)
		if errors.Is(err, errUsage) {
			fmt.Fprintln(stderr, "Try 'mkimage --help'.")
			return 2
		}
		return 1
	}
	if err := build(opts); err != nil {
		fmt.Fprintf(stderr, "mkimage: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage:\n"+
			"  mkimage --busybox [--busybox-bin PATH] --ref REF -o FILE [flags]\n"+
			"  mkimage --rootfs DIR --ref REF -o FILE [flags]\n\n"+
			"Writes an OCI image layout archive of a single-layer image.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.BoolVar(&o.busybox, "busybox", false, "build a busybox image (needs Debian's busybox-static)")
	fs.StringVar(&o.busyboxBin, "busybox-bin", testimage.DefaultBusybox, "static busybox binary for --busybox")
	fs.StringVar(&o.rootfs, "rootfs", "", "directory to use as the image's root filesystem")
	fs.StringVar(&o.image.Ref, "ref", "", "image name with host and tag, e.g. sandbox-runner.test/busybox:latest")
	fs.StringVarP(&o.output, "output", "o", "", "archive file to write")
	fs.StringArrayVar(&o.image.Env, "env", nil, "environment variable K=V (repeatable)")
	fs.StringArrayVar(&o.image.Cmd, "cmd", nil, "one argument of the default command (repeatable)")
	fs.StringArrayVar(&o.image.Entrypoint, "entrypoint", nil, "one argument of the entrypoint (repeatable)")
	fs.StringVar(&o.image.User, "user", "", "user the image runs as, e.g. 65534:65534")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, fmt.Errorf("%w: %w", errUsage, err)
	}

	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	case o.busybox == (o.rootfs != ""):
		return o, fmt.Errorf("%w: give exactly one of --busybox and --rootfs", errUsage)
	case fs.Changed("busybox-bin") && !o.busybox:
		return o, fmt.Errorf("%w: --busybox-bin needs --busybox", errUsage)
	case o.image.Ref == "":
		return o, fmt.Errorf("%w: --ref is required", errUsage)
	case o.output == "":
		return o, fmt.Errorf("%w: -o is required", errUsage)
	}
	if o.busybox {
		if !fs.Changed("env") {
			o.image.Env = busyboxEnv
		}
		if !fs.Changed("cmd") && !fs.Changed("entrypoint") {
			o.image.Cmd = busyboxCmd
		}
	}
	return o, nil
}

// build writes the archive through a temporary file in the output's
// directory, so a failed build never leaves a truncated archive behind.
func build(o options) (retErr error) {
	rootfs := o.rootfs
	if o.busybox {
		dir, err := os.MkdirTemp("", "mkimage-rootfs-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if err := testimage.BusyboxRootfs(dir, o.busyboxBin); err != nil {
			return err
		}
		rootfs = dir
	} else if fi, err := os.Stat(rootfs); err != nil {
		return err
	} else if !fi.IsDir() {
		return fmt.Errorf("rootfs %s is not a directory", rootfs)
	}

	f, err := os.CreateTemp(filepath.Dir(o.output), ".mkimage-*.tar")
	if err != nil {
		return fmt.Errorf("creating %s: %w", o.output, err)
	}
	defer func() {
		if retErr != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := testimage.WriteArchive(f, rootfs, o.image); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), o.output)
}
