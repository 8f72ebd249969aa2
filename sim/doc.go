// Package sim is kubeha's embedded default backend: an emulator of the part
// of the Compute Engine API that kubeha uses, served over HTTP with the real
// API's paths, JSON (the compute/v1 structs), asynchronous operations and
// errors, so that the real compute/v1 client and the gcloud CLI cannot tell
// it from GCE.
//
// Every RUNNING master instance whose metadata carries kubeha-etcd "boots":
// the emulator starts a real embedded etcd member (go.etcd.io/etcd/server/v3/embed)
// on the instance's own loopback IP, from the instance's kubeha-etcd and
// kubeha-tls metadata exactly as a VM's startup would, with its data on the
// attached master-pd disk. Stopping or deleting the instance stops the
// member; the admin API (/sim/v1/...) crashes and revives members, sets
// per-method latency and injects 429/503 faults for tests and demos.
//
// sim never does anything the real GCE API would not do: it validates
// references, refuses to delete resources in use, and reports asynchronous
// failures inside DONE operations as GCE does.
package sim
