package main

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/sandbox-runner/sandbox-runner/runner/service"
)

// statusTimeout bounds reading a service's metrics.
const statusTimeout = 10 * time.Second

// statusOptions are status's flags: which service to ask, and how to
// print what it says.
type statusOptions struct {
	global    globalFlags
	socket    string
	tcp       string
	tokenFile string
	json      bool
}

func runStatus(ctx context.Context, args []string, std stdio) int {
	var o statusOptions
	fs := newFlagSet("status", "[--socket PATH | --tcp ADDR --token-file FILE] [--json]", std.err)
	fs.StringVar(&o.socket, "socket", "", "the service's socket (env SANDBOX_RUNNER_SOCKET; config [service] socket; default "+service.DefaultSocket+")")
	fs.StringVar(&o.tcp, "tcp", "", "ask the service on this TCP address instead, e.g. 127.0.0.1:8080 (serve's --tcp); needs --token-file")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the service's bearer token, for --tcp")
	fs.BoolVar(&o.json, "json", false, "print the figures as JSON")
	fs.StringVar(&o.global.configPath, "config", "", "config file (env SANDBOX_RUNNER_CONFIG)")
	if code, ok := parse(fs, args, &o.global, std.out); !ok {
		return code
	}
	fail := func(err error) int {
		if o.json {
			writeJSONError(std.out, err)
		}
		return report(std.err, err)
	}
	if fs.NArg() > 0 {
		return fail(usageError("status takes no arguments, got %q", fs.Arg(0)))
	}
	c, err := o.client()
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		return fail(err)
	}
	if o.json {
		enc := json.NewEncoder(std.out)
		enc.SetIndent("", "  ")
		err = enc.Encode(st)
	} else {
		err = st.WriteText(std.out)
	}
	if err != nil {
		return report(std.err, err)
	}
	if len(st.Missed) > 0 {
		return exitFailed
	}
	return exitOK
}

// client picks the service to ask: --tcp with its token, else the socket.
func (o *statusOptions) client() (*service.Client, error) {
	switch {
	case o.tcp != "" && o.tokenFile == "":
		return nil, usageError("--tcp %s needs --token-file: the service takes no TCP request without its bearer token", o.tcp)
	case o.tcp == "" && o.tokenFile != "":
		return nil, usageError("--token-file is for --tcp; on the socket no token is needed")
	case o.tcp != "" && o.socket != "":
		return nil, usageError("give --socket or --tcp, not both")
	case o.tcp != "":
		token, err := service.ReadToken(o.tokenFile)
		if err != nil {
			return nil, usageError("%v", err)
		}
		return service.NewTCPClient(o.tcp, token), nil
	}
	return service.NewClient(first(o.socket, os.Getenv("SANDBOX_RUNNER_SOCKET"), o.global.file.Service.Socket, service.DefaultSocket)), nil
}
