package metadata

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Metadata keys of a master instance.
const (
	KeyEtcd = "kubeha-etcd"
	KeyTLS  = "kubeha-tls"
	// KeyKeys names the Secret Manager version that holds the master's
	// private keys (projects/P/secrets/S/versions/N): no key is ever in
	// instance metadata, which anyone with compute.instances.get reads.
	KeyKeys    = "kubeha-keys"
	KeyKubeEnv = "kube-env"
	// KeyAddons holds the add-ons the masters' add-on manager keeps in sync
	// (ArchiveAddons): kubeha's and the user's.
	KeyAddons        = "kubeha-addons"
	KeyStartupScript = "startup-script"
)

// Initial cluster states of an etcd member.
const (
	StateNew      = "new"
	StateExisting = "existing"
)

// StartAfterBound is the longest a member waits for the members it starts
// after, and StartAfterAbsent the longest for one that is not there at all
// (nothing answers on its address: its boot failed, or it is slower).
const (
	StartAfterBound  = 60 * time.Second
	StartAfterAbsent = 5 * time.Second
)

// Etcd is the kubeha-etcd document: how this master's etcd member starts.
// The data directory is the startup's business (on master-pd, or the boot
// disk when there is none).
type Etcd struct {
	Name                string `json:"name"`
	PeerURL             string `json:"peerURL"`
	ClientURL           string `json:"clientURL"`
	InitialCluster      string `json:"initialCluster"`      // name=peerURL,...
	InitialClusterState string `json:"initialClusterState"` // new or existing
	// StartAfter are the peer URLs of members that start etcd before this
	// one: its etcd starts once each serves (or after StartAfterBound).
	// etcd probes its peers as it starts, and waits on one that listens but
	// does not serve yet (1 s for a new cluster, 10 s for a joining member):
	// members started at the same moment would wait on each other.
	StartAfter []string `json:"startAfter,omitempty"`
	// MaxLearners is etcd's --max-learners; every member of a cluster must
	// run with the same value. 0 means etcd's default of 1.
	MaxLearners int `json:"maxLearners,omitempty"`
	// Restore, when set, says the member starts from a snapshot: at its
	// first boot with this restore (its disk records the last restore it
	// applied), its data directory is set aside and restored from the
	// snapshot as etcdutl snapshot restore does, with InitialCluster, the
	// restore's cluster token, the revision bumped and marked compacted.
	Restore *Restore `json:"restore,omitempty"`
}

// Restore is a restore of a cluster's etcd from a snapshot (kubeha
// restore): every member of the restored cluster boots with the same one.
type Restore struct {
	// ID names the restore; the member's disk records it once applied, so
	// that later boots start from the data as it is.
	ID string `json:"id"`
	// Bucket and Object are where the snapshot is in Cloud Storage (the
	// masters' service account may read it), SHA256 what it hashes to.
	Bucket string `json:"bucket"`
	Object string `json:"object"`
	SHA256 string `json:"sha256"`
	// Token is the restored cluster's --initial-cluster-token: a cluster
	// ID of its own, so that no member of the cluster before joins it.
	Token string `json:"token"`
	// RevisionBump is added to the snapshot's revision, which is marked
	// compacted: watches and informers of the past revisions start over
	// rather than being served a past that was undone.
	RevisionBump uint64 `json:"revisionBump"`
}

// RestoreRevisionBump is how far a restore moves etcd's revision past the
// snapshot's: etcd's guide suggests more than the writes of the time
// between the snapshot and the restore; a billion is what it shows.
const RestoreRevisionBump = 1_000_000_000

