package main

import (
	"context"
	"io"
	"log/slog"
	"slices"

	ctrdlog "github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// logContainerdTo sends the lines containerd's client library logs
// (through logrus, as text on stderr) to log instead, so that a service
// whose log is JSON writes nothing else: each line is a record of log's
// format, with source=containerd and the library's fields.
func logContainerdTo(log *slog.Logger) {
	l := ctrdlog.L.Logger
	l.SetOutput(io.Discard)
	l.ReplaceHooks(logrus.LevelHooks{})
	l.AddHook(slogHook{log})
}

type slogHook struct{ log *slog.Logger }

func (slogHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h slogHook) Fire(e *logrus.Entry) error {
	level := slog.LevelDebug
	switch {
	case e.Level <= logrus.ErrorLevel:
		level = slog.LevelError
	case e.Level == logrus.WarnLevel:
		level = slog.LevelWarn
	case e.Level == logrus.InfoLevel:
		level = slog.LevelInfo
	}
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	attrs := []any{"source", "containerd"}
	for _, k := range keys {
		v := e.Data[k]
		if err, ok := v.(error); ok {
			v = err.Error()
		}
		attrs = append(attrs, k, v)
	}
	h.log.Log(context.Background(), level, e.Message, attrs...)
	return nil
}
