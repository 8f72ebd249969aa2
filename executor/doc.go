// Package executor carries out a planner.Plan: it runs the plan's
// dependency graph with bounded parallelism (independent GCE work at once,
// etcd membership changes strictly one at a time, each behind a health
// gate), waits every GCE operation to DONE, retries what GCE and etcd say is
// transient, saves an etcd snapshot before every member removal and disk
// deletion, and holds a lock so that two applies never change one cluster.
//
// It never re-plans: a step that finds the world different from what the
// plan expected fails, and the next apply plans again. It never skips a
// health gate. Progress reaches the caller through Hooks, never through
// prints of its own.
//
// Its files by concern: apply.go runs the graph; handlers.go is the table
// of actions and their handlers; instances.go what a master boots from;
// membership.go, etcd.go and health.go the etcd client, member changes and
// health gates; snapshot.go the snapshots; lock.go the apply lock; gce.go
// the Compute API's operations and retries.
package executor
