// Command benchruns measures what compiling once and running many
// inputs saves: one C++ program on N inputs, sent to the service as one
// request with "runs" (one compile, N runs) and as N separate requests
// (N compiles, N runs), alternated round after round on one private
// containerd, in the image `sandbox-runner images build cpp` makes from
// the host's Debian mirror (cached, so only the first run builds it).
//
// It reports, per path and round, the wall time and the total CPU time:
// that of the containerd, shims, OCI runtime and service processes (a
// cpuacct cgroup of the bench's own, which they inherit) plus that of
// every sandbox (its cgroup's, as the results report it). It needs root
// and a cgroup v1 cpuacct hierarchy or cgroup v2; `make bench-runs`
// runs it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/sandbox-runner/sandbox-runner/integration/ctrdtest"
	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

const namespace = "bench-runs"

// program is the C++ program: it sieves the primes up to its input and
// prints how many there are, a few milliseconds of work per run.
const program = `#include <iostream>
#include <vector>
int main() {
	long n;
	if (!(std::cin >> n)) return 2;
	std::vector<bool> composite(n + 1);
	long count = 0;
	for (long i = 2; i <= n; i++) {
		if (composite[i]) continue;
		count++;
		for (long j = i * i; j <= n; j += i) composite[j] = true;
	}
	std::cout << count << "\n";
}
`

type options struct {
	cli, init, cache, jsonOut string
	runs, rounds, slots       int
}

// Row is one path's figures over the rounds.
type Row struct {
	Path     string    `json:"path"`
	Requests int       `json:"requests"`
	WallS    []float64 `json:"wall_s"`
	CPUS     []float64 `json:"cpu_s"`
	// SandboxCPUS is the part of CPUS spent in the sandboxes.
	SandboxCPUS []float64 `json:"sandbox_cpu_s"`
}

// Report is what one run measured.
type Report struct {
	When   time.Time `json:"when"`
	Runs   int       `json:"runs"`
	Slots  int       `json:"max_concurrent"`
	Rounds int       `json:"rounds"`
	Rows   []Row     `json:"rows"`
}

func main() {
	var o options
	fs := pflag.NewFlagSet("benchruns", pflag.ExitOnError)
	fs.StringVar(&o.cli, "cli", "bin/sandbox-runner", "the sandbox-runner binary")
	fs.StringVar(&o.init, "init", "bin/sandbox-runner-init", "the static sandbox-runner-init binary")
	fs.StringVar(&o.cache, "cache-dir", "/var/cache/sandbox-runner", "where images build keeps what it built")
	fs.IntVar(&o.runs, "runs", 20, "inputs per measurement")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds of each path")
	fs.IntVar(&o.slots, "max-concurrent", 2, "the service's max_concurrent; the separate requests come from as many clients")
	fs.StringVar(&o.jsonOut, "json", "", "also write the report as JSON to this file")
	_ = fs.Parse(os.Args[1:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rep, err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchruns: %v\n", err)
		os.Exit(1)
	}
	print(rep)
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "benchruns: %v\n", err)
			os.Exit(1)
		}
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchruns: "+format+"\n", args...)
}

