package main

import (
	"context"
	"fmt"
	"os"

	"github.com/sandbox-runner/sandbox-runner/images"
	"github.com/sandbox-runner/sandbox-runner/runner/host"
)

// fromDockerUsage is the help of `images import --from-docker`.
const fromDockerUsage = "import image REF from the local Docker engine (DOCKER_HOST=unix://PATH, default " +
	images.DefaultDockerSocket + ") instead of a FILE"

// importArgs checks the operands of `images import`: one FILE (or -), or
// none with --from-docker.
func importArgs(fromDocker string, args []string) error {
	switch {
	case fromDocker != "" && len(args) > 0:
		return usageError("images import takes a FILE or --from-docker REF, not both")
	case fromDocker == "" && len(args) != 1:
		return usageError("images import takes one FILE, - for stdin, or --from-docker REF")
	}
	return nil
}

// dockerSocket is the Docker engine's socket, from DOCKER_HOST; checked
// before anything connects to containerd.
func dockerSocket() (string, error) {
	return images.DockerSocket(os.Getenv("DOCKER_HOST"))
}

// importFromDocker streams ref from the Docker engine into the namespace
// on ctx and says what it imported.
func importFromDocker(ctx context.Context, conn *host.Connection, ref, snapshotter string, std stdio) int {
	socket, err := dockerSocket()
	if err != nil {
		return report(std.err, err)
	}
	name, err := images.ImportFromDocker(ctx, conn.Client, socket, ref, snapshotter)
	if err != nil {
		return report(std.err, err)
	}
	fmt.Fprintf(std.out, "imported %s from Docker at %s\n", name, socket)
	return exitOK
}
