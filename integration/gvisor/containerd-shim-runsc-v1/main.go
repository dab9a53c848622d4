// Binary containerd-shim-runsc-v1 is gVisor's containerd shim, as gVisor's
// own shim/main.go builds it, with four changes: two to how it starts
// (its OOM score, and the form of the address it answers "start" with)
// and two to the exit of a sandbox's own container (its status, and the
// exit of one that was never started).
//
// gVisor's shim manager sets its serving process's oom_score_adj to -999
// and refuses to start when the kernel says no. Lowering a score needs
// CAP_SYS_RESOURCE, which root inside a container (such as a CI runner)
// often lacks; there gVisor's shim never starts. containerd's own
// sys.SetOOMScore already tolerates that refusal for an unprivileged
// caller. This shim tries the same -999 and, when the kernel refuses it,
// keeps containerd's score: the shim is then as killable as containerd's
// runc shim.
//
// containerd 1.6 reads a shim's answer to "start" as its socket address;
// the shim library gVisor builds on (containerd 2.x's) answers with JSON
// bootstrap parameters, which containerd 1.6 cannot dial ("dial unix
// {"version":2,...}: invalid argument") and containerd 2.x reads either
// way. This shim answers with the plain address.
//
// gVisor's shim learns a container's exit status from "runsc wait", which
// asks the sandbox. When the container is the sandbox's root and exits
// before that "runsc wait" has connected (a task that runs for a few
// milliseconds), the sandbox is gone and runsc answers "sandbox no longer
// running and its exit status is unavailable": the shim then reports 128,
// its internal error. The sandbox process exits with its root container's
// status (runsc's convention: the code, or 128+N for signal N), and this
// shim, as its subreaper, reaps it: that status is what Wait and Delete
// report instead of the internal error.
//
// gVisor's shim watches a container for its exit only from its start on:
// a sandbox that is created, never started and killed (a warm pool's idle
// sandbox, torn down) exits, but its Wait never returns, and containerd's
// delete with its kill waits for that exit until its context ends, and
// with it the rest of the cleanup, which leaves the container, its
// stopped task and this shim behind. Wait on a root container that was
// never started also returns when its sandbox process exits, with that
// process's status.
//
// Everything else, serving included, is gVisor's code.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	task "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/containerd/v2/pkg/shim"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/containerd/v2/pkg/sys/reaper"
	"github.com/containerd/containerd/v2/plugins"
	runc "github.com/containerd/go-runc"
	"github.com/containerd/plugin"
	"github.com/containerd/plugin/registry"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	gvshim "gvisor.dev/gvisor/pkg/shim/v1"
)

// runtimeName is the containerd runtime this shim serves.
const runtimeName = "io.containerd.runsc.v1"

// oomScore is the score gVisor gives its shim: the OOM killer takes the
// sandbox before the shim that reports its verdict.
const oomScore = -999

func init() {
	// gVisor's own plugin (gvisor.dev/gvisor/pkg/shim/v1/plugin) with its
	// task service wrapped.
	registry.Register(&plugin.Registration{
		Type:     plugins.TTRPCPlugin,
		ID:       "task",
		Requires: []plugin.Type{plugins.EventPlugin, plugins.InternalPlugin},
		InitFn: func(ic *plugin.InitContext) (interface{}, error) {
			pp, err := ic.GetByID(plugins.EventPlugin, "publisher")
			if err != nil {
				return nil, err
			}
			ss, err := ic.GetByID(plugins.InternalPlugin, "shutdown")
			if err != nil {
				return nil, err
			}
			// Before the service exists, so no exit goes unseen.
			exits := newSandboxExits(reaper.Default.Subscribe())
			inner, err := gvshim.NewShimRedirector(ic.Context, pp.(shim.Publisher), ss.(shutdown.Service))
			if err != nil {
				return nil, err
			}
			return &service{TaskService: inner, exits: exits}, nil
		},
	})
}

func main() {
	shim.Run(context.Background(), manager{gvshim.NewShimManager(runtimeName)})
}

// manager is gVisor's shim manager with Start replaced.
type manager struct{ shim.Manager }

