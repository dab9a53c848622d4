package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExecInteractiveViaService(t *testing.T) {
	fe := &echoExec{}
	socket := fakeService(t, fe)
	code, stdout, stderr := runCLI(t, strings.NewReader("typed\n"), "exec", "-i", "--via", "service", "--socket", socket,
		"--runtime", "sh", "-c", "cat")
	assert.Equal(t, 3, code, stderr)
	assert.Equal(t, "cat", stdout)
	assert.Equal(t, "typed\n", stderr, "stdin went through the session and its end closed the task's")
	require.Len(t, fe.seen(), 1)
}

func TestExecInteractiveRefusesAnotherStdin(t *testing.T) {
	code, _, stderr := runCLI(t, strings.NewReader("echo code"), "exec", "-i", "--via", "direct", "--runtime", "sh")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, "-i passes stdin to the task")

	code, _, stderr = runCLI(t, nil, "exec", "-i", "--stdin", "/dev/null", "--via", "direct", "--runtime", "sh", "-c", "cat")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, "-i and --stdin both given")
}
