package metadata

import (
	"cmp"
	_ "embed"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// StartupScript is the startup-script of every master: it reads kube-env
// and kubeha-tls from the metadata server, mounts master-pd, opens the host
// firewall, writes the certificates and kubeconfigs, and writes etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler as static pods.
//
//go:embed startup.sh
var StartupScript string

// Images of the static pods, at a release's versions.
const (
	EtcdImageRepo              = "registry.k8s.io/etcd"
	APIServerImageRepo         = "registry.k8s.io/kube-apiserver"
	ControllerManagerImageRepo = "registry.k8s.io/kube-controller-manager"
	SchedulerImageRepo         = "registry.k8s.io/kube-scheduler"
	// HealthcheckImage serves the load balancer's legacy HTTP health check:
	// kOps' kube-apiserver-healthcheck, which answers GET /readyz by asking
	// the local kube-apiserver over HTTPS with a client certificate.
	HealthcheckImage = "registry.k8s.io/kops/kube-apiserver-healthcheck:1.34.0"
	// HealthCheckPort is where it listens, and the health check probes.
	HealthCheckPort = 3990
	// HealthCheckPath is what the health check asks: the API server's
	// readiness.
	HealthCheckPath = "/readyz"
	// ServiceClusterIPRange is kube-up's default service range.
	ServiceClusterIPRange = "10.0.0.0/16"
	// PKIDir is where the startup script writes the certificates.
	PKIDir = "/etc/srv/kubernetes/pki"
)

// HealthCheckProbeRanges are where GCE's health checks of a target pool
// come from.
var HealthCheckProbeRanges = []string{"35.191.0.0/16", "209.85.152.0/22", "209.85.204.0/22"}

// Boot is everything a master boots with.
type Boot struct {
	Cluster        string // the cluster's name (metadata.name)
	Name           string // instance and etcd member name
	InternalIP     string
	StaticIP       string // MASTER_ADVERTISE_ADDRESS
	InitialCluster string // name=peerURL,... including this member
	ClusterState   string // new or existing
	// StartAfter are the peer URLs of the members this one's etcd starts
	// after (Etcd.StartAfter).
	StartAfter []string
	Config     Config
	// EtcdVersion is the etcd of Config.KubernetesVersion (v3.7.3).
	EtcdVersion string
	// KubeletURL is where the master downloads the kubelet of
	// Config.KubernetesVersion, and KubeletSHA512 what it must hash to.
	KubeletURL    string
	KubeletSHA512 string
	TLS           *TLS
	// Keys is the Secret Manager version holding TLS's private keys
	// (projects/P/secrets/S/versions/N), and SecretManagerURL where the
	// master reads it (default https://secretmanager.googleapis.com).
	Keys             string
	SecretManagerURL string
	// UserAddons are the files of spec.addons.dir (path → content), kept in
	// sync beside kubeha's own add-ons; AddonCheckInterval how often the
	// add-on manager applies them (0: DefaultAddonCheckInterval).
	UserAddons         map[string]string
	AddonCheckInterval time.Duration
	// Restore, when set, makes the member start from a snapshot
	// (Etcd.Restore); StorageURL is where the master reads it (default
	// https://storage.googleapis.com).
	Restore    *Restore
	StorageURL string
}

// DefaultStorageURL is Cloud Storage's endpoint on GCE.
const DefaultStorageURL = "https://storage.googleapis.com"

// DefaultSecretManagerURL is Secret Manager's endpoint on GCE.
const DefaultSecretManagerURL = "https://secretmanager.googleapis.com"

// EtcdImage is the etcd image of a version such as v3.7.3, tagged as
// Kubernetes' registry tags it (3.7.3-0).
func EtcdImage(version string) string {
	return EtcdImageRepo + ":" + strings.TrimPrefix(version, "v") + "-0"
}

// PeerURL is the member's etcd peer URL.
func (b Boot) PeerURL() string {
	return "https://" + b.InternalIP + ":" + strconv.Itoa(b.Config.PeerPort)
}

// ClientURL is the member's etcd client URL.
func (b Boot) ClientURL() string {
	return "https://" + b.InternalIP + ":" + strconv.Itoa(b.Config.ClientPort)
}

// Item is one metadata key and its value.
type Item struct {
	Key, Value string
}

// Render returns the metadata items of a master, in key order.
func Render(b Boot) ([]Item, error) {
	if b.TLS == nil {
		return nil, fmt.Errorf("render metadata of %s: no certificates", b.Name)
	}
	if b.Keys == "" {
		return nil, fmt.Errorf("render metadata of %s: no Secret Manager version for its private keys", b.Name)
	}
	if b.Config.KubernetesVersion == "" || b.EtcdVersion == "" {
		return nil, fmt.Errorf("render metadata of %s: no Kubernetes or etcd version", b.Name)
	}
	if b.ClusterState != StateNew && b.ClusterState != StateExisting {
		return nil, fmt.Errorf("render metadata of %s: initial cluster state %q is not new or existing", b.Name, b.ClusterState)
	}
	etcd := Etcd{Name: b.Name, PeerURL: b.PeerURL(), ClientURL: b.ClientURL(), InitialCluster: b.InitialCluster, InitialClusterState: b.ClusterState,
		MaxLearners: b.Config.MaxLearners, StartAfter: b.StartAfter, Restore: b.Restore}
	addons, err := Addons(b)
	if err != nil {
		return nil, err
	}
	archive, err := ArchiveAddons(addons)
	if err != nil {
		return nil, fmt.Errorf("render metadata of %s: %w", b.Name, err)
	}
	items := []Item{
		{KeyAddons, archive},
		{KeyConfig, Encode(b.Config)},
		{KeyEtcd, Encode(etcd)},
		{KeyTLS, Encode(b.TLS.Public())},
		{KeyKeys, b.Keys},
		{KeyKubeEnv, KubeEnv(b)},
		{KeyStartupScript, StartupScript},
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Key < items[j].Key })
	return items, nil
}

