// Package oci builds the OCI runtime spec of one sandboxed task.
//
// Every hardening measure is a containerd [ctrdoci.SpecOpts] of its own, so
// each can be applied and tested on a bare spec without a daemon or root.
// [Options] composes them, in the order they must run, from a [Config].
// Nothing here talks to containerd; the runner passes the options to
// client.WithNewSpec.
package oci
