// Package observe fills a state.Cluster from the services: compute/v1
// (aggregated and filtered lists, so the number of requests does not grow
// with zones or replicas) and etcd clientv3 (one MemberList and a parallel
// Status per member) and, through the static IP, the Kubernetes API (the
// masters' Nodes, one list). When no member answers, it tells a certificate
// problem from a lost quorum with TLS handshakes of its own (tlsdiag.go).
//
// It is apart from package state so that what reads the observed model
// (the planner) depends on no client.
package observe
