package runner

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	runc "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	ctrdoci "github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/oci"
)

// The OCI runtimes a task may run under. crun and runc run through
// containerd's runc shim (DefaultShim), which calls the binary its options
// name; runsc through gVisor's own shim (RunscShim).
const (
	OCIRuntimeCrun = "crun"
	OCIRuntimeRunc = "runc"
	// OCIRuntimeRunsc is gVisor. It is never the default.
	OCIRuntimeRunsc = "runsc"
)

// RunscShim is gVisor's containerd shim, the binary
// containerd-shim-runsc-v1 on containerd's PATH. containerd's runc shim
// cannot drive runsc: it misreads two of runsc's answers ("sandbox is not
// running", "cannot signal container ... in state created") as failures
// and leaves the task, its container and gVisor's sentry and gofer behind.
const RunscShim = "io.containerd.runsc.v1"

// runscShimBinary is the binary containerd runs for RunscShim.
const runscShimBinary = "containerd-shim-runsc-v1"

// runscFix is how to get gVisor's runsc and its shim. Debian's runsc
// packages (bookworm and its backports) ship no shim, so both are built
// from one release of gVisor's Go module.
const runscFix = "build gVisor's runsc and its containerd shim from one release: `make gvisor` puts runsc and " + runscShimBinary +
	" in bin/gvisor/; install both in a directory on containerd's PATH (e.g. install -m 0755 bin/gvisor/* /usr/local/bin/); see the README, \"gVisor\""

// OCIRuntimeNames are the known OCI runtimes, fastest first: the default
// is the first usable one of crun and runc.
var OCIRuntimeNames = []string{OCIRuntimeCrun, OCIRuntimeRunc, OCIRuntimeRunsc}

// defaultCandidates are the runtimes the default is picked from.
var defaultCandidates = []string{OCIRuntimeCrun, OCIRuntimeRunc}

// debPackage is the Debian package of each OCI runtime that needs no
// shim of its own.
var debPackage = map[string]string{OCIRuntimeCrun: "crun", OCIRuntimeRunc: "runc"}

// OCIRuntime is one OCI runtime as found on this host.
type OCIRuntime struct {
	Name string `json:"name"`
	// Path is the binary the shim runs.
	Path string `json:"path,omitempty"`
	// Version is the first line of `NAME --version`.
	Version string `json:"version,omitempty"`
	// SpecVersion is the runtime-spec version the runtime declares.
	SpecVersion string `json:"spec_version,omitempty"`
	// Shim is the containerd shim binary that drives it, when it needs
	// one of its own (runsc: gVisor's containerd-shim-runsc-v1).
	Shim string `json:"shim,omitempty"`
	// Usable tells whether tasks can run under it here; when not, Reason
	// says why and Fix what to do.
	Usable bool   `json:"usable"`
	Reason string `json:"reason,omitempty"`
	Fix    string `json:"fix,omitempty"`
}

// shim is the containerd runtime (shim) o's sandboxes run under.
func (o OCIRuntime) shim() string {
	if o.Name == OCIRuntimeRunsc {
		return RunscShim
	}
	return DefaultShim
}

// shimOptions are the options of o's shim: for the runc shim the binary
// it runs (nil: the shim's own runc, for the zero OCIRuntime); for
// gVisor's shim the file runscConfig wrote, at runscConfig.
func (o OCIRuntime) shimOptions(runscConfig string) any {
	switch {
	case o.Name == OCIRuntimeRunsc:
		return &runtimeoptions.Options{TypeUrl: "io.containerd.runsc.v1.options", ConfigPath: runscConfig}
	case o.Path == "":
		return nil
	}
	return &runc.Options{BinaryName: o.Path}
}

// runscPidsOverhead is what gVisor's own processes and threads take of
// a sandbox's host pids limit: measured here, a sandbox running one
// command holds 33 host tasks (the sentry's threads, the gofer, the
// platform's stub), and each further process of the task about two more.
const runscPidsOverhead = 48

// hostPids is the host cgroup's pids limit for a task allowed pids
// processes and threads. gVisor does not apply the spec's limit inside
// its kernel; the host's counts the sandbox's own tasks too, so under
// runsc it is raised by their share and bounds the task's processes
// only roughly (see the README, "gVisor").
func (o OCIRuntime) hostPids(pids int64) int64 {
	if o.Name == OCIRuntimeRunsc {
		return pids + runscPidsOverhead
	}
	return pids
}

// runscSandboxAnnotations mark a runsc container as the root of its own
// sandbox, the way containerd's CRI marks a pod's: gVisor's shim hands a
// container's stdio to runsc only for one so marked, and otherwise lets
// the sandbox inherit the pipe of its own "runsc create", which then
// never ends (the create hangs until containerd gives up on the shim).
var runscSandboxAnnotations = map[string]string{"io.kubernetes.cri.container-type": "sandbox"}

