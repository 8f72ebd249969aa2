package machine

import (
	"context"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/pki"
	"github.com/kubeha/kubeha/sim/kubelet"
	"github.com/kubeha/kubeha/spec"
)

// binaries finds the control-plane binaries; without them the test is
// skipped, except in CI, where make test builds them first.
func binaries(t testing.TB) *kubelet.Binaries {
	t.Helper()
	wd, _ := os.Getwd()
	b, err := kubelet.FindBinaries(wd, spec.DefaultKubernetesVersion)
	if errors.Is(err, kubelet.ErrNoBinaries) && os.Getenv("CI") == "" {
		t.Skipf("%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newMaster is a master's machine, not yet booted, with a fresh PKI, on a
// loopback IP of its own.
func newMaster(t testing.TB, bins *kubelet.Binaries) (*Machine, *pki.PKI, string) {
	t.Helper()
	ip := fmt.Sprintf("127.%d.%d.2", 100+rand.IntN(100), rand.IntN(250))
	p, err := pki.Ensure(t.TempDir(), "mach")
	if err != nil {
		t.Fatal(err)
	}
	// The static IP is advertised, not bound: an address of a
	// documentation range, as the emulator's static IPs are (kube-apiserver
	// refuses to advertise a loopback address).
	const static = "127.55.0.9" // loopback, as the emulator's static IPs are
	certs, err := p.IssueReplica(pki.ReplicaRequest{Cluster: "mach", Name: "mach-master", InternalIP: ip, StaticIP: static})
	if err != nil {
		t.Fatal(err)
	}
	rel, _ := spec.ReleaseOf(spec.DefaultKubernetesVersion)
	// The release download, served as the emulator serves it.
	kubeletFile := []byte("#!/bin/sh\n# the kubelet stand-in\n")
	release := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(kubeletFile) }))
	t.Cleanup(release.Close)
	sum := sha512.Sum512(kubeletFile)
	// Secret Manager's access method for the master's keys (a stand-in: the
	// emulator's own Secret Manager serves it in e2e), asked with the token
	// of the machine's service account.
	const version = "projects/p/secrets/mach-master-keys/versions/1"
	const email = "mach-master@p.iam.gserviceaccount.com"
	token := func(email string) string { return "token-of-" + email }
	secrets := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/"+version+":access" || r.Header.Get("Authorization") != "Bearer "+token(email) {
			http.Error(w, `{"error": {"code": 403}}`, http.StatusForbidden)
			return
		}
		fmt.Fprintf(w, `{"name": %q, "payload": {"data": %q}}`, version, base64.StdEncoding.EncodeToString([]byte(certs.Metadata().Keys())))
	}))
	t.Cleanup(secrets.Close)
	items, err := metadata.Render(metadata.Boot{Cluster: "mach", Name: "mach-master", InternalIP: ip, StaticIP: static, InitialCluster: "mach-master=https://" + ip + ":2380",
		ClusterState: metadata.StateNew, EtcdVersion: rel.Etcd, TLS: certs.Metadata(), Keys: version, SecretManagerURL: secrets.URL,
		KubeletURL: release.URL + "/kubelet", KubeletSHA512: hex.EncodeToString(sum[:]), AddonCheckInterval: 5 * time.Second,
		Config: metadata.Config{QuorumRead: true, ClientPort: 2379, PeerPort: 2380, MaxLearners: 6, KubernetesVersion: rel.Kubernetes}})
	if err != nil {
		t.Fatal(err)
	}
	md := map[string]string{}
	for _, it := range items {
		md[it.Key] = it.Value
	}
	offset := 0
	if !kubelet.MayBindLowPorts() {
		offset = kubelet.LowPortOffset // an ordinary user: 443 is served on 10443
	}
	return &Machine{Name: "mach-master", Root: t.TempDir(), IP: ip, Metadata: md, DataDisk: t.TempDir(), Binaries: bins, PortOffset: offset,
		ServiceAccount: email, Token: token}, p, ip
}

