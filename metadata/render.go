package metadata

import (
	_ "embed"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// StartupScript is the startup-script of every master: it reads kube-env
// and kubeha-tls from the metadata server, mounts master-pd, writes the
// certificates and starts etcd and kube-apiserver as static pods.
//
//go:embed startup.sh
var StartupScript string

// Images started by the startup script.
const (
	EtcdImage      = "registry.k8s.io/etcd:3.5.21-0"
	APIServerImage = "registry.k8s.io/kube-apiserver:v1.33.1"
	// ServiceClusterIPRange is kube-up's default service range.
	ServiceClusterIPRange = "10.0.0.0/16"
	// PKIDir is where the startup script writes the certificates.
	PKIDir = "/etc/srv/kubernetes/pki"
)

// Boot is everything a master boots with.
type Boot struct {
	Name           string // instance and etcd member name
	InternalIP     string
	StaticIP       string // MASTER_ADVERTISE_ADDRESS
	InitialCluster string // name=peerURL,... including this member
	ClusterState   string // new or existing
	Config         Config
	TLS            *TLS
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
	if b.ClusterState != StateNew && b.ClusterState != StateExisting {
		return nil, fmt.Errorf("render metadata of %s: initial cluster state %q is not new or existing", b.Name, b.ClusterState)
	}
	etcd := Etcd{Name: b.Name, PeerURL: b.PeerURL(), ClientURL: b.ClientURL(), InitialCluster: b.InitialCluster, InitialClusterState: b.ClusterState,
		MaxLearners: b.Config.MaxLearners}
	items := []Item{
		{KeyConfig, Encode(b.Config)},
		{KeyEtcd, Encode(etcd)},
		{KeyTLS, Encode(b.TLS)},
		{KeyKubeEnv, KubeEnv(b)},
		{KeyStartupScript, StartupScript},
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Key < items[j].Key })
	return items, nil
}

// KubeEnv is the kube-env of a master: the seed's settings, as kube-up's
// KEY: 'value' lines, plus the certificate paths the startup script writes.
func KubeEnv(b Boot) string {
	vars := [][2]string{
		{"KUBERNETES_MASTER_NAME", b.Name},
		{"MULTIZONE", strconv.FormatBool(b.Config.MultiZone)},
		{"ETCD_QUORUM_READ", strconv.FormatBool(b.Config.QuorumRead)},
		{"MASTER_ADVERTISE_ADDRESS", b.StaticIP},
		{"INITIAL_ETCD_CLUSTER", b.InitialCluster},
		{"INITIAL_ETCD_CLUSTER_STATE", b.ClusterState},
		{"ETCD_NAME", b.Name},
		{"INTERNAL_IP", b.InternalIP},
		{"ETCD_CLIENT_PORT", strconv.Itoa(b.Config.ClientPort)},
		{"ETCD_PEER_PORT", strconv.Itoa(b.Config.PeerPort)},
		{"ETCD_MAX_LEARNERS", strconv.Itoa(max(b.Config.MaxLearners, 1))},
		{"ETCD_IMAGE", EtcdImage},
		{"KUBE_APISERVER_IMAGE", APIServerImage},
		{"SERVICE_CLUSTER_IP_RANGE", ServiceClusterIPRange},
		{"ETCD_CA_CERT", PKIDir + "/etcd-ca.crt"},
		{"ETCD_PEER_CERT", PKIDir + "/etcd-peer.crt"},
		{"ETCD_PEER_KEY", PKIDir + "/etcd-peer.key"},
		{"ETCD_SERVER_CERT", PKIDir + "/etcd-server.crt"},
		{"ETCD_SERVER_KEY", PKIDir + "/etcd-server.key"},
		{"CA_CERT", PKIDir + "/ca.crt"},
		{"APISERVER_CERT", PKIDir + "/apiserver.crt"},
		{"APISERVER_KEY", PKIDir + "/apiserver.key"},
		{"APISERVER_ETCD_CLIENT_CERT", PKIDir + "/apiserver-etcd-client.crt"},
		{"APISERVER_ETCD_CLIENT_KEY", PKIDir + "/apiserver-etcd-client.key"},
	}
	var sb strings.Builder
	for _, v := range vars {
		// Values are names, IPs, URLs and paths: none holds a quote.
		fmt.Fprintf(&sb, "%s: '%s'\n", v[0], strings.ReplaceAll(v[1], "'", ""))
	}
	return sb.String()
}
