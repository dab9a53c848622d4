// Command sandbox-runner runs untrusted code in a fresh, hardened
// container per task, through containerd.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// A closed stdout or stderr (`| head`) must not kill this process
	// before it has killed and removed its task: with SIGPIPE caught,
	// writes fail with EPIPE instead, and exec ends the task.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	code := run(ctx, os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr})
	stop()
	os.Exit(code)
}