// Start starts the serving shim as gVisor's Start does, one shim per
// container (sandbox-runner never groups sandboxes under gVisor).
func (m manager) Start(ctx context.Context, id string, opts shim.StartOpts) (_ shim.BootstrapParams, retErr error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return shim.BootstrapParams{}, err
	}
	self, err := os.Executable()
	if err != nil {
		return shim.BootstrapParams{}, err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return shim.BootstrapParams{}, err
	}
	args := []string{"-namespace", ns, "-address", opts.Address, "-id", id}
	if opts.Debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}

	address, err := shim.SocketAddress(ctx, opts.Address, id, opts.Debug)
	if err != nil {
		return shim.BootstrapParams{}, err
	}
	socket, err := shim.NewSocket(address)
	if err != nil {
		if !shim.SocketEaddrinuse(err) {
			return shim.BootstrapParams{}, fmt.Errorf("create new shim socket: %w", err)
		}
		// A socket a dead shim left behind.
		if shim.CanConnect(address) {
			return shim.BootstrapParams{}, fmt.Errorf("a shim already serves %s", address)
		}
		if err := shim.RemoveSocket(address); err != nil {
			return shim.BootstrapParams{}, fmt.Errorf("remove pre-existing socket: %w", err)
		}
		if socket, err = shim.NewSocket(address); err != nil {
			return shim.BootstrapParams{}, fmt.Errorf("create new shim socket: %w", err)
		}
	}
	defer func() {
		if retErr != nil {
			socket.Close()
			_ = shim.RemoveSocket(address)
		}
	}()
	// The serving shim reads it back ("address" in its working dir).
	if err := os.WriteFile("address", []byte(address), 0o644); err != nil {
		return shim.BootstrapParams{}, err
	}
	f, err := socket.File()
	if err != nil {
		return shim.BootstrapParams{}, err
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	err = cmd.Start()
	f.Close()
	if err != nil {
		return shim.BootstrapParams{}, err
	}
	defer func() {
		if retErr != nil {
			_ = cmd.Process.Kill()
		}
	}()
	go func() { _ = cmd.Wait() }()
	if err := shim.WritePidFile("shim.pid", cmd.Process.Pid); err != nil {
		return shim.BootstrapParams{}, err
	}
	if err := setOOMScore(cmd.Process.Pid, oomScore); err != nil {
		return shim.BootstrapParams{}, fmt.Errorf("failed to set OOM Score on shim: %w", err)
	}
	// The plain address, which every containerd reads; the library's JSON
	// after it goes nowhere.
	if _, err := fmt.Fprint(os.Stdout, address); err != nil {
		return shim.BootstrapParams{}, err
	}
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return shim.BootstrapParams{}, err
	}
	os.Stdout = devNull
	return shim.BootstrapParams{Version: 2, Address: address, Protocol: "ttrpc"}, nil
}

// setOOMScore writes score as pid's oom_score_adj; a kernel that refuses
// to lower it (no CAP_SYS_RESOURCE) leaves it as it is.
func setOOMScore(pid, score int) error {
	err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), []byte(strconv.Itoa(score)), 0)
	if errors.Is(err, os.ErrPermission) {
		return nil
	}
	return err
}

// Info is gVisor's; spelled out so that manager satisfies shim.Manager
// with its own Start.
func (m manager) Info(ctx context.Context, optionsR io.Reader) (*types.RuntimeInfo, error) {
	return m.Manager.Info(ctx, optionsR)
}

// internalError is the status gVisor's shim reports when "runsc wait"
// failed.
const internalError = 128

// sandboxWait is how long Wait waits for the reaper to have seen the
// sandbox's exit once "runsc wait" found it gone: it died before runsc
// gave up, so this is only the time to handle a SIGCHLD.
const sandboxWait = 2 * time.Second

// service is gVisor's task service with the root container's exit status
// taken from its sandbox process when runsc could not tell it.
type service struct {
	task.TaskService
	exits *sandboxExits
}

// RegisterTTRPC serves the task API. gVisor's shim also serves the
// sandbox API, which only containerd's CRI in sandbox mode uses.
func (s *service) RegisterTTRPC(server *ttrpc.Server) error {
	task.RegisterTaskService(server, s)
	return nil
}

func (s *service) Create(ctx context.Context, r *task.CreateTaskRequest) (*task.CreateTaskResponse, error) {
	resp, err := s.TaskService.Create(ctx, r)
	if err == nil {
		// The root container's pid is its sandbox process's.
		s.exits.track(r.ID, int(resp.Pid))
	}
	return resp, err
}

func (s *service) Start(ctx context.Context, r *task.StartRequest) (*task.StartResponse, error) {
	if r.ExecID != "" {
		return s.TaskService.Start(ctx, r)
	}
	// Before the start, so that a sandbox that exits at once is the
	// started container's exit, which gVisor's Wait reports.
	s.exits.start(r.ID, true)
	resp, err := s.TaskService.Start(ctx, r)
	if err != nil {
		s.exits.start(r.ID, false)
	}
	return resp, err
}

