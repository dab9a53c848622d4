//go:build !linux

package images

import "errors"

// unmountDetached: building images needs Linux (debootstrap, mounts);
// elsewhere the package builds for its clients and this is never reached.
func unmountDetached(string) error { return errors.New("unmounting needs Linux") }