// specOpts are what o needs in the spec beyond what every sandbox has.
func (o OCIRuntime) specOpts() []ctrdoci.SpecOpts {
	opts := []ctrdoci.SpecOpts{oci.WithOCIVersion(o.ociVersion())}
	if o.Name == OCIRuntimeRunsc {
		opts = append(opts, ctrdoci.WithAnnotations(runscSandboxAnnotations))
	}
	return opts
}

// runscConfig is the configuration file of gVisor's shim for o (runsc):
// the runsc binary it runs and the runsc flags of every sandbox.
//
//   - network "none": a sandbox has loopback only. runsc's default
//     ("sandbox") would wire up the network namespace it is put in, and
//     containerd gives none to join (runsc refuses: "cannot run with
//     network enabled in root network namespace").
//   - oci-seccomp: the spec's seccomp profile (containerd's default) is
//     applied inside gVisor too, on top of gVisor's own host filter;
//     without it runsc ignores the profile.
func (o OCIRuntime) runscConfig() []byte {
	return []byte(fmt.Sprintf(`# Written by sandbox-runner: gVisor's shim options for its tasks.
binary_name = %q

[runsc_config]
network = "none"
oci-seccomp = "true"
`, o.Path))
}

// ociVersion is the ociVersion the spec must declare for o: the version
// o declares when it is older than the one containerd's client writes,
// else empty (keep containerd's).
func (o OCIRuntime) ociVersion() string {
	if o.SpecVersion != "" && versionLess(o.SpecVersion, specs.Version) {
		return o.SpecVersion
	}
	return ""
}

// versionLess compares the major.minor.patch of two versions; anything
// after the numbers ("-dev", "-rc.1") is ignored.
func versionLess(a, b string) bool {
	pa, pb := versionParts(a), versionParts(b)
	for i := range 3 {
		if pa[i] != pb[i] {
			return pa[i] < pb[i]
		}
	}
	return false
}

func versionParts(v string) [3]int {
	var out [3]int
	for i, part := range strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3) {
		end := strings.IndexFunc(part, func(r rune) bool { return r < '0' || r > '9' })
		if end >= 0 {
			part = part[:end]
		}
		out[i], _ = strconv.Atoi(part)
	}
	return out
}

// probe is how OCI runtimes are looked at; tests replace its functions.
type probe struct {
	lookPath func(string) (string, error)
	// version runs `path --version`.
	version func(path string) ([]byte, error)
	// readFile reads /proc/self/mountinfo and cgroup files.
	readFile func(string) ([]byte, error)
}

var hostProbe = probe{
	lookPath: exec.LookPath,
	version:  func(path string) ([]byte, error) { return exec.Command(path, "--version").Output() },
	readFile: os.ReadFile,
}

// find looks at the OCI runtime name on this host.
func (p probe) find(name string) OCIRuntime {
	o := OCIRuntime{Name: name}
	path, err := p.lookPath(name)
	if err != nil {
		o.Reason = name + " is not on PATH"
		o.Fix = fmt.Sprintf("install it (Debian: apt-get install %s)", debPackage[name])
		if name == OCIRuntimeRunsc {
			o.Fix = runscFix
		}
		return o
	}
	o.Path = path
	out, err := p.version(path)
	if err != nil {
		o.Reason = fmt.Sprintf("%s --version failed: %v", path, err)
		o.Fix = fmt.Sprintf("reinstall it (Debian: apt-get install --reinstall %s)", debPackage[name])
		if name == OCIRuntimeRunsc {
			o.Fix = runscFix
		}
		return o
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if o.Version == "" {
			o.Version = line
		}
		if v, ok := strings.CutPrefix(line, "spec:"); ok {
			o.SpecVersion = strings.TrimSpace(v)
		}
	}
	switch name {
	case OCIRuntimeRunsc:
		shim, err := p.lookPath(runscShimBinary)
		if err != nil {
			o.Reason = fmt.Sprintf("gVisor's containerd shim %s is not on PATH (Debian's runsc packages do not ship it, and containerd's runc shim cannot drive runsc)", runscShimBinary)
			o.Fix = runscFix
			return o
		}
		o.Shim = shim
	case OCIRuntimeRunc:
		if !bytes.Contains(out, []byte("libseccomp")) {
			o.Reason = "built without seccomp"
			o.Fix = "install a runc built with libseccomp (Debian's is)"
			return o
		}
	case OCIRuntimeCrun:
		if !bytes.Contains(out, []byte("+SECCOMP")) {
			o.Reason = "built without seccomp"
			o.Fix = "install a crun built with libseccomp (Debian's is)"
			return o
		}
		// crun refuses a hybrid host whose cgroup2 hierarchy holds a
		// controller: "cgroups in hybrid mode not supported, drop all
		// controllers from cgroupv2".
		v2, controllers, err := p.hybridControllers()
		if err != nil {
			o.Reason = fmt.Sprintf("cannot tell whether crun accepts this host's cgroups: %v", err)
			o.Fix = "make /proc/self/mountinfo and the cgroup2 hierarchy's cgroup.controllers readable"
			return o
		}
		if len(controllers) > 0 {
			base := filepath.Dir(v2)
			var steps []string
			for _, c := range controllers {
				dir := filepath.Join(base, c)
				steps = append(steps, fmt.Sprintf("mkdir -p %s && mount -t cgroup -o %s cgroup %s", dir, c, dir))
			}
			o.Reason = fmt.Sprintf("this host's cgroups are hybrid (v1 and v2) and its cgroup2 hierarchy at %s holds the controller(s) %s, which crun refuses (\"cgroups in hybrid mode not supported\")",
				v2, strings.Join(controllers, ", "))
			o.Fix = "as root, on a host where no cgroup uses them yet, move them to cgroup v1: " + strings.Join(steps, "; ") +
				" (see the README, \"Preparing a host\"); a pure cgroup v2 host needs nothing"
			return o
		}
	}
	o.Usable = true
	return o
}

