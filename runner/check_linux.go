package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/cgroups/v3"
	specs "github.com/opencontainers/runtime-spec/specs-go"
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

// Check looks at everything a task needs from the host: a containerd that
// answers, the OCI runtimes (as ocis chooses them; nil: the host's
// defaults), the cgroup controllers the limits use, and seccomp. It never
// starts anything.
func Check(ctx context.Context, o ConnectOptions, ocis *OCIRuntimes) []Finding {
	var out []Finding
	out = append(out, checkContainerd(ctx, o))
	if ocis == nil {
		ocis = &OCIRuntimes{probe: hostProbe, found: map[string]OCIRuntime{}}
	}
	out = append(out, checkOCIRuntimes(ocis)...)
	out = append(out, checkCgroups())
	out = append(out, checkInitFinding(), checkOOMScore())
	f := Finding{Name: "seccomp", OK: true, Detail: "kernel seccomp filters available"}
	if err := SeccompAvailable(); err != nil {
		f = Finding{Name: "seccomp", Detail: err.Error(), Fix: "use a kernel built with CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER (every distribution kernel is)"}
	}
	return append(out, f)
}

func checkContainerd(ctx context.Context, o ConnectOptions) Finding {
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

// checkOCIRuntimes gives a line per OCI runtime: usable or not, its
// version, and for one that is not, why and the fix. Only the default
// must be usable; the others are optional.
func checkOCIRuntimes(ocis *OCIRuntimes) []Finding {
	def, defErr := ocis.Default()
	var out []Finding
	for _, rt := range ocis.All() {
		f := Finding{Name: rt.Name, OK: rt.Usable, Optional: defErr != nil || rt.Name != def.Name, Fix: rt.Fix}
		if !rt.Usable {
			f.Detail = "not usable: " + rt.Reason
			if rt.Version != "" {
				f.Detail += " (" + rt.Path + ": " + rt.Version + ")"
			}
			out = append(out, f)
			continue
		}
		f.Detail = "usable: " + rt.Path + ": " + rt.Version
		if rt.SpecVersion != "" {
			f.Detail += ", runtime-spec " + rt.SpecVersion
		}
		if rt.Shim != "" {
			f.Detail += ", through " + rt.Shim
		}
		if v := rt.ociVersion(); v != "" {
			f.Detail += fmt.Sprintf(" (older than containerd's %s, so specs declare ociVersion %s)", specs.Version, v)
		}
		if rt.Name == def.Name {
			f.Detail += "; the default"
		}
		out = append(out, f)
	}
	if defErr != nil {
		out = append(out, Finding{Name: "oci", Detail: defErr.Error(),
			Fix: "install crun or runc (Debian: apt-get install crun runc) and apply the fix given for it above"})
	}
	return out
}

// requiredControllers are the cgroup controllers the limits need.
var requiredControllers = []string{"memory", "cpu", "pids"}

func checkCgroups() Finding {
	f := Finding{Name: "cgroups"}
	missing := missingControllers()
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

// missingControllers lists the required controllers the host lacks.
func missingControllers() []string {
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
