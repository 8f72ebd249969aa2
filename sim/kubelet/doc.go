// Package kubelet is the emulator's stand-in for a master's kubelet, which
// cannot run here (it needs a container runtime, cgroups and root's mounts).
// It runs the static pods of a manifest directory the way the kubelet runs
// them on a VM, with each container a process of the real binary at the
// image's version: etcd and kube-apiserver, kube-controller-manager and
// kube-scheduler, built by make kube-binaries.
//
// What differs from the kubelet, because the emulator's machines share one
// host: a container's image is resolved to a local binary (and refused when
// its tag is not the version built); host paths are the machine's (the
// startup script ran with KUBEHA_ROOT, so the paths in a manifest already
// lie inside the machine's directory); a flag that binds 0.0.0.0 binds the
// machine's own IP instead; and etcd gets
// --peer-skip-client-san-verification, because every connection between
// the machines of one host leaves from 127.0.0.1, which no peer certificate
// names (on GCE a peer connects from the IP its certificate names; the
// peers still need a certificate of the etcd CA). Crashed containers are restarted with the
// kubelet's back-off (10 s doubling, here capped at 10 s rather than 5
// minutes, so tests do not wait), and each pod's state is reported.
package kubelet
