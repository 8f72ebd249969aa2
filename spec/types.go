package spec

import (
	"encoding/json"
	"fmt"
	"time"
)

// APIVersion and Kind identify a cluster.yaml document.
const (
	APIVersion = "kubeha.io/v1alpha1"
	Kind       = "Cluster"
)

// Cluster is the whole cluster.yaml document.
type Cluster struct {
	APIVersion string      `json:"apiVersion" validate:"required" jsonschema:"const=kubeha.io/v1alpha1" doc:"Always kubeha.io/v1alpha1."`
	Kind       string      `json:"kind" validate:"required" jsonschema:"const=Cluster" doc:"Always Cluster."`
	Metadata   Metadata    `json:"metadata"`
	Spec       ClusterSpec `json:"spec"`

	// Source is the path the spec was read from; relative paths in the spec
	// are resolved against its directory.
	Source string `json:"-"`
}

// Metadata names the cluster.
type Metadata struct {
	Name string `json:"name" validate:"required,rfc1035" doc:"RFC 1035 label of at most 30 characters; the prefix of every GCE resource name."`
}

// ClusterSpec is the desired control plane.
type ClusterSpec struct {
	GCE         GCE         `json:"gce"`
	Masters     Masters     `json:"masters"`
	MultiZone   bool        `json:"multiZone,omitempty" doc:"kube-up's MULTIZONE. Must be true when masters.zones has more than one entry."`
	Etcd        Etcd        `json:"etcd,omitempty"`
	Remediation Remediation `json:"remediation,omitempty"`
	PKI         PKI         `json:"pki,omitempty"`
	Kubernetes  Kubernetes  `json:"kubernetes,omitempty"`
	Access      Access      `json:"access,omitempty"`
	Addons      Addons      `json:"addons,omitempty"`
}

// Addons are the cluster's add-ons beyond kubeha's own (node bootstrap
// RBAC, cluster-info, CoreDNS, kube-proxy), kept in sync by the add-on
// manager every master runs, as kube-up's does.
type Addons struct {
	Dir           string   `json:"dir,omitempty" doc:"Directory of the user's add-on manifests (*.yaml, *.yml, *.json, in subdirectories too), relative to cluster.yaml. Objects labelled addonmanager.kubernetes.io/mode=Reconcile are kept as the files say and pruned when their file is removed; EnsureExists ones are created once. Default: none."`
	CheckInterval Duration `json:"checkInterval,omitempty" doc:"How often the add-on manager applies the add-ons (kube-addons.sh's ADDON_CHECK_INTERVAL_SEC), whole seconds between 5s and 1h. Default: 1m."`
}

// Access says where kubeha itself runs: it talks to etcd on the masters'
// internal IPs, so the machines it runs on need etcd's client port.
type Access struct {
	SourceRanges []string `json:"sourceRanges,omitempty" validate:"omitempty,max=64,dive,cidr" doc:"CIDR ranges of the machines kubeha runs on (a management VM in the VPC, a VPN or IAP tunnel's range): a firewall admits them to etcd's client port. Never 0.0.0.0/0."`
	SourceTags   []string `json:"sourceTags,omitempty" validate:"omitempty,max=30,dive,rfc1035" doc:"Network tags of the VMs kubeha runs on, admitted to etcd's client port like sourceRanges."`
}

// Kubernetes is the control plane every master runs.
type Kubernetes struct {
	Version string `json:"version,omitempty" doc:"Kubernetes release of the masters' kube-apiserver, kube-controller-manager and kube-scheduler, e.g. v1.37.2; it fixes the etcd version too. kubeha deploys v1.36.3 (etcd v3.6.8) and v1.37.2 (etcd v3.7.3). A change is an upgrade: the masters are replaced one at a time as spec.masters.replaceBy says, one minor version per apply (a skipped minor is refused, naming the release to go to first); a rollback below the etcd minor version every member runs is refused. Default: the newest release kubeha deploys."`
	// ReleaseURL and KubeletSHA512 say where a master downloads its
	// kubelet and what it must be, as kube-up's release download does.
	ReleaseURL    string `json:"releaseURL,omitempty" jsonschema:"pattern=^https?://" doc:"Base URL of the Kubernetes releases: a master downloads <releaseURL>/<version>/bin/linux/amd64/kubelet at every boot. Default: https://dl.k8s.io/release (with kubeha's emulator: the emulator's own)."`
	KubeletSHA512 string `json:"kubeletSHA512,omitempty" jsonschema:"pattern=^[0-9a-f]{128}$" doc:"SHA-512 of that kubelet, as the release's kubelet.sha512 file gives it. A master whose download has another digest starts nothing. Default: the digest kubeha carries for the version."`
}

