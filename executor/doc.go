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
package executor
