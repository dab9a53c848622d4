package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadProgressCountsAndDrawsNothingOffATerminal(t *testing.T) {
	var w bytes.Buffer
	p := newReadProgress(strings.NewReader(strings.Repeat("x", 100000)), &w, "a.tar", time.Millisecond)
	n, err := io.Copy(io.Discard, p)
	require.NoError(t, err)
	assert.Equal(t, int64(100000), n)
	time.Sleep(5 * time.Millisecond)
	assert.Equal(t, int64(100000), p.stop())
	assert.Equal(t, int64(100000), p.stop(), "stop twice is fine")
	assert.Empty(t, w.String(), "no progress drawn into a file or pipe")
}
