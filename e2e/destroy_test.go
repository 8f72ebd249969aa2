package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestDestroy: after an apply of 3 masters, gcloud sees no private key in
// instance metadata and each master's key secret readable by the masters'
// account alone. kubeha destroy of the 3 masters, killed (SIGKILL) in the middle
// of deleting them and run again, leaves nothing of the cluster, saved a
// final snapshot first, and leaves another cluster in the same project
// untouched (it still converges).
func TestDestroy(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "doomed")
	other := &cluster{t: t, dir: t.TempDir(), endpoint: c.endpoint, name: "bystander"}
	other.spec = filepath.Join(other.dir, "cluster.yaml")
	other.write(1, false)
	other.apply()
	c.write(3, false)
	c.apply()
	c.converged(3)
	gcloudSeesNoKeys(t, c, 3)
	before := c.resourceNames()
	if !slices.Contains(before, "doomed-master") || !slices.Contains(before, "bystander-master") || !slices.Contains(before, "doomed-master-etcd") {
		t.Fatalf("the listing does not see both clusters: %v", before)
	}

	// Killed once 6 steps are done and another has started: the snapshot,
	// the load balancer and masters are going.
	if !c.killAfter("destroy", 6, true) {
		t.Fatal("destroy finished before it could be killed")
	}
	r := c.kubeha("destroy", "-f", c.spec, "--auto-approve")
	if r.code != 0 {
		t.Fatalf("destroy after a kill: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("destroy after a kill:\n%s", r.stdout)
	for _, name := range c.resourceNames() {
		if strings.HasPrefix(name, "doomed-") {
			t.Errorf("left after destroy: %s", name)
		}
	}
	if r := c.kubeha("destroy", "-f", c.spec, "--auto-approve"); r.code != 0 || !strings.Contains(r.stdout, "nothing to destroy") {
		t.Errorf("a third destroy: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	snaps, _ := filepath.Glob(filepath.Join(c.dir, "backups", "*-doomed-before-destroy-r*.db"))
	if len(snaps) == 0 {
		t.Error("no final snapshot in backups/")
	}
	for _, s := range snaps {
		if fi, err := os.Stat(s); err != nil || fi.Size() == 0 || fi.Mode().Perm() != 0o600 {
			t.Errorf("final snapshot %s: %v %v", s, fi, err)
		}
	}
	// The other cluster: every resource it had, and it still converges.
	kept := map[string]bool{}
	for _, name := range c.resourceNames() {
		kept[name] = true
	}
	for _, name := range before {
		if strings.HasPrefix(name, "bystander-") && !kept[name] {
			t.Errorf("destroy of another cluster deleted %s", name)
		}
	}
	other.converged(1)
}

// resourceNames lists, through the Compute API as any client sees it, every
// instance, disk, address, firewall, target pool, forwarding rule and
// health check of the emulated project ("instances/NAME").
func (c *cluster) resourceNames() []string {
	c.t.Helper()
	const p = "/compute/v1/projects/kubeha-e2e/"
	var out []string
	for _, coll := range []string{"aggregated/instances", "aggregated/disks", "aggregated/addresses", "aggregated/targetPools",
		"aggregated/forwardingRules", "global/firewalls", "global/httpHealthChecks"} {
		resp, err := http.Get(c.endpoint + p + coll)
		if err != nil {
			c.t.Fatal(err)
		}
		var l struct {
			Items json.RawMessage `json:"items"`
		}
		err = json.NewDecoder(resp.Body).Decode(&l)
		resp.Body.Close()
		if err != nil {
			c.t.Fatalf("list %s: %v", coll, err)
		}
		var named []struct{ Name string }
		decode := func(raw json.RawMessage, v any) {
			if len(raw) > 0 {
				if err := json.Unmarshal(raw, v); err != nil {
					c.t.Fatalf("list %s: %v", coll, err)
				}
			}
		}
		if strings.HasPrefix(coll, "aggregated/") {
			var scoped map[string]map[string]json.RawMessage
			decode(l.Items, &scoped)
			for _, sl := range scoped {
				var some []struct{ Name string }
				decode(sl[strings.TrimPrefix(coll, "aggregated/")], &some)
				named = append(named, some...)
			}
		} else {
			decode(l.Items, &named)
		}
		for _, n := range named {
			out = append(out, n.Name)
		}
	}
	return out
}

// gcloudSeesNoKeys checks, with gcloud (an independent client) where it is
// installed, that no instance's metadata holds a private key, that every
// master runs as the masters' own account, and that each master's key
// secret exists with an IAM policy naming that account alone.
func gcloudSeesNoKeys(t testing.TB, c *cluster, masters int) {
	t.Helper()
	run := c.gcloud(t)
	if run == nil {
		t.Log("gcloud is not installed: its view of the keys is not checked")
		return
	}
	var instances []struct {
		Name            string
		ServiceAccounts []struct{ Email string } `json:"serviceAccounts"`
	}
	out := run("compute", "instances", "list", "--filter", "labels.kubeha-cluster="+c.name, "--format=json")
	if strings.Contains(out, "PRIVATE KEY") {
		t.Error("gcloud compute instances list shows a private key in instance metadata")
	}
	if err := json.Unmarshal([]byte(out), &instances); err != nil || len(instances) != masters {
		t.Fatalf("gcloud compute instances list: %v\n%s", err, out)
	}
	account := c.name + "-master@kubeha-e2e.iam.gserviceaccount.com"
	for _, in := range instances {
		if len(in.ServiceAccounts) != 1 || in.ServiceAccounts[0].Email != account {
			t.Errorf("%s runs as %+v, want %s", in.Name, in.ServiceAccounts, account)
		}
		var policy struct {
			Bindings []struct {
				Role    string
				Members []string
			}
		}
		out := run("secrets", "get-iam-policy", in.Name+"-keys", "--format=json")
		if err := json.Unmarshal([]byte(out), &policy); err != nil || len(policy.Bindings) != 1 ||
			policy.Bindings[0].Role != "roles/secretmanager.secretAccessor" || strings.Join(policy.Bindings[0].Members, ",") != "serviceAccount:"+account {
			t.Errorf("gcloud secrets get-iam-policy %s-keys: %v\n%s", in.Name, err, out)
		}
	}
}

// gcloud is the gcloud CLI, configured for the cluster's emulator and
// project (nil where gcloud is not installed): it runs a command and gives
// its standard output, failing the test when the command fails.
func (c *cluster) gcloud(t testing.TB) func(args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("gcloud")
	if err != nil {
		return nil
	}
	cfg := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append(args, "--quiet")...)
		cmd.Env = append(os.Environ(), "CLOUDSDK_CONFIG="+cfg, "CLOUDSDK_CORE_DISABLE_PROMPTS=1")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gcloud %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	for api, path := range map[string]string{"compute": "/compute/v1/", "secretmanager": "/secretmanager/", "iam": "/iam/"} {
		run("config", "set", "api_endpoint_overrides/"+api, c.endpoint+path)
	}
	run("config", "set", "auth/disable_credentials", "true")
	run("config", "set", "core/project", "kubeha-e2e")
	return run
}
