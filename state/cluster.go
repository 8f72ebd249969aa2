package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/kubeha/kubeha/metadata"
)

// Cluster is what exists for one cluster, in GCE and in etcd.
type Cluster struct {
	Name    string `json:"name"`
	Project string `json:"project"`
	Region  string `json:"region"` // of the spec; OtherRegions lists masters found elsewhere

	Instances []*Instance `json:"instances"` // masters of this cluster, sorted by name
	Disks     []*Disk     `json:"disks"`     // etcd data disks (<instance>-pd)
	Addresses []*Address  `json:"addresses"` // internal addresses of replicas (<instance>-internal)

	StaticIP       *Address        `json:"staticIP,omitempty"`
	HealthCheck    *HealthCheck    `json:"healthCheck,omitempty"`
	TargetPool     *TargetPool     `json:"targetPool,omitempty"`
	ForwardingRule *ForwardingRule `json:"forwardingRule,omitempty"`
	Firewalls      []*Firewall     `json:"firewalls"`
	// Network is the masters' network and subnetwork as the spec names
	// them (nil: not observed).
	Network *Network `json:"network,omitempty"`
	// Identity is the masters' service account and key secrets (nil: not
	// observed).
	Identity *Identity `json:"identity,omitempty"`
	// Nodes are the cluster's master Nodes in the Kubernetes API (nil: the
	// API was not asked, or did not answer).
	Nodes *Nodes `json:"nodes,omitempty"`

	Etcd Etcd `json:"etcd"`

	// OtherRegions holds regions other than Region where masters or the
	// static IP of this cluster exist (a spec that moved the cluster).
	OtherRegions []string `json:"otherRegions,omitempty"`

	ObservedAt time.Time `json:"observedAt"`
}

// Identity is what exists of the masters' service account and of the
// Secret Manager secrets of their private keys.
type Identity struct {
	ServiceAccount string   `json:"serviceAccount"` // the email the masters run as
	Managed        bool     `json:"managed"`        // kubeha's own (CLUSTER-master), not spec.masters.serviceAccount
	Exists         bool     `json:"exists"`
	Secrets        []string `json:"secrets"` // this cluster's key secrets (INSTANCE-keys), sorted
}

// Nodes is what the Kubernetes API holds of the masters.
type Nodes struct {
	// Masters are the names of the Nodes the masters registered (label
	// kubeha.io/master=CLUSTER), sorted.
	Masters []string `json:"masters"`
}

// Network is what exists of the network and subnetwork the spec names.
type Network struct {
	Path     string `json:"path"` // projects/P/global/networks/N
	Exists   bool   `json:"exists"`
	AutoMode bool   `json:"autoMode"` // a subnetwork of its name in every region
	// Subnetwork is the subnetwork the spec names ("" when it names none);
	// SubnetworkOf the network it belongs to, "" when it does not exist.
	Subnetwork   string `json:"subnetwork,omitempty"`
	SubnetworkOf string `json:"subnetworkOf,omitempty"`
}

// Instance is a master instance.
type Instance struct {
	Name        string            `json:"name"`
	Zone        string            `json:"zone"`
	ID          uint64            `json:"id,omitempty"`
	Status      string            `json:"status"` // PROVISIONING, STAGING, RUNNING, STOPPING, TERMINATED
	InternalIP  string            `json:"internalIP,omitempty"`
	NatIP       string            `json:"natIP,omitempty"` // the access config's external IP, if any
	AccessName  string            `json:"accessConfig,omitempty"`
	MachineType string            `json:"machineType,omitempty"` // short name
	Labels      map[string]string `json:"labels,omitempty"`
	// Config is what the replica was created from (its kubeha-config
	// metadata); nil for masters kubeha did not create (kube-up).
	Config *metadata.Config `json:"config,omitempty"`
	// Certs describes the certificates in the instance's kubeha-tls
	// metadata (never the keys); nil when it has none.
	Certs *CertInfo `json:"certs,omitempty"`
	// ClusterState and InitialCluster are what the instance's etcd boots
	// with (its kubeha-etcd metadata): "new" and every member of the
	// cluster it bootstraps ("name=peerURL,..."), or "existing" and the
	// members of the moment it joined. Empty for masters kubeha did not
	// create.
	ClusterState   string `json:"initialClusterState,omitempty"`
	InitialCluster string `json:"initialCluster,omitempty"`
	// Restore is the restore from a snapshot the instance's etcd boots
	// with (kubeha restore), or nil.
	Restore *metadata.Restore `json:"restore,omitempty"`
	// HasDataDisk says the instance has a disk attached as master-pd.
	HasDataDisk bool   `json:"hasDataDisk"`
	Fingerprint string `json:"fingerprint,omitempty"` // metadata fingerprint
}

