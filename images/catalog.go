package images

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
)

// FilePlaceholder in a command stands for the absolute path of the task's
// entry file inside the sandbox.
const FilePlaceholder = "{file}"

// Runtime says how one language's code is run.
type Runtime struct {
	// Name is what users pass to --runtime.
	Name string
	// Image is the image reference the task runs in.
	Image string
	// FileName is the name the code is written to when it has none of its
	// own (code given with -c or on stdin).
	FileName string
	// Compile, when set, is a command run first, in a sandbox of its own
	// that shares /tmp with the run stage; FilePlaceholder is replaced as
	// in Run. The run stage only starts when it exits 0.
	Compile []string
	// Run is the command; FilePlaceholder is replaced by the entry file's
	// path and the task's arguments are appended.
	Run []string
	// Env is added to the image's environment before the task's own.
	Env []string
}

// Command returns the run command for the entry file at path, followed by
// the task's arguments.
func (r Runtime) Command(path string, args []string) []string {
	return append(expand(r.Run, path), args...)
}

// CompileCommand returns the compile command for the entry file at path,
// or nil for a runtime that is not compiled.
func (r Runtime) CompileCommand(path string) []string {
	if len(r.Compile) == 0 {
		return nil
	}
	return expand(r.Compile, path)
}

func expand(cmd []string, path string) []string {
	out := make([]string, 0, len(cmd))
	for _, a := range cmd {
		out = append(out, strings.ReplaceAll(a, FilePlaceholder, path))
	}
	return out
}

// Catalog maps runtime names to runtimes.
type Catalog map[string]Runtime

// DefaultCatalog returns the built-in catalog, pointing at the public
// images users expect. Tests and air-gapped hosts override the images.
func DefaultCatalog() Catalog {
	return Catalog{
		"bash": {Name: "bash", Image: "docker.io/library/bash:5", FileName: "main.sh",
			Run: []string{"bash", FilePlaceholder}},
		"sh": {Name: "sh", Image: "docker.io/library/alpine:3", FileName: "main.sh",
			Run: []string{"sh", FilePlaceholder}},
		"python": {Name: "python", Image: "docker.io/library/python:3.11-slim", FileName: "main.py",
			Run: []string{"python3", FilePlaceholder}, Env: []string{"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"}},
		"node": {Name: "node", Image: "docker.io/library/node:22-alpine", FileName: "main.js",
			Run: []string{"node", FilePlaceholder}},
		"c": {Name: "c", Image: "docker.io/library/gcc:14", FileName: "main.c",
			Compile: []string{"gcc", "-O2", "-o", "/tmp/main", FilePlaceholder, "-lm"},
			Run:     []string{"/tmp/main"}},
		"cpp": {Name: "cpp", Image: "docker.io/library/gcc:14", FileName: "main.cpp",
			Compile: []string{"g++", "-O2", "-o", "/tmp/main", FilePlaceholder},
			Run:     []string{"/tmp/main"}},
	}
}

// Names returns the runtime names, sorted.
func (c Catalog) Names() []string {
	return slices.Sorted(maps.Keys(c))
}

// Lookup returns the runtime called name, or an invalid-argument error
// that lists the known ones.
func (c Catalog) Lookup(name string) (Runtime, error) {
	if name == "" {
		return Runtime{}, fmt.Errorf("no runtime given: pass --runtime, one of %s: %w",
			strings.Join(c.Names(), ", "), errdefs.ErrInvalidArgument)
	}
	r, ok := c[name]
	if !ok {
		return Runtime{}, fmt.Errorf("unknown runtime %q: known runtimes are %s: %w",
			name, strings.Join(c.Names(), ", "), errdefs.ErrInvalidArgument)
	}
	return r, nil
}
