package spec

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// GCE resource names of a cluster (DESIGN.md §3). They follow kube-up's
// naming so that clusters created by kube-up can be adopted.

// MaxNameLength is the longest metadata.name accepted. The longest derived
// name is a replica's internal address, "<name>-master-xyz-internal" (name +
// 20 characters); 30 keeps every name well inside GCE's 63-character limit
// and leaves room for snapshot and backup names derived from instance names.
const MaxNameLength = 30

// ReplicaSuffixLength is the length of the random-looking suffix of a replica
// instance name, <name>-master-<suffix>.
const ReplicaSuffixLength = 3

// MasterName is the name of the first master instance and of the target pool
// and forwarding rule; it is also the masters' network tag.
func MasterName(cluster string) string { return cluster + "-master" }

// ReplicaName is the instance name of a replica with the given suffix.
func ReplicaName(cluster, suffix string) string { return cluster + "-master-" + suffix }

// DiskName is the etcd data disk of an instance.
func DiskName(instance string) string { return instance + "-pd" }

// InternalAddressName is the reserved internal address of an instance.
func InternalAddressName(instance string) string { return instance + "-internal" }

// StaticIPName is the regional external address that always routes to the masters.
func StaticIPName(cluster string) string { return cluster + "-master-ip" }

// HealthCheckName is the HTTP health check of the masters' target pool.
func HealthCheckName(cluster string) string { return cluster + "-master-hc" }

// HTTPSFirewallName opens tcp:443 to the masters.
func HTTPSFirewallName(cluster string) string { return cluster + "-master-https" }

// HealthFirewallName admits the load balancer's health-check probes to
// the masters' health endpoint.
func HealthFirewallName(cluster string) string { return cluster + "-master-health" }

// EtcdClientFirewallName admits the machines kubeha runs on (spec.access)
// to etcd's client port.
func EtcdClientFirewallName(cluster string) string { return cluster + "-master-etcd-client" }

// EtcdFirewallName opens the etcd peer port between masters only.
func EtcdFirewallName(cluster string) string { return cluster + "-master-etcd" }

// MasterTag is the network tag carried by every master.
func MasterTag(cluster string) string { return MasterName(cluster) }

// DiskDeviceName is the device name under which the etcd disk is attached.
const DiskDeviceName = "master-pd"

// Labels carried by every master instance kubeha creates.
const (
	LabelCluster = "kubeha-cluster"
	LabelRole    = "kubeha-role"
	RoleMaster   = "master"
)

// AllResourceNames lists every name derived from a cluster name, using the
// longest possible replica name. Validation checks each against GCE's limit.
func AllResourceNames(cluster string) []string {
	replica := ReplicaName(cluster, "xxx")
	first := MasterName(cluster)
	return []string{
		first, replica,
		DiskName(first), DiskName(replica),
		InternalAddressName(first), InternalAddressName(replica),
		StaticIPName(cluster), HealthCheckName(cluster),
		HTTPSFirewallName(cluster), EtcdFirewallName(cluster), HealthFirewallName(cluster), EtcdClientFirewallName(cluster),
	}
}

// resourcePath is a resource's path "projects/P/..." from its URL, or the
// path itself.
func resourcePath(ref string) string {
	if i := strings.Index(ref, "projects/"); i >= 0 {
		return ref[i:]
	}
	return ref
}

// NetworkPath is the path of the masters' network,
// projects/PROJECT/global/networks/NAME, whichever form the spec used.
func (g GCE) NetworkPath() string {
	if strings.Contains(g.Network, "/") {
		return resourcePath(g.Network)
	}
	return "projects/" + g.Project + "/global/networks/" + cmp.Or(g.Network, DefaultNetwork)
}

// SubnetworkPath is the path of the masters' subnetwork,
// projects/PROJECT/regions/REGION/subnetworks/NAME: the one the spec names,
// else the region's subnetwork of an auto-mode network, which has the
// network's name (and project).
func (g GCE) SubnetworkPath() string {
	switch {
	case strings.Contains(g.Subnetwork, "/"):
		return resourcePath(g.Subnetwork)
	case g.Subnetwork != "":
		return "projects/" + g.Project + "/regions/" + g.Region + "/subnetworks/" + g.Subnetwork
	}
	net := strings.Split(g.NetworkPath(), "/")
	return "projects/" + net[1] + "/regions/" + g.Region + "/subnetworks/" + net[4]
}

// KeysSecretName is the Secret Manager secret of a master's private keys.
func KeysSecretName(instance string) string { return instance + "-keys" }

// MasterServiceAccountID is the account ID of the service account kubeha
// creates for a cluster's masters: CLUSTER-master, shortened to IAM's 30
// characters (with a hash of the name, so that two clusters never share
// one).
func MasterServiceAccountID(cluster string) string {
	id := MasterName(cluster)
	if len(id) <= 30 {
		return id
	}
	sum := sha256.Sum256([]byte(cluster))
	return strings.TrimRight(id[:21], "-") + "-" + hex.EncodeToString(sum[:])[:8]
}

// MasterServiceAccount is the email the masters run as: the spec's
// spec.masters.serviceAccount, or the one kubeha manages.
func (c *Cluster) MasterServiceAccount() string {
	if c.Spec.Masters.ServiceAccount != "" {
		return c.Spec.Masters.ServiceAccount
	}
	return MasterServiceAccountID(c.Metadata.Name) + "@" + c.Spec.GCE.Project + ".iam.gserviceaccount.com"
}

// RestoreBucketName is the Cloud Storage bucket through which kubeha
// restore hands a snapshot to a cluster's masters: PROJECT-CLUSTER-kubeha
// (bucket names are global), shortened to Cloud Storage's 63 characters
// with a hash of both names, and never starting with "goog".
func RestoreBucketName(project, cluster string) string {
	name := strings.ToLower(strings.ReplaceAll(project, ":", "-") + "-" + cluster + "-kubeha")
	if strings.HasPrefix(name, "goog") {
		name = "kubeha-" + name
	}
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(project + "/" + cluster))
	return strings.TrimRight(name[:54], "-.") + "-" + hex.EncodeToString(sum[:])[:8]
}
