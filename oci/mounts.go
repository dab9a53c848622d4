package oci

import (
	"context"
	"fmt"
	"path"
	"slices"

	"github.com/containerd/containerd/v2/core/containers"
	ctrdoci "github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// systemMounts are the kernel filesystems every task gets, in the order
// they must be mounted (/dev before what lives under it). They match
// containerd's default spec; WithMounts adds the ones a base spec lacks.
var systemMounts = []specs.Mount{
	{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
	{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
	{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
	{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
	{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
}

// WithMounts sets up the task's filesystems:
//
//   - the kernel filesystems (/proc, /dev, /dev/pts, /dev/mqueue and /sys,
//     always read-only), kept as the base spec has them or added;
//   - /dev/shm, a tmpfs of ShmBytes, noexec;
//   - ScratchDir (/tmp), a tmpfs of TmpBytes owned by the task's uid and
//     gid, mode 0700, the only writable place. It is not noexec: compiled
//     languages build binaries there and run them;
//     When ScratchSource is set, that host directory is bind-mounted there
//     instead (read-write, nosuid, nodev); its size is the caller's mount's;
//   - CodeSource bind-mounted read-only at CodeDir, when set, and each of
//     ReadOnlyBinds read-only, nosuid and nodev;
//   - the task's own cgroup, read-only at /sys/fs/cgroup, so runtimes such
//     as the JVM and .NET size themselves to their limits, not the host's.
//
// containerd's default /run tmpfs is removed: with a read-only rootfs it
// would be the one writable place not size-accounted to /tmp and not
// covered by RLIMIT_FSIZE. Any other mount the base spec has is kept.
// Invalid sizes or a relative CodeSource give an error satisfying
// errdefs.IsInvalidArgument.
func WithMounts(cfg Config) ctrdoci.SpecOpts {
	return func(_ context.Context, _ ctrdoci.Client, _ *containers.Container, s *specs.Spec) error {
		if err := cfg.validateCodeSource(); err != nil {
			return err
		}
		if err := cfg.Resources.validateScratch(); err != nil {
			return err
		}
		cfg = cfg.withDefaults()

		owned := []specs.Mount{
			{
				Destination: "/dev/shm",
				Type:        "tmpfs",
				Source:      "shm",
				Options:     []string{"nosuid", "noexec", "nodev", "mode=1777", fmt.Sprintf("size=%d", cfg.Resources.ShmBytes)},
			},
			{
				Destination: ScratchDir,
				Type:        "tmpfs",
				Source:      "tmpfs",
				Options: []string{"nosuid", "nodev", "mode=0700", fmt.Sprintf("uid=%d", cfg.UID), fmt.Sprintf("gid=%d", cfg.GID),
					fmt.Sprintf("size=%d", cfg.Resources.TmpBytes)},
			},
		}
		if cfg.ScratchSource != "" {
			owned[1] = specs.Mount{
				Destination: ScratchDir,
				Type:        "bind",
				Source:      cfg.ScratchSource,
				Options:     []string{"rbind", "rw", "nosuid", "nodev"},
			}
		}
		if cfg.CodeSource != "" {
			owned = append(owned, specs.Mount{
				Destination: CodeDir,
				Type:        "bind",
				Source:      cfg.CodeSource,
				Options:     []string{"rbind", "ro", "nosuid", "nodev"},
			})
		}
		for _, b := range cfg.ReadOnlyBinds {
			owned = append(owned, specs.Mount{
				Destination: b.Destination,
				Type:        "bind",
				Source:      b.Source,
				Options:     []string{"rbind", "ro", "nosuid", "nodev"},
			})
		}
		owned = append(owned, specs.Mount{
			Destination: "/sys/fs/cgroup",
			Type:        "cgroup",
			Source:      "cgroup",
			Options:     []string{"nosuid", "noexec", "nodev", "relatime", "ro"},
		})

		replaced := map[string]bool{"/run": true}
		for _, m := range systemMounts {
			replaced[m.Destination] = true
		}
		for _, m := range owned {
			replaced[m.Destination] = true
		}

		// System mounts first, in their required order, because ours sit
		// on top of them (/sys/fs/cgroup needs /sys); then ours; then
		// whatever else the base spec had, which may nest under ours.
		mounts := make([]specs.Mount, 0, len(systemMounts)+len(s.Mounts)+len(owned))
		for _, def := range systemMounts {
			m := def
			if i := slices.IndexFunc(s.Mounts, func(b specs.Mount) bool { return path.Clean(b.Destination) == def.Destination }); i >= 0 {
				m = s.Mounts[i]
			}
			m.Options = slices.Clone(m.Options)
			if m.Destination == "/sys" {
				m.Options = readOnly(m.Options)
			}
			mounts = append(mounts, m)
		}
		mounts = append(mounts, owned...)
		for _, m := range s.Mounts {
			if !replaced[path.Clean(m.Destination)] {
				mounts = append(mounts, m)
			}
		}
		s.Mounts = mounts
		return nil
	}
}

// readOnly returns opts with any "rw" replaced by a single "ro".
func readOnly(opts []string) []string {
	opts = slices.DeleteFunc(opts, func(o string) bool { return o == "rw" || o == "ro" })
	return append(opts, "ro")
}