// TLS is the kubeha-tls document: PEM certificates and keys of the member.
// It is key material: never log it or put it in a plan or error.
//
// ca, peerCert, peerKey, serverCert and serverKey are etcd's (DESIGN.md §4);
// the cluster CA and the API server's certificates ride along so that the
// startup script can start kube-apiserver (its serving certificate, valid
// for the static IP and the replica's IP, and its etcd client certificate).
type TLS struct {
	CA                      string `json:"ca"`
	PeerCert                string `json:"peerCert"`
	PeerKey                 string `json:"peerKey,omitempty"`
	ServerCert              string `json:"serverCert"`
	ServerKey               string `json:"serverKey,omitempty"`
	ClusterCA               string `json:"clusterCA,omitempty"`
	APIServerCert           string `json:"apiServerCert,omitempty"`
	APIServerKey            string `json:"apiServerKey,omitempty"`
	APIServerEtcdClientCert string `json:"apiServerEtcdClientCert,omitempty"`
	APIServerEtcdClientKey  string `json:"apiServerEtcdClientKey,omitempty"`
	ServiceAccountKey       string `json:"serviceAccountKey,omitempty"`
	ServiceAccountPub       string `json:"serviceAccountPub,omitempty"`
	ControllerManagerCert   string `json:"controllerManagerCert,omitempty"`
	ControllerManagerKey    string `json:"controllerManagerKey,omitempty"`
	SchedulerCert           string `json:"schedulerCert,omitempty"`
	SchedulerKey            string `json:"schedulerKey,omitempty"`
	HealthcheckCert         string `json:"healthcheckCert,omitempty"`
	HealthcheckKey          string `json:"healthcheckKey,omitempty"`
	// The cluster CA's key, with which kube-controller-manager signs the
	// kubelets' client certificates; the master's kubelet (system:node:NAME)
	// and the add-on manager's client.
	ClusterCAKey     string `json:"clusterCAKey,omitempty"`
	KubeletCert      string `json:"kubeletCert,omitempty"`
	KubeletKey       string `json:"kubeletKey,omitempty"`
	AddonManagerCert string `json:"addonManagerCert,omitempty"`
	AddonManagerKey  string `json:"addonManagerKey,omitempty"`
}

// String hides the keys, so a TLS bundle printed by mistake leaks nothing.
func (t TLS) String() string { return "metadata.TLS{<redacted>}" }

// GoString hides the keys from %#v too.
func (t TLS) GoString() string { return t.String() }

// ParseEtcd decodes and checks a kubeha-etcd document.
func ParseEtcd(s string) (*Etcd, error) {
	var e Etcd
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("decode %s metadata: %w", KeyEtcd, err)
	}
	if e.Name == "" {
		return nil, fmt.Errorf("%s metadata: name is empty", KeyEtcd)
	}
	for _, f := range []struct{ field, url string }{{"peerURL", e.PeerURL}, {"clientURL", e.ClientURL}} {
		pu, err := url.Parse(f.url)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Port() == "" {
			return nil, fmt.Errorf("%s metadata: %s %q is not an http(s) URL with a port", KeyEtcd, f.field, f.url)
		}
	}
	if e.InitialClusterState != StateNew && e.InitialClusterState != StateExisting {
		return nil, fmt.Errorf("%s metadata: initialClusterState %q is not new or existing", KeyEtcd, e.InitialClusterState)
	}
	if !strings.Contains(e.InitialCluster, e.Name+"=") {
		return nil, fmt.Errorf("%s metadata: initialCluster does not name member %s", KeyEtcd, e.Name)
	}
	return &e, nil
}

// ParseTLS decodes a kubeha-tls document. Errors never quote the content.
func ParseTLS(s string) (*TLS, error) {
	var t TLS
	if err := json.Unmarshal([]byte(s), &t); err != nil {
		return nil, fmt.Errorf("decode %s metadata: not valid JSON", KeyTLS)
	}
	if t.CA == "" || t.PeerCert == "" || t.ServerCert == "" {
		return nil, fmt.Errorf("%s metadata: every one of ca, peerCert and serverCert is required", KeyTLS)
	}
	return &t, nil
}

