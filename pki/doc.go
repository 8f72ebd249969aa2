// Package pki keeps a cluster's certificate authorities and issues the
// certificates its masters and kubeha itself use: an etcd CA and a cluster
// CA, per replica an etcd peer, an etcd server, an API server and an API
// server etcd-client certificate, and kubeha's own etcd client certificate.
// Keys are ECDSA P-256; key files are written 0600 and atomically,
// directories 0700; an existing CA is never overwritten.
//
// Key material never appears in errors or in anything pki prints: errors
// name files, never their content.
package pki
