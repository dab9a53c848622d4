package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sandbox-runner/sandbox-runner/integration/testimage"
	"github.com/sandbox-runner/sandbox-runner/runner"
)

// goJudge is go-judge (github.com/criyle/go-judge), the peer the bench
// compares with: a server that runs each command in a container
// environment of its own making (namespaces, cgroups, a prefork of
// container inits), with no OCI runtime and no containerd. `make gojudge`
// builds it; the bench starts it on loopback with the same busybox as
// the image the other rows run, bound read-only, and stops it.
type goJudge struct {
	bin string
	dir string
	url string
	// cgroup is the cgroup prefix it makes its cgroups under, its own
	// per run, so that stop can remove what it leaves.
	cgroup string
	cmd    *exec.Cmd
	log    *bytes.Buffer
	done   chan struct{}
	http   *http.Client
}

// goJudgeMounts is go-judge's mount.yaml for the bench: the busybox
// rootfs's bin and etc read-only, a tmpfs work dir and /tmp the size of
// the runner's default, /proc, and the container user go-judge defaults
// to (no capabilities, not root).
func goJudgeMounts(rootfs string, tmpBytes int64) string {
	return fmt.Sprintf(`mount:
  - type: bind
    source: %[1]s/bin
    target: /bin
    readonly: true
  - type: bind
    source: %[1]s/etc
    target: /etc
    readonly: true
  - type: tmpfs
    target: /w
    data: size=%[2]d,nr_inodes=4k
  - type: tmpfs
    target: /tmp
    data: size=%[2]d,nr_inodes=4k
proc: true
workDir: /w
hostName: go-judge
domainName: go-judge
uid: 1536
gid: 1536
`, rootfs, tmpBytes)
}

// startGoJudge starts bin with its files, mounts and cgroups under dir and
// a cgroup prefix of its own, listening on a free loopback port, and
// waits until it answers.
func startGoJudge(ctx context.Context, bin, dir string, parallelism int) (*goJudge, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("go-judge binary %s: %w (`make gojudge` builds it)", bin, err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return nil, err
	}
	if err := testimage.BusyboxRootfs(rootfs, ""); err != nil {
		return nil, err
	}
	mounts := filepath.Join(dir, "mount.yaml")
	if err := os.WriteFile(mounts, []byte(goJudgeMounts(rootfs, runner.DefaultTmpSize)), 0o644); err != nil {
		return nil, err
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	g := &goJudge{bin: bin, dir: dir, url: fmt.Sprintf("http://127.0.0.1:%d", port),
		cgroup: fmt.Sprintf("srbench-gojudge-%d", os.Getpid()), log: &bytes.Buffer{}, done: make(chan struct{}),
		http: &http.Client{Timeout: 30 * time.Second}}
	g.cmd = exec.Command(bin, "-http-addr", fmt.Sprintf("127.0.0.1:%d", port), "-enable-grpc=false",
		"-mount-conf", mounts, "-dir", filepath.Join(dir, "files"), "-cgroup-prefix", g.cgroup,
		"-parallelism", fmt.Sprint(parallelism), "-silent")
	// Its own working dir, so that a relative default (seccomp.yaml) finds
	// nothing of the caller's, and no ES_* variables of the caller's
	// environment reach its configuration.
	g.cmd.Dir = dir
	g.cmd.Env = []string{runnerPATH, "GIN_MODE=release"}
	g.cmd.Stdout, g.cmd.Stderr = g.log, g.log
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := os.MkdirAll(filepath.Join(dir, "files"), 0o755); err != nil {
		return nil, err
	}
	if err := g.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = g.cmd.Wait(); close(g.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.url+"/version", nil)
		if resp, err := g.http.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return g, nil
			}
		}
		select {
		case <-g.done:
			g.removeCgroups()
			return nil, fmt.Errorf("go-judge exited: %s", strings.TrimSpace(tailString(g.log.String(), 2000)))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			g.stop()
			return nil, fmt.Errorf("go-judge did not answer on %s: %s", g.url, strings.TrimSpace(tailString(g.log.String(), 2000)))
		}
	}
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// goJudgeRequest is the trivial task every row runs: `sh -c true`, with
// the runner's default limits.
var goJudgeRequest = func() []byte {
	b, _ := json.Marshal(map[string]any{"cmd": []map[string]any{{
		"args": []string{"/bin/sh", "-c", "true"},
		"env":  []string{runnerPATH},
		"files": []map[string]any{{"content": ""}, {"name": "stdout", "max": 10240},
			{"name": "stderr", "max": 10240}},
		"cpuLimit":    runner.DefaultTimeout.Nanoseconds(),
		"clockLimit":  runner.DefaultTimeout.Nanoseconds(),
		"memoryLimit": runner.DefaultMemory,
		"procLimit":   runner.DefaultPids,
	}}})
	return b
}()

// run sends the trivial task to /run and checks that it exited 0.
func (g *goJudge) run(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url+"/run", bytes.NewReader(goJudgeRequest))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return goJudgeResult(resp.StatusCode, b)
}

// goJudgeResult checks a /run answer: one result, Accepted, exit 0.
func goJudgeResult(status int, body []byte) error {
	if status != http.StatusOK {
		return fmt.Errorf("go-judge /run: %d: %s", status, bytes.TrimSpace(body))
	}
	var res []struct {
		Status     string `json:"status"`
		ExitStatus int    `json:"exitStatus"`
		Error      string `json:"error"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("go-judge /run: %w: %s", err, body)
	}
	if len(res) != 1 || res[0].Status != "Accepted" || res[0].ExitStatus != 0 {
		return fmt.Errorf("go-judge /run: trivial task did not exit 0: %s", body)
	}
	return nil
}

// cpu is the CPU time go-judge and every process under it have used.
func (g *goJudge) cpu() time.Duration { return treeCPU(g.cmd.Process.Pid) }

// stop asks go-judge to shut down (SIGINT is its graceful signal), kills
// its process group if it does not, and removes the cgroups it leaves.
// It returns what it could not remove.
func (g *goJudge) stop() []string {
	_ = g.cmd.Process.Signal(os.Interrupt)
	select {
	case <-g.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
		<-g.done
	}
	// A container init that outlived it would hold its cgroup.
	_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
	return g.removeCgroups()
}

// removeCgroups removes the cgroups go-judge made under its prefix in
// every hierarchy (it leaves them when it stops), deepest first.
func (g *goJudge) removeCgroups() []string {
	var left []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + g.cgroup)
	roots = append(roots, filepath.Join("/sys/fs/cgroup", g.cgroup))
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			var err error
			for range 50 {
				if err = os.Remove(dirs[i]); err == nil || errors.Is(err, os.ErrNotExist) || !errors.Is(err, syscall.EBUSY) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				left = append(left, fmt.Sprintf("cgroup %s: %v", dirs[i], err))
			}
		}
	}
	return left
}
