//go:build linux

package integration

import (
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sandbox-runner/sandbox-runner/runner"
)

// Real programs, run with the catalog's own commands and the default
// limits, in the images `images build` makes (debianEnv).

// writeFiles writes files into one temp dir and returns their paths in
// the order given.
func writeFiles(t *testing.T, files ...[2]string) []string {
	t.Helper()
	dir := t.TempDir()
	var out []string
	for _, f := range files {
		p := filepath.Join(dir, f[0])
		require.NoError(t, os.WriteFile(p, []byte(f[1]), 0o644))
		out = append(out, p)
	}
	return out
}

func TestProgramJavaTwoFiles(t *testing.T) {
	e := debianEnv(t)
	p := writeFiles(t,
		[2]string{"Main.java", `public class Main {
    public static void main(String[] args) {
        System.out.println(Helper.greet(new java.util.Scanner(System.in).nextLine()));
    }
}
`},
		[2]string{"Helper.java", `class Helper {
    static String greet(String name) { return "hello " + name + " from " + Helper.class.getSimpleName(); }
}
`})
	r := e.execIn(strings.NewReader("duke\n"), "--runtime", "java", p[0], "--file", p[1])
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "hello duke from Helper\n", r.stdout, r)
}

func TestProgramJavaEntryClassExplained(t *testing.T) {
	e := debianEnv(t)
	r := e.execIn(nil, "--runtime", "java", "-c", "public class Solution {\n public static void main(String[] a) { System.out.println(1); }\n}\n")
	assert.Equal(t, 1, r.code, r)
	assert.Contains(t, r.stderr, "the entry class must be Main (public class Main with public static void main(String[] args)) in Main.java, not Solution", r)
	assert.Contains(t, r.stderr, "compilation failed", r)

	r = e.execIn(nil, "--runtime", "java", "-c", "package app;\npublic class Main {\n public static void main(String[] a) { System.out.println(1); }\n}\n")
	assert.Equal(t, 1, r.code, r)
	assert.Contains(t, r.stderr, "Main.java has a package line: the entry class must be Main, in the default package", r)
}

func TestProgramCMultiFile(t *testing.T) {
	e := debianEnv(t)
	p := writeFiles(t,
		[2]string{"main.c", "#include <stdio.h>\n#include \"util.h\"\nint main(void) { printf(\"%d\\n\", twice(21)); return 0; }\n"},
		[2]string{"util.h", "int twice(int);\n"},
		[2]string{"util.c", "#include \"util.h\"\nint twice(int x) { return 2 * x; }\n"})
	r := e.execIn(nil, "--runtime", "c", p[0], "--file", p[1], "--file", p[2])
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "42\n", r.stdout, r)
}

func TestProgramCppMultiFileCpp20(t *testing.T) {
	e := debianEnv(t)
	// Concepts, ranges and std::span: C++20, which g++ 12 does not
	// default to.
	p := writeFiles(t,
		[2]string{"main.cpp", `#include <concepts>
#include <iostream>
#include <ranges>
#include <span>
#include <vector>
int sum(std::span<const int> s);
template <std::integral T> T half(T x) { return x / 2; }
int main() {
	std::vector<int> v{1, 2, 3, 4, 5, 6};
	auto even = v | std::views::filter([](int x) { return x % 2 == 0; });
	std::vector<int> e(even.begin(), even.end());
	std::cout << sum(e) << " " << half(10) << " " << __cplusplus << "\n";
}
`},
		[2]string{"sum.cc", "#include <numeric>\n#include <span>\nint sum(std::span<const int> s) { return std::accumulate(s.begin(), s.end(), 0); }\n"})
	r := e.execIn(nil, "--runtime", "cpp", p[0], "--file", p[1])
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "12 5 202002\n", r.stdout, r)
}

func TestProgramNodeHeapAndModules(t *testing.T) {
	e := debianEnv(t)
	// 300 MB of live heap under the default 512m: V8's own default stops
	// near 259 MB.
	r := e.execIn(nil, "--runtime", "node", "-c", `const keep = [];
for (let i = 0; i < 300; i++) keep.push(new Array(128 * 1024).fill(i));
console.log("held", keep.length, "MB-ish arrays");
`)
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "held 300 MB-ish arrays\n", r.stdout, r)

	// ES modules in a .mjs file, importing another.
	p := writeFiles(t,
		[2]string{"main.mjs", "import { add } from './lib.mjs';\nconsole.log(add(40, 2));\n"},
		[2]string{"lib.mjs", "export const add = (a, b) => a + b;\n"})
	r = e.execIn(nil, "--runtime", "node", p[0], "--file", p[1])
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "42\n", r.stdout, r)
}

