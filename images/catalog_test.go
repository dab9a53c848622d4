package images

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDefaultCatalogImages(t *testing.T) {
	want := map[string]string{
		"node":   "docker.io/library/node:22-alpine",
		"python": "docker.io/library/python:3.11-slim",
		"c":      "docker.io/library/gcc:14",
		"cpp":    "docker.io/library/gcc:14",
		"java":   "docker.io/library/eclipse-temurin:21-alpine",
		"dotnet": "mcr.microsoft.com/dotnet/sdk:8.0",
		"bash":   "docker.io/library/bash:5",
		"sh":     "docker.io/library/alpine:3",
	}
	cat := DefaultCatalog()
	assert.ElementsMatch(t, keys(want), cat.Names())
	for name, img := range want {
		rt := cat[name]
		assert.Equal(t, img, rt.Image, name)
		assert.Equal(t, name, rt.Name)
		assert.NotEmpty(t, rt.FileName, name)
		assert.NotEmpty(t, rt.Run, name)
		_, err := Normalize(rt.Image)
		assert.NoError(t, err, name)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestCompiledRuntimesCompileIntoTmp(t *testing.T) {
	v := Vars{File: "/code/x", MemoryBytes: 512 << 20}
	for _, name := range []string{"c", "cpp", "java", "dotnet"} {
		rt := DefaultCatalog()[name]
		cmd := strings.Join(rt.CompileCommand(v), " ")
		assert.Contains(t, cmd, "/tmp", "%s compiles into the shared /tmp", name)
		assert.Contains(t, rt.CompileCommand(v), "/code/x", "%s compiles the entry file", name)
	}
	for _, name := range []string{"python", "node", "bash", "sh"} {
		assert.Nil(t, DefaultCatalog()[name].CompileCommand(v), name)
	}
}

func TestJavaHeapFollowsMemoryLimit(t *testing.T) {
	rt := DefaultCatalog()["java"]
	run := rt.Command(Vars{File: "/code/Main.java", MemoryBytes: 256 << 20}, []string{"a"})
	assert.Equal(t, "java", run[0])
	assert.Contains(t, run, "-Xmx192m")
	assert.Contains(t, run, "-XX:+UseSerialGC")
	assert.Equal(t, []string{"-cp", "/tmp", "Main", "a"}, run[len(run)-4:])
	compile := rt.CompileCommand(Vars{File: "/code/Main.java", MemoryBytes: 256 << 20})
	assert.Contains(t, compile, "-J-Xmx192m")
	assert.Equal(t, []string{"sh", "-c", javaCompile, "javac", "/code/Main.java", "javac"}, compile[:6])
	assert.Equal(t, []string{"-d", "/tmp"}, compile[len(compile)-2:])
}

func TestNodeHeapFollowsMemoryLimit(t *testing.T) {
	run := DefaultCatalog()["node"].Command(Vars{File: "/code/main.js", MemoryBytes: 512 << 20}, []string{"a"})
	assert.Equal(t, []string{"node", "--max-old-space-size=384", "/code/main.js", "a"}, run)
}

func TestCAndCppCompileEverySource(t *testing.T) {
	for name, want := range map[string][]string{
		"c":   {"*.c", "gcc -O2 -pipe -o /tmp/main", "-lm"},
		"cpp": {"*.cpp *.cc *.cxx", "g++ -std=gnu++20 -O2 -pipe -o /tmp/main", ""},
	} {
		c := DefaultCatalog()[name].CompileCommand(Vars{File: "/code/main.x", MemoryBytes: 512 << 20})
		assert.Equal(t, append([]string{"sh", "-c", compileAll, c[3], "/code/main.x"}, want...), c, name)
	}
}

func TestDotnetCompileScript(t *testing.T) {
	rt := DefaultCatalog()["dotnet"]
	c := rt.CompileCommand(Vars{File: "/code/Program.cs", MemoryBytes: 512 << 20})
	require.Len(t, c, 5)
	assert.Equal(t, []string{"sh", "-c"}, c[:2])
	assert.Equal(t, []string{"csc", "/code/Program.cs"}, c[3:])
	script := c[2]
	assert.Contains(t, script, "Roslyn/bincore/csc.dll")
	assert.Contains(t, script, "-out:/tmp/main.dll")
	// 384 MiB, three quarters of the limit, in the runtimeconfig.json.
	assert.Contains(t, script, "$((384 * 1048576))")
	assert.NotContains(t, script, "{heap_mb}")
	assert.Equal(t, []string{"dotnet", "/tmp/main.dll"}, rt.Command(Vars{}, nil))
	assert.Contains(t, rt.Env, "DOTNET_CLI_TELEMETRY_OPTOUT=1")
}

func TestLookupAlias(t *testing.T) {
	cat := DefaultCatalog()
	rt, err := cat.Lookup("csharp")
	require.NoError(t, err)
	assert.Equal(t, "dotnet", rt.Name)
	assert.Equal(t, map[string]string{"csharp": "dotnet", "c++": "cpp"}, cat.Aliases())

	// A runtime of the catalog's own wins over an alias.
	cat["csharp"] = Runtime{Name: "csharp", Image: "x.test/mono:1", FileName: "a.cs", Run: []string{"mono"}}
	rt, err = cat.Lookup("csharp")
	require.NoError(t, err)
	assert.Equal(t, "csharp", rt.Name)
	assert.NotContains(t, cat.Aliases(), "csharp")

	// An alias of a runtime that is not there is unknown.
	delete(cat, "cpp")
	_, err = cat.Lookup("c++")
	assert.True(t, errdefs.IsInvalidArgument(err))
}

func TestLookupUnknownListsKnown(t *testing.T) {
	_, err := DefaultCatalog().Lookup("cobol")
	require.Error(t, err)
	assert.True(t, errdefs.IsInvalidArgument(err))
	assert.Contains(t, err.Error(), `unknown runtime "cobol"`)
	assert.Contains(t, err.Error(), "bash, c, cpp, dotnet, java, node, python, sh")
}

func TestCatalogImages(t *testing.T) {
	refs, served, err := DefaultCatalog().Images()
	require.NoError(t, err)
	assert.Len(t, refs, 7, "c and cpp share gcc")
	assert.Equal(t, []string{"c", "cpp"}, served["docker.io/library/gcc:14"])

	_, _, err = Catalog{"x": {Image: "Not A Ref"}}.Images()
	assert.True(t, errdefs.IsInvalidArgument(err))
}

func TestNormalize(t *testing.T) {
	const dgst = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for in, want := range map[string]string{
		"busybox":                      "docker.io/library/busybox:latest",
		"python:3.11-slim":             "docker.io/library/python:3.11-slim",
		"mcr.microsoft.com/dotnet/sdk": "mcr.microsoft.com/dotnet/sdk:latest",
		"busybox@" + dgst:              "docker.io/library/busybox@" + dgst,
		// A tag next to a digest says nothing more: the digest pins.
		"python:3.11@" + dgst:             "docker.io/library/python@" + dgst,
		"127.0.0.1:5000/runtimes/node:22": "127.0.0.1:5000/runtimes/node:22",
	} {
		got, err := Normalize(in)
		if assert.NoError(t, err, in) {
			assert.Equal(t, want, got, in)
		}
	}
	for _, bad := range []string{"", "library/CASE", "busybox@sha256:short", "a b", "busybox:tag:tag", "-leading"} {
		_, err := Normalize(bad)
		assert.True(t, errdefs.IsInvalidArgument(err), "%q: %v", bad, err)
	}
}

func TestParsePullPolicy(t *testing.T) {
	for in, want := range map[string]PullPolicy{"": PullMissing, "missing": PullMissing, "always": PullAlways, "never": PullNever} {
		got, err := ParsePullPolicy(in)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	_, err := ParsePullPolicy("sometimes")
	assert.True(t, errdefs.IsInvalidArgument(err))
	assert.Contains(t, err.Error(), "missing, always or never")
}
