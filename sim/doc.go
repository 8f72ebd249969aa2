// Package sim is kubeha's embedded default backend: an emulator of the part
// of the Compute Engine API that kubeha uses, served over HTTP with the real
// API's paths, JSON (the compute/v1 structs), asynchronous operations and
// errors, so that the real compute/v1 client and the gcloud CLI cannot tell
// it from GCE.
//
// Every RUNNING master instance "boots". With the Kubernetes binaries
// (Options.Kubernetes, built by make kube-binaries) it is a machine
// (sim/machine): its metadata served as GCE's metadata server serves it,
// the real startup script run with bash, the kubelet it downloads served by
// the emulator (release.go), and its static pods run as the real binaries
// by the kubelet stand-in (sim/kubelet). Without them the emulator starts an
// embedded etcd member (go.etcd.io/etcd/server/v3/embed) from the
// instance's kubeha-etcd and kubeha-tls metadata. Either way the member
// runs on the instance's own loopback IP with its data on the attached
// master-pd disk, and stopping or deleting the instance stops it.
//
// External addresses are loopback addresses too, and the balancer
// (balancer.go) gives them GCE's network path: an access config's address
// reaches its instance, and a forwarding rule's spreads connections over
// the target pool's instances that pass its legacy HTTP health check.
//
// The admin API (/sim/v1/...) crashes (hangs) and revives masters, sets
// per-method latency, injects 429/503 faults, and says what the masters run,
// where the release download is and which low ports are moved.
//
// sim never does anything the real GCE API would not do: it validates
// references, refuses to delete resources in use, and reports asynchronous
// failures inside DONE operations as GCE does.
package sim