// CertInfo is what kubeha checks of a replica's certificates.
type CertInfo struct {
	NotAfter     time.Time `json:"notAfter"`     // the earliest expiry of the peer, server and API server certificates
	PeerIPs      []string  `json:"peerIPs"`      // IP SANs of the etcd peer certificate
	APIServerIPs []string  `json:"apiServerIPs"` // IP SANs of the API server certificate
	// KeysInMetadata says kubeha-tls still holds private keys (a master of
	// a kubeha before Secret Manager): the next renewal moves them.
	KeysInMetadata bool `json:"keysInMetadata,omitempty"`
	// NoNodeCredentials says the master has no kubelet client certificate
	// or cluster signing key (a master of a kubeha before nodes could
	// join): it cannot register as a Node nor sign a kubelet's
	// certificate until renewed.
	NoNodeCredentials bool `json:"noNodeCredentials,omitempty"`
}

// Disk is an etcd data disk.
type Disk struct {
	Name   string   `json:"name"`
	Zone   string   `json:"zone"`
	SizeGb int64    `json:"sizeGb"`
	Users  []string `json:"users,omitempty"` // instance names
}

// Address is a reserved address: a replica's internal address or the
// cluster's static IP.
type Address struct {
	Name    string   `json:"name"`
	Address string   `json:"address"`
	Type    string   `json:"type"`   // INTERNAL or EXTERNAL
	Status  string   `json:"status"` // RESERVED or IN_USE
	Users   []string `json:"users,omitempty"`
	Region  string   `json:"region,omitempty"`
}

// HealthCheck is the masters' HTTP health check.
type HealthCheck struct {
	Name string `json:"name"`
	// Port and Path are where it probes each master.
	Port int64  `json:"port,omitempty"`
	Path string `json:"path,omitempty"`
}

// TargetPool is the masters' target pool.
type TargetPool struct {
	Name      string   `json:"name"`
	Instances []string `json:"instances"` // instance names (zone/name links reduced to names)
	// Dangling lists pool entries whose instance does not exist.
	Dangling    []string `json:"dangling,omitempty"`
	HealthCheck string   `json:"healthCheck,omitempty"`
}

// ForwardingRule is the load balancer's rule holding the static IP.
type ForwardingRule struct {
	Name      string `json:"name"`
	IPAddress string `json:"ipAddress"`
	Target    string `json:"target"` // target pool name
	PortRange string `json:"portRange"`
}

// Firewall is a firewall rule of the cluster.
type Firewall struct {
	Name       string   `json:"name"`
	Ports      []string `json:"ports"` // tcp ports allowed
	SourceTags []string `json:"sourceTags,omitempty"`
	TargetTags []string `json:"targetTags,omitempty"`
	Sources    []string `json:"sourceRanges,omitempty"`
}

// Etcd is the observed etcd cluster.
type Etcd struct {
	// Reachable is true when some member answered the member list.
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"` // why it is not reachable
	// CertError says etcd refused kubeha's TLS (or kubeha refused etcd's):
	// a certificate problem, not an etcd that is down. It names the files.
	CertError string    `json:"certError,omitempty"`
	ClusterID uint64    `json:"clusterID,omitempty"`
	LeaderID  uint64    `json:"leaderID,omitempty"`
	Members   []*Member `json:"members"`
}

