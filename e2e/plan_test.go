package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// simEnv runs the binary in a fresh directory with its own embedded
// emulator state and loopback range, and a copy of an example spec.
func simEnv(t testing.TB, example string) (dir, specPath string) {
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
	return dir, specPath
}

func TestPlanOnEmptyProject(t *testing.T) {
	dir, specPath := simEnv(t, "ha-3.yaml")
	simDir := filepath.Join(dir, "sim")
	r := runKubeha(t, "", "plan", "--sim", "--sim-dir", simDir, "-f", specPath, "--detailed-exitcode", "--out", filepath.Join(dir, "plan.json"))
	if r.code != 2 || !strings.Contains(r.stdout, "Plan: 18 to create, 3 to update, 0 to delete.") || !strings.Contains(r.stdout, "bootstrap: member 1 of 3 of a new etcd cluster") {
		t.Fatalf("plan: %+v", r)
	}
	// The kubelet's digest, which kubeha does not carry for this release,
	// is the release's kubelet.sha512 (the emulator serves it), shown
	// whole in the plan and saved with it.
	digest := regexp.MustCompile(`\n  (http://\S+/release/v[0-9.]+/bin/linux/amd64/kubelet)\n  SHA-512 ([0-9a-f]{128})\n  \(from (\S+)\)\n`).FindStringSubmatch(r.stdout)
	if digest == nil || digest[3] != digest[1]+".sha512" {
		t.Fatalf("the plan does not show the kubelet's digest and where it was fetched:\n%s", r.stdout)
	}
	var saved struct {
		SpecHash         string `json:"specHash"`
		StateFingerprint string `json:"stateFingerprint"`
		Plan             struct {
			Kubelets []struct {
				SHA512 string `json:"sha512"`
			} `json:"kubelets"`
		} `json:"plan"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "plan.json"))
	if err != nil || json.Unmarshal(data, &saved) != nil || saved.SpecHash == "" || saved.StateFingerprint == "" ||
		len(saved.Plan.Kubelets) != 1 || saved.Plan.Kubelets[0].SHA512 != digest[2] {
		t.Fatalf("saved plan: %v %s", err, data)
	}
	r = runKubeha(t, "", "plan", "--sim", "--sim-dir", simDir, "-f", specPath, "-o", "json")
	var p struct {
		NoChanges bool `json:"noChanges"`
		Steps     []struct {
			Action string `json:"action"`
		} `json:"steps"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &p) != nil || p.NoChanges || len(p.Steps) != 21 {
		t.Fatalf("plan -o json: %+v", r)
	}
	r = runKubeha(t, "", "plan", "--sim", "--sim-dir", simDir, "-f", specPath, "-o", "markdown")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "### kubeha plan: `ha3`") || !strings.Contains(r.stdout, "```mermaid") {
		t.Fatalf("plan -o markdown: %+v", r)
	}
	// A release URL that does not answer: plan and apply name the file
	// they could not fetch, and nothing is created.
	text, _ := os.ReadFile(specPath)
	unreachable := filepath.Join(dir, "unreachable.yaml")
	os.WriteFile(unreachable, append(text, "  kubernetes:\n    releaseURL: http://127.0.0.1:1/release\n"...), 0o644)
	for _, verb := range [][]string{{"plan"}, {"apply", "--auto-approve"}} {
		r = runKubeha(t, "", append(verb, "--sim", "--sim-dir", simDir, "-f", unreachable)...)
		if r.code != 1 || !strings.Contains(r.stderr, "http://127.0.0.1:1/release/v") || !strings.Contains(r.stderr, "/bin/linux/amd64/kubelet.sha512") ||
			!strings.Contains(r.stderr, "spec.kubernetes.kubeletSHA512") {
			t.Fatalf("%s with an unreachable release URL: %+v", verb[0], r)
		}
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
