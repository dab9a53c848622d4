// Command bench measures what a trivial task costs through each way of
// running it, on one containerd and one small image, in one run:
//
//  1. `sandbox-runner exec`, a whole process on the cold path;
//  2. the service's API with a warm pool (and again with the pool's
//     sandboxes sharing shims);
//  3. `ctr run --rm` with the limits ctr can express;
//  4. `docker run --rm` with the hardening flags, when Debian's dockerd
//     is installed (it is started here, on the same containerd);
//  5. `runc run` of the cold path's own spec, with no containerd: the
//     floor under every path through containerd and runc;
//  6. under gVisor (runsc), when its shim is on PATH: a cold `exec` and
//     the service;
//  7. go-judge, the peer: its /run over loopback HTTP, in its own
//     container environment (no OCI runtime), on the same busybox.
//
// The paths alternate, round after round, so that a busy moment of the
// machine hits all of them alike. It then measures the service's
// throughput at 1, 2, 4 and 8 concurrent clients (go-judge's too, with its
// CPU time per task), the memory of the
// service and of an idle pooled sandbox, and that nothing leaked. It
// prints a table with the ratios to ctr and docker, and writes it as
// JSON with --json. It needs root; `make bench` runs it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/spf13/pflag"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/integration/ctrdtest"
	"github.com/sandbox-runner/sandbox-runner/integration/testimage"
	"github.com/sandbox-runner/sandbox-runner/runner"
	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

const (
	// goJudgePath is the go-judge row's name; goJudgeParallelism is its
	// -parallelism, the services' --max-concurrent.
	goJudgePath        = "go-judge /run (v1.8.5)"
	goJudgeParallelism = 8
	namespace          = "bench"
	image              = "sandbox-runner.test/busybox:latest"
	poolSize           = 4
)

type options struct {
	cli, init   string
	iterations  int
	throughput  int
	docker      string
	jsonOut     string
	concurrency []int
	gojudge     string
	gvisorPool  int
	// only, when set, keeps the latency paths and the throughput
	// services whose names it matches.
	only string
}

// Report is what one run measured.
type Report struct {
	When        time.Time         `json:"when"`
	Host        string            `json:"host"`
	Containerd  string            `json:"containerd"`
	Iterations  int               `json:"iterations"`
	Latency     []PathLatency     `json:"latency"`
	Throughput  []Throughput      `json:"throughput"`
	Memory      map[string]uint64 `json:"memory_bytes"`
	Leaks       int               `json:"leaks"`
	WarmBreak   map[string]string `json:"warm_breakdown,omitempty"`
	DockerError string            `json:"docker_error,omitempty"`
	GVisorError string            `json:"gvisor_error,omitempty"`
}

// PathLatency is one path's latency figures, in milliseconds.
type PathLatency struct {
	Path     string  `json:"path"`
	N        int     `json:"n"`
	P50      float64 `json:"p50_ms"`
	P95      float64 `json:"p95_ms"`
	P99      float64 `json:"p99_ms"`
	Mean     float64 `json:"mean_ms"`
	VsCtr    float64 `json:"p50_vs_ctr,omitempty"`
	VsDocker float64 `json:"p50_vs_docker,omitempty"`
	// CPU is the CPU time per task, in milliseconds, where the bench can
	// count all of it (go-judge's process tree).
	CPU  float64 `json:"cpu_ms_per_task,omitempty"`
	Note string  `json:"note,omitempty"`
}

// Throughput is the service's rate at one concurrency.
type Throughput struct {
	Service     string  `json:"service"`
	Concurrency int     `json:"concurrency"`
	Tasks       int     `json:"tasks"`
	PerSecond   float64 `json:"tasks_per_second"`
	PoolHits    int     `json:"pool_hits"`
	CPU         float64 `json:"cpu_ms_per_task,omitempty"`
	// P50 and P95 are the tasks' latencies, request to answer.
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
}