func run(ctx context.Context, o options) (*Report, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root: it starts containerd and runs containers")
	}
	cli, err := filepath.Abs(o.cli)
	if err != nil {
		return nil, err
	}
	init, err := filepath.Abs(o.init)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "srbr-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	cg, err := newCPUGroup()
	if err != nil {
		return nil, err
	}
	defer cg.close()

	logf("starting containerd in %s", dir)
	d, err := ctrdtest.StartDaemon(ctx, filepath.Join(dir, "ctrd"))
	if err != nil {
		return nil, err
	}
	defer func() { _ = d.Stop() }()
	config := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf("init = %q\n", init)), 0o644); err != nil {
		return nil, err
	}
	global := []string{"--config", config, "--address", d.Address, "--namespace", namespace, "--state-dir", filepath.Join(dir, "state")}
	logf("importing the cpp image (images build, cached in %s)", o.cache)
	out, err := exec.CommandContext(ctx, cli, append([]string{"images", "build", "cpp", "--cache-dir", o.cache}, global...)...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("images build: %w\n%s", err, out)
	}
	socket := filepath.Join(dir, "api.sock")
	svc := exec.Command(cli, append([]string{"serve", "--socket", socket, "--max-concurrent", strconv.Itoa(o.slots),
		"--queue", strconv.Itoa(4 * o.runs), "--log-level", "warn"}, global...)...)
	var log bytes.Buffer
	svc.Stdout, svc.Stderr = &log, &log
	if err := svc.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = svc.Process.Signal(syscall.SIGTERM)
		_ = svc.Wait()
	}()
	c := service.NewClient(socket)
	for deadline := time.Now().Add(60 * time.Second); c.Ping(ctx) != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("serve did not answer: %s", log.String())
		}
	}

	task := runner.Task{Runtime: "cpp", Files: []runner.File{{Content: []byte(program)}}}
	var stdins [][]byte
	for i := range o.runs {
		stdins = append(stdins, []byte(strconv.Itoa(100000*(i+1))+"\n"))
	}
	// One of each first, unmeasured: the image's files in the page cache.
	if _, err := batch(ctx, c, task, stdins[:1]); err != nil {
		return nil, err
	}
	rep := &Report{When: time.Now().UTC(), Runs: o.runs, Slots: o.slots, Rounds: o.rounds}
	rows := []Row{
		{Path: fmt.Sprintf("one request, \"runs\": %d (1 compile + %d runs)", o.runs, o.runs), Requests: 1},
		{Path: fmt.Sprintf("%d separate requests, %d clients (%d compiles + %d runs)", o.runs, o.slots, o.runs, o.runs), Requests: o.runs},
	}
	for round := range o.rounds {
		for j := range rows {
			// Alternate which path goes first.
			j = (j + round) % len(rows)
			logf("round %d: %s", round+1, rows[j].Path)
			before, err := cg.usage()
			if err != nil {
				return nil, err
			}
			start := time.Now()
			var sandbox time.Duration
			if j == 0 {
				sandbox, err = batch(ctx, c, task, stdins)
			} else {
				sandbox, err = separate(ctx, c, task, stdins, o.slots)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", rows[j].Path, err)
			}
			wall := time.Since(start)
			// Teardown of the last sandbox is done before the answer.
			after, err := cg.usage()
			if err != nil {
				return nil, err
			}
			total := after - before + sandbox
			rows[j].WallS = append(rows[j].WallS, wall.Seconds())
			rows[j].CPUS = append(rows[j].CPUS, total.Seconds())
			rows[j].SandboxCPUS = append(rows[j].SandboxCPUS, sandbox.Seconds())
		}
	}
	rep.Rows = rows
	return rep, nil
}

// batch sends the program with one run per stdin and returns the CPU
// its sandboxes used, checking every run's answer.
func batch(ctx context.Context, c *service.Client, task runner.Task, stdins [][]byte) (time.Duration, error) {
	res, err := c.ExecBatch(ctx, service.NewBatchRequest(task, stdins))
	if err != nil {
		return 0, err
	}
	if res.CompileFailed {
		return 0, fmt.Errorf("compile failed: %s", res.Compile.Stderr.Data)
	}
	cpu := res.Compile.Usage.CPU
	for i, r := range res.Runs {
		if err := check(r, i); err != nil {
			return 0, err
		}
		cpu += r.Usage.CPU
	}
	return cpu, nil
}

// separate sends one request per stdin from clients clients at once.
func separate(ctx context.Context, c *service.Client, task runner.Task, stdins [][]byte, clients int) (time.Duration, error) {
	var (
		mu    sync.Mutex
		cpu   time.Duration
		first error
		wg    sync.WaitGroup
	)
	next := make(chan int)
	for range clients {
		wg.Go(func() {
			for i := range next {
				res, err := c.Exec(ctx, service.NewRequest(task, stdins[i]))
				if err == nil {
					err = check(res, i)
				}
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if err == nil {
					cpu += res.Usage.CPU + res.Compile.Usage.CPU
				}
				mu.Unlock()
			}
		})
	}
	for i := range stdins {
		next <- i
	}
	close(next)
	wg.Wait()
	return cpu, first
}

