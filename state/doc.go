// Package state is kubeha's observed model of a cluster: master instances,
// their disks and addresses, the static IP, the load balancer, the firewalls
// and the etcd members with their health and the leader, joined into
// replicas. Observe fills it from compute/v1 (aggregated and filtered lists,
// so the number of requests does not grow with zones or replicas) and from
// etcd clientv3 (one MemberList and a parallel Status per member).
//
// A Cluster is a snapshot that never needs to connect to a service; its
// query methods (Voters, Unhealthy, Leader, ByZone, Orphans) read like
// cluster-api's ControlPlane. state observes and never decides anything.
package state
