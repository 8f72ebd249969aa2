// Package metadata is the instance metadata contract a master boots from
// (DESIGN.md §4): the keys kubeha sets on every master instance and the JSON
// documents under them. kubeha writes them; a VM's startup (or the sim
// emulator) reads them and starts etcd exactly as they say.
//
// metadata holds data types and their encoding only; it never does I/O.
package metadata
