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
