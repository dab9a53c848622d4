package host

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/cgroups/v3"
)

// Finding is one line of a host check: what was looked at, whether it is
// fine, what was seen, and what to do when it is not.
type Finding struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
	// Warning marks a finding that is OK but weaker than it should be:
	// it says why and how to fix it, and fails no check.
	Warning bool `json:"warning,omitempty"`
	// Optional findings that are not OK do not keep tasks from running
	// (an OCI runtime that is not the default, such as runsc).
	Optional bool `json:"optional,omitempty"`
}

// CheckContainerd says which containerd answers where Connect would look,
// its version, and what to do when none does; it starts nothing.
func CheckContainerd(ctx context.Context, o ConnectOptions) Finding {
	f := Finding{Name: "containerd"}
	var conn *Connection
	var err error
	if o.Address != "" {
		conn, err = dialAddress(ctx, o.Address)
	} else {
		conn, err = dialSystem(ctx)
	}
	if err == nil {
		defer conn.Close()
		f.Detail = conn.Version.Version
		if conn.Version.Revision != "" {
			f.Detail += fmt.Sprintf(" (revision %s)", conn.Version.Revision)
		}
		f.Detail += " at " + conn.Address
		switch {
		case conn.Source == SourceDocker:
			f.Detail += fmt.Sprintf(" (Docker's own containerd; none at %s)", DefaultAddress)
		case conn.Address == DockerAddress:
			f.Detail += " (Docker's own containerd)"
		}
		if verr := checkVersion(conn.Version.Version); verr != nil {
			f.Detail = verr.Error() + ": " + f.Detail
			f.Fix = "upgrade containerd to 1.6 or later (1.6, 1.7 and 2.x are supported)"
			return f
		}
		f.OK = true
		return f
	}
	if o.Address == "" && !o.NoPrivate {
		private := filepath.Join(o.StateDir, "containerd", "containerd.sock")
		if conn, perr := dialAddress(ctx, private); perr == nil {
			defer conn.Close()
			f.OK = true
			f.Detail = fmt.Sprintf("%s at %s (private, started by sandbox-runner; none at %s nor at Docker's %s)", conn.Version.Version, private, DefaultAddress, DockerAddress)
			return f
		}
		if _, _, lerr := containerdBinary(); lerr == nil {
			f.OK = true
			f.Detail = fmt.Sprintf("none at %s nor at Docker's %s; a private one will be started under %s on first use", DefaultAddress, DockerAddress, filepath.Dir(private))
			return f
		}
	}
	f.Detail = err.Error()
	f.Fix = "install and start containerd (Debian: apt-get install containerd runc; systemctl start containerd), or pass --address for the socket it listens on"
	return f
}

// requiredControllers are the cgroup controllers the limits need.
var requiredControllers = []string{"memory", "cpu", "pids"}

// CheckCgroups says whether the controllers the limits use are there.
func CheckCgroups() Finding {
	f := Finding{Name: "cgroups"}
	missing := MissingControllers()
	mode := map[cgroups.CGMode]string{
		cgroups.Legacy: "v1", cgroups.Hybrid: "v1 (hybrid)", cgroups.Unified: "v2", cgroups.Unavailable: "unavailable",
	}[cgroups.Mode()]
	if len(missing) > 0 {
		f.Detail = fmt.Sprintf("%s; missing controllers: %s", mode, strings.Join(missing, ", "))
		f.Fix = "enable the missing controllers (kernel command line, or cgroup.subtree_control on v2)"
		return f
	}
	f.OK = true
	f.Detail = fmt.Sprintf("%s; controllers %s available", mode, strings.Join(requiredControllers, ", "))
	if cgroups.Mode() != cgroups.Unified {
		if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err != nil {
			f.OK = false
			f.Detail += "; no swap accounting, so tasks could swap past their memory limit"
			f.Fix = "boot with swapaccount=1, or switch the host to cgroup v2"
		}
	}
	return f
}

// MissingControllers lists the required controllers the host lacks.
func MissingControllers() []string {
	var missing []string
	if cgroups.Mode() == cgroups.Unified {
		b, _ := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		have := strings.Fields(string(b))
		for _, c := range requiredControllers {
			if !slices.Contains(have, c) {
				missing = append(missing, c)
			}
		}
		return missing
	}
	for _, c := range requiredControllers {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c)); err != nil {
			missing = append(missing, c)
		}
	}
	return missing
}
