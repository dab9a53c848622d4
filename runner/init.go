package runner

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// InitName is the init binary's file name, wherever it is installed.
const InitName = "sandbox-runner-init"

// initPlaces are where FindInit looks after the running binary's own
// directory: where `make install` puts the init, under either prefix.
var initPlaces = []string{
	"/usr/local/libexec/sandbox-runner/" + InitName,
	"/usr/libexec/sandbox-runner/" + InitName,
}

// FindInit returns the path of the sandbox-runner-init binary, PID 1 of
// every sandbox: next to the running executable (as `make build` leaves
// it in bin/), else where `make install` puts it.
func FindInit() (string, error) {
	places := initPlaces
	if exe, err := os.Executable(); err == nil {
		places = append([]string{filepath.Join(filepath.Dir(exe), InitName)}, places...)
	}
	for _, p := range places {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: no %s, the PID 1 of every sandbox, in %s: build it with `make build` or install it with `make install`, or give its path (init in the config)",
		ErrSandboxUnavailable, InitName, strings.Join(places, ", "))
}

// checkInit makes sure the init exists and is statically linked: a
// sandbox holds only its image, which may have no dynamic loader.
func checkInit(path string) error {
	if !filepath.IsAbs(path) {
		return invalid("init %q is not an absolute path", path)
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%w: init %s: %v", ErrSandboxUnavailable, path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: init %s is dynamically linked: build it with `make build`, which links it statically", ErrSandboxUnavailable, path)
		}
	}
	return nil
}