// KubeEnv is the kube-env of a master: kube-up's settings (MULTIZONE,
// ENABLE_ETCD_QUORUM_READ as ETCD_QUORUM_READ, MASTER_ADVERTISE_ADDRESS,
// INITIAL_ETCD_CLUSTER, ...) as kube-up's KEY: 'value' lines, with the
// versions and images the startup script runs.
func KubeEnv(b Boot) string {
	k8s := b.Config.KubernetesVersion
	vars := [][2]string{
		{"KUBERNETES_MASTER_NAME", b.Name},
		{"MULTIZONE", strconv.FormatBool(b.Config.MultiZone)},
		{"ETCD_QUORUM_READ", strconv.FormatBool(b.Config.QuorumRead)},
		{"MASTER_ADVERTISE_ADDRESS", b.StaticIP},
		{"INITIAL_ETCD_CLUSTER", b.InitialCluster},
		{"INITIAL_ETCD_CLUSTER_STATE", b.ClusterState},
		{"ETCD_START_AFTER", strings.Join(b.StartAfter, " ")},
		{"ETCD_START_AFTER_BOUND_SEC", strconv.Itoa(int(StartAfterBound.Seconds()))},
		{"ETCD_START_AFTER_ABSENT_SEC", strconv.Itoa(int(StartAfterAbsent.Seconds()))},
		{"ETCD_NAME", b.Name},
		{"INTERNAL_IP", b.InternalIP},
		{"ETCD_CLIENT_PORT", strconv.Itoa(b.Config.ClientPort)},
		{"ETCD_PEER_PORT", strconv.Itoa(b.Config.PeerPort)},
		{"ETCD_MAX_LEARNERS", strconv.Itoa(max(b.Config.MaxLearners, 1))},
		{"KUBERNETES_VERSION", k8s},
		{"ETCD_VERSION", b.EtcdVersion},
		{"KUBELET_URL", b.KubeletURL},
		{"KUBELET_SHA512", b.KubeletSHA512},
		{"ETCD_IMAGE", EtcdImage(b.EtcdVersion)},
		{"KUBE_APISERVER_IMAGE", APIServerImageRepo + ":" + k8s},
		{"KUBE_CONTROLLER_MANAGER_IMAGE", ControllerManagerImageRepo + ":" + k8s},
		{"KUBE_SCHEDULER_IMAGE", SchedulerImageRepo + ":" + k8s},
		{"SERVICE_CLUSTER_IP_RANGE", ServiceClusterIPRange},
		{"KUBE_APISERVER_HEALTHCHECK_IMAGE", HealthcheckImage},
		{"HEALTHCHECK_PORT", strconv.Itoa(HealthCheckPort)},
		{"SECRET_MANAGER_URL", cmp.Or(b.SecretManagerURL, DefaultSecretManagerURL)},
		{"KUBE_ADDON_MANAGER_IMAGE", AddonManagerImage},
		{"ADDON_CHECK_INTERVAL_SEC", AddonCheckIntervalSec(b.AddonCheckInterval)},
		{"DNS_SERVER_IP", DNSServerIP},
		{"DNS_DOMAIN", DNSDomain},
		{"NODE_TAINT", "node-role.kubernetes.io/control-plane:NoSchedule"},
		{"NODE_LABELS", MasterNodeLabel + "=" + b.Cluster},
	}
	if r := b.Restore; r != nil {
		vars = append(vars, [][2]string{
			{"ETCD_RESTORE_ID", r.ID},
			{"ETCD_RESTORE_URL", cmp.Or(b.StorageURL, DefaultStorageURL) + "/storage/v1/b/" + r.Bucket + "/o/" + url.PathEscape(r.Object) + "?alt=media"},
			{"ETCD_RESTORE_SHA256", r.SHA256},
			{"ETCD_RESTORE_TOKEN", r.Token},
			{"ETCD_RESTORE_REVISION_BUMP", strconv.FormatUint(r.RevisionBump, 10)},
		}...)
	}
	var sb strings.Builder
	for _, v := range vars {
		// Values are names, IPs, URLs and paths: none holds a quote.
		fmt.Fprintf(&sb, "%s: '%s'\n", v[0], strings.ReplaceAll(v[1], "'", ""))
	}
	return sb.String()
}