func (s *service) Wait(ctx context.Context, r *task.WaitRequest) (*task.WaitResponse, error) {
	if r.ExecID != "" {
		return s.TaskService.Wait(ctx, r)
	}
	type result struct {
		resp *task.WaitResponse
		err  error
	}
	inner := make(chan result, 1)
	go func() {
		resp, err := s.TaskService.Wait(ctx, r)
		inner <- result{resp, err}
	}()
	var resp *task.WaitResponse
	var err error
	select {
	case res := <-inner:
		resp, err = res.resp, res.err
	case st := <-s.exits.unstartedExit(ctx, r.ID):
		// gVisor's Wait would never return.
		return &task.WaitResponse{ExitStatus: uint32(st), ExitedAt: protobuf.ToTimestamp(time.Now())}, nil
	}
	if err == nil && resp.ExitStatus == internalError {
		if status, ok := s.exits.wait(ctx, r.ID); ok {
			resp.ExitStatus = uint32(status)
		}
	}
	return resp, err
}

func (s *service) Delete(ctx context.Context, r *task.DeleteRequest) (*task.DeleteResponse, error) {
	resp, err := s.TaskService.Delete(ctx, r)
	if err == nil && r.ExecID == "" {
		if resp.ExitStatus == internalError {
			if status, ok := s.exits.wait(ctx, r.ID); ok {
				resp.ExitStatus = uint32(status)
			}
		}
		s.exits.forget(r.ID)
	}
	return resp, err
}

// sandboxExits records the exit status of every sandbox process the
// reaper reaps.
type sandboxExits struct {
	mu      sync.Mutex
	pids    map[string]int // container id -> its sandbox's pid
	started map[string]bool
	status  map[int]int   // pid -> exit status, of tracked pids
	early   map[int]int   // pid -> exit status, of exits seen before track
	changed chan struct{} // closed at each change
}

func newSandboxExits(c chan runc.Exit) *sandboxExits {
	e := &sandboxExits{pids: map[string]int{}, started: map[string]bool{}, status: map[int]int{}, early: map[int]int{},
		changed: make(chan struct{})}
	go func() {
		for exit := range c {
			e.mu.Lock()
			tracked := false
			for _, pid := range e.pids {
				tracked = tracked || pid == exit.Pid
			}
			if tracked {
				e.status[exit.Pid] = exit.Status
			} else {
				// runsc create's own exit, a gofer's, or a sandbox
				// that died before Create returned; only the last
				// few are kept.
				if len(e.early) > 64 {
					clear(e.early)
				}
				e.early[exit.Pid] = exit.Status
			}
			e.notify()
			e.mu.Unlock()
		}
	}()
	return e
}

func (e *sandboxExits) track(id string, pid int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.pids[id] = pid
	if st, ok := e.early[pid]; ok {
		e.status[pid] = st
		delete(e.early, pid)
	}
	e.notify()
}

func (e *sandboxExits) forget(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.status, e.pids[id])
	delete(e.pids, id)
	delete(e.started, id)
}

// start records whether id's container is (being) started.
func (e *sandboxExits) start(id string, started bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.started[id] = started
	e.notify()
}

// notify wakes every waiter; e.mu is held.
func (e *sandboxExits) notify() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// unstartedExit sends the exit status of id's sandbox process if it
// exits while id's container was never started. It sends nothing if the
// container is started, or is not a tracked root container, or ctx ends.
func (e *sandboxExits) unstartedExit(ctx context.Context, id string) <-chan int {
	c := make(chan int, 1)
	go func() {
		for {
			e.mu.Lock()
			pid, tracked := e.pids[id]
			st, exited := e.status[pid]
			started := e.started[id]
			changed := e.changed
			e.mu.Unlock()
			switch {
			case !tracked || started:
				return
			case exited:
				c <- st
				return
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
	return c
}

// wait returns the exit status of id's sandbox, waiting up to
// sandboxWait for it.
func (e *sandboxExits) wait(ctx context.Context, id string) (int, bool) {
	timer := time.NewTimer(sandboxWait)
	defer timer.Stop()
	for {
		e.mu.Lock()
		pid, tracked := e.pids[id]
		st, ok := e.status[pid]
		changed := e.changed
		e.mu.Unlock()
		if !tracked || ok {
			return st, ok
		}
		select {
		case <-changed:
		case <-timer.C:
			return 0, false
		case <-ctx.Done():
			return 0, false
		}
	}
}