func main() {
	var o options
	fs := pflag.NewFlagSet("bench", pflag.ExitOnError)
	fs.StringVar(&o.cli, "cli", "bin/sandbox-runner", "the sandbox-runner binary")
	fs.StringVar(&o.init, "init", "bin/sandbox-runner-init", "the static sandbox-runner-init binary")
	fs.IntVar(&o.iterations, "iterations", 40, "rounds of the latency comparison")
	fs.IntVar(&o.throughput, "throughput-tasks", 120, "tasks per throughput measurement")
	fs.IntSliceVar(&o.concurrency, "concurrency", []int{1, 2, 4, 8}, "client counts for the throughput measurement")
	fs.StringVar(&o.docker, "docker", "auto", "docker run comparison: auto (when dockerd is installed), on, off")
	fs.StringVar(&o.jsonOut, "json", "", "also write the report as JSON to this file")
	fs.StringVar(&o.gojudge, "gojudge", "bin/gojudge/go-judge", "the go-judge binary (`make gojudge`); empty: no go-judge row")
	fs.IntVar(&o.gvisorPool, "gvisor-pool", poolSize, "warm pool size of the runsc service (0: every task takes the cold path through the service)")
	fs.StringVar(&o.only, "only", "", "measure only the latency paths and throughput services whose names match this regular expression (such as 'crun|runc')")
	_ = fs.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	rep, err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	print(os.Stdout, rep)
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	if rep.Leaks > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d objects leaked\n", rep.Leaks)
		os.Exit(1)
	}
}

// env is everything a run starts, and stops at its end.
type env struct {
	dir      string
	daemon   *ctrdtest.Daemon
	client   *client.Client
	cli      string
	init     string
	docker   *dockerd
	floor    *runcFloor
	floorPID *runcFloor // the floor's spec with the task as PID 1
	services []*serveProc
	gojudge  *goJudge
	// acct counts the CPU time of containerd, what it starts, the
	// services and the sandboxes; nil where the host has no cgroup CPU
	// accounting.
	acct *cpuAccount
}

