package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kubeha/kubeha/cmd/kubeha/cli"
	"github.com/kubeha/kubeha/pki"
)

// cluster is a spec file driven through the binary against `sim serve`.
type cluster struct {
	t        testing.TB
	dir      string
	spec     string
	endpoint string
	name     string
	// gce holds more lines of the spec's gce section (network, subnetwork).
	gce string
	// tail holds more lines of the spec's spec section (addons).
	tail string
}

const tourSpec = `apiVersion: kubeha.io/v1alpha1
kind: Cluster
metadata:
  name: %s
spec:
  gce:
    project: kubeha-e2e
    region: europe-west1
  masters:
    replicas: %d
    zones: [europe-west1-b, europe-west1-c, europe-west1-d]
  multiZone: true
  remediation:
    replaceUnhealthy: %t
    unhealthyAfter: 30s
`

func newCluster(t testing.TB, name string) *cluster {
	t.Helper()
	dir := t.TempDir()
	_, url := startSimServe(t, filepath.Join(dir, "sim"))
	return &cluster{t: t, dir: dir, spec: filepath.Join(dir, "cluster.yaml"), endpoint: url, name: name}
}

// appliedCluster is a cluster whose spec of replicas masters (with
// remediation on or off) is applied and converged, with its status.
func appliedCluster(t testing.TB, name string, replicas int, remediation bool) (*cluster, status) {
	c := newCluster(t, name)
	c.write(replicas, remediation)
	c.apply()
	return c, c.converged(replicas)
}

func (c *cluster) write(replicas int, remediation bool) {
	c.t.Helper()
	text := strings.Replace(fmt.Sprintf(tourSpec, c.name, replicas, remediation), "    region: europe-west1\n", "    region: europe-west1\n"+c.gce, 1) + c.tail
	if err := os.WriteFile(c.spec, []byte(text), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) kubeha(args ...string) result {
	c.t.Helper()
	return runKubeha(c.t, "", append(args, "--gce-endpoint", c.endpoint)...)
}

func (c *cluster) apply(extra ...string) result {
	c.t.Helper()
	r := c.kubeha(append([]string{"apply", "-f", c.spec, "--auto-approve"}, extra...)...)
	if r.code != 0 {
		c.t.Fatalf("apply %v: exit %d\n%s\n%s", extra, r.code, r.stdout, r.stderr)
	}
	return r
}

// status is what kubeha status -o json says.
type status = cli.StatusDoc

func (c *cluster) status() status {
	c.t.Helper()
	r := c.kubeha("status", "-f", c.spec, "-o", "json")
	var s status
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &s) != nil {
		c.t.Fatalf("status: %+v", r)
	}
	return s
}

