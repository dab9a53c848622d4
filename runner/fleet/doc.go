// Package fleet runs tasks on many worker hosts that take them from a
// NATS JetStream queue: `sandbox-runner worker` is a [Worker],
// `sandbox-runner submit` and `sandbox-runner workers` use a [Client].
// The submit side (the messages, the streams and subjects, the Client)
// is runner/fleet/client, which builds on any OS; this package keeps its
// names as aliases.
//
// A task message ([Task]) is the request document of the service's
// POST /v1/exec and a task id, published on sandbox.tasks.RUNTIME with
// the id as its Nats-Msg-Id, into the work-queue stream SANDBOX_TASKS.
// Each runtime has one durable pull consumer, "tasks-RUNTIME", shared by
// every worker that runs it: a work-queue stream only allows consumers
// whose filters do not overlap, so a worker that runs several runtimes
// pulls from each of their consumers in turn, and a task only ever
// reaches a worker that can run it.
//
//	submit ──► sandbox.tasks.python ──► SANDBOX_TASKS ──► tasks-python ──► workers running python
//	                                    (work queue)      (durable pull)     │
//	submit ◄── sandbox.results.ID ◄──── SANDBOX_RESULTS ◄── answer ──────────┤
//	                                    sandbox.failures.ID ◄── failed try ──┤
//	                                    SANDBOX_DEAD ◄── sandbox.dead.python ◄┘ after the last delivery
//	`workers` ◄── KV sandbox_workers (TTL) ◄── presence, refreshed by each worker
//
// A worker pulls no more tasks than it has free slots. While a task
// runs it sends in-progress acknowledgements (the heartbeat) every third
// of the ack wait, so a long task is never delivered twice; when a
// worker dies, its tasks are delivered again after the ack wait. It
// publishes the [Answer] on sandbox.results.ID and only then
// acknowledges the task.
//
// Exactly one answer per task: the answer is published expecting no
// earlier message on its subject (and with the task id as Nats-Msg-Id),
// so a second one is refused by the server, whatever the timing; and a
// worker that is handed a task that already has its answer (redelivered
// after a lost acknowledgement, or submitted again) acknowledges it
// without running it.
//
// A delivery that fails (the runner could not run the task: no image,
// containerd down, bad input) is handed back with a delay and recorded
// on sandbox.failures.ID. Deliveries are counted by the workers, not by
// the server: the one that reaches the limit ([WithMaxDeliveries])
// sends the task to sandbox.dead.RUNTIME with its last error in headers,
// answers it with that error and removes it from the queue. A task whose
// every worker died is dead-lettered by the next worker it reaches.
//
// Each worker keeps an entry ([WorkerInfo]) in the key-value bucket
// sandbox_workers, whose TTL removes it when the worker stops refreshing
// it. On a NATS cluster, streams, consumers and bucket are created with
// [WithReplicas] (3 on a cluster of three or more), so that they, and
// the workers, survive the loss of any one server.
//
// Nothing here logs unless given a logger, and nothing exits.
package fleet