func run(ctx context.Context, o options) (rep *Report, retErr error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root: it starts containerd and runs containers")
	}
	e := &env{}
	var err error
	var only *regexp.Regexp
	if o.only != "" {
		if only, err = regexp.Compile(o.only); err != nil {
			return nil, fmt.Errorf("--only: %w", err)
		}
	}
	if e.cli, err = filepath.Abs(o.cli); err != nil {
		return nil, err
	}
	if e.init, err = filepath.Abs(o.init); err != nil {
		return nil, err
	}
	// Unix socket paths must stay short.
	if e.dir, err = os.MkdirTemp("", "srbench-"); err != nil {
		return nil, err
	}
	defer e.close()

	logf("starting containerd in %s", e.dir)
	if e.daemon, err = ctrdtest.StartDaemon(ctx, filepath.Join(e.dir, "ctrd")); err != nil {
		return nil, err
	}
	if e.client, err = client.New(e.daemon.Address); err != nil {
		return nil, err
	}
	if e.acct, err = e.newCPUAccount(); err != nil {
		logf("no CPU per task for the containerd rows: %v", err)
	}
	ver, err := e.client.Version(ctx)
	if err != nil {
		return nil, err
	}
	archive := filepath.Join(e.dir, "image.tar")
	if err := testimage.BuildBusyboxArchive(archive, image); err != nil {
		return nil, err
	}
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	_, err = images.Import(namespaces.WithNamespace(ctx, namespace), e.client, f, runner.DefaultSnapshotter)
	f.Close()
	if err != nil {
		return nil, err
	}

	host, _ := os.Hostname()
	rep = &Report{When: time.Now().UTC(), Host: host, Containerd: ver.Version, Iterations: o.iterations, Memory: map[string]uint64{}}

	type path struct {
		name string
		run  func(i int) error
		note string
		// cpu: the path's work is over when run returns, so the CPU
		// used meanwhile (cgroups and client processes) is its cost.
		cpu bool
		// ready, if set, is waited for before the measurement starts.
		ready func() error
	}
	warm := func(name string, s *serveProc, note string) path {
		return path{name: name, run: func(int) error { return s.execOne(ctx) }, note: note,
			ready: func() error { return s.waitIdle(ctx) }}
	}
	// A row per usable OCI runtime (gVisor's aside), measured in the same
	// rounds, so their ratios hold however the machine's speed drifts.
	ocis, err := runner.NewOCIRuntimes("", nil)
	if err != nil {
		return nil, err
	}
	def, err := ocis.Default()
	if err != nil {
		return nil, err
	}
	var ociNames []string
	for _, name := range ocis.Usable() {
		if name != runner.OCIRuntimeRunsc {
			ociNames = append(ociNames, name)
		}
	}
	var paths []path
	// The service as configured by default (its OCI runtime's pooled
	// sandboxes share shims, runner.DefaultShimGroup to a shim), and,
	// per OCI runtime, the same with a shim per sandbox.
	dflt, err := e.serve(ctx, def.Name+", default", 0, def.Name, poolSize)
	if err != nil {
		return nil, err
	}
	paths = append(paths, warm(fmt.Sprintf("service API, warm pool (%s, the default: %d per shim)", def.Name, runner.DefaultShimGroup),
		dflt, "unix socket, HTTP, pooled sandbox"))
	for _, oci := range ociNames {
		each, err := e.serve(ctx, oci+", a shim each", 1, oci, poolSize)
		if err != nil {
			return nil, err
		}
		paths = append(paths,
			path{"sandbox-runner exec (cold, " + oci + ")", func(int) error { return e.execCold(oci) }, "whole process: connect, sweep, create, run, delete", true, nil},
			warm("service API, warm pool ("+oci+", a shim each)", each, "unix socket, HTTP, pooled sandbox"))
	}
	paths = append(paths, path{"ctr run --rm", e.ctrRun, "read-only, memory, cpus, seccomp; ctr's runc", true, nil})
	if e.floor, err = newRuncFloor(ctx, filepath.Join(e.dir, "floor"), e.init); err != nil {
		return nil, fmt.Errorf("runc floor: %w", err)
	}
	if e.floorPID, err = newRuncFloor(ctx, filepath.Join(e.dir, "floor-pid1"), ""); err != nil {
		return nil, fmt.Errorf("runc floor: %w", err)
	}
	paths = append(paths, path{"runc run (no containerd)", e.floor.run, "the cold path's spec with its init, runc alone: the floor", true, nil},
		path{"runc run, task as PID 1 (no init)", e.floorPID.run, "the same without the init: the difference is the init's cost", true, nil})
	// gVisor: a user-space kernel, through its own shim.
	if gv := ocis.Find(runner.OCIRuntimeRunsc); gv.Usable {
		paths = append(paths, path{"sandbox-runner exec (cold, runsc)", func(int) error { return e.execCold(runner.OCIRuntimeRunsc) },
			"whole process, gVisor's shim and sandbox", true, nil})
		name := "plain, runsc"
		if o.gvisorPool == 0 {
			name += ", no pool"
		}
		gvisor, err := e.serve(ctx, name, 0, runner.OCIRuntimeRunsc, o.gvisorPool)
		if err != nil {
			return nil, err
		}
		if o.gvisorPool > 0 {
			paths = append(paths, warm("service API, warm pool (runsc)", gvisor, "unix socket, HTTP, pooled gVisor sandbox"))
		} else {
			paths = append(paths, path{"service API, no pool (runsc)", func(int) error { return gvisor.execOne(ctx) }, "unix socket, HTTP, the cold path in the service", true, nil})
		}
	} else {
		rep.GVisorError = strings.TrimSpace(gv.Reason + "; " + gv.Fix)
		logf("no gVisor rows: %s", rep.GVisorError)
	}
	// go-judge: a row either way; when it cannot run here, the row says why.
	gojudgeRow := -1
	if o.gojudge != "" {
		gjNote := "loopback HTTP /run; go-judge's own namespaces + cgroups, no OCI runtime; the busybox rootfs's bin and etc bound read-only"
		bin, err := filepath.Abs(o.gojudge)
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(e.dir, "gojudge")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if e.gojudge, err = startGoJudge(ctx, bin, dir, goJudgeParallelism); err != nil {
			logf("no go-judge row: %v", err)
			rep.Latency = append(rep.Latency, PathLatency{Path: goJudgePath, Note: "not measured: " + err.Error()})
		} else {
			gojudgeRow = len(paths)
			paths = append(paths, path{goJudgePath, func(int) error { return e.gojudge.run(ctx) }, gjNote, false, nil})
		}
	}
	if o.docker != "off" {
		if e.docker, err = startDockerd(ctx, e.dir, e.daemon.Address, archive); err != nil {
			if o.docker == "on" {
				return nil, err
			}
			rep.DockerError = err.Error()
			logf("no docker run comparison: %v", err)
		} else {
			paths = append(paths, path{"docker run --rm", e.docker.run, "hardening flags, same containerd", false, nil})
		}
	}

	if only != nil {
		kept := paths[:0]
		for i, p := range paths {
			switch {
			case only.MatchString(p.name):
				if i == gojudgeRow {
					gojudgeRow = len(kept)
				}
				kept = append(kept, p)
			case i == gojudgeRow:
				gojudgeRow = -1
			}
		}
		paths = kept
	}
	samples := make([][]time.Duration, len(paths))
	logf("latency: %d rounds of %d paths", o.iterations, len(paths))
	var gjCPU time.Duration
	cpus := make([]time.Duration, len(paths))
	// A fixed seed: the same order in every run of the bench.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range o.iterations {
		// A new order each round, so that no path always follows the
		// same one (rotating a fixed order would keep the neighbours).
		for _, j := range rng.Perm(len(paths)) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			// Each measurement starts on a quiet machine: the services
			// have refilled their pools and torn down the last pooled
			// sandbox, so no path pays for another's background work.
			e.quiet(ctx, e.pooled())
			var cpu0 time.Duration
			switch {
			case j == gojudgeRow:
				cpu0 = e.gojudge.cpu()
			case paths[j].cpu:
				cpu0 = e.cpu()
			}
			if paths[j].ready != nil {
				if err := paths[j].ready(); err != nil {
					return nil, fmt.Errorf("%s: %w", paths[j].name, err)
				}
			}
			start := time.Now()
			if err := paths[j].run(i); err != nil {
				return nil, fmt.Errorf("%s: %w", paths[j].name, err)
			}
			samples[j] = append(samples[j], time.Since(start))
			switch {
			case j == gojudgeRow:
				gjCPU += e.gojudge.cpu() - cpu0
			case paths[j].cpu:
				cpus[j] += e.cpu() - cpu0
			}
		}
	}
	for j, p := range paths {
		l := stats(p.name, samples[j], p.note)
		switch {
		case l.N == 0:
		case j == gojudgeRow:
			l.CPU = float64(gjCPU.Microseconds()) / 1000 / float64(l.N)
		case paths[j].cpu && e.acct != nil:
			l.CPU = float64(cpus[j].Microseconds()) / 1000 / float64(l.N)
		}
		rep.Latency = append(rep.Latency, l)
	}
	ratios(rep.Latency)

	for _, s := range e.services {
		if mem, err := s.metric(ctx, "sandbox_runner_pool_idle_memory_bytes"); err == nil && s.pool > 0 {
			rep.Memory["idle pooled sandbox ("+s.name+")"] = uint64(mem)
		}
		rep.Memory["service process ("+s.name+", RSS)"] = rss(s.cmd.Process.Pid)
	}
	rep.WarmBreak = dflt.breakdown(ctx)

	for _, s := range e.services {
		if only != nil && !only.MatchString(s.name) {
			continue
		}
		for _, c := range o.concurrency {
			logf("throughput: %s service, %d clients", s.name, c)
			cpu0 := e.cpu()
			tp, err := s.throughput(ctx, c, o.throughput)
			if err != nil {
				return nil, err
			}
			if e.acct != nil {
				// The pool's refill is the tasks' cost too: it is
				// counted once the service is quiet again (looking
				// seldom, as each look costs CPU too).
				e.quietEvery(ctx, e.pooled(), 100*time.Millisecond)
				tp.CPU = float64((e.cpu() - cpu0).Microseconds()) / 1000 / float64(tp.Tasks)
			}
			rep.Throughput = append(rep.Throughput, tp)
		}
	}
	if e.gojudge != nil && (only == nil || only.MatchString("go-judge")) {
		for _, c := range o.concurrency {
			logf("throughput: go-judge, %d clients", c)
			cpu0 := e.gojudge.cpu()
			tp, err := throughput(ctx, "go-judge", c, o.throughput, e.gojudge.run)
			if err != nil {
				return nil, err
			}
			tp.CPU = float64((e.gojudge.cpu() - cpu0).Microseconds()) / 1000 / float64(tp.Tasks)
			rep.Throughput = append(rep.Throughput, tp)
		}
		rep.Memory["go-judge (its process tree, RSS)"] = treeRSS(e.gojudge.cmd.Process.Pid)
	}

	// Stop the services (they drain their pools) and count what is left.
	for _, s := range e.services {
		s.stop()
	}
	e.services = nil
	if rep.Leaks, err = leaks(ctx, e.client); err != nil {
		return nil, err
	}
	if e.gojudge != nil {
		left := e.gojudge.stop()
		e.gojudge = nil
		for _, l := range left {
			logf("go-judge left %s", l)
		}
		rep.Leaks += len(left)
	}
	return rep, nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func (e *env) close() {
	for _, s := range e.services {
		s.stop()
	}
	if e.gojudge != nil {
		e.gojudge.stop()
	}
	if e.docker != nil {
		e.docker.stop()
	}
	if e.floorPID != nil {
		e.floorPID.close()
	}
	if e.floor != nil {
		e.floor.close()
	}
	if e.client != nil {
		// Bounded: a delete that never returns must not keep the bench,
		// and its containerd, running.
		ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), namespace), time.Minute)
		defer cancel()
		if cs, err := e.client.Containers(ctx); err == nil {
			for _, c := range cs {
				if t, err := c.Task(ctx, nil); err == nil {
					_, _ = t.Delete(ctx, client.WithProcessKill)
				}
				_ = c.Delete(ctx, client.WithSnapshotCleanup)
			}
		}
		e.client.Close()
	}
	if e.daemon != nil {
		_ = e.daemon.Stop()
	}
	if e.acct != nil {
		if err := e.acct.close(); err != nil {
			logf("%v", err)
		}
	}
	_ = exec.Command("umount", "-R", "-l", e.dir).Run()
	os.RemoveAll(e.dir)
}

