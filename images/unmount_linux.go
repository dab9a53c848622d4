package images

import "syscall"

// unmountDetached detaches the mount at path, as umount -l does.
func unmountDetached(path string) error { return syscall.Unmount(path, syscall.MNT_DETACH) }
