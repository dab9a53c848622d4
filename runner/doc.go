// Package runner runs one untrusted task in a fresh, hardened container
// through containerd and reports exactly what happened.
//
// The lifecycle of [Runner.Run] is: stage the task's files in a private
// host directory, resolve and unpack the image, create the container (with
// the spec from package oci and our labels) and its task with capped output
// streams, Wait, Start, enforce the wall-clock timeout by killing every
// process of the task, read the cgroup counters (OOM kills, CPU, memory),
// then delete task, container, snapshot and task dir on a fresh
// context, whatever happened before.
//
// Nothing in this package logs unless given a logger, and nothing exits.
package runner
