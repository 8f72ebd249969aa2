// Package watch is kubeha's controller: `kubeha watch` reconciles every
// cluster spec of a file or directory continuously, on each change of a
// spec (fsnotify) and every resync period, observing (state/observe, with
// the health record apply uses too), planning and applying (executor) as
// `kubeha apply --auto-approve` would. Several watchers of one cluster elect
// one through etcd; only it applies. Its Prometheus metrics say what each
// reconcile found and did.
package watch