// TestMasterBootsAControlPlane boots one master through the boot contract:
// its metadata served as GCE serves it, the real startup script, and its
// static pods run as the real binaries of the pinned release. The flags of
// every rendered manifest must be accepted: etcd serves, kube-apiserver
// becomes ready and stores objects, and kube-controller-manager and
// kube-scheduler each take their lease. Halting the machine stops it all.
func TestMasterBootsAControlPlane(t *testing.T) {
	m, p, ip := newMaster(t, binaries(t))
	testMasterBoot(t, m, p, ip)
}

// TestMasterBootsWithLowPortsMapped boots a master as the emulator does for
// an ordinary user, who may not bind 443: kube-apiserver serves on 10443,
// and the controller manager, the scheduler and the health endpoint reach
// it there.
func TestMasterBootsWithLowPortsMapped(t *testing.T) {
	m, p, ip := newMaster(t, binaries(t))
	m.PortOffset = kubelet.LowPortOffset
	testMasterBoot(t, m, p, ip)
}

func testMasterBoot(t *testing.T, m *Machine, p *pki.PKI, ip string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := m.Boot(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Halt()
	logs := func() string {
		var sb strings.Builder
		for _, ps := range m.Pods() {
			fmt.Fprintf(&sb, "%+v\n", ps)
		}
		files, _ := filepath.Glob(filepath.Join(m.Root, "var/log/pods/*.log"))
		for _, f := range files {
			data, _ := os.ReadFile(f)
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			fmt.Fprintf(&sb, "--- %s\n%s\n", filepath.Base(f), strings.Join(lines[max(0, len(lines)-15):], "\n"))
		}
		return sb.String()
	}
	waitFor := func(what string, timeout time.Duration, ok func() error) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			err := ok()
			if err == nil {
				t.Logf("%s after %s", what, time.Since(t0).Round(100*time.Millisecond))
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v\n%s", what, err, logs())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	etcdTLS, _ := p.ClientTLS()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + ip + ":2379"}, DialTimeout: 2 * time.Second, TLS: etcdTLS, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	waitFor("etcd serves", time.Minute, func() error {
		sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
		defer scancel()
		_, err := cli.Status(sctx, "https://"+ip+":2379")
		return err
	})

	api := adminClient(t, p, ip, 5*time.Second)
	apiPort := strconv.Itoa(443 + m.PortOffset)
	base := "https://" + net.JoinHostPort(ip, apiPort)
	call := func(method, path, body string) (int, string, error) {
		req, _ := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := api.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	waitFor("kube-apiserver is ready", 2*time.Minute, func() error {
		code, body, err := call("GET", "/readyz", "")
		if err == nil && code != 200 {
			err = fmt.Errorf("readyz %d: %s", code, body)
		}
		return err
	})
	// Anonymous: the health paths only.
	anonTLS := api.Transport.(*http.Transport).TLSClientConfig.Clone()
	anonTLS.Certificates = nil
	anon := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: anonTLS}}
	for path, want := range map[string]int{"/readyz": 200, "/livez": 200, "/api/v1/namespaces": 401, "/version": 401} {
		resp, err := anon.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("anonymous GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	// The load balancer's health endpoint: plain HTTP, the API server's
	// readiness asked with its own client certificate; nothing else.
	for path, want := range map[string]int{"/readyz": 200, "/healthz": 200, "/api/v1/namespaces": 404, "/.kube-apiserver-healthcheck/healthz": 200} {
		var code int
		waitFor("the health endpoint answers "+path, time.Minute, func() error {
			resp, err := http.Get("http://" + net.JoinHostPort(ip, "3990") + path)
			if err != nil {
				return err
			}
			resp.Body.Close()
			code = resp.StatusCode
			return nil
		})
		if code != want {
			t.Errorf("health endpoint GET %s: %d, want %d", path, code, want)
		}
	}
	code, body, err := call("POST", "/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"kept"},"data":{"written":"at boot"}}`)
	if err != nil || code != 201 {
		t.Fatalf("create a ConfigMap: %d %v %s", code, err, body)
	}
	code, body, _ = call("GET", "/api/v1/namespaces/default/configmaps/kept", "")
	if code != 200 || !strings.Contains(body, `"written":"at boot"`) {
		t.Fatalf("read it back: %d %s", code, body)
	}
	for _, lease := range []string{"kube-controller-manager", "kube-scheduler"} {
		waitFor(lease+" holds its lease", 2*time.Minute, func() error {
			code, body, err := call("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"+lease, "")
			if err != nil {
				return err
			}
			var l struct {
				Spec struct {
					HolderIdentity string `json:"holderIdentity"`
				} `json:"spec"`
			}
			if code != 200 || json.Unmarshal([]byte(body), &l) != nil || l.Spec.HolderIdentity == "" {
				return fmt.Errorf("lease %d: %s", code, body)
			}
			// The holder is named by the machine's own host name, as on
			// a VM, where a UTS namespace can be made.
			if kubelet.HostnameIsolation() != "" && !strings.HasPrefix(l.Spec.HolderIdentity, "mach-master_") {
				return fmt.Errorf("lease held by %q, not by host mach-master", l.Spec.HolderIdentity)
			}
			return nil
		})
	}
	// The master registers as a Node (the hollow kubelet, with the
	// master's system:node certificate), tainted as kube-up's masters are.
	waitFor("the master registers its Node", 2*time.Minute, func() error {
		code, body, err := call("GET", "/api/v1/nodes/mach-master", "")
		if err != nil {
			return err
		}
		if code != 200 || !strings.Contains(body, `"key":"node-role.kubernetes.io/control-plane","effect":"NoSchedule"`) || !strings.Contains(body, `"kubeha.io/master":"mach"`) {
			return fmt.Errorf("node %d: %s", code, body)
		}
		return nil
	})
	// The add-on manager, acting where the controller manager's lease is
	// held (here), creates kubeha's add-ons.
	for _, path := range []string{"/apis/apps/v1/namespaces/kube-system/deployments/coredns", "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy",
		"/api/v1/namespaces/kube-system/services/kube-dns", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kubeha:node-autoapprove-bootstrap"} {
		waitFor("the add-on manager creates "+path, 2*time.Minute, func() error {
			code, body, err := call("GET", path, "")
			if err == nil && code != 200 {
				err = fmt.Errorf("%d: %s", code, body)
			}
			return err
		})
	}
	// cluster-info is readable without credentials: a node discovers the
	// cluster from it.
	waitFor("anonymous GET cluster-info", time.Minute, func() error {
		resp, err := anon.Get(base + "/api/v1/namespaces/kube-public/configmaps/cluster-info")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(b), "certificate-authority-data") {
			return fmt.Errorf("%d: %s", resp.StatusCode, b)
		}
		return nil
	})
	for _, ps := range m.Pods() {
		if ps.State != "running" {
			t.Errorf("pod %+v", ps)
		}
	}
	calls := strings.Join(m.StandInCalls(), "\n")
	for _, want := range []string{"iptables -w -A INPUT -p tcp --dport 443 -j ACCEPT", "iptables -w -A INPUT -p tcp --dport 3990 -j ACCEPT", "mkfs.ext4 ",
		"mount -o discard,defaults ", "systemctl restart containerd.service", "systemctl restart kubelet.service"} {
		if !strings.Contains(calls, want) {
			t.Errorf("the stand-ins were not asked %q:\n%s", want, calls)
		}
	}
	m.Halt()
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, apiPort), time.Second); err == nil {
		c.Close()
		t.Error("kube-apiserver still serves after the machine halted")
	}
}

// adminClient is an HTTPS client of the API as kubeha's admin, trusting
// the cluster CA (and, with serverName, verifying the server as that name).
func adminClient(t testing.TB, p *pki.PKI, serverName string, timeout time.Duration) *http.Client {
	t.Helper()
	cert, key, err := p.Admin()
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair([]byte(cert), []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.ClusterCA.Cert)
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: serverName}}}
}