// Public is the bundle without its private keys: the kubeha-tls document.
func (t TLS) Public() TLS {
	t.PeerKey, t.ServerKey, t.APIServerKey, t.APIServerEtcdClientKey = "", "", "", ""
	t.ServiceAccountKey, t.ControllerManagerKey, t.SchedulerKey, t.HealthcheckKey = "", "", "", ""
	t.ClusterCAKey, t.KubeletKey, t.AddonManagerKey = "", "", ""
	return t
}

// Keys is the document of the bundle's private keys alone: the payload of
// the master's Secret Manager version.
func (t TLS) Keys() string {
	return Encode(TLS{PeerKey: t.PeerKey, ServerKey: t.ServerKey, APIServerKey: t.APIServerKey, APIServerEtcdClientKey: t.APIServerEtcdClientKey,
		ServiceAccountKey: t.ServiceAccountKey, ControllerManagerKey: t.ControllerManagerKey, SchedulerKey: t.SchedulerKey, HealthcheckKey: t.HealthcheckKey,
		ClusterCAKey: t.ClusterCAKey, KubeletKey: t.KubeletKey, AddonManagerKey: t.AddonManagerKey})
}

// AddKeys adds the private keys of a Keys document to t. Errors never
// quote the content.
func (t *TLS) AddKeys(doc string) error {
	var k TLS
	if err := json.Unmarshal([]byte(doc), &k); err != nil {
		return fmt.Errorf("decode the private keys: not valid JSON")
	}
	if k.PeerKey == "" || k.ServerKey == "" {
		return fmt.Errorf("the private keys: peerKey and serverKey are required")
	}
	t.PeerKey, t.ServerKey, t.APIServerKey, t.APIServerEtcdClientKey = k.PeerKey, k.ServerKey, k.APIServerKey, k.APIServerEtcdClientKey
	t.ServiceAccountKey, t.ControllerManagerKey, t.SchedulerKey, t.HealthcheckKey = k.ServiceAccountKey, k.ControllerManagerKey, k.SchedulerKey, k.HealthcheckKey
	t.ClusterCAKey, t.KubeletKey, t.AddonManagerKey = k.ClusterCAKey, k.KubeletKey, k.AddonManagerKey
	return nil
}

// Encode is the JSON of a metadata document.
func Encode(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encode metadata: %v", err)) // plain strings: cannot fail
	}
	return string(b)
}

// KeyConfig holds the Config a replica was created from. kubeha compares
// it with the spec to plan rolling replacements; masters kubeha did not
// create (kube-up's) have none.
const KeyConfig = "kubeha-config"

// Config is the part of the spec a replica is built from.
type Config struct {
	MachineType string `json:"machineType"`
	Image       string `json:"image"`
	DiskSizeGb  int64  `json:"diskSizeGb"`
	// DiskType is the etcd disk's type ("" for a master made before
	// kubeha set it).
	DiskType   string `json:"diskType,omitempty"`
	QuorumRead bool   `json:"quorumRead"`
	ClientPort int    `json:"clientPort"`
	PeerPort   int    `json:"peerPort"`
	MultiZone  bool   `json:"multiZone"`
	// KubernetesVersion is the release of the master's control plane (and,
	// through it, its etcd's).
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// MaxLearners is the member's etcd --max-learners (0: etcd's default, 1).
	// It is kubeha's tuning, not the spec's: a change is no drift.
	MaxLearners int `json:"maxLearners,omitempty"`
	// Addons is the digest of the add-ons the master was given
	// (AddonsDigest); a change updates them in place, it replaces nothing.
	Addons string `json:"addons,omitempty"`
}

// DefaultMaxLearners lets kubeha add the learners of every new master of a
// 7-master cluster before it promotes them one at a time.
const DefaultMaxLearners = 6

// ParseConfig decodes a kubeha-config document.
func ParseConfig(s string) (*Config, error) {
	var c Config
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return nil, fmt.Errorf("decode %s metadata: %w", KeyConfig, err)
	}
	return &c, nil
}
