package runner

import (
	"context"
	"strings"
	"time"
)

// Step is a part of a stage whose duration an Observer hears about. The
// step in between, from start to exit, is the stage's Duration in the
// Result, so it needs no hook.
type Step string

// The steps an Observer hears about, once each per stage.
const (
	// StepCreate is making the stage's container and task: the snapshot,
	// the shim, `runc create`. It is most of a trivial task's cost.
	StepCreate Step = "create"
	// StepTeardown is removing them after the exit: task, container and
	// snapshot. It is reported for every stage that was attempted, also
	// when creating it failed.
	StepTeardown Step = "teardown"
)

// The stage names an Observer is given.
const (
	StageCompile = "compile"
	StageRun     = "run"
)

// Observer hears how long the steps of a task's stages took, for metrics.
// It is called on the goroutine running the task, so it must not block.
type Observer interface {
	ObserveStep(stage string, step Step, d time.Duration)
}

type observerKey struct{}

// WithObserver returns a context that makes Run report the steps of the
// task it runs to o. It rides on the context, as net/http/httptrace's
// hooks do, so that each task can have its own.
func WithObserver(ctx context.Context, o Observer) context.Context {
	return context.WithValue(ctx, observerKey{}, o)
}

// ObserverOf returns the context's Observer, or nil. Executors other
// than the Runner report their own steps to it.
func ObserverOf(ctx context.Context) Observer {
	o, _ := ctx.Value(observerKey{}).(Observer)
	return o
}

// observe reports the step of sandbox id that started at since to the context's
// Observer, if there is one.
func observe(ctx context.Context, id string, step Step, since time.Time) {
	o, ok := ctx.Value(observerKey{}).(Observer)
	if !ok || o == nil {
		return
	}
	stage := StageRun
	if strings.HasSuffix(id, compileSuffix) {
		stage = StageCompile
	}
	o.ObserveStep(stage, step, time.Since(since))
}

type cleanupHookKey struct{}

// WithCleanupHook returns a context that makes the runner call f with the
// error of every teardown that failed, on its way to the log: what it
// could not remove stays behind until a sweep. A Pool made with such a
// context reports the failures of its own teardowns too. f is called on
// the goroutine of the teardown and must not block.
func WithCleanupHook(ctx context.Context, f func(err error)) context.Context {
	return context.WithValue(ctx, cleanupHookKey{}, f)
}

// ReportCleanupFailure reports err to the context's cleanup hook, if any.
// The Runner reports its own failed teardowns; other executors call it
// for theirs.
func ReportCleanupFailure(ctx context.Context, err error) {
	if f, ok := ctx.Value(cleanupHookKey{}).(func(error)); ok && f != nil {
		f(err)
	}
}
