package testimage

import (
	"os"
	"testing"

	"github.com/containerd/log"
)

func TestMain(m *testing.M) {
	// containerd's content store warns on every store where fsverity is
	// unsupported (most test machines); that is noise here.
	if err := log.SetLevel("error"); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}
