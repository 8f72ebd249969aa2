package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// joinedCluster is 3 masters running the whole control plane, with nodes
// hollow nodes joined through the static IP (kubeha join's token, the CSR
// flow), and kubectl with the admin kubeconfig.
func joinedCluster(t testing.TB, name string, nodes int) (*cluster, status, kubectl) {
	t.Helper()
	return joinedClusterAt(t, name, nodes, "")
}

// joinedClusterAt is joinedCluster with the masters on Kubernetes version
// ("" the default); the hollow nodes run the kubelet of that release.
func joinedClusterAt(t testing.TB, name string, nodes int, version string) (*cluster, status, kubectl) {
	t.Helper()
	c := newControlPlaneCluster(t, name)
	c.tail = "  addons:\n    checkInterval: 10s\n    dir: " + addonsDir + "\n"
	if version != "" {
		c.tail += "  kubernetes:\n    version: " + version + "\n"
	}
	writeAddon(t, c, "team.yaml", teamAddon("team", "v1"))
	c.write(3, false)
	c.apply()
	s := c.converged(3)
	api := c.adminAPI(t)
	api.serving(s)
	k := kubectl{t: t, kubeconfig: filepath.Join(c.dir, "admin.kubeconfig")}
	t0 := time.Now()
	if r := c.kubeha("sim", "nodes", "-f", c.spec, "--count", itoa(nodes)); r.code != 0 || !strings.Contains(r.stdout, itoa(nodes)+" hollow nodes of cluster "+name) {
		t.Fatalf("sim nodes --count %d: %+v", nodes, r)
	}
	deadline := time.Now().Add(6 * time.Minute)
	for {
		var l nodeList
		w, m := 0, 0
		if k.decode(&l, "get", "nodes") == nil {
			w, m = l.ready()
		}
		if w == nodes && m == 3 {
			break
		}
		if time.Now().After(deadline) {
			out, _ := k.run("get", "nodes")
			resp, err := http.Get(c.endpoint + "/sim/v1/nodes")
			var sims []byte
			if err == nil {
				sims, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			t.Fatalf("timed out waiting for %d workers and 3 masters Ready (%d and %d are):\n%s\nthe emulator's hollow nodes: %s", nodes, w, m, out, sims)
		}
		time.Sleep(2 * time.Second)
	}
	t.Logf("%d hollow nodes joined and are Ready %s after kubeha sim nodes", nodes, time.Since(t0).Round(100*time.Millisecond))
	return c, s, k
}

// addonManagerLogs are the add-on manager's logs of each master of the
// emulator in simDir, by master.
// actingAs is the holder of the controller manager's lease an add-on
// manager's last leader check found, when that was its own host name (it
// acts), or "".
func actingAs(log string) string {
	last := ""
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "Leader is ") || strings.Contains(l, "Not elected leader") {
			last = l
		}
	}
	if _, holder, ok := strings.Cut(last, "Leader is "); ok && !strings.Contains(last, ", not ") {
		return strings.TrimSpace(holder)
	}
	return ""
}

// passesCompleted is when an add-on manager's passes completed strictly
// between two whole seconds, as its log says ("reconcile completed at
// DATE").
func passesCompleted(log string, after, before time.Time) []time.Time {
	var out []time.Time
	for _, m := range regexp.MustCompile(`reconcile completed at (\S+) ==`).FindAllStringSubmatch(log, -1) {
		if at, err := time.Parse(time.RFC3339, m[1]); err == nil && at.After(after) && at.Before(before) {
			out = append(out, at)
		}
	}
	return out
}

func addonManagerLogs(t testing.TB, simDir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(simDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "kube-addon-manager.log" {
			data, _ := os.ReadFile(p)
			out[p] = string(data)
		}
		return nil
	})
	return out
}

