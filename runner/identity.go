package runner

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Every task runs as a host uid of its own, with the gid of the same
// number, taken from a range that nothing else on the host uses: no two
// live tasks share a uid, so per-user kernel limits (inotify instances,
// POSIX message queue bytes) cannot cross tasks, and no host user (not
// even the host's nobody) can read a task's /proc files, signal it or
// write into its files. The task still has no capabilities and no user
// namespace: inside, `id -u` shows the host uid itself, which has no
// entry in the image's /etc/passwd.
const (
	// DefaultUIDBase is the first uid of the default range. It is far
	// above the uids distributions give users (1000+), systemd's dynamic
	// users (61184-65519) and the subordinate ranges useradd hands out
	// (100000 + 65536*n for the first few thousand users).
	DefaultUIDBase = 1_500_000_000
	// DefaultUIDCount is the size of the default range: how many tasks
	// may run at once on one state dir.
	DefaultUIDCount = 65536
)

// UIDRange is the range of host uids (and gids) tasks run as.
type UIDRange struct {
	First, Count uint32
}

func (u UIDRange) String() string {
	return fmt.Sprintf("%d-%d", u.First, uint64(u.First)+uint64(u.Count)-1)
}

// ParseUIDRange parses "FIRST-LAST", both included.
func ParseUIDRange(s string) (UIDRange, error) {
	lo, hi, ok := strings.Cut(strings.TrimSpace(s), "-")
	first, err1 := strconv.ParseUint(lo, 10, 32)
	last, err2 := strconv.ParseUint(hi, 10, 32)
	if !ok || err1 != nil || err2 != nil || last < first {
		return UIDRange{}, invalid("uid range %q: give FIRST-LAST, such as %d-%d", s, DefaultUIDBase, DefaultUIDBase+DefaultUIDCount-1)
	}
	return UIDRange{First: uint32(first), Count: uint32(last - first + 1)}, nil
}

func (u UIDRange) check() error {
	switch {
	case u.Count == 0:
		return invalid("uid range %s is empty", u)
	case u.First < 65536:
		// Below 65536 live the distribution's own users, nobody and
		// systemd's dynamic users.
		return invalid("uid range %s starts below 65536, where the host's own users live: choose a range above it", u)
	case uint64(u.First)+uint64(u.Count) > 1<<32-1:
		// 4294967295 is (uid_t)-1, "no change" to the kernel.
		return invalid("uid range %s runs past 4294967294", u)
	}
	return nil
}

// Contains tells whether uid is in u.
func (u UIDRange) Contains(uid uint32) bool {
	return uid >= u.First && uint64(uid) < uint64(u.First)+uint64(u.Count)
}

// overlaps returns an error naming the first host user, group or
// subordinate range that lies in u, as the account files list them.
func (u UIDRange) overlaps(etc string) error {
	for _, f := range []struct{ name, kind string }{
		{"passwd", "user"}, {"group", "group"}, {"subuid", "subordinate uids"}, {"subgid", "subordinate gids"},
	} {
		path := filepath.Join(etc, f.name)
		file, err := os.Open(path)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			fields := strings.Split(sc.Text(), ":")
			var lo, n uint64 = 0, 1
			var err error
			switch {
			case strings.HasPrefix(f.name, "sub") && len(fields) == 3:
				lo, err = strconv.ParseUint(fields[1], 10, 32)
				if err == nil {
					n, err = strconv.ParseUint(fields[2], 10, 32)
				}
			case len(fields) >= 3:
				lo, err = strconv.ParseUint(fields[2], 10, 32)
			default:
				continue
			}
			if err != nil || n == 0 {
				continue
			}
			if lo < uint64(u.First)+uint64(u.Count) && lo+n > uint64(u.First) {
				file.Close()
				return invalid("uid range %s overlaps %s %q in %s: choose a range no host account uses (uid_range in the config)", u, f.kind, fields[0], path)
			}
		}
		file.Close()
	}
	return nil
}

// identities hands out uids from a range, one per task, reserved by a
// file in the state dir so that runner processes sharing it never hand
// out the same one. A reservation names its owner process and its task;
// the sweep frees those whose owner is gone once their task is.
type identities struct {
	dir   string
	r     UIDRange
	owner string // "pid start"
}

const idsDir = "ids"

// reserve returns a free uid for task.
func (ids *identities) reserve(task string) (uint32, error) {
	start := rand.Uint32N(ids.r.Count)
	for i := range ids.r.Count {
		uid := ids.r.First + (start+i)%ids.r.Count
		f, err := os.OpenFile(filepath.Join(ids.dir, strconv.FormatUint(uint64(uid), 10)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("reserving a task identity: %w", err)
		}
		_, werr := f.WriteString(ids.owner + " " + task)
		if err := errors.Join(werr, f.Close()); err != nil {
			_ = os.Remove(f.Name())
			return 0, fmt.Errorf("reserving a task identity: %w", err)
		}
		return uid, nil
	}
	return 0, fmt.Errorf("%w: all %d task identities of uid range %s are in use: widen the range or run fewer tasks at once", ErrSandboxUnavailable, ids.r.Count, ids.r)
}

// release frees uid.
func (ids *identities) release(uid uint32) error {
	err := os.Remove(filepath.Join(ids.dir, strconv.FormatUint(uint64(uid), 10)))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// reservation is one reserved uid as its file records it.
type reservation struct {
	uid              uint32
	pid, start, task string
}

// list returns every reservation in the state dir.
func (ids *identities) list() ([]reservation, error) {
	entries, err := os.ReadDir(ids.dir)
	if err != nil {
		return nil, err
	}
	var out []reservation
	for _, e := range entries {
		uid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(ids.dir, e.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		res := reservation{uid: uint32(uid)}
		if len(f) == 3 {
			res.pid, res.start, res.task = f[0], f[1], f[2]
		}
		out = append(out, res)
	}
	return out, nil
}
