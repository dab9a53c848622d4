package runner

import (
	"context"
	"log/slog"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/client"
)

type signalsKey struct{}

// WithSignals returns a context that makes Run send every signal that
// arrives on c to the task's main process while its run stage runs: an
// interactive client's Ctrl-C, say. Signals sent before the run stage
// starts wait for it; those sent after it ended are not read. They go to
// the sandbox's init, which forwards them to the task, so SIGKILL and
// SIGSTOP, which the init cannot catch, are for the caller to refuse
// (cancel the context to kill the task). It rides on the context, as
// WithObserver does, so that each task can have its own.
func WithSignals(ctx context.Context, c <-chan syscall.Signal) context.Context {
	return context.WithValue(ctx, signalsKey{}, c)
}

// Signals returns the channel WithSignals put on ctx, or nil: for
// executors other than the Runner, which forward the signals themselves.
func Signals(ctx context.Context) <-chan syscall.Signal {
	c, _ := ctx.Value(signalsKey{}).(<-chan syscall.Signal)
	return c
}

// forwardSignals sends the context's signals to task until the returned
// function is called; the compile stage (id ends in compileSuffix) gets
// none of them.
func forwardSignals(ctx context.Context, log *slog.Logger, task client.Task, id string) (stop func()) {
	c := Signals(ctx)
	if c == nil || strings.HasSuffix(id, compileSuffix) {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case sig := <-c:
				kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killWait)
				err := task.Kill(kctx, sig)
				cancel()
				if err != nil {
					// The task may have exited meanwhile: nothing to signal.
					log.Debug("forwarding a signal", "container", id, "signal", sig, "error", err)
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}