// hybridControllers returns, on a host that mounts cgroup v1 and v2
// hierarchies side by side, the v2 mount point and the controllers it
// holds. A pure v1 or pure v2 host gives none.
func (p probe) hybridControllers() (string, []string, error) {
	b, err := p.readFile("/proc/self/mountinfo")
	if err != nil {
		return "", nil, err
	}
	v1, v2 := false, ""
	for _, line := range strings.Split(string(b), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		fields := strings.Fields(line)
		sep := slices.Index(fields, "-")
		if sep < 5 || sep+1 >= len(fields) {
			continue
		}
		switch fields[sep+1] {
		case "cgroup":
			v1 = true
		case "cgroup2":
			if v2 == "" {
				v2 = fields[4]
			}
		}
	}
	if !v1 || v2 == "" {
		return "", nil, nil
	}
	c, err := p.readFile(filepath.Join(v2, "cgroup.controllers"))
	if err != nil {
		return "", nil, err
	}
	return v2, strings.Fields(string(c)), nil
}

// OCIRuntimeRule is what the configuration says about the OCI runtime of
// one catalog runtime's tasks.
type OCIRuntimeRule struct {
	// Default is the OCI runtime of its tasks that name none. Empty: the
	// runner's default, or Allowed's first when that is not allowed.
	Default string
	// Allowed are the OCI runtimes its tasks may name. Empty: any usable
	// one when Default is empty, else only Default.
	Allowed []string
}

func (r OCIRuntimeRule) allowed() []string {
	if len(r.Allowed) == 0 && r.Default != "" {
		return []string{r.Default}
	}
	return r.Allowed
}

// OCIRuntimes picks the OCI runtime of each task: the task's own choice,
// else its catalog runtime's, else the runner's default, else the fastest
// usable one here. It looks at each runtime once, when first needed.
type OCIRuntimes struct {
	probe probe
	def   string
	rules map[string]OCIRuntimeRule

	mu    sync.Mutex
	found map[string]OCIRuntime
}

// NewOCIRuntimes returns the choice of OCI runtimes with def as the
// default (empty: the fastest usable one) and rules per catalog runtime.
// It refuses unknown names, and an OCI runtime the rules or def name
// that is not usable here, with an error that is ErrInvalidTask.
func NewOCIRuntimes(def string, rules map[string]OCIRuntimeRule, opts ...OCIRuntimesOption) (*OCIRuntimes, error) {
	p := hostProbe
	for _, opt := range opts {
		opt(&p)
	}
	return newOCIRuntimes(p, def, rules)
}

