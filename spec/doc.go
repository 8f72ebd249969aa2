// Package spec reads, defaults and validates cluster.yaml, the declarative
// description of a highly available Kubernetes control plane on GCE.
//
// Load is strict: unknown fields, duplicate keys, tabs used for indentation,
// wrong types and every rule of the spec are reported together, each naming
// the field path (spec.masters.replicas), the line where possible and what to
// do. The package also derives the GCE resource names of a cluster (names.go)
// and publishes a JSON Schema of the file (cluster.schema.json) for editors.
//
// spec never does I/O beyond reading the one file it is given.
package spec
