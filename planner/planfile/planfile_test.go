package planfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// TestWriteRead: a plan file reads back as written; one edited by hand,
// cut short, or of another format is refused, naming the file.
func TestWriteRead(t *testing.T) {
	c, _, err := spec.Load("../../examples/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	obs := &state.Cluster{Name: c.Metadata.Name, Project: c.Spec.GCE.Project, Region: c.Spec.GCE.Region}
	p, err := planner.Compute(c, obs)
	if err != nil || len(p.Steps) == 0 {
		t.Fatalf("plan the quickstart: %v", err)
	}
	path := filepath.Join(t.TempDir(), "plan.json")
	if err := Write(path, planner.NewSaved(p, c, obs, planner.Options{})); err != nil {
		t.Fatal(err)
	}
	s, err := Read(path)
	if err != nil || len(s.Plan.Steps) != len(p.Steps) || s.Spec.Metadata.Name != "quickstart" {
		t.Fatalf("read back: %v", err)
	}
	data, _ := os.ReadFile(path)
	for name, bad := range map[string]string{
		"edited":     strings.Replace(string(data), `"replicas": 1`, `"replicas": 3`, 1),
		"cut short":  string(data[:len(data)/2]),
		"not a plan": `{"formatVersion":"0"}`,
		"not JSON":   "plan",
	} {
		os.WriteFile(path, []byte(bad), 0o644)
		_, err := Read(path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v", name, err)
		}
		if name == "edited" && !errors.Is(err, ErrNotIntact) {
			t.Errorf("an edited plan file: %v, want ErrNotIntact", err)
		}
	}
}
