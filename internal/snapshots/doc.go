// Package snapshots reads the etcd snapshot files kubeha keeps in a
// cluster's backups directory: their digest and revision, as etcdutl
// snapshot status reads them, for kubeha restore.
package snapshots