// Member is an etcd member, with what its Status call said.
type Member struct {
	ID         uint64   `json:"id"`
	Name       string   `json:"name"` // empty for a learner that never started
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs,omitempty"`
	IsLearner  bool     `json:"isLearner"`
	Healthy    bool     `json:"healthy"`
	Leader     bool     `json:"leader"`
	RaftIndex  uint64   `json:"raftIndex,omitempty"`
	DBSize     int64    `json:"dbSize,omitempty"`
	// Version is the member's etcd server version (3.7.3), when it
	// answered.
	Version string `json:"version,omitempty"`
	Error   string `json:"error,omitempty"`
	// Unstarted says the member has never run: it has no client URLs
	// (a learner not started yet, or a member of a static initial cluster
	// whose VM never booted it). It holds no data.
	Unstarted bool `json:"unstarted,omitempty"`
	// UnhealthyFor is how long the member has been seen unhealthy, as the
	// caller's health record says; 0 when healthy or unknown.
	UnhealthyFor time.Duration `json:"unhealthyFor,omitempty"`
	// Instance is the master this member runs on ("" for an orphan).
	Instance string `json:"instance,omitempty"`
}

// Started says the member has published its name, i.e. it has run.
func (m *Member) Started() bool { return m.Name != "" }

// Replica is a master instance joined with its member, disk and address.
type Replica struct {
	Instance *Instance
	Member   *Member // nil when etcd has no member for it
	Disk     *Disk
	Address  *Address
}

// Name is the replica's instance name.
func (r *Replica) Name() string { return r.Instance.Name }

// Zone is the replica's zone.
func (r *Replica) Zone() string { return r.Instance.Zone }

// Healthy says the replica's instance runs and its member is a healthy
// member of etcd.
func (r *Replica) Healthy() bool {
	return r.Instance.Status == "RUNNING" && r.Member != nil && r.Member.Healthy
}

// Replicas joins every master instance with its member, disk and address,
// sorted by name.
func (c *Cluster) Replicas() []*Replica {
	var out []*Replica
	for _, in := range c.Instances {
		r := &Replica{Instance: in, Member: c.MemberOf(in.Name)}
		for _, d := range c.Disks {
			if d.Name == in.Name+"-pd" {
				r.Disk = d
			}
		}
		for _, a := range c.Addresses {
			if a.Name == in.Name+"-internal" {
				r.Address = a
			}
		}
		out = append(out, r)
	}
	return out
}

// MemberOf is the etcd member running on an instance, or nil.
func (c *Cluster) MemberOf(instance string) *Member {
	for _, m := range c.Etcd.Members {
		if m.Instance == instance {
			return m
		}
	}
	return nil
}

// Voters are the voting members.
func (c *Cluster) Voters() []*Member {
	return filter(c.Etcd.Members, func(m *Member) bool { return !m.IsLearner })
}

// Learners are the non-voting members.
func (c *Cluster) Learners() []*Member {
	return filter(c.Etcd.Members, func(m *Member) bool { return m.IsLearner })
}

// HealthyVoters are the voters that answered and follow a leader.
func (c *Cluster) HealthyVoters() []*Member {
	return filter(c.Voters(), func(m *Member) bool { return m.Healthy })
}

// Unhealthy lists the replicas whose instance is not running or whose
// member is missing or unhealthy.
func (c *Cluster) Unhealthy() []*Replica {
	return filter(c.Replicas(), func(r *Replica) bool { return !r.Healthy() })
}

// filter is the elements of xs that keep, in order, in a new slice (nil
// when none).
func filter[T any](xs []T, keep func(T) bool) []T {
	var out []T
	for _, x := range xs {
		if keep(x) {
			out = append(out, x)
		}
	}
	return out
}

// Leader is the etcd leader, or nil.
func (c *Cluster) Leader() *Member {
	for _, m := range c.Etcd.Members {
		if m.Leader {
			return m
		}
	}
	return nil
}

// ByZone groups the replicas by zone.
func (c *Cluster) ByZone() map[string][]*Replica {
	out := map[string][]*Replica{}
	for _, r := range c.Replicas() {
		out[r.Zone()] = append(out[r.Zone()], r)
	}
	return out
}

// Orphans are resources that belong to no replica: members without an
// instance, disks and addresses without an instance.
type Orphans struct {
	Members   []*Member
	Disks     []*Disk
	Addresses []*Address
}

