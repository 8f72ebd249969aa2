package e2e

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// addonsDir is where joinedCluster's spec.addons.dir is, beside its spec.
const addonsDir = "addons"

// teamAddon is a user's add-on of spec.addons.dir: a ConfigMap the add-on
// manager keeps as its file says (Reconcile), its value v.
func teamAddon(name, v string) string {
	return `apiVersion: v1
kind: ConfigMap
metadata:
  name: ` + name + `
  namespace: kube-system
  labels: {addonmanager.kubernetes.io/mode: Reconcile}
data: {value: "` + v + `"}
`
}

// writeAddon writes a file of spec.addons.dir.
func writeAddon(t testing.TB, c *cluster, file, text string) {
	t.Helper()
	dir := filepath.Join(filepath.Dir(c.spec), addonsDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// controlPlaneRestarts are the restarts of each master's static pods
// other than the add-on manager's, and of the masters themselves, as the
// emulator counts them.
func controlPlaneRestarts(t testing.TB, c *cluster) map[string]int {
	t.Helper()
	resp, err := http.Get(c.endpoint + "/sim/v1/members")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var members []struct {
		Instance string `json:"instance"`
		Restarts int    `json:"restarts"`
		Pods     []struct {
			Name     string `json:"name"`
			Restarts int    `json:"restarts"`
		} `json:"pods"`
	}
	if err := json.Unmarshal(body, &members); err != nil {
		t.Fatalf("members: %v: %s", err, body)
	}
	out := map[string]int{}
	for _, m := range members {
		out[m.Instance] = m.Restarts
		for _, p := range m.Pods {
			if p.Name != "kube-addon-manager" {
				out[m.Instance+"/"+p.Name] = p.Restarts
			}
		}
	}
	return out
}

// addonsFollowTheSpec: a changed and a new file of spec.addons.dir reach
// the cluster after kubeha apply, which plans one update-addons step per
// master and restarts nothing; a removed file's object is pruned.
func addonsFollowTheSpec(t testing.TB, c *cluster, k kubectl) {
	t.Helper()
	value := func(name string) string {
		var cm struct {
			Data map[string]string `json:"data"`
		}
		if k.decode(&cm, "-n", "kube-system", "get", "configmap", name) != nil {
			return ""
		}
		return cm.Data["value"]
	}
	waitFor(t, time.Minute, "the add-on of spec.addons.dir in the cluster", func() bool { return value("team") == "v1" })
	before := controlPlaneRestarts(t, c)
	writeAddon(t, c, "team.yaml", teamAddon("team", "v2"))
	writeAddon(t, c, "extra.yaml", teamAddon("extra", "x"))
	steps := c.planned()
	targets := map[string]bool{}
	for _, s := range steps {
		if s.Action != "update-addons" {
			t.Errorf("plan after spec.addons.dir changed has a %s %s step", s.Action, s.Target)
		}
		targets[s.Target] = true
	}
	if len(steps) != 3 || len(targets) != 3 {
		t.Fatalf("plan after spec.addons.dir changed: want one update-addons per master: %+v", steps)
	}
	if r := c.kubeha("plan", "-f", c.spec); !strings.Contains(r.stdout, "spec.addons changed") {
		t.Errorf("the plan does not say why:\n%s", r.stdout)
	}
	t0 := time.Now()
	c.apply()
	c.converged(3)
	waitFor(t, 2*time.Minute, "the changed and the new add-on in the cluster", func() bool { return value("team") == "v2" && value("extra") == "x" })
	t.Logf("a changed add-on is in the cluster %s after kubeha apply began", time.Since(t0).Round(100*time.Millisecond))
	if err := os.Remove(filepath.Join(filepath.Dir(c.spec), addonsDir, "extra.yaml")); err != nil {
		t.Fatal(err)
	}
	c.apply()
	c.converged(3)
	waitFor(t, 2*time.Minute, "the removed add-on pruned", func() bool {
		_, err := k.run("-n", "kube-system", "get", "configmap", "extra")
		return err != nil
	})
	if after := controlPlaneRestarts(t, c); !maps.Equal(before, after) {
		t.Errorf("updating the add-ons restarted masters or their control plane: before %v, after %v", before, after)
	}
}
