package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubeha/kubeha/sim/kubelet"
	"github.com/kubeha/kubeha/spec"
)

// newControlPlaneCluster is a cluster on an emulator whose masters run the
// whole control plane. It needs the binaries (make test builds them) and
// root (kube-apiserver serves on 443).
func newControlPlaneCluster(t *testing.T, name string) *cluster {
	t.Helper()
	if _, err := kubelet.FindBinaries(repoRoot, spec.DefaultKubernetesVersion); err != nil {
		if errors.Is(err, kubelet.ErrNoBinaries) && os.Getenv("CI") == "" {
			t.Skipf("%v", err)
		}
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Skip("kube-apiserver serves on 443 as on a VM: run as root (CI does)")
	}
	dir := t.TempDir()
	_, url := startSimServeWith(t, filepath.Join(dir, "sim"), "kubernetes")
	return &cluster{t: t, dir: dir, spec: filepath.Join(dir, "cluster.yaml"), endpoint: url, name: name}
}

// apiClient speaks to one master's kube-apiserver with the admin
// credentials of `kubeha kubeconfig`.
type apiClient struct {
	t      *testing.T
	client *http.Client
	ca     *x509.CertPool
}

func (c *cluster) adminAPI(t *testing.T) *apiClient {
	t.Helper()
	out := filepath.Join(c.dir, "admin.kubeconfig")
	if r := c.kubeha("kubeconfig", "-f", c.spec, "--out", out); r.code != 0 {
		t.Fatalf("kubeconfig: %+v", r)
	}
	data, _ := os.ReadFile(out)
	field := func(name string) []byte {
		m := regexp.MustCompile(name + `: (\S+)`).FindSubmatch(data)
		b, err := base64.StdEncoding.DecodeString(string(m[1]))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pair, err := tls.X509KeyPair(field("client-certificate-data"), field("client-key-data"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(field("certificate-authority-data"))
	return &apiClient{t: t, ca: roots, client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots}}}}
}

// call makes a request to the API of the master at ip.
func (a *apiClient) call(ip, method, path, body string) (int, string) {
	req, _ := http.NewRequest(method, "https://"+ip+":443"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// serving waits until every master's API is ready and the controller
// manager's and scheduler's leases are held.
func (a *apiClient) serving(s status) {
	a.t.Helper()
	for _, r := range s.Replicas {
		waitFor(a.t, 3*time.Minute, "the API of "+r.Name, func() bool {
			code, _ := a.call(r.InternalIP, "GET", "/readyz", "")
			return code == 200
		})
	}
	for _, lease := range []string{"kube-controller-manager", "kube-scheduler"} {
		waitFor(a.t, 2*time.Minute, lease+"'s lease", func() bool {
			code, body := a.call(s.Replicas[0].InternalIP, "GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"+lease, "")
			var l struct {
				Spec struct {
					HolderIdentity string `json:"holderIdentity"`
				} `json:"spec"`
			}
			return code == 200 && json.Unmarshal([]byte(body), &l) == nil && l.Spec.HolderIdentity != ""
		})
	}
}

// TestControlPlaneOnEmulator: masters booted through the startup script
// run the real etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler of the pinned release. Through 1 -> 3 -> 5 -> 3 -> 1
// masters, every master's API answers the admin kubeconfig's credentials,
// an object written at the start is there, and the two leader-elected
// components hold their leases. At 3, each master is crashed in turn (its
// machine hangs): the others keep serving, and both leases are renewed by
// a live holder. The API server's certificate is valid for the static IP
// and not for a master's ephemeral IP (the HA-masters guide's note).
func TestControlPlaneOnEmulator(t *testing.T) {
	c := newControlPlaneCluster(t, "cp")
	c.write(1, false)
	c.apply()
	s := c.converged(1)
	resp, err := http.Get(c.endpoint + "/sim/v1/members")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"controlPlane":"Kubernetes `+spec.DefaultKubernetesVersion+`"`) {
		t.Fatalf("members: %s", body)
	}
	if r := c.kubeha("status", "-f", c.spec); !strings.Contains(r.stdout, "Emulated masters run: Kubernetes "+spec.DefaultKubernetesVersion+"\n") {
		t.Fatalf("status does not say the masters run Kubernetes: %+v", r)
	}
	api := c.adminAPI(t)
	api.serving(s)
	if code, body := api.call(s.Replicas[0].InternalIP, "POST", "/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"kept"},"data":{"at":"1 master"}}`); code != 201 {
		t.Fatalf("create a ConfigMap: %d %s", code, body)
	}

	kept := func(s status) {
		t.Helper()
		for _, r := range s.Replicas {
			code, body := api.call(r.InternalIP, "GET", "/api/v1/namespaces/default/configmaps/kept", "")
			if code != 200 || !strings.Contains(body, `"at":"1 master"`) {
				t.Fatalf("the ConfigMap through %s: %d %s", r.Name, code, body)
			}
		}
	}
	c.write(3, false)
	c.apply()
	s = c.converged(3)
	api.serving(s)
	kept(s)
	for _, victim := range s.Replicas {
		c.admin("/sim/v1/projects/kubeha-e2e/zones/" + victim.Zone + "/instances/" + victim.Name + "/crash")
		crashed := time.Now()
		if code, _ := api.call(victim.InternalIP, "GET", "/readyz", ""); code != 0 {
			t.Errorf("the API of the hung master %s answered %d", victim.Name, code)
		}
		for _, r := range s.Replicas {
			if r.Name != victim.Name {
				if code, body := api.call(r.InternalIP, "GET", "/api/v1/namespaces/default/configmaps/kept", ""); code != 200 {
					t.Fatalf("with %s hung, %s answered %d %s", victim.Name, r.Name, code, body)
				}
			}
		}
		live := s.Replicas[0].InternalIP
		if live == victim.InternalIP {
			live = s.Replicas[1].InternalIP
		}
		for _, lease := range []string{"kube-controller-manager", "kube-scheduler"} {
			waitFor(t, 2*time.Minute, lease+"'s lease renewed by a live holder after "+victim.Name+" hung", func() bool {
				code, body := api.call(live, "GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"+lease, "")
				var l struct {
					Spec struct {
						RenewTime time.Time `json:"renewTime"`
					} `json:"spec"`
				}
				return code == 200 && json.Unmarshal([]byte(body), &l) == nil && l.Spec.RenewTime.After(crashed)
			})
			t.Logf("%s hung: %s's lease renewed after %s", victim.Name, lease, time.Since(crashed).Round(100*time.Millisecond))
		}
		c.admin("/sim/v1/projects/kubeha-e2e/zones/" + victim.Zone + "/instances/" + victim.Name + "/revive")
		api.serving(s)
	}
	// The serving certificate: for the static IP, not for an ephemeral one.
	conn, err := tls.Dial("tcp", s.Replicas[1].InternalIP+":443", &tls.Config{RootCAs: api.ca, ServerName: s.Replicas[1].InternalIP})
	if err != nil {
		t.Fatal(err)
	}
	cert := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if err := cert.VerifyHostname(s.StaticIP.Address); err != nil {
		t.Errorf("the API certificate is not valid for the static IP: %v", err)
	}
	if err := cert.VerifyHostname("198.51.100.77"); err == nil {
		t.Error("the API certificate is valid for an ephemeral IP")
	}
	for _, n := range []int{5, 3, 1} {
		c.write(n, false)
		c.apply()
		s = c.converged(n)
		api.serving(s)
		kept(s)
	}
}
