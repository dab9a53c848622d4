package oci_test

import (
	"context"
	"fmt"
	"log"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	ctrdoci "github.com/containerd/containerd/v2/pkg/oci"

	"github.com/sandbox-runner/sandbox-runner/oci"
)

func ExampleOptions() {
	opts, err := oci.Options(oci.Config{
		Args:       []string{"python3", "/code/main.py"},
		CodeSource: "/var/lib/sandbox-runner/tasks/1",
		Resources: oci.Resources{
			MemoryBytes: 256 << 20,
			CPUs:        1.5,
			Pids:        64,
			TmpBytes:    64 << 20,
		},
	})
	if err != nil {
		log.Fatal(err)
	}

	// The runner passes opts to client.WithNewSpec; generating the spec
	// here shows what the task gets without a daemon.
	ctx := namespaces.WithNamespace(context.Background(), "example")
	spec, err := ctrdoci.GenerateSpec(ctx, nil, &containers.Container{ID: "example"}, opts...)
	if err != nil {
		log.Fatal(err)
	}

	res := spec.Linux.Resources
	fmt.Println("user:", spec.Process.User.UID, spec.Process.User.GID)
	fmt.Println("capabilities:", len(spec.Process.Capabilities.Bounding))
	fmt.Println("read-only rootfs:", spec.Root.Readonly)
	fmt.Println("memory, swap:", *res.Memory.Limit, *res.Memory.Swap)
	fmt.Println("cpu quota/period:", *res.CPU.Quota, *res.CPU.Period)
	fmt.Println("cwd:", spec.Process.Cwd)
	// Output:
	// user: 65534 65534
	// capabilities: 0
	// read-only rootfs: true
	// memory, swap: 268435456 268435456
	// cpu quota/period: 150000 100000
	// cwd: /tmp
}
