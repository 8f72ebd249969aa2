package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateBinary(t *testing.T) {
	r := runKubeha(t, "", "validate", "-f", "examples/ha-3.yaml")
	if r.code != 0 || r.stdout != "examples/ha-3.yaml: valid: cluster ha3, 3 master(s) in europe-west1-b=1, europe-west1-c=1, europe-west1-d=1 (project kubeha-demo)\n" || r.stderr != "" {
		t.Errorf("ha-3: %+v", r)
	}
	files, _ := filepath.Glob(filepath.Join(repoRoot, "examples", "invalid", "*.yaml"))
	for _, abs := range files {
		rel := filepath.Join("examples", "invalid", filepath.Base(abs))
		r := runKubeha(t, "", "validate", "-f", rel)
		if r.code != 1 {
			t.Errorf("%s: exit %d, want 1", rel, r.code)
		}
		if !strings.HasPrefix(r.stderr, rel+":") || strings.Contains(r.stderr, "panic") {
			t.Errorf("%s: stderr %q", rel, r.stderr)
		}
	}
}

func TestValidateStdin(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "examples", "quickstart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := runKubeha(t, string(data), "validate", "-f", "-")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "-: valid: cluster quickstart") {
		t.Errorf("%+v", r)
	}
}
