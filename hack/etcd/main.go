// Command etcd is etcd's own server binary, at the version kubeha's go.mod
// pins, built for the emulator's masters by make kube-binaries: their etcd
// static pods run it as a process.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
