// Package e2e drives the built kubeha binary as a user would: it builds
// ./cmd/kubeha once per test run and checks exit codes and output.
package e2e
