//go:build !unix

package testimage

import "errors"

func mkfifo(string) error { return errors.New("no fifos on this platform") }
