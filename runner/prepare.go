package runner

import (
	"crypto/rand"
	"encoding/hex"
	"path"
	"regexp"
	"slices"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/oci"
)

// idPattern leaves room for compileSuffix within containerd's limit.
var idPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$`)

// NewID returns a fresh random task id.
func NewID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "sr-" + hex.EncodeToString(b)
}

// prepared is a task checked and resolved, ready to create.
type prepared struct {
	id      string
	compile []string
	runtime images.Runtime
	image   string
	files   []File
	limits  Limits
	args    []string
	env     []string
	oci     OCIRuntime
	outputs []string
	// groups gives the task's sandboxes shim groups to join (the warm
	// pool's, for a task that missed it); nil: a shim each.
	groups shimGrouper
}

// Validate checks everything about t that can be checked without
// containerd: the runtime is in catalog, the limits are in range for this
// host, the files and environment are well-formed. Run does the same
// first; callers use Validate to refuse bad input before connecting.
func Validate(t Task, catalog images.Catalog) error {
	host, err := readHostFacts()
	if err != nil {
		return err
	}
	_, err = prepare(t, catalog, host)
	return err
}

// prepare checks everything about t that can be checked without touching
// containerd, so bad input fails before anything is created.
func prepare(t Task, catalog images.Catalog, host hostFacts) (*prepared, error) {
	rt, err := catalog.Lookup(t.Runtime)
	if err != nil {
		return nil, &invalidError{msg: err.Error()}
	}
	limits, err := withDefaults(t.Limits, host)
	if err != nil {
		return nil, err
	}
	files := append([]File(nil), t.Files...)
	if len(files) > 0 && files[0].Name == "" {
		files[0].Name = rt.FileName
	}
	if err := checkFiles(files); err != nil {
		return nil, err
	}
	if err := checkOutputs(t.Outputs); err != nil {
		return nil, err
	}
	for _, e := range t.Env {
		if k, _, ok := cutEnv(e); !ok || k == "" {
			return nil, invalid("environment entry %q is not KEY=VALUE", e)
		}
	}
	id := t.ID
	if id == "" {
		id = NewID()
	} else if !idPattern.MatchString(id) {
		return nil, invalid("task id %q: use 1 to 64 letters, digits, '_' or '-', starting with a letter or digit", id)
	}
	ref := t.Image
	if ref == "" {
		ref = rt.Image
	}
	name, err := images.Normalize(ref)
	if err != nil {
		return nil, &invalidError{msg: err.Error()}
	}
	entry, _ := cleanName(files[0].Name)
	vars := images.Vars{File: path.Join(oci.CodeDir, entry), MemoryBytes: limits.Memory}
	return &prepared{
		id:      id,
		runtime: rt,
		image:   name,
		files:   files,
		limits:  limits,
		compile: rt.CompileCommand(images.Vars{File: vars.File, MemoryBytes: limits.CompileMemory}),
		args:    rt.Command(vars, t.Args),
		env:     append(append([]string(nil), rt.Env...), t.Env...),
		outputs: slices.Clone(t.Outputs),
	}, nil
}

func cutEnv(e string) (string, string, bool) {
	for i := 0; i < len(e); i++ {
		if e[i] == '=' {
			return e[:i], e[i+1:], true
		}
	}
	return e, "", false
}
