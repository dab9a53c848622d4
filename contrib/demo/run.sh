#!/bin/sh
# Runs real programs in every runtime `sandbox-runner images build`
# makes, each in a fresh sandbox, and shows what each printed and how it
# ended. Usage: contrib/demo/run.sh [BINARY] (default bin/sandbox-runner).
set -u
bin=${1:-bin/sandbox-runner}
dir=$(dirname "$0")
failed=0

# demo WANT TITLE STDIN ARGS...: runs `sandbox-runner exec ARGS` with
# STDIN as its input, and checks that it exits with WANT.
demo() {
	want=$1 title=$2 input=$3
	shift 3
	printf '\n== %s\n$ sandbox-runner exec %s\n' "$title" "$*"
	printf '%b' "$input" | "$bin" exec "$@"
	code=$?
	if [ "$code" -eq "$want" ]; then
		printf -- '-> exit %d, as expected\n' "$code"
	else
		printf -- '-> exit %d, expected %d\n' "$code" "$want"
		failed=$((failed + 1))
	fi
}

demo 0 "Python reads stdin" 'Ada\nGrace\n' --runtime python "$dir/greet.py"
demo 0 "Node sums numbers" '1 2 3 4 5\n' --runtime node "$dir/sum.js"
demo 0 "C, compiled then run" '1000000\n' --runtime c "$dir/primes.c"
demo 0 "C++" 'to be or not to be\n' --runtime cpp "$dir/words.cpp"
demo 0 "Java, in two files" '3 4 5 8\n' --runtime java "$dir/Main.java" --file "$dir/Stats.java"
demo 0 "bash looks around its sandbox" '' --runtime bash "$dir/hello.sh" -- "from the demo"
demo 1 "A compile error: the code does not run" '' --runtime c "$dir/broken.c"
demo 124 "A timeout: killed after 2s" '' --runtime python --timeout 2s -c 'while True: pass'
demo 137 "Out of memory: killed at the 64 MiB limit" '' --runtime python --memory 64m -c 'x = "x" * (256 << 20)'

printf '\n== The README example, with no --image\n$ sandbox-runner exec --runtime python -c '"'"'print(6*7)'"'"'\n'
"$bin" exec --runtime python -c 'print(6*7)' || failed=$((failed + 1))

if [ "$failed" -gt 0 ]; then
	echo "demo: $failed step(s) did not end as expected" >&2
	exit 1
fi