// GCE locates the cluster.
type GCE struct {
	Project    string `json:"project" validate:"required,gceproject" doc:"GCP project ID."`
	Region     string `json:"region" validate:"required,gceregion" doc:"Region of every master, e.g. europe-west1. It cannot change once the cluster exists."`
	Network    string `json:"network,omitempty" validate:"omitempty,gcenetwork" doc:"VPC network of the masters: its name, projects/PROJECT/global/networks/NAME (another project's for a Shared VPC) or its URL. Default: default."`
	Subnetwork string `json:"subnetwork,omitempty" validate:"omitempty,gcesubnetwork" doc:"Subnetwork of the masters in spec.gce.region: its name, projects/PROJECT/regions/REGION/subnetworks/NAME or its URL (kube-up's SUBNETWORK). Required when the network is a custom-mode VPC; in an auto-mode network the region's subnetwork is used."`
}

// Masters describes the replicated masters.
type Masters struct {
	Replicas    int      `json:"replicas" validate:"required" jsonschema:"enum=1 3 5 7" doc:"Number of masters: 1, 3, 5 or 7. Even counts are refused: two masters need both for quorum, so two is worse than one."`
	Zones       []string `json:"zones" validate:"required,min=1,max=16,dive,gcezone" doc:"Zones of spec.gce.region; masters are spread over them in order and the first zone holds the first master."`
	MachineType string   `json:"machineType,omitempty" validate:"omitempty,gcemachinetype" doc:"Machine type of every master. Default: n1-standard-2."`
	Image       string   `json:"image,omitempty" validate:"omitempty,gceimage" doc:"Boot image of every master. Default: projects/cos-cloud/global/images/family/cos-stable."`
	DiskSizeGb  int      `json:"diskSizeGb,omitempty" validate:"omitempty,min=10,max=65536" doc:"Size of each master's etcd data disk in GB. Default: 20."`
	// ServiceAccount names an existing service account; empty, kubeha
	// manages CLUSTER-master.
	ServiceAccount string `json:"serviceAccount,omitempty" validate:"omitempty,email" doc:"Email of an existing service account the masters run as. Default: one kubeha creates and deletes with the cluster, CLUSTER-master@PROJECT.iam.gserviceaccount.com. Never the Compute Engine default account, which has Editor in most projects."`
	DiskType       string `json:"diskType,omitempty" validate:"omitempty,oneof=pd-ssd pd-balanced pd-standard" jsonschema:"enum=pd-ssd pd-balanced pd-standard" doc:"kube-up's MASTER_DISK_TYPE: the etcd data disk's type. etcd waits on fsync for every write, and pd-standard's latency is a known cause of leader churn. Default: pd-ssd."`
	// ReplaceBy is how a master whose VM must be replaced is replaced.
	ReplaceBy string `json:"replaceBy,omitempty" validate:"omitempty,oneof=member disk" jsonschema:"enum=member disk" doc:"How a master whose VM must be replaced (image, machine type or Kubernetes version drift, apply --replace, a stopped or deleted VM) is replaced. member: a successor joins etcd as a learner, copies the whole database from the leader and is promoted before the old master is removed; fault tolerance never drops, but the copy grows with the database. disk: the master is stopped and its VM made again on its etcd data disk, with its name and internal IP, so its etcd member restarts with its data and member ID; nothing is copied, but the member is down while the VM is swapped (with 3 masters, fault tolerance is 0 meanwhile), so it is refused when the others are not a quorum. etcd's guide recommends moving the data above 50 MB. A zone change, or a disk whose size or type is not the spec's, is always replaced by member. Default: member."`
}

// Etcd configures the clustered etcd that runs on every master.
type Etcd struct {
	QuorumRead *bool `json:"quorumRead,omitempty" doc:"kube-up's ENABLE_ETCD_QUORUM_READ: reads go through the leader (always so on current Kubernetes, whose reads are linearizable). Default: true."`
	ClientPort int   `json:"clientPort,omitempty" validate:"omitempty,min=1,max=65535" doc:"etcd client port. Default: 2379."`
	PeerPort   int   `json:"peerPort,omitempty" validate:"omitempty,min=1,max=65535" doc:"etcd peer port, opened between masters only. Default: 2380."`
}

// Remediation controls the replacement of failed replicas.
type Remediation struct {
	ReplaceUnhealthy bool     `json:"replaceUnhealthy,omitempty" doc:"Plan the replacement of a replica whose etcd member has been unhealthy for unhealthyAfter, in its own zone."`
	UnhealthyAfter   Duration `json:"unhealthyAfter,omitempty" doc:"How long a member must be unhealthy before it is replaced, e.g. 5m. Between 30s and 24h. Default: 5m."`
}

// PKI says where certificates and keys live.
type PKI struct {
	Dir string `json:"dir,omitempty" doc:"Directory of the CA, certificates and keys, relative to cluster.yaml. Created on first apply. Default: pki."`
}

// QuorumReadEnabled reports whether etcd quorum reads are on (the default).
func (e Etcd) QuorumReadEnabled() bool { return e.QuorumRead == nil || *e.QuorumRead }

// Duration is a time.Duration written as a Go duration string ("5m", "90s").
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string such as "5m".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"5m\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration: write it like \"90s\", \"5m\" or \"1h\"", s)
	}
	d.Duration = v
	return nil
}
