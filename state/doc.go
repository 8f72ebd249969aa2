// Package state is kubeha's observed model of a cluster: master instances,
// their disks and addresses, the static IP, the load balancer, the firewalls
// and the etcd members with their health and the leader, joined into
// replicas. Package state/observe fills it from compute/v1 and etcd; the
// health record (health.go) keeps how long each member has been unhealthy
// across runs.
//
// A Cluster is pure data that never connects to a service; its query
// methods (Voters, Unhealthy, Leader, ByZone, Orphans) read like
// cluster-api's ControlPlane. state observes and never decides anything.
package state