// want is the number of primes up to 100000*(i+1), for the first runs.
var want = []string{"9592", "17984", "25997", "33860", "41538"}

func check(r *runner.Result, i int) error {
	if r.Outcome != runner.OutcomeExited || r.ExitCode != 0 {
		return fmt.Errorf("run %d ended %s %d: %s", i, r.Outcome, r.ExitCode, r.Stderr.Data)
	}
	if i < len(want) && strings.TrimSpace(string(r.Stdout.Data)) != want[i] {
		return fmt.Errorf("run %d printed %q, not %s", i, r.Stdout.Data, want[i])
	}
	return nil
}

// cpuGroup is a cgroup this process and everything it starts from now
// on (containerd, its shims, runc or crun, the service) run in, for
// their CPU time; the sandboxes' own cgroups are elsewhere.
type cpuGroup struct {
	dir, usageFile, procsRoot string
}

func newCPUGroup() (*cpuGroup, error) {
	name := fmt.Sprintf("srbench-runs-%d", os.Getpid())
	g := &cpuGroup{}
	if _, err := os.Stat("/sys/fs/cgroup/cpuacct/cpuacct.usage"); err == nil {
		g.dir = filepath.Join("/sys/fs/cgroup/cpuacct", name)
		g.usageFile = filepath.Join(g.dir, "cpuacct.usage")
		g.procsRoot = "/sys/fs/cgroup/cpuacct/cgroup.procs"
	} else if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		g.dir = filepath.Join("/sys/fs/cgroup", name)
		g.usageFile = filepath.Join(g.dir, "cpu.stat")
		g.procsRoot = "/sys/fs/cgroup/cgroup.procs"
	} else {
		return nil, errors.New("no cgroup v1 cpuacct hierarchy nor cgroup v2 at /sys/fs/cgroup")
	}
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(g.dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		_ = os.Remove(g.dir)
		return nil, fmt.Errorf("joining %s: %w", g.dir, err)
	}
	return g, nil
}

// usage is the group's CPU time so far.
func (g *cpuGroup) usage() (time.Duration, error) {
	b, err := os.ReadFile(g.usageFile)
	if err != nil {
		return 0, err
	}
	if strings.HasSuffix(g.usageFile, "cpuacct.usage") {
		ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return time.Duration(ns), err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, err := strconv.ParseInt(v, 10, 64)
			return time.Duration(us) * time.Microsecond, err
		}
	}
	return 0, fmt.Errorf("no usage_usec in %s", g.usageFile)
}

// close moves this process back to the root group and removes the
// group once the processes started in it (shims exit a little after
// their last task) are gone.
func (g *cpuGroup) close() {
	_ = os.WriteFile(g.procsRoot, []byte(strconv.Itoa(os.Getpid())), 0o644)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err := os.Remove(g.dir); err == nil || time.Now().After(deadline) {
			if err != nil {
				logf("could not remove %s: %v", g.dir, err)
			}
			return
		}
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func print(r *Report) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "path\twall (median)\tCPU (median)\tof which in sandboxes\tper round: wall / CPU\n")
	for _, row := range r.Rows {
		var per []string
		for i := range row.WallS {
			per = append(per, fmt.Sprintf("%.1fs / %.1fs", row.WallS[i], row.CPUS[i]))
		}
		fmt.Fprintf(w, "%s\t%.2fs\t%.2fs\t%.2fs\t%s\n", row.Path, median(row.WallS), median(row.CPUS), median(row.SandboxCPUS), strings.Join(per, ", "))
	}
	_ = w.Flush()
	if len(r.Rows) == 2 {
		fmt.Printf("separate / one request: wall %.1fx, CPU %.1fx\n",
			median(r.Rows[1].WallS)/median(r.Rows[0].WallS), median(r.Rows[1].CPUS)/median(r.Rows[0].CPUS))
	}
}
