package runner

import (
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestStatFieldsOfThisProcess(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	assert.Equal(t, strconv.Itoa(os.Getppid()), parentPID(self))
	assert.NotEmpty(t, startTime(self))
	assert.Equal(t, "", statField(self, 2), "field 2 is the command, not counted from after it")
	assert.Equal(t, "", startTime("999999999"), "no such process")
	assert.True(t, ownerAlive(self, startTime(self)))
	assert.False(t, ownerAlive(self, "1"), "a reused pid with another start time is not the owner")
}

func TestIsMountPoint(t *testing.T) {
	assert.True(t, isMountPoint("/proc"), "/proc is a mount of its own")
	dir := t.TempDir()
	assert.False(t, isMountPoint(dir), "a plain directory")
	assert.False(t, isMountPoint(dir+"/missing"), "nothing there")
}

func TestSweepReportFoundAddsFailed(t *testing.T) {
	rep := SweepReport{
		SweepCounts: SweepCounts{Tasks: 1, Containers: 2, Snapshots: 3, Leases: 4, Dirs: 5, Mounts: 6},
		Failed:      SweepCounts{Containers: 1, Mounts: 2},
	}
	assert.Equal(t, 21, rep.Total(), "Total counts what was removed")
	found := rep.Found()
	assert.Equal(t, SweepCounts{Tasks: 1, Containers: 3, Snapshots: 3, Leases: 4, Dirs: 5, Mounts: 8}, found)
	byKind := found.ByKind()
	assert.Len(t, byKind, len(SweepKinds))
	for _, k := range SweepKinds {
		assert.Contains(t, byKind, k)
	}
	assert.Equal(t, 8, byKind[KindMounts])
	assert.Equal(t, 3, byKind[KindContainers])
}
