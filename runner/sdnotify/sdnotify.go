// Package sdnotify tells systemd about a long-running command's state
// (sd_notify(3)) when it runs as a Type=notify unit. `sandbox-runner
// serve` and `sandbox-runner worker` both use it; it imports nothing of
// sandbox-runner's, so either may.
package sdnotify

import "github.com/coreos/go-systemd/v22/daemon"

// Notify sends state, one or more newline-separated assignments such as
// "READY=1\nSTATUS=serving", to the socket NOTIFY_SOCKET names. Without
// NOTIFY_SOCKET (not under systemd, or not Type=notify) it does nothing
// and returns nil; it returns an error only when the socket is named
// but cannot be written to.
func Notify(state string) error {
	_, err := daemon.SdNotify(false, state)
	return err
}
