// Command kubeha keeps the control plane of a Kubernetes cluster on Google
// Compute Engine highly available. See README.md.
package main

import "github.com/kubeha/kubeha/cmd/kubeha/cli"

func main() { cli.Main() }
