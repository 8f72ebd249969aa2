package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/option"

	"github.com/kubeha/kubeha/sim/kubelet"
	"github.com/kubeha/kubeha/spec"
)

// newControlPlaneCluster is a cluster on an emulator whose masters run the
// whole control plane. It needs the binaries (make test builds them). As an
// ordinary user, the emulator serves the API's 443 on 10443.
// heavySlots bounds the clusters of the whole control plane running at once.
var heavySlots = make(chan struct{}, 2)

func newControlPlaneCluster(t testing.TB, name string, simFlags ...string) *cluster {
	t.Helper()
	for _, r := range spec.Releases { // an upgrade runs the one before the newest
		if _, err := kubelet.FindBinaries(repoRoot, r.Kubernetes); err != nil {
			if errors.Is(err, kubelet.ErrNoBinaries) && os.Getenv("CI") == "" {
				t.Skipf("%v", err)
			}
			t.Fatal(err)
		}
	}
	// At most two clusters of the whole control plane at once: each runs
	// three masters' real binaries on the machine's two cores.
	heavySlots <- struct{}{}
	t.Cleanup(func() { <-heavySlots })
	dir := t.TempDir()
	_, url := startSimServeWith(t, filepath.Join(dir, "sim"), "kubernetes", simFlags...)
	return &cluster{t: t, dir: dir, spec: filepath.Join(dir, "cluster.yaml"), endpoint: url, name: name}
}

// apiClient speaks to one master's kube-apiserver with the admin
// credentials of `kubeha kubeconfig`.
type apiClient struct {
	t      testing.TB
	client *http.Client
	ca     *x509.CertPool
	server string // the kubeconfig's: https://STATIC_IP
	port   string // where the masters serve the API: 443, or 10443 for an ordinary user
	creds  string // a directory with ca.crt, admin.crt and admin.key for curl
}

func (c *cluster) adminAPI(t testing.TB) *apiClient {
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
	creds := filepath.Join(c.dir, "curl")
	os.MkdirAll(creds, 0o700)
	for file, key := range map[string]string{"ca.crt": "certificate-authority-data", "admin.crt": "client-certificate-data", "admin.key": "client-key-data"} {
		if err := os.WriteFile(filepath.Join(creds, file), field(key), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pair, err := tls.X509KeyPair(field("client-certificate-data"), field("client-key-data"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(field("certificate-authority-data"))
	server := regexp.MustCompile(`server: (\S+)`).FindSubmatch(data)
	if server == nil {
		t.Fatalf("the kubeconfig names no server:\n%s", data)
	}
	// A connection per request: a kept connection to a master that hung
	// hangs too, whatever the load balancer does with new ones.
	var ports map[string]int
	resp, err := http.Get(c.endpoint + "/sim/v1/ports")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&ports)
	resp.Body.Close()
	port := "443"
	if ports["443"] != 0 {
		port = fmt.Sprint(ports["443"])
	}
	return &apiClient{t: t, ca: roots, server: string(server[1]), port: port, creds: creds, client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true, TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots}}}}
}

// call makes a request to the API of the master at ip.
func (a *apiClient) call(ip, method, path, body string) (int, string) {
	return a.request(method, "https://"+ip+":"+a.port+path, body)
}

// viaLB makes a request to the kubeconfig's server, the static IP: to the
// one master that holds it, or through the load balancer.
func (a *apiClient) viaLB(method, path, body string) (int, string) {
	return a.request(method, a.server+path, body)
}

