package testimage

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DefaultBusybox is where Debian's busybox-static package installs its
// binary.
const DefaultBusybox = "/bin/busybox"

// errNotStatic tells the user how to get a binary that runs in an empty
// root filesystem, where no dynamic loader or libc exists.
var errNotStatic = errors.New("busybox binary is not statically linked (install Debian's busybox-static)")

// BusyboxRootfs lays out in dir a minimal root filesystem around the static
// busybox binary at path busybox (DefaultBusybox if empty): bin/busybox, a
// bin/ symlink to it for each applet it lists, the usual top-level
// directories, and /etc/passwd and /etc/group with root and nobody. dir is
// created if missing and should be empty.
//
// bin/bash is added only if this busybox really runs bash scripts, so tests
// that need bash fail plainly instead of running them under another shell.
func BusyboxRootfs(dir, busybox string) error {
	if busybox == "" {
		busybox = DefaultBusybox
	}
	if err := checkStatic(busybox); err != nil {
		return err
	}
	applets, err := listApplets(busybox)
	if err != nil {
		return err
	}

	dirs := []struct {
		name string
		mode os.FileMode
	}{
		{".", 0o755},
		{"bin", 0o755},
		{"code", 0o755},
		{"dev", 0o755},
		{"etc", 0o755},
		{"proc", 0o555},
		{"root", 0o700},
		{"sys", 0o555},
		{"tmp", 0o777 | os.ModeSticky},
	}
	for _, d := range dirs {
		p := filepath.Join(dir, d.name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		// Chmod, because MkdirAll applies the umask and drops the sticky bit.
		if err := os.Chmod(p, d.mode); err != nil {
			return err
		}
	}

	if err := copyFile(filepath.Join(dir, "bin", "busybox"), busybox, 0o755); err != nil {
		return err
	}
	for _, a := range applets {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			return err
		}
	}

	files := []struct {
		name, data string
	}{
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"},
		{"etc/group", "root:x:0:\n" +
			"nogroup:x:65534:\n"},
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.name))
		if err := os.WriteFile(p, []byte(f.data), 0o644); err != nil {
			return err
		}
		if err := os.Chmod(p, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// BuildBusyboxArchive writes to path an image archive named ref of a
// busybox root filesystem built from DefaultBusybox, with /bin/sh as its
// command.
func BuildBusyboxArchive(path, ref string) (retErr error) {
	rootfs, err := os.MkdirTemp("", "testimage-rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(rootfs)
	if err := BusyboxRootfs(rootfs, DefaultBusybox); err != nil {
		return err
	}

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if err := f.Close(); err != nil && retErr == nil {
			retErr = err
		}
		if retErr != nil {
			os.Remove(path)
		}
	}()
	return WriteArchive(f, rootfs, Options{
		Ref: ref,
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd: []string{"/bin/sh"},
	})
}

// checkStatic reports whether the binary at path needs no dynamic loader.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("busybox binary %s: %w (install Debian's busybox-static)", path, err)
		}
		return fmt.Errorf("busybox binary %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s: %w", path, errNotStatic)
		}
	}
	return nil
}

// listApplets returns the applet names busybox links to, plus "bash" when
// busybox runs bash scripts although it does not list it.
func listApplets(busybox string) ([]string, error) {
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("listing busybox applets: %w", err)
	}
	var applets []string
	hasBash := false
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" || strings.ContainsAny(a, `/\`) || a == "." || a == ".." {
			continue
		}
		applets = append(applets, a)
		hasBash = hasBash || a == "bash"
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("busybox %s lists no applets", busybox)
	}
	if !hasBash {
		out, err := exec.Command(busybox, "bash", "-c", "echo ok").Output()
		if err == nil && bytes.Equal(bytes.TrimSpace(out), []byte("ok")) {
			applets = append(applets, "bash")
		}
	}
	return applets, nil
}

func copyFile(dst, src string, mode os.FileMode) (retErr error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	defer func() {
		if err := out.Close(); err != nil && retErr == nil {
			retErr = err
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}
