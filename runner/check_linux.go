package runner

import (
	"context"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sandbox-runner/sandbox-runner/runner/host"
)

// Finding is one line of a host check.
type Finding = host.Finding

// Check looks at everything a task needs from the host: a containerd that
// answers, the OCI runtimes (as ocis chooses them; nil: the host's
// defaults), the cgroup controllers the limits use, and seccomp. It never
// starts anything.
func Check(ctx context.Context, o host.ConnectOptions, ocis *OCIRuntimes) []Finding {
	var out []Finding
	out = append(out, host.CheckContainerd(ctx, o))
	if ocis == nil {
		ocis = &OCIRuntimes{probe: hostProbe, found: map[string]OCIRuntime{}}
	}
	out = append(out, checkOCIRuntimes(ocis)...)
	out = append(out, host.CheckCgroups())
	out = append(out, checkInitFinding(), checkShimFinding(), checkOOMScore())
	f := Finding{Name: "seccomp", OK: true, Detail: "kernel seccomp filters available"}
	if err := SeccompAvailable(); err != nil {
		f = Finding{Name: "seccomp", Detail: err.Error(), Fix: "use a kernel built with CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER (every distribution kernel is)"}
	}
	return append(out, f)
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
