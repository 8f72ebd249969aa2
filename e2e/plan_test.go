package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/sim"
)

// simEnv runs the binary in a fresh directory with its own embedded
// emulator state and loopback range, and a copy of an example spec.
func simEnv(t *testing.T, example string) (dir, specPath string) {
	t.Helper()
	dir = t.TempDir()
	data, err := os.ReadFile(filepath.Join(repoRoot, "examples", example))
	if err != nil {
		t.Fatal(err)
	}
	specPath = filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(specPath, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBEHA_SIM_SUBNET", sim.RandomSubnet())
	return dir, specPath
}

func TestPlanOnEmptyProject(t *testing.T) {
	dir, specPath := simEnv(t, "ha-3.yaml")
	simDir := filepath.Join(dir, "sim")
	r := runKubeha(t, "", "plan", "--sim", "--sim-dir", simDir, "-f", specPath, "--detailed-exitcode", "--out", filepath.Join(dir, "plan.json"))
	if r.code != 2 || !strings.Contains(r.stdout, "Plan: 19 to create, 5 to update, 0 to delete.") || !strings.Contains(r.stdout, "bootstrap: the first master") {
		t.Fatalf("plan: %+v", r)
	}
	var saved map[string]any
	data, err := os.ReadFile(filepath.Join(dir, "plan.json"))
	if err != nil || json.Unmarshal(data, &saved) != nil || saved["specHash"] == "" || saved["stateFingerprint"] == "" {
		t.Fatalf("saved plan: %v %s", err, data)
	}
	r = runKubeha(t, "", "plan", "--sim", "--sim-dir", simDir, "-f", specPath, "-o", "json")
	var p struct {
		NoChanges bool `json:"noChanges"`
		Steps     []struct {
			Action string `json:"action"`
		} `json:"steps"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &p) != nil || p.NoChanges || len(p.Steps) != 24 {
		t.Fatalf("plan -o json: %+v", r)
	}
	r = runKubeha(t, "", "plan", "--sim", "--sim-dir", simDir, "-f", specPath, "-o", "markdown")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "### kubeha plan: `ha3`") || !strings.Contains(r.stdout, "```mermaid") {
		t.Fatalf("plan -o markdown: %+v", r)
	}
	r = runKubeha(t, "", "status", "--sim", "--sim-dir", simDir, "-f", specPath)
	if r.code != 0 || !strings.Contains(r.stdout, "No masters.") {
		t.Fatalf("status: %+v", r)
	}
	r = runKubeha(t, "", "plan", "--sim", "--sim-dir", simDir, "-f", specPath, "--gce-endpoint", "http://127.0.0.1:1")
	if r.code != 1 || !strings.Contains(r.stderr, "--sim and --gce-endpoint") {
		t.Fatalf("two backends: %+v", r)
	}
	r = runKubeha(t, "", "plan", "-f", specPath, "--gce-endpoint", "http://127.0.0.1:1", "-o", "yaml")
	if r.code != 1 || !strings.Contains(r.stderr, "-o yaml: choose text, json or markdown") {
		t.Fatalf("bad -o: %+v", r)
	}
}

func TestPlanThroughSimServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sim")
	_, url := startSimServe(t, dir)
	_, specPath := simEnv(t, "quickstart.yaml")
	for _, endpoint := range []string{url, url + "/compute/v1/"} {
		r := runKubeha(t, "", "plan", "--gce-endpoint", endpoint, "-f", specPath)
		if r.code != 0 || !strings.Contains(r.stdout, "Plan: 8 to create, 0 to update, 0 to delete.") {
			t.Fatalf("plan against %s: %+v", endpoint, r)
		}
	}
	t.Setenv("KUBEHA_GCE_ENDPOINT", url)
	if r := runKubeha(t, "", "status", "-f", specPath, "-o", "json"); r.code != 0 || !strings.Contains(r.stdout, `"cluster": "quickstart"`) {
		t.Fatalf("status with KUBEHA_GCE_ENDPOINT: %+v", r)
	}
}
