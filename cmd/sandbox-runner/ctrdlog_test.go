package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	ctrdlog "github.com/containerd/log"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A JSON service log holds nothing but JSON: containerd's client library's
// own lines come through it.
func TestContainerdLogLinesGoThroughTheServiceLog(t *testing.T) {
	l := ctrdlog.L.Logger
	out, hooks, level := l.Out, l.Hooks, l.Level
	t.Cleanup(func() { l.SetOutput(out); l.ReplaceHooks(hooks); l.SetLevel(level) })
	if out == nil {
		t.Cleanup(func() { l.SetOutput(os.Stderr) })
	}

	var buf bytes.Buffer
	logContainerdTo(slog.New(slog.NewJSONHandler(&buf, nil)))
	quietContainerd("info")
	ctrdlog.G(context.Background()).WithField("id", "sr-1").WithError(errors.New("boom")).Warn("shim disconnected")
	ctrdlog.G(context.Background()).Debug("below the level")

	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	require.Len(t, lines, 1, "%s", buf.String())
	var rec map[string]any
	require.NoError(t, json.Unmarshal(lines[0], &rec), "%s", lines[0])
	assert.Equal(t, "WARN", rec["level"])
	assert.Equal(t, "shim disconnected", rec["msg"])
	assert.Equal(t, "containerd", rec["source"])
	assert.Equal(t, "sr-1", rec["id"])
	assert.Equal(t, "boom", rec["error"])
}

func TestServiceLogWritesDurationsAsDurations(t *testing.T) {
	var buf bytes.Buffer
	log, err := serviceLogger(&buf, "info")
	require.NoError(t, err)
	log.Info("x", "grace", 1500*time.Millisecond)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec), buf.String())
	assert.Equal(t, "1.5s", rec["grace"])
}
