package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDestroy: kubeha destroy of 3 masters, killed (SIGKILL) in the middle
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
	before := c.resourceNames()

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
		if strings.HasPrefix(coll, "aggregated/") {
			var scoped map[string]map[string]json.RawMessage
			json.Unmarshal(l.Items, &scoped)
			for _, sl := range scoped {
				var some []struct{ Name string }
				json.Unmarshal(sl[strings.TrimPrefix(coll, "aggregated/")], &some)
				named = append(named, some...)
			}
		} else {
			json.Unmarshal(l.Items, &named)
		}
		for _, n := range named {
			out = append(out, n.Name)
		}
	}
	return out
}
