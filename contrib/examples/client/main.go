// Command client is the smallest program that runs code through
// `sandbox-runner serve`: it posts one task to the service's socket and
// prints the result document. It imports only runner/api and
// runner/service/client, which build on any OS (`make lint` builds it
// for darwin), so it shows what a program of your own needs.
//
//	go run ./contrib/examples/client -socket /run/sandbox-runner/sandbox-runner.sock \
//	    -runtime python -code 'print(6 * 7)'
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/sandbox-runner/sandbox-runner/runner/api"
	"github.com/sandbox-runner/sandbox-runner/runner/service/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx))
}

func run(ctx context.Context) int {
	socket := flag.String("socket", client.DefaultSocket, "the service's unix socket")
	runtime := flag.String("runtime", "python", "the runtime to run the code with")
	code := flag.String("code", "print('hello from the sandbox')", "the code to run")
	stdin := flag.String("stdin", "", "the task's standard input")
	memory := flag.String("memory", "", `memory limit, e.g. "256m" (default: the service's)`)
	timeout := flag.String("timeout", "", `wall-clock limit, e.g. "10s" (default: the service's)`)
	flag.Parse()

	req := api.Request{
		Runtime: *runtime,
		Files:   []api.File{{Content: *code}},
		Stdin:   *stdin,
	}
	// Limits are written as on the command line; left out, the
	// service's defaults for the runtime apply.
	if *memory != "" {
		req.Limits.Memory = api.LimitString(*memory)
	}
	if *timeout != "" {
		req.Limits.Timeout = api.LimitString(*timeout)
	}

	res, err := client.New(*socket).Exec(ctx, req)
	var answer *client.Error
	switch {
	case errors.As(err, &answer):
		// The service refused or failed the task: its kind says why.
		fmt.Fprintf(os.Stderr, "client: the service answered %d (%s): %s\n", answer.Status, answer.Kind, answer.Message)
		return 1
	case err != nil:
		fmt.Fprintf(os.Stderr, "client: %v\n", err)
		return 1
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		fmt.Fprintf(os.Stderr, "client: %v\n", err)
		return 1
	}
	// The task's own status, as exec exits with it.
	return res.ExitCode
}
