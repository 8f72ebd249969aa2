// Package planner computes what kubeha must do to bring a cluster from what
// exists (state.Cluster) to what the spec says (spec.Cluster): an ordered,
// quorum-safe Plan of Steps that form a dependency graph.
//
// Plan is a pure, deterministic function in the manner of raft's Ready: the
// same inputs give a byte-identical plan, and the executor carries it out.
// It never touches a context, a client, a clock, a logger or randomness.
// It refuses, with an error saying what to do, rather than return a plan
// that could lose etcd quorum: every step records the etcd membership it
// leaves behind, and no step leaves fewer healthy voters than quorum.
//
// build (plan.go) lists the passes in the order they run, one file per
// concern: preflight.go refuses what no plan can do; builder.go holds the
// steps and the membership model every step is checked against; then
// network.go, repair.go (stopped masters, adoption, orphans, leaks, drift,
// renewals), scale.go (every voter change), loadbalancer.go and
// selection.go (which master goes, where a new one goes, its name). Every
// action is a line of the table in types.go. Plan files are read and
// written by planner/planfile: the planner does no I/O.
package planner