// Orphans finds members, disks and addresses that belong to no instance.
func (c *Cluster) Orphans() Orphans {
	var o Orphans
	names := map[string]bool{}
	for _, in := range c.Instances {
		names[in.Name] = true
	}
	for _, m := range c.Etcd.Members {
		if m.Instance == "" || !names[m.Instance] {
			o.Members = append(o.Members, m)
		}
	}
	for _, d := range c.Disks {
		if !names[d.Name[:len(d.Name)-len("-pd")]] {
			o.Disks = append(o.Disks, d)
		}
	}
	for _, a := range c.Addresses {
		if !names[a.Name[:len(a.Name)-len("-internal")]] {
			o.Addresses = append(o.Addresses, a)
		}
	}
	return o
}

// Quorum is the majority of n voters.
func Quorum(n int) int { return n/2 + 1 }

// Membership summarises etcd's voters and their health.
type Membership struct {
	Voters         int `json:"voters"`
	Learners       int `json:"learners"`
	Quorum         int `json:"quorum"`
	HealthyVoters  int `json:"healthyVoters"`
	FaultTolerance int `json:"faultTolerance"`
}

// NewMembership computes the quorum and fault tolerance of a membership.
func NewMembership(voters, learners, healthy int) Membership {
	q := 0
	if voters > 0 {
		q = Quorum(voters)
	}
	return Membership{Voters: voters, Learners: learners, Quorum: q, HealthyVoters: healthy, FaultTolerance: healthy - q}
}

// Membership is the current membership.
func (c *Cluster) Membership() Membership {
	return NewMembership(len(c.Voters()), len(c.Learners()), len(c.HealthyVoters()))
}

// LostQuorum says etcd has voters but fewer healthy ones than quorum.
func (c *Cluster) LostQuorum() bool {
	m := c.Membership()
	return m.Voters > 0 && m.HealthyVoters < m.Quorum
}

// Fingerprint identifies what a plan was computed against: instance and
// member IDs, member health, the etcd cluster ID and every resource's
// identity. A saved
// plan whose fingerprint no longer matches is stale.
func (c *Cluster) Fingerprint() string {
	type fp struct {
		Instances []string
		Members   []string
		ClusterID uint64
		Resources []string
	}
	var f fp
	for _, in := range c.Instances {
		f.Instances = append(f.Instances, fmt.Sprintf("%s/%s/%d/%s/%s/%s", in.Zone, in.Name, in.ID, in.Status, in.NatIP, in.Fingerprint))
	}
	for _, m := range c.Etcd.Members {
		// Health is part of it: a plan made while a voter was healthy is
		// stale once it has failed (and the other way round).
		f.Members = append(f.Members, fmt.Sprintf("%x/%s/%t/%s/healthy=%t", m.ID, m.Name, m.IsLearner, m.Instance, m.Healthy))
	}
	f.ClusterID = c.Etcd.ClusterID
	for _, d := range c.Disks {
		f.Resources = append(f.Resources, "disk/"+d.Zone+"/"+d.Name)
	}
	for _, a := range c.Addresses {
		f.Resources = append(f.Resources, "address/"+a.Name+"/"+a.Address+"/"+a.Status)
	}
	if c.StaticIP != nil {
		f.Resources = append(f.Resources, "static/"+c.StaticIP.Address+"/"+c.StaticIP.Status)
	}
	if c.TargetPool != nil {
		f.Resources = append(f.Resources, fmt.Sprintf("pool/%v", c.TargetPool.Instances))
	}
	if c.ForwardingRule != nil {
		f.Resources = append(f.Resources, "rule/"+c.ForwardingRule.IPAddress)
	}
	if c.HealthCheck != nil {
		f.Resources = append(f.Resources, "hc")
	}
	for _, fw := range c.Firewalls {
		f.Resources = append(f.Resources, fmt.Sprintf("fw/%s/%v/%v/%v", fw.Name, fw.Ports, fw.SourceTags, fw.TargetTags))
	}
	sort.Strings(f.Instances)
	sort.Strings(f.Members)
	sort.Strings(f.Resources)
	b, _ := json.Marshal(f)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// Empty says nothing of the cluster exists.
func (c *Cluster) Empty() bool {
	return len(c.Instances) == 0 && len(c.Disks) == 0 && len(c.Addresses) == 0 && c.StaticIP == nil &&
		c.HealthCheck == nil && c.TargetPool == nil && c.ForwardingRule == nil && len(c.Firewalls) == 0 && len(c.Etcd.Members) == 0
}
