package host

import (
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A descriptor inherited without close-on-exec would otherwise reach the
// detached containerd and outlive this process: a pipe whose reader then
// never sees its end.
func TestInheritNoFilesKeepsInheritedDescriptorsFromChildren(t *testing.T) {
	var p [2]int
	require.NoError(t, syscall.Pipe(p[:])) // as a parent hands it: no close-on-exec
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	flags, err := unix.FcntlInt(uintptr(p[1]), unix.F_GETFD, 0)
	require.NoError(t, err)
	require.Zero(t, flags&unix.FD_CLOEXEC, "the pipe must start inheritable for this test to mean anything")

	inheritNoFiles()

	flags, err = unix.FcntlInt(uintptr(p[1]), unix.F_GETFD, 0)
	require.NoError(t, err)
	assert.NotZero(t, flags&unix.FD_CLOEXEC)
	out, err := exec.Command("ls", "/proc/self/fd").Output()
	require.NoError(t, err)
	assert.NotContains(t, strings.Fields(string(out)), strconv.Itoa(p[1]), "a child still gets the descriptor")
	// This process keeps it.
	_, err = unix.Write(p[1], []byte("x"))
	assert.NoError(t, err)
}
