// Package client is the submit side of sandbox-runner's fleet: it
// connects to NATS, queues tasks (a Task is an api.Request and an id) on
// the runtime's subject of the JetStream work queue, waits for their
// Answer, and lists the live workers. It also holds what the workers and
// their clients agree on: the streams, subjects, headers and presence
// bucket, and how they are created (Streams). The worker is
// runner/fleet's, which uses this package; this one imports no
// containerd and nothing Linux-only, so a client builds on any OS.
//
// Nothing here logs unless given a logger, and nothing exits.
package client