// newCPUAccount makes the bench's cgroup and moves containerd into it,
// before it has started anything.
func (e *env) newCPUAccount() (*cpuAccount, error) {
	a, err := newCPUAccount(fmt.Sprintf("srbench-%d", os.Getpid()), namespace)
	if err != nil {
		return nil, err
	}
	// The daemon is this process's child that names its dir.
	pid := 0
	for p, pt := range tree(os.Getpid()) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		if pt.ppid == os.Getpid() && strings.Contains(string(cmdline), e.daemon.Dir+"/") {
			pid = p
		}
	}
	err = errors.New("no child process of the bench runs containerd in " + e.daemon.Dir)
	if pid != 0 {
		err = a.add(pid)
	}
	if err != nil {
		_ = a.close()
		return nil, fmt.Errorf("moving containerd into the bench's cgroup: %w", err)
	}
	return a, nil
}

// cpu is the CPU time used so far by containerd, what it started, the
// services, the sandboxes and the client processes the bench waited for.
func (e *env) cpu() time.Duration {
	if e.acct == nil {
		return 0
	}
	return e.acct.total() + time.Duration(childCPU.Load())
}

// execCold runs the CLI once, as a shell user would, under OCI runtime oci.
func (e *env) execCold(oci string) error {
	out, err := combinedOutput(exec.Command(e.cli, "exec", "--address", e.daemon.Address, "--namespace", namespace,
		"--state-dir", filepath.Join(e.dir, "exec-state"), "--via", "direct", "--oci-runtime", oci,
		"--runtime", "sh", "--image", image, "-c", "true"))
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// ctrRun runs the same task with ctr.
func (e *env) ctrRun(i int) error {
	out, err := combinedOutput(exec.Command("ctr", "--address", e.daemon.Address, "--namespace", namespace, "run", "--rm",
		"--read-only", "--memory-limit", strconv.Itoa(512<<20), "--cpus", "1", "--seccomp",
		image, fmt.Sprintf("ctr-%d-%d", os.Getpid(), i), "true"))
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// serveProc is one `sandbox-runner serve` with a warm pool.
type serveProc struct {
	name   string
	pool   int
	socket string
	cmd    *exec.Cmd
	log    *bytes.Buffer
	http   *http.Client
	api    *service.Client
	done   chan struct{}
}

// serve starts a service with a pool of pool sandboxes under oci, group
// of them per shim (0: the default, runner.DefaultShimGroup; 1: a shim each).
func (e *env) serve(ctx context.Context, name string, group int, oci string, pool int) (*serveProc, error) {
	dir := filepath.Join(e.dir, fmt.Sprintf("svc-%d", len(e.services)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	config := fmt.Sprintf("oci_runtime = %q\n\n[runtimes.sh]\nimage = %q\n\n[service.pool]\nshim_group = %d\n", oci, image, group)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o644); err != nil {
		return nil, err
	}
	s := &serveProc{name: name, pool: pool, socket: filepath.Join(dir, "api.sock"), log: &bytes.Buffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(e.cli, "serve", "--config", filepath.Join(dir, "config.toml"),
		"--address", e.daemon.Address, "--namespace", namespace, "--state-dir", filepath.Join(dir, "state"),
		"--socket", s.socket, "--pool", fmt.Sprintf("sh=%d", pool), "--pool-init", e.init,
		"--max-concurrent", "8", "--queue", "64", "--log-level", "warn")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	e.services = append(e.services, s)
	if e.acct != nil {
		if err := e.acct.add(s.cmd.Process.Pid); err != nil {
			return nil, fmt.Errorf("moving serve (%s) into the bench's cgroup: %w", name, err)
		}
	}
	s.http = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", s.socket)
	}}}
	s.api = service.NewClient(s.socket)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if idle, err := s.metric(ctx, "sandbox_runner_pool_idle"); err == nil && int(idle) == pool {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("serve (%s) exited: %s", name, s.log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("serve (%s) never filled its pool: %s", name, s.log)
		}
	}
}

func (s *serveProc) stop() {
	if s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(90 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// quiet waits, up to 10 s, until the bench namespace holds exactly want
// containers (the services' idle pooled sandboxes) and nothing else: no
// refill under way, no sandbox being torn down, no leftover of a path.
func (e *env) quiet(ctx context.Context, want int) { e.quietEvery(ctx, want, 5*time.Millisecond) }

// quietEvery is quiet, looking every interval.
func (e *env) quietEvery(ctx context.Context, want int, interval time.Duration) {
	ctx = namespaces.WithNamespace(ctx, namespace)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(interval) {
		cs, err := e.client.Containers(ctx)
		if err != nil || len(cs) != want {
			continue
		}
		if idle, err := e.idle(ctx); err == nil && idle == want {
			return
		}
	}
	logf("the machine did not settle within 10s; measuring anyway")
}

// pooled is the number of sandboxes the services keep ready.
func (e *env) pooled() int {
	n := 0
	for _, s := range e.services {
		n += s.pool
	}
	return n
}

// idle is the number of idle pooled sandboxes over every service.
func (e *env) idle(ctx context.Context) (int, error) {
	n := 0
	for _, s := range e.services {
		idle, err := s.metric(ctx, "sandbox_runner_pool_idle")
		if err != nil {
			return 0, err
		}
		n += int(idle)
	}
	return n, nil
}

// waitIdle waits, up to 10 s, until the pool has a sandbox ready, so
// that the measurement that follows is of a pooled sandbox (a miss would
// be the cold path).
func (s *serveProc) waitIdle(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		idle, err := s.metric(ctx, "sandbox_runner_pool_idle")
		if err != nil {
			return err
		}
		if idle >= 1 || time.Now().After(deadline) {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *serveProc) execOne(ctx context.Context) error {
	res, err := s.api.Exec(ctx, service.Request{Runtime: "sh", Files: []service.File{{Content: "true"}}})
	if err != nil {
		return err
	}
	if res.Outcome != runner.OutcomeExited || res.ExitCode != 0 {
		return fmt.Errorf("trivial task ended %s %d: %s", res.Outcome, res.ExitCode, res.Stderr.Data)
	}
	return nil
}

// metric reads one unlabelled-or-first series of name from /metrics.
func (s *serveProc) metric(ctx context.Context, name string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://sandbox-runner/metrics", nil)
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			return strconv.ParseFloat(f[len(f)-1], 64)
		}
	}
	return 0, fmt.Errorf("no metric %s", name)
}

// breakdown reads the mean time of each stage the service observed.
func (s *serveProc) breakdown(ctx context.Context) map[string]string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://sandbox-runner/metrics", nil)
	resp, err := s.http.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sums, counts := map[string]float64{}, map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		for _, suffix := range []string{"_sum", "_count"} {
			name := "sandbox_runner_stage_duration_seconds" + suffix + "{"
			if !strings.HasPrefix(line, name) {
				continue
			}
			i := strings.Index(line, `stage="`)
			if i < 0 {
				continue
			}
			stage := line[i+7:]
			stage = stage[:strings.IndexByte(stage, '"')]
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			if suffix == "_sum" {
				sums[stage] += v
			} else {
				counts[stage] += v
			}
		}
	}
	out := map[string]string{}
	for stage, n := range counts {
		if n > 0 {
			out[stage] = fmt.Sprintf("%.1f ms mean over %d", sums[stage]/n*1000, int(n))
		}
	}
	return out
}

