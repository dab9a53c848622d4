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
	// Local is the repository of the image `sandbox-runner images build`
	// makes for this runtime from Debian packages, e.g.
	// "sandbox-runner.local/python"; WithLocalImages points the runtime
	// at it when Image is not in the store. Empty: it cannot be built.
	Local string
	// Debian are the Debian packages that image needs on top of
	// debootstrap's minbase.
	Debian []string
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
// images users expect. Tests and air-gapped hosts override the images
// from the config file; any image may be pinned by digest
// ("docker.io/library/python:3.11-slim@sha256:...").
func DefaultCatalog() Catalog {
	return Catalog{
		// alpine has no bash: the official bash image is alpine with it.
		"bash": {Name: "bash", Image: "docker.io/library/bash:5", FileName: "main.sh",
			Run: []string{"bash", FilePlaceholder}, Local: LocalRegistry + "/bash"},
		"sh": {Name: "sh", Image: "docker.io/library/alpine:3", FileName: "main.sh",
			Run: []string{"sh", FilePlaceholder}, Local: LocalRegistry + "/sh"},
		"python": {Name: "python", Image: "docker.io/library/python:3.11-slim", FileName: "main.py",
			Run: []string{"python3", FilePlaceholder}, Env: []string{"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"},
			Local: LocalRegistry + "/python", Debian: []string{"python3"}},
		// V8 sizes its heap by itself, far below a cgroup's limit (259
		// MB under 512m): it gets three quarters of the limit, as the
		// JVM does. ES modules: a .mjs file; node 22.7 and later also
		// detect them in a .js file.
		"node": {Name: "node", Image: "docker.io/library/node:22-alpine", FileName: "main.js",
			Run:   []string{"node", "--max-old-space-size=" + HeapPlaceholder, FilePlaceholder},
			Local: LocalRegistry + "/node", Debian: []string{"nodejs"}},
		// The official gcc image is Debian-based; there is no official
		// alpine one.
		// Every source file of the language the task gives is compiled (see
		// compileAll), so a program may come in several files.
		"c": {Name: "c", Image: "docker.io/library/gcc:14", FileName: "main.c",
			Compile: []string{"sh", "-c", compileAll, "gcc", FilePlaceholder, "*.c", "gcc -O2 -pipe -o /tmp/main", "-lm"},
			Run:     []string{"/tmp/main"}, Local: LocalRegistry + "/c", Debian: []string{"gcc", "libc6-dev"}},
		// GNU C++20: the newest standard g++ 12 (Debian bookworm's, the
		// oldest in the catalog's images) implements in full; g++'s own
		// default is C++17, without concepts, ranges or std::span.
		"cpp": {Name: "cpp", Image: "docker.io/library/gcc:14", FileName: "main.cpp",
			Compile: []string{"sh", "-c", compileAll, "g++", FilePlaceholder, "*.cpp *.cc *.cxx", "g++ -std=gnu++20 -O2 -pipe -o /tmp/main", ""},
			Run:     []string{"/tmp/main"}, Local: LocalRegistry + "/cpp", Debian: []string{"g++", "libc6-dev"}},
		// A JDK, for javac. The heap gets three quarters of the memory
		// limit, so a hungry program gets an OutOfMemoryError rather than
		// an OOM kill; the serial collector and the C1 compiler keep the
		// JVM's own threads and memory small; no perf data file is
		// written. The stack is large for recursive solutions: it is
		// reserved, and only what is touched counts against the limit.
		//
		// javac finds the program's other classes in the files next to
		// the entry file (-sourcepath); javaCompile says what is wrong
		// when no class Main comes out.
		"java": {Name: "java", Image: "docker.io/library/eclipse-temurin:21-alpine", FileName: "Main.java",
			Compile: []string{"sh", "-c", javaCompile, "javac", FilePlaceholder, "javac", "-J-Xmx" + HeapPlaceholder + "m", "-J-XX:+UseSerialGC",
				"-J-XX:TieredStopAtLevel=1", "-J-XX:-UsePerfData", "-encoding", "UTF-8", "-d", "/tmp"},
			Run: []string{"java", "-Xmx" + HeapPlaceholder + "m", "-Xss64m", "-XX:+UseSerialGC",
				"-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-cp", "/tmp", "Main"},
			Local: LocalRegistry + "/java", Debian: []string{"default-jdk-headless"}},
		// The SDK image, for the C# compiler: the runtime-only image
		// cannot compile. See dotnetCompile.
		"dotnet": {Name: "dotnet", Image: "mcr.microsoft.com/dotnet/sdk:8.0", FileName: "Program.cs",
			Compile: []string{"sh", "-c", dotnetCompile, "csc", FilePlaceholder},
			Run:     []string{"dotnet", "/tmp/main.dll"},
			Env: []string{"DOTNET_CLI_TELEMETRY_OPTOUT=1", "DOTNET_NOLOGO=1", "DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1",
				"DOTNET_CLI_HOME=/tmp", "DOTNET_EnableDiagnostics=0", "DOTNET_gcServer=0"}},
	}
}

