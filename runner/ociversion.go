package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// An OCIRuntimesOption changes how NewOCIRuntimes looks at the runtimes.
type OCIRuntimesOption func(*probe)

// WithVersionCache keeps the `--version` output of each OCI runtime
// binary in dir, so that a process that runs one task (`exec`) does not
// pay a run of every runtime it looks at first (crun's alone is about
// 9 ms of CPU and 12 ms here, most of it the dynamic loader). An entry is
// keyed by the binary's path, device, inode, size and change times: a
// binary replaced or upgraded is run again. The cache only saves time: an
// entry that cannot be read or written is as if there were none.
func WithVersionCache(dir string) OCIRuntimesOption {
	return func(p *probe) {
		run := p.version
		p.version = func(path string) ([]byte, error) {
			key, ok := versionKey(path)
			if !ok {
				return run(path)
			}
			file := filepath.Join(dir, key)
			if b, err := os.ReadFile(file); err == nil {
				return b, nil
			}
			out, err := run(path)
			if err == nil && os.MkdirAll(dir, 0o700) == nil {
				_ = replaceFile(file, out, 0o600)
			}
			return out, err
		}
	}
}

// versionKey names what the binary at path is, as far as its metadata
// tells.
func versionKey(path string) (string, bool) {
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", false
	}
	var st syscall.Stat_t
	if err := syscall.Stat(target, &st); err != nil {
		return "", false
	}
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d\x00%d\x00%d.%d\x00%d.%d",
		target, st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec))
	return "version-" + hex.EncodeToString(h[:16]), true
}
