package host

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// MinContainerdVersion is the oldest containerd release the runner is
// tested against. 1.6, 1.7 and 2.x daemons are supported; the runner
// uses only the services all of them have (containers, tasks, images,
// content, snapshots, leases, introspection), never the transfer or
// sandbox services that only newer daemons serve.
const MinContainerdVersion = "1.6"

// checkVersion returns an error when the daemon version v is older than
// MinContainerdVersion. A version it cannot read (a distribution's or a
// developer's build) is taken to be recent enough.
func checkVersion(v string) error {
	major, minor, ok := parseVersion(v)
	if !ok || major > 1 || (major == 1 && minor >= 6) {
		return nil
	}
	return fmt.Errorf("containerd %s is older than %s, the oldest sandbox-runner supports: %w", v, MinContainerdVersion, errdefs.ErrNotImplemented)
}

// parseVersion reads major and minor from "1.6.20~ds1", "v2.4.2" or
// "2.0.0-rc.1+unknown".
func parseVersion(v string) (major, minor int, ok bool) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err := strconv.Atoi(parts[0])
	if err != nil {
		return 0, 0, false
	}
	digits := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if digits == 0 {
		return 0, 0, false
	}
	if digits > 0 {
		parts[1] = parts[1][:digits]
	}
	minor, err = strconv.Atoi(parts[1])
	if err != nil {
		return 0, 0, false
	}
	return major, minor, true
}