func (a *apiClient) request(method, url, body string) (int, string) {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// curl asks the kubeconfig's server with curl, a client independent of
// kubeha and of Go, verifying the server's certificate for the static IP.
func (a *apiClient) curl(path string) (int, string) {
	a.t.Helper()
	out, err := exec.Command("curl", "--silent", "--show-error", "--max-time", "5", "--cacert", filepath.Join(a.creds, "ca.crt"),
		"--cert", filepath.Join(a.creds, "admin.crt"), "--key", filepath.Join(a.creds, "admin.key"),
		"--write-out", "\n%{http_code}", a.server+path).CombinedOutput()
	if err != nil {
		return 0, fmt.Sprintf("%v: %s", err, out)
	}
	i := strings.LastIndex(string(out), "\n")
	body, code := string(out[:i]), string(out[i+1:])
	n, _ := strconv.Atoi(code)
	return n, body
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
// masters, the admin kubeconfig made at the start reaches the API at the
// static IP (on the one master, then through the load balancer, then on
// the one master again), writes and reads objects there, an object written
// at the start is there on every master, and the two leader-elected
// components hold their leases. At 3, each master is crashed in turn (its
// machine hangs): the load balancer's health check takes it out of
// rotation within its thresholds, the API stays reachable at the static IP,
// and both leases are renewed by a live holder. The API server's
// certificate is valid for the static IP and not for a master's ephemeral
// IP (the HA-masters guide's note). The masters run in a custom-mode VPC
// and its subnetwork, made with gcloud (through the Compute API where gcloud
// is not installed); without spec.gce.subnetwork the spec is refused,
// naming it.
func TestControlPlaneOnEmulator(t *testing.T) {
	t.Parallel()
	c := newControlPlaneCluster(t, "cp")
	svc := c.compute(t)
	ctx := context.Background()
	waitOp := func(op *compute.Operation, err error) {
		t.Helper()
		if err == nil && op.Error != nil {
			err = fmt.Errorf("%s", op.Error.Errors[0].Message)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if gcloud := c.gcloud(t); gcloud != nil {
		// As an operator would, where gcloud is installed.
		gcloud("compute", "networks", "create", "cp-vpc", "--subnet-mode", "custom")
		gcloud("compute", "networks", "subnets", "create", "cp-masters", "--network", "cp-vpc", "--region", "europe-west1", "--range", "10.42.0.0/24")
	} else {
		waitOp(svc.Networks.Insert("kubeha-e2e", &compute.Network{Name: "cp-vpc", ForceSendFields: []string{"AutoCreateSubnetworks"}}).Context(ctx).Do())
		waitOp(svc.Subnetworks.Insert("kubeha-e2e", "europe-west1", &compute.Subnetwork{Name: "cp-masters", Network: "global/networks/cp-vpc", IpCidrRange: "10.42.0.0/24"}).Context(ctx).Do())
	}
	c.gce = "    network: cp-vpc\n"
	c.write(1, false)
	if r := c.kubeha("plan", "-f", c.spec); r.code != 1 || !strings.Contains(r.stderr, "spec.gce.subnetwork: required, as network projects/kubeha-e2e/global/networks/cp-vpc is a custom-mode VPC") {
		t.Fatalf("a custom-mode VPC without spec.gce.subnetwork: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	c.gce += "    subnetwork: cp-masters\n"
	c.write(1, false)
	c.apply()
	if in, err := svc.Instances.Get("kubeha-e2e", "europe-west1-b", "cp-master").Context(ctx).Do(); err != nil ||
		!strings.HasSuffix(in.NetworkInterfaces[0].Subnetwork, "/regions/europe-west1/subnetworks/cp-masters") {
		t.Fatalf("the master's network interface: %v", err)
	}
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
	if want := "https://" + s.StaticIP.Address + strings.TrimSuffix(":"+api.port, ":443"); api.server != want {
		t.Fatalf("the kubeconfig's server is %s, want %s", api.server, want)
	}
	api.serving(s)
	atStaticIP := func(stage string) {
		t.Helper()
		waitFor(t, time.Minute, "the API at the static IP with "+stage, func() bool {
			code, _ := api.viaLB("GET", "/readyz", "")
			return code == 200
		})
		name := "at-" + strings.ReplaceAll(stage, " ", "-")
		if code, body := api.viaLB("POST", "/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"`+name+`"},"data":{"stage":"`+stage+`"}}`); code != 201 {
			t.Fatalf("create a ConfigMap at the static IP with %s: %d %s", stage, code, body)
		}
		code, body := api.curl("/api/v1/namespaces/default/configmaps/" + name)
		var cm struct {
			Data map[string]string `json:"data"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &cm) != nil || cm.Data["stage"] != stage {
			t.Fatalf("read it back at the static IP with curl: %d %s", code, body)
		}
	}
	atStaticIP("1 master")
	if code, body := api.viaLB("POST", "/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"kept"},"data":{"at":"1 master"}}`); code != 201 {
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
	atStaticIP("3 masters")
	gce := c.compute(t)
	for _, victim := range s.Replicas {
		waitFor(t, time.Minute, victim.Name+" in rotation", func() bool { return c.poolHealth(gce, victim.Zone, victim.Name) == "HEALTHY" })
		c.admin("/sim/v1/projects/kubeha-e2e/zones/" + victim.Zone + "/instances/" + victim.Name + "/crash")
		crashed := time.Now()
		if code, _ := api.call(victim.InternalIP, "GET", "/readyz", ""); code != 0 {
			t.Errorf("the API of the hung master %s answered %d", victim.Name, code)
		}
		// The health check (every 2 s, 2 s timeout, unhealthy after 3
		// failures) takes it out within 3 intervals and a timeout.
		waitFor(t, 30*time.Second, victim.Name+" out of rotation", func() bool { return c.poolHealth(gce, victim.Zone, victim.Name) == "UNHEALTHY" })
		out := time.Since(crashed)
		t.Logf("%s hung: out of the load balancer's rotation after %s", victim.Name, out.Round(100*time.Millisecond))
		if out > 3*2*time.Second+2*time.Second+balancerSlack {
			t.Errorf("%s left the rotation after %s, beyond the health check's thresholds", victim.Name, out)
		}
		// Now every new connection to the static IP goes to a live master.
		for i := range 12 {
			if code, body := api.viaLB("GET", "/api/v1/namespaces/default/configmaps/kept", ""); code != 200 {
				t.Fatalf("request %d at the static IP with %s hung and out of rotation: %d %s", i, victim.Name, code, body)
			}
		}
		t.Logf("%s hung: the API at the static IP answered 12 of 12 requests", victim.Name)
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
	// The serving certificate: valid for the static IP, not for a master's
	// ephemeral IP, which reaches that master's API all the same.
	s = c.status()
	eph := s.Replicas[1].ExternalIP
	if eph == "" || eph == s.StaticIP.Address {
		t.Fatalf("%s has ephemeral IP %q", s.Replicas[1].Name, eph)
	}
	conn, err := tls.Dial("tcp", s.StaticIP.Address+":"+api.port, &tls.Config{RootCAs: api.ca, ServerName: s.StaticIP.Address})
	if err != nil {
		t.Fatalf("TLS at the static IP: %v", err)
	}
	conn.Close()
	_, err = tls.Dial("tcp", eph+":"+api.port, &tls.Config{RootCAs: api.ca, ServerName: eph})
	var hostErr x509.HostnameError
	if !errors.As(err, &hostErr) {
		t.Errorf("TLS at the ephemeral IP %s: %v, want a certificate not valid for it", eph, err)
	}
	for _, n := range []int{5, 3, 1} {
		c.write(n, false)
		c.apply()
		s = c.converged(n)
		api.serving(s)
		kept(s)
		atStaticIP(fmt.Sprintf("%d masters again", n))
	}
}

// balancerSlack is how late the emulated load balancer may act on a probe
// (it reconciles every 200 ms) plus the test's own polling.
const balancerSlack = time.Second

// compute is a Compute API client of the cluster's emulator, as any
// client would use it.
func (c *cluster) compute(t testing.TB) *compute.Service {
	t.Helper()
	svc, err := compute.NewService(context.Background(), option.WithEndpoint(c.endpoint+"/compute/v1/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// poolHealth is what targetPools.getHealth says of a master.
func (c *cluster) poolHealth(svc *compute.Service, zone, name string) string {
	h, err := svc.TargetPools.GetHealth("kubeha-e2e", "europe-west1", c.name+"-master",
		&compute.InstanceReference{Instance: "projects/kubeha-e2e/zones/" + zone + "/instances/" + name}).Do()
	if err != nil || len(h.HealthStatus) == 0 {
		return fmt.Sprint(err)
	}
	return h.HealthStatus[0].HealthState
}

// TestControlPlaneWithLowPortsMapped runs the emulator as it runs for an
// ordinary user, who may not bind 443: the masters' API and the static IP
// serve on 10443, the admin kubeconfig names that port, and the API is
// reached there on the one master and through the load balancer.
func TestControlPlaneWithLowPortsMapped(t *testing.T) {
	c := newControlPlaneCluster(t, "lp", "--map-low-ports")
	c.write(1, false)
	c.apply()
	s := c.converged(1)
	api := c.adminAPI(t)
	if api.port != "10443" || api.server != "https://"+s.StaticIP.Address+":10443" {
		t.Fatalf("API port %s, kubeconfig server %s: want 10443 on the static IP", api.port, api.server)
	}
	api.serving(s)
	for _, n := range []int{1, 3} {
		if n == 3 {
			c.write(3, false)
			c.apply()
			s = c.converged(3)
			api.serving(s)
		}
		waitFor(t, time.Minute, fmt.Sprintf("the API at the static IP with %d masters", n), func() bool {
			code, _ := api.viaLB("GET", "/api/v1/namespaces/default", "")
			return code == 200
		})
	}
	gce := c.compute(t)
	for _, r := range s.Replicas {
		waitFor(t, time.Minute, r.Name+" healthy behind the load balancer", func() bool { return c.poolHealth(gce, r.Zone, r.Name) == "HEALTHY" })
	}
}
