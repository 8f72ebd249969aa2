// Package habound computes, from the emulator's latency profile alone, how
// soon a cluster can go from one number of masters to another: the longest
// chain of operations that GCE's and etcd's rules force, whatever plan
// carries them out. The apply benchmarks report their wall time against it.
package habound