func TestProgramOutputCutMidCharacter(t *testing.T) {
	e := debianEnv(t)
	// 1000 euro signs of 3 bytes: a 1000-byte limit cuts the 334th.
	r := e.execIn(nil, "--runtime", "python", "--json", "--output-limit", "1000", "-c", "print('€' * 1000, end='')")
	res, _ := decodeResult(t, r)
	require.Equal(t, runner.OutcomeExited, res.Outcome, r)
	assert.Equal(t, strings.Repeat("€", 333), string(res.Stdout.Data), r)
	assert.True(t, utf8.Valid(res.Stdout.Data))
	assert.Equal(t, int64(3000-999), res.Stdout.Dropped, r)
	assert.Contains(t, r.stdout, `"encoding": "utf-8"`, r)
}

func TestProgramCompileMemory(t *testing.T) {
	e := debianEnv(t)
	// A 2-million-element initializer: cc1 needs far more than 48 MiB
	// for it, the program itself almost nothing.
	src := "static const int a[] = {" + strings.Repeat("7,", 2_000_000) + "};\n" +
		"#include <stdio.h>\nint main(void) { printf(\"%d\\n\", a[1999999] * 6); return 0; }\n"
	p := writeFiles(t, [2]string{"big.c", src})

	r := e.execIn(nil, "--runtime", "c", "--json", "--compile-memory", "48m", p[0])
	res, raw := decodeResult(t, r)
	assert.Equal(t, runner.OutcomeCompileFailed, res.Outcome, r)
	assert.True(t, res.OOMKilled, "the top level says the compiler ran out of memory\n%s", r)
	assert.Equal(t, true, raw["oom_killed"], r)
	require.NotNil(t, res.Compile, r)
	assert.True(t, res.Compile.OOMKilled, r)
	assert.NotEqual(t, 0, r.code, r)

	r = e.execIn(nil, "--runtime", "c", "--compile-memory", "48m", p[0])
	assert.NotEqual(t, 0, r.code, r)
	assert.Contains(t, r.stderr, "the compiler ran out of memory (limit 48MiB, --compile-memory); the code did not run", r)

	// The compile stage has its own limit: the default fits the
	// compiler while the program runs under 64m.
	r = e.execIn(nil, "--runtime", "c", "--memory", "64m", p[0])
	require.Equal(t, 0, r.code, r)
	assert.Equal(t, "42\n", r.stdout, r)
}

// What each runtime sees as its CPU count is its CPU limit rounded up, not
// the host's cores: a pool sized from it then fits the task's pids and
// CPU. The host has 2 here, so a quota of 1 shows whether it holds; 1.5
// gets two CPUs.
func TestProgramCPUCountIsTheLimit(t *testing.T) {
	e := debianEnv(t)
	programs := []struct{ runtime, code string }{
		{"sh", "nproc; getconf _NPROCESSORS_ONLN"},
		{"python", "import os\nprint(os.cpu_count()); print(len(os.sched_getaffinity(0)))"},
		{"node", "const os = require('os');\nconsole.log(os.availableParallelism());"},
		{"java", "public class Main {\n public static void main(String[] a) { System.out.println(Runtime.getRuntime().availableProcessors()); }\n}\n"},
		{"cpp", "#include <iostream>\n#include <thread>\nint main() { std::cout << std::thread::hardware_concurrency() << \"\\n\"; }\n"},
	}
	for _, p := range programs {
		r := e.execIn(nil, "--runtime", p.runtime, "--cpus", "1", "-c", p.code)
		require.Equal(t, 0, r.code, "%s: %v", p.runtime, r)
		for _, line := range strings.Fields(r.stdout) {
			assert.Equal(t, "1", line, "%s with --cpus 1 sees: %s", p.runtime, r.stdout)
		}
	}
	if hostCPUs() >= 2 {
		r := e.execIn(nil, "--runtime", "python", "--cpus", "1.5", "-c", "import os\nprint(os.cpu_count(), len(os.sched_getaffinity(0)))")
		require.Equal(t, 0, r.code, r)
		assert.Equal(t, "2 2\n", r.stdout, r)
	}
}

func hostCPUs() int { return goruntime.NumCPU() }