// TestNodesJoinThroughTheStaticIP: with kubeha join's bootstrap
// kubeconfig, 20 hollow nodes (the kubelet's code, kubemark) join through
// the static IP; kubectl sees 20 workers Ready and the 3 masters Ready and
// tainted; CoreDNS and a kube-proxy on every node run, and a Deployment of
// 200 pods runs on the workers. An expired token, a token the cluster never
// issued, a node asking for another node's certificate and a node changing
// another's Node object are refused. The add-on manager brings back a
// deleted CoreDNS Deployment within its interval, acting from the one
// master whose kube-controller-manager leads. A changed, a new and a
// removed file of spec.addons.dir reach the cluster through kubeha apply,
// which restarts nothing.
func TestNodesJoinThroughTheStaticIP(t *testing.T) {
	t.Parallel()
	c, _, k := joinedCluster(t, "nodes", 20)

	// kubeha join: the token only in the file, 0600; kubeadm's command.
	out := filepath.Join(c.dir, "bootstrap.kubeconfig")
	r := c.kubeha("join", "-f", c.spec, "--out", out, "--print-kubeadm")
	if r.code != 0 {
		t.Fatalf("join: %+v", r)
	}
	data, _ := os.ReadFile(out)
	token := regexp.MustCompile(`token: ([a-z0-9]{6})\.([a-z0-9]{16})`).FindStringSubmatch(string(data))
	if token == nil {
		t.Fatalf("no bootstrap token in %s:\n%s", out, data)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Errorf("bootstrap kubeconfig mode %v, want 0600", fi.Mode().Perm())
	}
	if !regexp.MustCompile(`kubeadm join [0-9.]+:[0-9]+ --token ` + token[1] + `\.` + token[2] + ` --discovery-token-ca-cert-hash sha256:[0-9a-f]{64}\n`).MatchString(r.stdout) {
		t.Errorf("join --print-kubeadm:\n%s", r.stdout)
	}
	if r := c.kubeha("join", "-f", c.spec, "--out", filepath.Join(c.dir, "quiet.kubeconfig")); r.code != 0 || regexp.MustCompile(`[a-z0-9]{6}\.[a-z0-9]{16}`).MatchString(r.stdout+r.stderr) {
		t.Errorf("join without --print-kubeadm printed a token, or failed: %+v", r)
	}

	// The masters are Nodes, tainted; the workers run what is scheduled.
	var nodes nodeList
	if err := k.decode(&nodes, "get", "nodes"); err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl get nodes:\n%s", k.must("get", "nodes"))
	k.must("create", "deployment", "web", "--image=registry.k8s.io/pause:3.10", "--replicas=200")
	waitFor(t, 4*time.Minute, "200 pods of the Deployment Running", func() bool {
		var l podList
		n := 0
		if k.decode(&l, "get", "pods", "-l", "app=web") == nil {
			n, _ = l.running()
		}
		return n == 200
	})
	var web podList
	k.decode(&web, "get", "pods", "-l", "app=web")
	if _, on := web.running(); len(on) < 15 {
		t.Errorf("200 pods on %d nodes: the scheduler does not spread them", len(on))
	} else {
		for n := range on {
			if !strings.HasPrefix(n, "nodes-node-") {
				t.Errorf("a pod of the Deployment runs on %s, a tainted master", n)
			}
		}
	}
	waitFor(t, 3*time.Minute, "CoreDNS and a kube-proxy on each of the 23 nodes Running", func() bool {
		var dns, proxy podList
		if k.decode(&dns, "-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns") != nil ||
			k.decode(&proxy, "-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-proxy") != nil {
			return false
		}
		d, _ := dns.running()
		p, on := proxy.running()
		return d == 2 && p == 23 && len(on) == 23
	})

	// Refusals, asked as a client with nothing but the credential.
	api := c.adminAPI(t)
	ask := func(method, path, bearer string, cert *tls.Certificate, body string) int {
		t.Helper()
		cfg := &tls.Config{RootCAs: api.ca}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		req, _ := http.NewRequest(method, api.server+path, strings.NewReader(body))
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		req.Header.Set("Content-Type", "application/json")
		if method == "PATCH" {
			req.Header.Set("Content-Type", "application/strategic-merge-patch+json")
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	const csrs = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
	if code := ask("GET", csrs, token[1]+"."+token[2], nil, ""); code != 200 {
		t.Errorf("a valid bootstrap token may list CSRs (system:node-bootstrapper): %d", code)
	}
	if code := ask("GET", csrs, "abcdef.0123456789abcdef", nil, ""); code != 401 {
		t.Errorf("a token this cluster never issued (another cluster's): %d, want 401", code)
	}
	short := filepath.Join(c.dir, "short.kubeconfig")
	if r := c.kubeha("join", "-f", c.spec, "--out", short, "--ttl", "2s"); r.code != 0 {
		t.Fatalf("join --ttl 2s: %+v", r)
	}
	data, _ = os.ReadFile(short)
	expired := regexp.MustCompile(`token: (\S+)`).FindStringSubmatch(string(data))[1]
	time.Sleep(3 * time.Second)
	if code := ask("GET", csrs, expired, nil, ""); code != 401 {
		t.Errorf("an expired bootstrap token: %d, want 401", code)
	}
	// A node's own certificate, issued by the CSR flow (not kubeha's PKI).
	node1 := nodeCert(t, filepath.Dir(c.spec), "nodes-node-1")
	leaf, _ := x509.ParseCertificate(node1.Certificate[0])
	if leaf.Subject.CommonName != "system:node:nodes-node-1" || leaf.Issuer.CommonName != "nodes-ca" {
		t.Errorf("node-1's certificate is %q issued by %q", leaf.Subject.CommonName, leaf.Issuer.CommonName)
	}
	if code := ask("PATCH", "/api/v1/nodes/nodes-node-2", "", node1, `{"metadata":{"labels":{"stolen":"yes"}}}`); code != 403 {
		t.Errorf("node-1 changing node-2's Node (NodeRestriction): %d, want 403", code)
	}
	if code := ask("PATCH", "/api/v1/nodes/nodes-node-1", "", node1, `{"metadata":{"labels":{"own":"yes"}}}`); code != 200 {
		t.Errorf("node-1 changing its own Node: %d, want 200", code)
	}
	// NodeRestriction refuses a node's request for another node's
	// certificate at creation; its own it may ask for (renewals).
	if code := ask("POST", csrs, "", node1, csrFor(t, "steal-node-2", "system:node:nodes-node-2")); code != 403 {
		t.Errorf("node-1 asking for node-2's certificate: %d, want 403", code)
	}
	if _, err := k.run("get", "csr", "steal-node-2"); err == nil {
		t.Error("node-1's request for node-2's certificate exists")
	}
	if code := ask("POST", csrs, "", node1, csrFor(t, "renew-node-1", "system:node:nodes-node-1")); code != 201 {
		t.Errorf("node-1 asking for its own certificate: %d, want 201", code)
	}

	// The add-on manager: one master acts; a deleted CoreDNS comes back
	// with its next pass. A pass is its interval (10 s) plus the kubectl
	// calls it makes, which a machine loaded by other tests slows: the wait
	// is long, and what is asserted is the manager's own loop (the first
	// pass that began after the deletion made it again).
	k.must("-n", "kube-system", "delete", "deployment", "coredns")
	deleted := time.Now()
	waitFor(t, 5*time.Minute, "the add-on manager recreates CoreDNS", func() bool {
		_, err := k.run("-n", "kube-system", "get", "deployment", "coredns")
		return err == nil
	})
	t.Logf("CoreDNS recreated %s after its deletion", time.Since(deleted).Round(100*time.Millisecond))
	var coredns struct {
		Metadata struct {
			CreationTimestamp time.Time `json:"creationTimestamp"`
		} `json:"metadata"`
	}
	if err := k.decode(&coredns, "-n", "kube-system", "get", "deployment", "coredns"); err != nil {
		t.Fatal(err)
	}
	var lease struct {
		Spec struct {
			HolderIdentity string `json:"holderIdentity"`
		} `json:"spec"`
	}
	if err := k.decode(&lease, "-n", "kube-system", "get", "lease", "kube-controller-manager"); err != nil {
		t.Fatal(err)
	}
	leader, _, _ := strings.Cut(lease.Spec.HolderIdentity, "_")
	acting := 0
	for path, log := range addonManagerLogs(t, filepath.Join(c.dir, "sim")) {
		holder := actingAs(log)
		if holder == "" {
			continue
		}
		acting++
		if !strings.HasPrefix(holder, leader+"_") {
			t.Errorf("%s acts as %s, but the lease is held by %s", path, holder, leader)
		}
		// The pass under way at the deletion may have applied CoreDNS
		// before it; the next one must make it again, so at most one pass
		// completed between the deletion and CoreDNS's creation (the log's
		// times are whole seconds: those within either second are left
		// out).
		created := coredns.Metadata.CreationTimestamp
		if passes := passesCompleted(log, deleted.Truncate(time.Second), created); len(passes) > 1 {
			t.Errorf("CoreDNS was made again at %s, %d passes of %s after its deletion at %s (passes completed in between: %v)",
				created.Format(time.RFC3339), len(passes), path, deleted.Format(time.RFC3339), passes)
		}
	}
	if acting != 1 {
		t.Errorf("%d masters' add-on managers act, want exactly 1 (the lease holder %s)", acting, leader)
	}
	addonsFollowTheSpec(t, c, k)
}

// nodeCert is a hollow node's client certificate, which the kubelet wrote
// after the CSR flow.
func nodeCert(t testing.TB, dir, node string) *tls.Certificate {
	t.Helper()
	var pemPath string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "kubelet-client-current.pem" && strings.Contains(p, "/"+node+"/") {
			pemPath = p
		}
		return nil
	})
	if pemPath == "" {
		t.Fatalf("no client certificate of %s", node)
	}
	pair, err := tls.LoadX509KeyPair(pemPath, pemPath)
	if err != nil {
		t.Fatal(err)
	}
	return &pair
}

// csrFor is a CertificateSigningRequest named name for a kubelet client
// certificate of cn, as a kubelet asks for one.
func csrFor(t testing.TB, name, cn string) string {
	t.Helper()
	der := newCSR(t, cn, "system:nodes")
	body, _ := json.Marshal(map[string]any{
		"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{"request": base64.StdEncoding.EncodeToString(der), "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
			"usages": []string{"digital signature", "client auth"}},
	})
	return string(body)
}