func newOCIRuntimes(p probe, def string, rules map[string]OCIRuntimeRule) (*OCIRuntimes, error) {
	o := &OCIRuntimes{probe: p, def: def, rules: rules, found: map[string]OCIRuntime{}}
	check := func(what, name string) error {
		if !slices.Contains(OCIRuntimeNames, name) {
			return invalid("%s: unknown OCI runtime %q: give one of %s", what, name, strings.Join(OCIRuntimeNames, ", "))
		}
		if rt := o.Find(name); !rt.Usable {
			return o.unusable(what, rt)
		}
		return nil
	}
	if def != "" {
		if err := check("default OCI runtime", def); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(mapKeys(rules)) {
		r := rules[name]
		what := "runtime " + name
		if r.Default != "" {
			if err := check(what, r.Default); err != nil {
				return nil, err
			}
		}
		for _, a := range r.Allowed {
			if err := check(what, a); err != nil {
				return nil, err
			}
		}
		if r.Default != "" && len(r.Allowed) > 0 && !slices.Contains(r.Allowed, r.Default) {
			return nil, invalid("runtime %s: its OCI runtime %s is not among those it allows (%s)", name, r.Default, strings.Join(r.Allowed, ", "))
		}
	}
	return o, nil
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Find returns what this host has of the OCI runtime name, looked at once.
func (o *OCIRuntimes) Find(name string) OCIRuntime {
	o.mu.Lock()
	defer o.mu.Unlock()
	rt, ok := o.found[name]
	if !ok {
		rt = o.probe.find(name)
		o.found[name] = rt
	}
	return rt
}

// All returns every known OCI runtime as found here.
func (o *OCIRuntimes) All() []OCIRuntime {
	var out []OCIRuntime
	for _, name := range OCIRuntimeNames {
		out = append(out, o.Find(name))
	}
	return out
}

// Usable lists the names of the OCI runtimes tasks can run under here.
func (o *OCIRuntimes) Usable() []string {
	var out []string
	for _, rt := range o.All() {
		if rt.Usable {
			out = append(out, rt.Name)
		}
	}
	return out
}

// Default returns the OCI runtime of tasks that neither they nor their
// catalog runtime choose: the configured one, else the first usable of
// crun and runc. With none usable, the error is ErrSandboxUnavailable.
func (o *OCIRuntimes) Default() (OCIRuntime, error) {
	if o.def != "" {
		return o.Find(o.def), nil
	}
	var why []string
	for _, name := range defaultCandidates {
		rt := o.Find(name)
		if rt.Usable {
			return rt, nil
		}
		why = append(why, fmt.Sprintf("%s: %s (fix: %s)", name, rt.Reason, rt.Fix))
	}
	return OCIRuntime{}, fmt.Errorf("%w: no OCI runtime can run tasks here: %s", ErrSandboxUnavailable, strings.Join(why, "; "))
}

// For returns the OCI runtime a task of catalog runtime runtime runs
// under when it names name (empty: none). Bad choices are ErrInvalidTask:
// an unknown name, one this host cannot use, one the rules forbid.
func (o *OCIRuntimes) For(name, runtime string) (OCIRuntime, error) {
	rule := o.rules[runtime]
	allowed := rule.allowed()
	if name == "" {
		name = rule.Default
	}
	if name == "" {
		def, err := o.Default()
		if err != nil {
			return def, err
		}
		if len(allowed) == 0 || slices.Contains(allowed, def.Name) {
			return def, nil
		}
		name = allowed[0]
	}
	if !slices.Contains(OCIRuntimeNames, name) {
		return OCIRuntime{}, invalid("unknown OCI runtime %q: give one of %s (usable here)", name, o.usableList())
	}
	if len(allowed) > 0 && !slices.Contains(allowed, name) {
		return OCIRuntime{}, invalid("OCI runtime %s is not allowed for runtime %s by the configuration: give one of %s", name, runtime, strings.Join(allowed, ", "))
	}
	rt := o.Find(name)
	if !rt.Usable {
		return rt, o.unusable("OCI runtime", rt)
	}
	return rt, nil
}

func (o *OCIRuntimes) unusable(what string, rt OCIRuntime) error {
	return invalid("%s %s cannot run tasks on this host: %s; fix: %s; usable here: %s", what, rt.Name, rt.Reason, rt.Fix, o.usableList())
}

func (o *OCIRuntimes) usableList() string {
	if u := o.Usable(); len(u) > 0 {
		return strings.Join(u, ", ")
	}
	return "none (see `sandbox-runner check`)"
}

// ValidateOCIRuntime checks the OCI runtime t would run under, as Run
// does first, so that callers can refuse bad input before connecting.
func (o *OCIRuntimes) ValidateOCIRuntime(t Task, catalog images.Catalog) error {
	rt, err := catalog.Lookup(t.Runtime)
	if err != nil {
		return &invalidError{msg: err.Error()}
	}
	_, err = o.For(t.OCIRuntime, rt.Name)
	return err
}

// WithOCIRuntimes sets how each task's OCI runtime is chosen. Default:
// NewOCIRuntimes("", nil), the fastest usable one for every task.
func WithOCIRuntimes(o *OCIRuntimes) Option { return func(opts *options) { opts.oci = o } }

// withOCIRuntimes fills the default choice. A host with no usable OCI
// runtime refuses each task (ErrSandboxUnavailable), not the runner:
// sweeping what a dead runner left needs none.
func (o *options) withOCIRuntimes() error {
	if o.oci != nil {
		return nil
	}
	var err error
	o.oci, err = NewOCIRuntimes("", nil)
	return err
}
