package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/golden"
	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// goldenPlan is a 1 -> 3 plan of a fixed observed state.
func goldenPlan(t *testing.T) *planner.Plan {
	t.Helper()
	c := &spec.Cluster{APIVersion: spec.APIVersion, Kind: spec.Kind, Metadata: spec.Metadata{Name: "prod"},
		Spec: spec.ClusterSpec{GCE: spec.GCE{Project: "p-test", Region: "europe-west1"}, MultiZone: true,
			Masters: spec.Masters{Replicas: 3, Zones: []string{"europe-west1-b", "europe-west1-c", "europe-west1-d"}}}}
	spec.SetDefaults(c)
	cfg := metadata.Config{MachineType: "n1-standard-2", Image: spec.DefaultImage, DiskSizeGb: 20, QuorumRead: true, ClientPort: 2379, PeerPort: 2380, MultiZone: true, KubernetesVersion: spec.DefaultKubernetesVersion}
	obs := &state.Cluster{Name: "prod", Project: "p-test", Region: "europe-west1",
		Instances: []*state.Instance{{Name: "prod-master", Zone: "europe-west1-b", Status: "RUNNING", InternalIP: "10.0.0.2", NatIP: "203.0.113.10",
			MachineType: "n1-standard-2", Labels: map[string]string{"kubeha-cluster": "prod", "kubeha-role": "master"}, Config: &cfg, HasDataDisk: true}},
		Disks:     []*state.Disk{{Name: "prod-master-pd", Zone: "europe-west1-b", SizeGb: 20}},
		Addresses: []*state.Address{{Name: "prod-master-internal", Address: "10.0.0.2", Type: "INTERNAL", Status: "IN_USE"}},
		StaticIP:  &state.Address{Name: "prod-master-ip", Address: "203.0.113.10", Type: "EXTERNAL", Status: "IN_USE"},
		Firewalls: []*state.Firewall{{Name: "prod-master-etcd", Ports: []string{"2379"}, SourceTags: []string{"prod-master"}, TargetTags: []string{"prod-master"}}},
		Etcd:      state.Etcd{Reachable: true, ClusterID: 7, Members: []*state.Member{{ID: 0xa1, Name: "prod-master", Instance: "prod-master", Healthy: true, Leader: true}}}}
	p, err := planner.Compute(c, obs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	golden.Check(t, filepath.Join("testdata", name), got)
}

func TestPlanGolden(t *testing.T) {
	p := goldenPlan(t)
	for _, tt := range []struct {
		format, file string
	}{{"text", "plan.txt"}, {"json", "plan.json"}, {"markdown", "plan.md"}} {
		v, err := planViewFor(tt.format)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := v.Render(&buf, p); err != nil {
			t.Fatal(err)
		}
		checkGolden(t, tt.file, buf.Bytes())
	}
	if _, err := planViewFor("yaml"); err == nil {
		t.Error("-o yaml accepted")
	}
}

// TestPlanJSONKeys checks the JSON plan against the keys DESIGN.md §5 documents.
func TestPlanJSONKeys(t *testing.T) {
	var buf bytes.Buffer
	if err := (planJSON{}).Render(&buf, goldenPlan(t)); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"formatVersion", "cluster", "noChanges", "summary", "steps", "warnings"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("plan lacks %q", k)
		}
	}
	if doc["formatVersion"] != "1" || doc["noChanges"] != false {
		t.Errorf("formatVersion %v noChanges %v", doc["formatVersion"], doc["noChanges"])
	}
	for _, k := range []string{"create", "update", "delete"} {
		if _, ok := doc["summary"].(map[string]any)[k]; !ok {
			t.Errorf("summary lacks %q", k)
		}
	}
	steps := doc["steps"].([]any)
	if len(steps) == 0 {
		t.Fatal("no steps")
	}
	for _, s := range steps {
		step := s.(map[string]any)
		for _, k := range []string{"id", "action", "target", "dependsOn", "reason", "etcd"} {
			if _, ok := step[k]; !ok {
				t.Errorf("step %v lacks %q", step["id"], k)
			}
		}
		for _, k := range []string{"voters", "learners", "quorum", "healthyVoters", "faultTolerance"} {
			if _, ok := step["etcd"].(map[string]any)[k]; !ok {
				t.Errorf("step %v etcd lacks %q", step["id"], k)
			}
		}
	}
}

func TestMarkdownStaysUnderLimit(t *testing.T) {
	p := goldenPlan(t)
	big := *p
	big.Steps = nil
	for i := 0; i < 3000; i++ {
		s := *p.Steps[i%len(p.Steps)]
		s.ID = fmt.Sprint(i + 1)
		s.Reason = strings.Repeat("a long reason that explains the step to a reviewer ", 3)
		big.Steps = append(big.Steps, &s)
	}
	var buf bytes.Buffer
	if err := (planMarkdown{}).Render(&buf, &big); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if len(out) > MaxMarkdown || !strings.Contains(out, "more steps are left out") || !strings.Contains(out, "<details>") {
		t.Fatalf("markdown of a 3000-step plan is %d characters", len(out))
	}
	buf.Reset()
	_ = (planMarkdown{}).Render(&buf, p)
	if !strings.Contains(buf.String(), "```mermaid") {
		t.Error("a small plan lost its graph")
	}
}

func TestStatusViews(t *testing.T) {
	obs := &state.Cluster{Name: "prod", Project: "p", Region: "europe-west1",
		Instances: []*state.Instance{{Name: "prod-master", Zone: "europe-west1-b", Status: "RUNNING", InternalIP: "10.0.0.2", NatIP: "203.0.113.10"}},
		StaticIP:  &state.Address{Name: "prod-master-ip", Address: "203.0.113.10", Users: []string{"prod-master"}},
		Etcd:      state.Etcd{Reachable: true, ClusterID: 7, Members: []*state.Member{{ID: 0xa1, Name: "prod-master", Instance: "prod-master", Healthy: true, Leader: true}}}}
	var buf bytes.Buffer
	if err := renderStatusJSON(&buf, obs, "", nil); err != nil {
		t.Fatal(err)
	}
	// The JSON document is a contract (scripts read it): every key and
	// value as it is, in status.json.
	checkGolden(t, "status.json", buf.Bytes())
	buf.Reset()
	// With quorum lost, the restore advice: the newest snapshot and the
	// command, for scripts as the text says it to people.
	lost := &StatusRestore{Snapshot: "20261207T030118.143Z-prod-before-remove-prod-master-x7k-r8.db", Revision: 8,
		Taken: time.Date(2026, 12, 7, 3, 1, 18, 143e6, time.UTC), Command: "kubeha restore -f cluster.yaml"}
	if err := renderStatusJSON(&buf, obs, "", lost); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "status-restore.json", buf.Bytes())
	buf.Reset()
	if err := renderStatusText(&buf, obs, "etcd only"); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "status.txt", buf.Bytes())
}
