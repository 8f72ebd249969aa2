// Package kubeapi is kubeha's small client of the Kubernetes API it puts
// behind the static IP: bootstrap tokens for nodes to join with (kubeha
// join), and the Node of a master kubeha removes. It speaks plain HTTPS
// with kubeha's admin certificate; kubeha's go.mod holds no Kubernetes
// client library for these few calls.
//
// It never logs or returns a token's secret except to the caller that made
// it, and never puts one in an error.
package kubeapi