// converged checks DESIGN.md §7 after an apply: plan shows no changes,
// exactly n healthy voters and no learner, the load balancer exactly when
// n >= 2 with the static IP on it (or on the single master), nothing leaked.
func (c *cluster) converged(n int) status {
	c.t.Helper()
	if r := c.kubeha("plan", "-f", c.spec, "--detailed-exitcode"); r.code != 0 {
		c.t.Fatalf("plan after apply is not empty (exit %d):\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	s := c.status()
	if len(s.Replicas) != n || s.Etcd.Voters != n || s.Etcd.HealthyVoters != n || s.Etcd.Learners != 0 {
		c.t.Fatalf("want %d healthy voters: %+v", n, s)
	}
	if s.LoadBalancer.Exists != (n >= 2) {
		c.t.Fatalf("%d masters, load balancer exists=%t", n, s.LoadBalancer.Exists)
	}
	if n >= 2 && (s.StaticIP.AttachedTo != "forwarding rule "+c.name+"-master" || len(s.LoadBalancer.Instances) != n) {
		c.t.Fatalf("the static IP must be on the load balancer with all %d masters: %+v", n, s)
	}
	if n == 1 && s.StaticIP.AttachedTo != "instance "+s.Replicas[0].Name {
		c.t.Fatalf("the static IP must be on the single master: %+v", s.StaticIP)
	}
	if len(s.Orphans.Members)+len(s.Orphans.Disks)+len(s.Orphans.Addresses) > 0 {
		c.t.Fatalf("leaked: %+v", s.Orphans)
	}
	// A master that runs the startup script (the whole control plane)
	// started etcd once the members before it served, never after waiting
	// out the bound.
	logs, _ := filepath.Glob(filepath.Join(c.dir, "sim", "instances", "*", "root", "var", "log", "startup-script.log"))
	for _, f := range logs {
		if data, _ := os.ReadFile(f); strings.Contains(string(data), "starting etcd anyway") {
			c.t.Fatalf("a master waited out the bound before starting etcd (%s):\n%s", f, data)
		}
	}
	zones := map[string]int{}
	for _, r := range s.Replicas {
		zones[r.Zone]++
	}
	if n >= 3 && len(zones) != 3 {
		c.t.Fatalf("masters are not spread over the three zones: %v", zones)
	}
	return s
}

// etcd is a client of the cluster's etcd with kubeha's certificate.
func (c *cluster) etcd(s status) *clientv3.Client {
	c.t.Helper()
	tlsCfg, err := pki.LoadClientTLS(filepath.Join(c.dir, "pki"))
	if err != nil || tlsCfg == nil {
		c.t.Fatalf("kubeha's client certificate: %v", err)
	}
	var eps []string
	for _, r := range s.Replicas {
		eps = append(eps, "https://"+r.InternalIP+":2379")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 3 * time.Second, TLS: tlsCfg, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

func (c *cluster) admin(path string) {
	c.t.Helper()
	resp, err := http.Post(c.endpoint+path, "application/json", nil)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		c.t.Fatalf("POST %s: %s", path, resp.Status)
	}
}

func TestApplyTour(t *testing.T) {
	t.Parallel()
	c, s := appliedCluster(t, "tour", 1, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.etcd(s).Put(ctx, "/tour/before", "kept"); err != nil {
		t.Fatal(err)
	}
	c.write(3, false)
	c.apply()
	c.converged(3)

	// A health check that probes where nothing serves (as kubeha made it
	// before the masters ran kube-apiserver-healthcheck) is pointed back.
	gce := c.compute(t)
	hcName := c.name + "-master-hc"
	hc, err := gce.HttpHealthChecks.Get("kubeha-e2e", hcName).Do()
	if err != nil {
		t.Fatal(err)
	}
	hc.Port, hc.RequestPath = 8080, "/healthz"
	if _, err := gce.HttpHealthChecks.Update("kubeha-e2e", hcName, hc).Do(); err != nil {
		t.Fatal(err)
	}
	if r := c.kubeha("plan", "-f", c.spec); r.code != 0 || !strings.Contains(r.stdout, "update-health-check "+hcName) {
		t.Fatalf("plan with the health check on 8080: %+v", r)
	}
	c.apply()
	s = c.converged(3)
	if hc, err := gce.HttpHealthChecks.Get("kubeha-e2e", hcName).Do(); err != nil || hc.Port != 3990 || hc.RequestPath != "/readyz" {
		t.Fatalf("the health check after apply: %+v %v", hc, err)
	}

	// Crash a member that does not lead, then replace it with --replace.
	var victim, zone string
	for _, r := range s.Replicas {
		if !r.Etcd.Leader {
			victim, zone = r.Name, r.Zone
		}
	}
	c.admin("/sim/v1/projects/kubeha-e2e/zones/" + zone + "/instances/" + victim + "/crash")
	r := c.kubeha("plan", "-f", c.spec)
	if r.code != 0 || !strings.Contains(r.stdout, "master "+victim+" is unhealthy") {
		t.Fatalf("plan with a crashed member: %+v", r)
	}
	c.apply("--replace", victim)
	s = c.converged(3)
	replaced := true
	for _, r := range s.Replicas {
		replaced = replaced && r.Name != victim
	}
	if !replaced {
		t.Fatalf("%s was not replaced: %+v", victim, s.Replicas)
	}
	inZone := 0
	for _, r := range s.Replicas {
		if r.Zone == zone {
			inZone++
		}
	}
	if inZone != 1 {
		t.Fatalf("the successor of %s is not in its zone %s: %+v", victim, zone, s.Replicas)
	}

	for _, n := range []int{5, 3, 1} {
		c.write(n, false)
		c.apply()
		s = c.converged(n)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	got, err := c.etcd(s).Get(ctx2, "/tour/before")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "kept" {
		t.Fatalf("data written before the tour: %v %v", got, err)
	}
	backups, _ := filepath.Glob(filepath.Join(c.dir, "backups", "*.db"))
	if len(backups) == 0 {
		t.Error("no etcd snapshot was saved before the removals")
	}
	for _, b := range backups {
		if fi, err := os.Stat(b); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("snapshot %s mode %v", b, fi.Mode().Perm())
		}
	}
}

var keyRe = regexp.MustCompile(`PRIVATE KEY|BEGIN CERTIFICATE`)

func noKeyMaterial(t testing.TB, what string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if keyRe.MatchString(s) {
			t.Fatalf("%s shows key material", what)
		}
	}
}

// setFaults sets the emulator's injected API faults (POST /sim/v1/faults).
func (c *cluster) setFaults(body string) {
	c.t.Helper()
	resp, err := http.Post(c.endpoint+"/sim/v1/faults", "application/json", strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("faults %s: %s", body, resp.Status)
	}
}

// counts counts the instances, disks and addresses of the emulated
// project by name ("instances/NAME"), to find duplicates.
func (c *cluster) counts() map[string]int {
	c.t.Helper()
	out := map[string]int{}
	for _, kind := range []string{"instances", "disks", "addresses"} {
		resp, err := http.Get(c.endpoint + "/compute/v1/projects/kubeha-e2e/aggregated/" + kind)
		if err != nil {
			c.t.Fatal(err)
		}
		var l struct {
			Items map[string]map[string]json.RawMessage `json:"items"`
		}
		err = json.NewDecoder(resp.Body).Decode(&l)
		resp.Body.Close()
		if err != nil {
			c.t.Fatal(err)
		}
		for _, scoped := range l.Items {
			var named []struct{ Name string }
			if raw, ok := scoped[kind]; ok {
				if err := json.Unmarshal(raw, &named); err != nil {
					c.t.Fatal(err)
				}
			}
			for _, r := range named {
				out[kind+"/"+r.Name]++
			}
		}
	}
	return out
}

// TestApplyWithAPIFaults: with one API request in ten failing after the
// emulator did the work (as a timeout or a 5xx after GCE acted), 1 → 5
// converges in one apply and creates nothing twice: every insert carries a
// requestId, and a retried insert gets the first call's operation.
func TestApplyWithAPIFaults(t *testing.T) {
	t.Parallel() // its own emulator; nothing in it is timed
	c, _ := appliedCluster(t, "faults", 1, false)
	c.write(5, false)
	c.setFaults(`{"rate":0.1,"codes":[429,503],"after":true}`)
	c.apply()
	c.setFaults(`{"rate":0}`)
	c.converged(5)
	counts := c.counts()
	for name, n := range counts {
		if n != 1 {
			t.Errorf("%s exists %d times", name, n)
		}
	}
	// 5 instances, their 5 boot and 5 data disks, 5 internal addresses and
	// the static IP.
	if len(counts) != 21 {
		t.Errorf("resources: %v", counts)
	}
}

// TestRemediationReplacesCrashedMember: with remediation on, a member seen
// unhealthy for longer than unhealthyAfter (30s) is replaced in its zone by
// a plain apply; before that, apply only reports it.
func TestRemediationReplacesCrashedMember(t *testing.T) {
	t.Parallel() // mostly waiting out unhealthyAfter
	c, s := appliedCluster(t, "healing", 3, true)
	var victim, zone string
	for _, r := range s.Replicas {
		if !r.Etcd.Leader {
			victim, zone = r.Name, r.Zone
		}
	}
	c.admin("/sim/v1/projects/kubeha-e2e/zones/" + zone + "/instances/" + victim + "/crash")
	// Seen unhealthy now: not yet replaced.
	r := c.kubeha("plan", "-f", c.spec, "--detailed-exitcode")
	if r.code != 0 || !strings.Contains(r.stdout, "master "+victim+" is unhealthy") {
		t.Fatalf("plan right after the crash: %+v", r)
	}
	time.Sleep(31 * time.Second)
	r = c.apply()
	if !strings.Contains(r.stdout, "failed: etcd member unhealthy for") {
		t.Fatalf("apply after unhealthyAfter did not replace %s:\n%s", victim, r.stdout)
	}
	s = c.converged(3)
	for _, rep := range s.Replicas {
		if rep.Name == victim {
			t.Fatalf("%s is still a master", victim)
		}
	}
	inZone := 0
	for _, rep := range s.Replicas {
		if rep.Zone == zone {
			inZone++
		}
	}
	if inZone != 1 {
		t.Fatalf("the successor is not in %s: %+v", zone, s.Replicas)
	}
}