// dotnetCompile compiles one C# file ($1) with the SDK's own compiler
// rather than `dotnet build`, which restores packages from the network
// and writes to the home directory: a task has neither. csc runs on the
// SDK's runtime against the reference assemblies of the newest
// targeting pack, both found by globbing, so any SDK image works
// offline and on a read-only root. The implicit usings of `dotnet new
// console` are added, so code written for a project compiles alone.
// The program's runtimeconfig.json
// names the framework to run on, caps the GC heap at three quarters of
// the memory limit (what the runtime picks by itself in a memory-limited
// cgroup, made explicit) and turns off the background GC thread.
const dotnetCompile = `set -e
src=$1
sdk=$(ls -d /usr/share/dotnet/sdk/*/ | sort -V | tail -n 1)
refs=$(ls -d /usr/share/dotnet/packs/Microsoft.NETCore.App.Ref/*/ref/net*/ | sort -V | tail -n 1)
set --
for r in "$refs"*.dll; do set -- "$@" "-r:$r"; done
printf 'global using %s;\n' System System.Collections.Generic System.IO System.Linq System.Net.Http \
	System.Threading System.Threading.Tasks > /tmp/usings.cs
dotnet "${sdk}Roslyn/bincore/csc.dll" -nologo -noconfig -nostdlib -target:exe -optimize+ \
	-langversion:latest -out:/tmp/main.dll "$@" /tmp/usings.cs "$src"
tfm=$(basename "$refs")
printf '{"runtimeOptions": {"tfm": "%s", "framework": {"name": "Microsoft.NETCore.App", "version": "%s.0"}, "configProperties": {"System.GC.HeapHardLimit": %d, "System.GC.Concurrent": false}}}\n' \
	"$tfm" "${tfm#net}" $((` + HeapPlaceholder + ` * 1048576)) > /tmp/main.runtimeconfig.json
`

// compileAll compiles every file of a language the task gives into /tmp/main,
// the entry file first: $1 is the entry file, $2 the name patterns of
// the language's sources, $3 the compiler command, $4 what goes after
// the sources (libraries). find and sort are in every image with a
// compiler; file names with a newline are not supported.
const compileAll = `set -ef
entry=$1 patterns=$2 cc=$3 libs=$4
dir=${entry%/*}
set --
for p in $patterns; do set -- "$@" -o -name "$p"; done
shift
list=$(cd "$dir" && find . -type f \( "$@" \) | sort)
IFS='
'
set -- "$entry"
for f in $list; do
	f=$dir/${f#./}
	[ "$f" = "$entry" ] || set -- "$@" "$f"
done
IFS=' '
exec $cc "$@" $libs
`

// javaCompile compiles the entry file ($1) with the javac command that
// follows, with the entry file's directory as the source path, and
// explains a program whose entry class is not Main in the default
// package: the run stage runs Main.
const javaCompile = `entry=$1
shift
"$@" -sourcepath "${entry%/*}" "$entry"
status=$?
if [ "$status" -eq 0 ] && [ -f /tmp/Main.class ]; then exit 0; fi
if grep -Eq '^[[:space:]]*package[[:space:]]' "$entry"; then
	echo "sandbox-runner: ${entry##*/} has a package line: the entry class must be Main, in the default package; remove the package line" >&2
elif ! grep -Eq 'class[[:space:]]+Main([^A-Za-z0-9_$]|$)' "$entry"; then
	other=$(grep -Eo 'class[[:space:]]+[A-Za-z_$][A-Za-z0-9_$]*' "$entry" | head -n 1 | sed 's/^class[[:space:]]*//')
	echo "sandbox-runner: the entry class must be Main (public class Main with public static void main(String[] args)) in ${entry##*/}${other:+, not $other}; other classes may be in other files" >&2
fi
[ "$status" -ne 0 ] || status=1
exit $status
`

// aliases are other names users know built-in runtimes by.
var aliases = map[string]string{"csharp": "dotnet", "c++": "cpp"}

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
		if target, isAlias := aliases[name]; isAlias {
			if r, ok = c[target]; ok {
				return r, nil
			}
		}
		return Runtime{}, fmt.Errorf("unknown runtime %q: known runtimes are %s: %w",
			name, strings.Join(c.Names(), ", "), errdefs.ErrInvalidArgument)
	}
	return r, nil
}

// Aliases returns the other names of the catalog's runtimes, as
// alias -> runtime: "csharp" is "dotnet". A runtime of the catalog's own
// by that name wins over an alias.
func (c Catalog) Aliases() map[string]string {
	out := map[string]string{}
	for alias, target := range aliases {
		if _, own := c[alias]; own {
			continue
		}
		if _, ok := c[target]; ok {
			out[alias] = target
		}
	}
	return out
}

// Images returns the distinct images of the catalog, normalized and
// sorted, each with the runtimes it serves.
func (c Catalog) Images() ([]string, map[string][]string, error) {
	served := map[string][]string{}
	for _, name := range c.Names() {
		ref, err := Normalize(c[name].Image)
		if err != nil {
			return nil, nil, fmt.Errorf("runtime %s: %w", name, err)
		}
		served[ref] = append(served[ref], name)
	}
	return slices.Sorted(maps.Keys(served)), served, nil
}
