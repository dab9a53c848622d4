package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// dockerFlags are `docker run` flags people type out of habit, with what
// to do instead. Keys are flag names without dashes; one letter is a
// shorthand.
var dockerFlags = map[string]string{
	"pids-limit":  "did you mean --pids?",
	"m":           "did you mean --memory? (sandbox-runner has no -m)",
	"memory-swap": "swap is always off in sandbox-runner: --memory is the whole limit",
	"network":     "tasks never have a network in sandbox-runner (an empty network namespace, loopback only): drop --network",
	"net":         "tasks never have a network in sandbox-runner (an empty network namespace, loopback only): drop --net",
	"read-only":   "the root file system is always read-only in sandbox-runner: drop --read-only",
	"rm":          "every task's container is always removed in sandbox-runner: drop --rm",
	"user":        "tasks always run as an unprivileged user (uid 65534) with no capabilities in sandbox-runner: drop --user",
	"u":           "tasks always run as an unprivileged user (uid 65534) with no capabilities in sandbox-runner: drop -u",
	// exec has -i; submit forwards stdin whenever it is not a terminal.
	"i":            "stdin is always forwarded when it is not a terminal: pipe the input in, or give --stdin FILE",
	"interactive":  "stdin is always forwarded when it is not a terminal: pipe the input in, or give --stdin FILE",
	"t":            "tasks get no terminal in sandbox-runner: drop -t",
	"tty":          "tasks get no terminal in sandbox-runner: drop --tty",
	"w":            "the working directory is always /tmp, and the code is in /code: drop -w",
	"workdir":      "the working directory is always /tmp, and the code is in /code: drop --workdir",
	"cap-drop":     "tasks never have any capability in sandbox-runner: drop --cap-drop",
	"security-opt": "no_new_privileges and a seccomp profile are always on in sandbox-runner: drop --security-opt",
	"privileged":   "sandbox-runner never runs a task privileged",
	"cpu-quota":    "did you mean --cpus?",
	"ulimit":       "sandbox-runner sets the limits itself: --pids, --memory, --tmp-size (largest file), --output-limit",
	"name":         "sandbox-runner names each task itself: drop --name",
	"v":            "did you mean --file? sandbox-runner stages files in /code (-f FILE, repeatable); there are no volumes",
	"volume":       "did you mean --file? sandbox-runner stages files in /code (-f FILE, repeatable); there are no volumes",
	"detach":       "sandbox-runner waits for each task; run 'sandbox-runner serve' for a service",
	"d":            "sandbox-runner waits for each task; run 'sandbox-runner serve' for a service",
}

// flagHint returns, for args that failed to parse, what to do about the
// first flag fs does not know, when it is a docker run habit; else "".
func flagHint(fs *pflag.FlagSet, args []string) string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return ""
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		if long, ok := strings.CutPrefix(a, "--"); ok {
			name, _, hasValue := strings.Cut(long, "=")
			f := fs.Lookup(name)
			if f == nil {
				return hintFor("--"+name, name)
			}
			if !hasValue && f.NoOptDefVal == "" {
				i++ // the flag's value
			}
			continue
		}
		// Shorthands, possibly several in one argument (-it).
		letters := a[1:]
		for j := 0; j < len(letters); j++ {
			f := fs.ShorthandLookup(letters[j : j+1])
			if f == nil {
				return hintFor("-"+letters[j:j+1], letters[j:j+1])
			}
			if f.NoOptDefVal == "" {
				// The rest of the argument, or the next one, is its value.
				if j == len(letters)-1 {
					i++
				}
				break
			}
		}
	}
	return ""
}

func hintFor(flag, name string) string {
	if h, ok := dockerFlags[name]; ok {
		return fmt.Sprintf("unknown flag %s: %s", flag, h)
	}
	return ""
}

// commandHints are commands people type from other tools.
var commandHints = map[string]string{
	"run":    "exec",
	"image":  "images",
	"pull":   "images pull",
	"import": "images import",
	"build":  "images build",
	"ls":     "images ls",
	"list":   "runtimes",
	"rmi":    "images rm",
	"doctor": "check",
	"info":   "check",
	"daemon": "serve",
	"server": "serve",
}

// suggestCommand returns ": did you mean ...?" for an unknown command
// line, or "".
func suggestCommand(args []string) string {
	name := args[0]
	if to, ok := commandHints[name]; ok {
		line := append([]string{to}, args[1:]...)
		if to == "images" && len(args) > 1 {
			// "image ls" is "images ls"; "image list", "images ls".
			line[1] = imagesAlias(args[1])
		}
		return fmt.Sprintf(": did you mean 'sandbox-runner %s'?", strings.Join(line, " "))
	}
	best, dist := "", 3
	for _, c := range commands() {
		if d := editDistance(name, c.name); d < dist {
			best, dist = c.name, d
		}
	}
	if best != "" {
		return fmt.Sprintf(": did you mean '%s'?", best)
	}
	return ""
}

// suggestImages returns " (did you mean ...?)" for an unknown images
// subcommand, or "".
func suggestImages(sub string) string {
	if to := imagesAlias(sub); to != sub {
		return fmt.Sprintf(" (did you mean 'images %s'?)", to)
	}
	for _, c := range []string{"build", "pull", "import", "ls", "rm"} {
		if editDistance(sub, c) <= 2 && len(sub) > 2 {
			return fmt.Sprintf(" (did you mean 'images %s'?)", c)
		}
	}
	return ""
}

func imagesAlias(sub string) string {
	switch sub {
	case "list":
		return "ls"
	case "remove", "delete", "rmi":
		return "rm"
	case "load":
		return "import"
	}
	return sub
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
