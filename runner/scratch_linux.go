package runner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// scratchDir is the host tmpfs a compiled task's stages share as /tmp.
const scratchDir = "scratch"

// mountScratch mounts a tmpfs of size bytes at dir, owned by the task's
// uid (and the gid of the same number) and open to it alone: the same
// bound the in-container /tmp has, on the host.
func mountScratch(dir string, size int64, uid uint32) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("creating scratch dir: %w", err)
	}
	opts := fmt.Sprintf("size=%d,mode=0700,uid=%d,gid=%d", size, uid, uid)
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mounting scratch tmpfs: %w", err)
	}
	return nil
}

// removeTaskDir removes a task's task dir, unmounting its scratch
// tmpfs first: RemoveAll does not cross into a mount, and would leave it
// and its memory behind.
func removeTaskDir(dir string) error {
	scratch := filepath.Join(dir, scratchDir)
	if err := unix.Unmount(scratch, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting scratch tmpfs: %w", err)
	}
	return os.RemoveAll(dir)
}
