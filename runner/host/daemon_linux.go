package host

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// daemonStartTimeout bounds how long a new containerd may take to serve.
const daemonStartTimeout = 20 * time.Second

// Daemon is a private containerd: its own root, state dir and socket,
// all under one directory.
type Daemon struct {
	// Dir holds config.toml, root/, state/, the socket and the log.
	Dir string
	// Address is the daemon's socket.
	Address string
	// Log is the daemon's log file.
	Log string
}

// daemonConfig is a containerd config that works on 1.6, 1.7 and 2.x
// (2.x migrates version 2 configs). The CRI plugin is off: nothing here
// speaks CRI, and it is most of a daemon's start time.
const daemonConfig = `version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
`

// NewDaemon returns the private containerd that lives in dir; Start
// starts it.
func NewDaemon(dir string) *Daemon {
	return &Daemon{
		Dir:     dir,
		Address: filepath.Join(dir, "containerd.sock"),
		Log:     filepath.Join(dir, "containerd.log"),
	}
}

// EnsureDaemon returns the private containerd in dir, starting it when it
// is not running. A started daemon is detached from this process so that
// the next invocation of the runner finds it serving; its pid is kept in
// dir/containerd.pid.
func EnsureDaemon(ctx context.Context, dir string, log *slog.Logger) (*Daemon, error) {
	d := NewDaemon(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	// One runner at a time decides whether to start the daemon.
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	if c, err := dial(ctx, d.Address); err == nil {
		c.Close()
		return d, nil
	}
	log.Warn("no containerd at "+DefaultAddress+" nor at Docker's "+DockerAddress+"; starting a private one", "dir", dir, "socket", d.Address, "log", d.Log)
	cmd, _, err := d.Start(ctx, func(c *exec.Cmd) { c.SysProcAttr = &syscall.SysProcAttr{Setsid: true} })
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(d.Dir, "containerd.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		return nil, fmt.Errorf("writing containerd pid file: %w", err)
	}
	return d, nil
}

// ContainerdBinEnv names the environment variable that picks the
// containerd binary a private daemon runs, instead of the one on PATH;
// its directory goes first on the daemon's PATH, so that the daemon runs
// the shim (containerd-shim-runc-v2) installed next to it. The test
// suite uses it to run against a containerd 2.x build.
const ContainerdBinEnv = "SANDBOX_RUNNER_CONTAINERD_BIN"

// containerdBinary returns the containerd to start and the environment
// to start it with.
func containerdBinary() (bin string, env []string, err error) {
	if bin = os.Getenv(ContainerdBinEnv); bin != "" {
		if !filepath.IsAbs(bin) {
			return "", nil, fmt.Errorf("%s=%s: give an absolute path", ContainerdBinEnv, bin)
		}
		if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", nil, fmt.Errorf("%s=%s is not an executable file", ContainerdBinEnv, bin)
		}
		env = append(env, "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
		for _, e := range os.Environ() {
			if !strings.HasPrefix(e, "PATH=") {
				env = append(env, e)
			}
		}
		return bin, env, nil
	}
	bin, err = exec.LookPath("containerd")
	if err != nil {
		return "", nil, fmt.Errorf("containerd is not installed: install it (Debian: apt-get install containerd runc): %w", err)
	}
	return bin, nil, nil
}

// Start starts containerd in d.Dir with its config, and waits until it
// serves. configure sets how the process is started (its session, what
// ends it with its parent). It returns the started command and a channel
// that gets its Wait's error when it exits; on error, nothing is left
// running.
func (d *Daemon) Start(ctx context.Context, configure func(*exec.Cmd)) (*exec.Cmd, <-chan error, error) {
	bin, env, err := containerdBinary()
	if err != nil {
		return nil, nil, err
	}
	for _, sub := range []string{"", "root", "state", "opt"} {
		if err := os.MkdirAll(filepath.Join(d.Dir, sub), 0o700); err != nil {
			return nil, nil, fmt.Errorf("creating %s: %w", d.Dir, err)
		}
	}
	// A socket left by a daemon that died would make the new one fail.
	_ = os.Remove(d.Address)
	config := filepath.Join(d.Dir, "config.toml")
	body := fmt.Sprintf(daemonConfig, filepath.Join(d.Dir, "root"), filepath.Join(d.Dir, "state"),
		d.Address, d.Address+".ttrpc", filepath.Join(d.Dir, "opt"))
	if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
		return nil, nil, fmt.Errorf("writing containerd config: %w", err)
	}
	logf, err := os.OpenFile(d.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("opening containerd log: %w", err)
	}
	defer logf.Close()

	// A descriptor this process was handed without close-on-exec (a
	// shell's redirection, a socket systemd passed) would stay open in a
	// daemon that outlives it, and whoever waits for its end would wait
	// for the daemon too.
	inheritNoFiles()
	cmd := exec.Command(bin, "--config", config)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	if configure != nil {
		configure(cmd)
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting containerd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.Now().Add(daemonStartTimeout)
	for {
		c, err := dial(ctx, d.Address)
		if err == nil {
			c.Close()
			break
		}
		select {
		case werr := <-exited:
			return nil, nil, fmt.Errorf("containerd exited at start (%v); its log %s ends with:\n%s", werr, d.Log, tail(d.Log, 20))
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return nil, nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return nil, nil, fmt.Errorf("containerd did not serve on %s within %s; its log %s ends with:\n%s", d.Address, daemonStartTimeout, d.Log, tail(d.Log, 20))
		}
	}
	return cmd, exited, nil
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(string(bytes.TrimRight(b, "\n")), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// inheritNoFiles marks every descriptor above stderr close-on-exec; this
// process keeps them, its children do not get them. The files Go opens
// are so already: what is left is what this process inherited.
func inheritNoFiles() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= 2 {
			continue
		}
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
	}
}