// throughput sends n tasks from c concurrent clients and reports the
// rate; pool hits come from the service's counters.
func (s *serveProc) throughput(ctx context.Context, c, n int) (Throughput, error) {
	before, _ := s.metric(ctx, "sandbox_runner_pool_hits_total")
	tp, err := throughput(ctx, s.name, c, n, s.execOne)
	if err != nil {
		return Throughput{}, err
	}
	after, _ := s.metric(ctx, "sandbox_runner_pool_hits_total")
	tp.PoolHits = int(after - before)
	return tp, nil
}

// throughput runs n tasks with run from c concurrent clients and reports
// the rate.
func throughput(ctx context.Context, name string, c, n int, run func(context.Context) error) (Throughput, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	var took []time.Duration
	start := time.Now()
	for range c {
		wg.Go(func() {
			for range next {
				begun := time.Now()
				err := run(ctx)
				mu.Lock()
				took = append(took, time.Since(begun))
				if err != nil {
					firstErr = cmpOr(firstErr, err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return Throughput{}, firstErr
	}
	l := stats(name, took, "")
	return Throughput{Service: name, Concurrency: c, Tasks: n, PerSecond: float64(n) / elapsed.Seconds(), P50: l.P50, P95: l.P95}, nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// dockerd is Debian's dockerd on the benchmark's containerd.
type dockerd struct {
	socket string
	cmd    *exec.Cmd
	done   chan struct{}
	log    *bytes.Buffer
	// created are host paths dockerd makes that were not there before,
	// removed when it stops.
	created []string
}

func startDockerd(ctx context.Context, dir, containerd, ociArchive string) (*dockerd, error) {
	bin, err := exec.LookPath("dockerd")
	if err != nil {
		return nil, errors.New("dockerd is not installed (Debian: apt-get install docker.io)")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		return nil, errors.New("the docker client is not installed")
	}
	root := filepath.Join(dir, "docker")
	d := &dockerd{socket: filepath.Join(root, "docker.sock"), log: &bytes.Buffer{}, done: make(chan struct{})}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	for _, p := range []string{"/etc/docker", "/run/docker"} {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			d.created = append(d.created, p)
		}
	}
	// A daemon.json of our own: the host's must not change the run, and
	// the engine key goes under root instead of /etc/docker.
	config := filepath.Join(root, "daemon.json")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`{"deprecated-key-path": %q}`, filepath.Join(root, "key.json"))), 0o600); err != nil {
		return nil, err
	}
	d.cmd = exec.Command(bin, "--config-file", config, "--iptables=false", "--bridge=none", "--containerd", containerd,
		"--data-root", filepath.Join(root, "data"), "--exec-root", filepath.Join(root, "exec"),
		"--pidfile", filepath.Join(root, "docker.pid"), "-H", "unix://"+d.socket)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for d.docker("version") != nil {
		select {
		case <-d.done:
			return nil, fmt.Errorf("dockerd exited: %s", tailString(d.log.String(), 2000))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("dockerd did not answer: %s", tailString(d.log.String(), 2000))
		}
	}
	// Docker 20.10 loads docker-save archives only.
	rootfs := filepath.Join(dir, "docker-rootfs")
	if err := testimage.BusyboxRootfs(rootfs, ""); err != nil {
		d.stop()
		return nil, err
	}
	archive := filepath.Join(dir, "image-docker.tar")
	f, err := os.Create(archive)
	if err != nil {
		d.stop()
		return nil, err
	}
	err = testimage.WriteDockerArchive(f, rootfs, testimage.Options{Ref: image, Env: []string{runnerPATH}})
	f.Close()
	if err != nil {
		d.stop()
		return nil, err
	}
	if err := d.docker("load", "-i", archive); err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

const runnerPATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func (d *dockerd) docker(args ...string) error {
	out, err := exec.Command("docker", append([]string{"-H", "unix://" + d.socket}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (d *dockerd) run(int) error {
	return d.docker("run", "--rm", "--read-only", "--network", "none", "--cap-drop", "ALL",
		"--security-opt", "no-new-privileges", "--memory", "512m", "--memory-swap", "512m", "--cpus", "1",
		"--pids-limit", "128", "--user", "65534:65534", image, "true")
}

func (d *dockerd) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	for _, p := range d.created {
		_ = os.RemoveAll(p)
	}
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// leaks counts containers, tasks and non-layer snapshots of ours left.
func leaks(ctx context.Context, c *client.Client) (int, error) {
	ctx = namespaces.WithNamespace(ctx, namespace)
	cs, err := c.Containers(ctx)
	if err != nil {
		return 0, err
	}
	n := len(cs)
	for _, ctr := range cs {
		logf("leaked container %s", ctr.ID())
	}
	return n, nil
}

func rss(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func stats(name string, d []time.Duration, note string) PathLatency {
	ms := make([]float64, len(d))
	var sum float64
	for i, v := range d {
		ms[i] = float64(v.Microseconds()) / 1000
		sum += ms[i]
	}
	slices.Sort(ms)
	q := func(p float64) float64 {
		if len(ms) == 0 {
			return 0
		}
		i := int(math.Ceil(p*float64(len(ms)))) - 1
		return ms[max(0, min(i, len(ms)-1))]
	}
	return PathLatency{Path: name, N: len(ms), P50: q(0.50), P95: q(0.95), P99: q(0.99), Mean: sum / float64(max(len(ms), 1)), Note: note}
}

func ratios(ls []PathLatency) {
	var ctr, docker float64
	for _, l := range ls {
		switch l.Path {
		case "ctr run --rm":
			ctr = l.P50
		case "docker run --rm":
			docker = l.P50
		}
	}
	for i := range ls {
		if ctr > 0 {
			ls[i].VsCtr = ls[i].P50 / ctr
		}
		if docker > 0 {
			ls[i].VsDocker = ls[i].P50 / docker
		}
	}
}

func print(w io.Writer, r *Report) {
	fmt.Fprintf(w, "\nTrivial task (`true` in a busybox image), containerd %s, %d rounds, on %s\n\n", r.Containerd, r.Iterations, r.Host)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tp50 ms\tp95 ms\tp99 ms\tmean ms\tp50/ctr\tp50/docker\tCPU ms/task\t")
	var unmeasured []PathLatency
	for _, l := range r.Latency {
		if l.N == 0 {
			unmeasured = append(unmeasured, l)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%s\t%s\t\n", l.Path, l.P50, l.P95, l.P99, l.Mean, ratio(l.VsCtr), ratio(l.VsDocker), cpuMS(l.CPU))
	}
	tw.Flush()
	for _, l := range unmeasured {
		fmt.Fprintf(w, "(no %s row: %s)\n", l.Path, l.Note)
	}
	if r.GVisorError != "" {
		fmt.Fprintf(w, "(no gVisor rows: %s)\n", r.GVisorError)
	}
	if r.DockerError != "" {
		fmt.Fprintf(w, "(no docker run: %s)\n", r.DockerError)
	}
	fmt.Fprintln(w, "\nService throughput (trivial tasks, pools of", poolSize, "sandboxes unless the service's name says otherwise)")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "service\tclients\ttasks\ttasks/s\tpool hits\tp50 ms\tp95 ms\tCPU ms/task\t")
	for _, t := range r.Throughput {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%d\t%.1f\t%.1f\t%s\t\n", t.Service, t.Concurrency, t.Tasks, t.PerSecond, t.PoolHits, t.P50, t.P95, cpuMS(t.CPU))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nMemory")
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range r.Memory {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(w, "  %-40s %6.1f MiB\n", k, float64(r.Memory[k])/(1<<20))
	}
	if len(r.WarmBreak) > 0 {
		fmt.Fprintln(w, "\nWhere a pooled task's time goes (service's stage histograms)")
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range r.WarmBreak {
				if !yield(k) {
					return
				}
			}
		}) {
			fmt.Fprintf(w, "  %-12s %s\n", k, r.WarmBreak[k])
		}
	}
	fmt.Fprintf(w, "\nLeaked objects after the run: %d\n", r.Leaks)
}

func cpuMS(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}

func ratio(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}
