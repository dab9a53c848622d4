package images

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// Placeholders in a runtime's commands, replaced per task.
const (
	// FilePlaceholder stands for the absolute path of the task's entry
	// file inside the sandbox.
	FilePlaceholder = "{file}"
	// HeapPlaceholder stands for a heap size in MiB derived from the
	// task's memory limit (three quarters of it), for runtimes such as the
	// JVM whose heap must fit under the cgroup limit with room to spare
	// for the runtime's own memory.
	HeapPlaceholder = "{heap_mb}"
	// MemoryPlaceholder stands for the memory limit in MiB.
	MemoryPlaceholder = "{memory_mb}"
)

// Vars are the per-task values placeholders stand for.
type Vars struct {
	// File is the entry file's absolute path in the sandbox.
	File string
	// MemoryBytes is the task's memory limit.
	MemoryBytes int64
}

func (v Vars) replacer() *strings.Replacer {
	mb := v.MemoryBytes >> 20
	return strings.NewReplacer(
		FilePlaceholder, v.File,
		HeapPlaceholder, strconv.FormatInt(max(mb*3/4, 1), 10),
		MemoryPlaceholder, strconv.FormatInt(mb, 10),
	)
}

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

// Command returns the run command with its placeholders replaced,
// followed by the task's arguments.
func (r Runtime) Command(v Vars, args []string) []string {
	return append(expand(r.Run, v), args...)
}

// CompileCommand returns the compile command with its placeholders
// replaced, or nil for a runtime that is not compiled.
func (r Runtime) CompileCommand(v Vars) []string {
	if len(r.Compile) == 0 {
		return nil
	}
	return expand(r.Compile, v)
}

func expand(cmd []string, v Vars) []string {
	rep := v.replacer()
	out := make([]string, 0, len(cmd))
	for _, a := range cmd {
		out = append(out, rep.Replace(a))
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
