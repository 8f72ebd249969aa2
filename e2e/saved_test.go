package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/planner/planfile"
)

// TestSavedPlanIsCheckedStepByStep: a saved plan is applied only if its
// steps are exactly those planned now. Plan files edited as someone might
// (each saved with a valid checksum, as a deliberate edit would be), one
// edited by hand (checksum not updated) and another cluster's plan are
// refused, naming what differs, and nothing is written: not the cluster,
// not the health record. The plan as saved then applies.
func TestSavedPlanIsCheckedStepByStep(t *testing.T) {
	t.Parallel()
	c, _ := appliedCluster(t, "saved", 3, false)
	c.write(1, false)
	planPath := filepath.Join(c.dir, "plan.json")
	if r := c.kubeha("plan", "-f", c.spec, "--out", planPath); r.code != 0 {
		t.Fatalf("plan --out: %+v", r)
	}

	read := func() *planner.Saved {
		s, err := planfile.Read(planPath)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	orig := read()
	index := func(s *planner.Saved, a planner.Action) int {
		return slices.IndexFunc(s.Plan.Steps, func(st *planner.Step) bool { return st.Action == a })
	}
	removed := orig.Plan.Steps[index(orig, planner.DeleteInstance)].Target
	kept := ""
	for _, r := range c.status().Replicas {
		deleted := slices.ContainsFunc(orig.Plan.Steps, func(st *planner.Step) bool {
			return st.Action == planner.DeleteInstance && st.Target == r.Name
		})
		if !deleted {
			kept = r.Name // the master the scale-down keeps
		}
	}
	edited := func(name string, f func(s *planner.Saved)) string {
		s := read()
		f(s)
		path := filepath.Join(c.dir, name+".json")
		if err := planfile.Write(path, s); err != nil {
			t.Fatal(err)
		}
		return path
	}
	type refusal struct {
		name, path string
		args       []string
		want       string
	}
	cases := []refusal{
		{name: "step removed", path: edited("removed", func(s *planner.Saved) {
			i := index(s, planner.RemoveMember)
			s.Plan.Steps = slices.Delete(s.Plan.Steps, i, i+1)
		}), want: "in a plan made now"},
		{name: "targets renamed", path: edited("renamed", func(s *planner.Saved) {
			s.Plan.Steps[index(s, planner.DeleteInstance)].Target = kept
			s.Plan.Steps[index(s, planner.DeleteDisk)].Target = kept + "-pd"
		}), want: "is delete-instance " + kept + " in the saved plan and delete-instance " + removed + " in a plan made now"},
		{name: "dependency changed", path: edited("deps", func(s *planner.Saved) {
			s.Plan.Steps[index(s, planner.DeleteInstance)].DependsOn = nil
		}), want: "first difference: dependsOn"},
		{name: "step added", path: edited("added", func(s *planner.Saved) {
			extra := *s.Plan.Steps[index(s, planner.DeleteDisk)]
			extra.ID, extra.Target = "99", kept+"-pd"
			s.Plan.Steps = append(s.Plan.Steps, &extra)
		}), want: "the saved plan has " + itoa(len(orig.Plan.Steps)+1) + " steps, and a plan made now has " + itoa(len(orig.Plan.Steps))},
	}
	// Edited by hand: the checksum no longer matches.
	raw, _ := os.ReadFile(planPath)
	handEdited := filepath.Join(c.dir, "hand.json")
	if err := os.WriteFile(handEdited, bytes.Replace(raw, []byte(`"target": "`+removed+`"`), []byte(`"target": "`+kept+`"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, refusal{name: "edited by hand", path: handEdited, want: "does not match its checksum"})
	// Another cluster's plan, applied to this cluster's spec.
	otherDir := t.TempDir()
	otherSpec := filepath.Join(otherDir, "cluster.yaml")
	data, _ := os.ReadFile(c.spec)
	if err := os.WriteFile(otherSpec, bytes.ReplaceAll(data, []byte("name: saved"), []byte("name: other")), 0o644); err != nil {
		t.Fatal(err)
	}
	otherPlan := filepath.Join(otherDir, "plan.json")
	if r := c.kubeha("plan", "-f", otherSpec, "--out", otherPlan); r.code != 0 {
		t.Fatalf("plan of the other cluster: %+v", r)
	}
	cases = append(cases, refusal{name: "another cluster's plan", path: otherPlan, args: []string{"-f", c.spec}, want: "the plan is of cluster other, and " + c.spec + " is cluster saved"})

	healthPath := filepath.Join(c.dir, "pki", "health-saved.json")
	healthBefore, err := os.ReadFile(healthPath)
	if err != nil {
		t.Fatal(err)
	}
	healthInfo, _ := os.Stat(healthPath)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.kubeha(append(append([]string{"apply"}, tc.args...), tc.path)...)
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("apply of a plan with %s: exit %d, want the error to say %q:\n%s%s", tc.name, r.code, tc.want, r.stdout, r.stderr)
			}
			if strings.Contains(r.stdout, " ...\n") {
				t.Fatalf("a step ran:\n%s", r.stdout)
			}
			got, _ := os.ReadFile(healthPath)
			info, _ := os.Stat(healthPath)
			if !bytes.Equal(got, healthBefore) || !info.ModTime().Equal(healthInfo.ModTime()) {
				t.Fatal("the health record was written before the plan was accepted")
			}
			s := c.status() // (status records health too)
			if s.Etcd.Voters != 3 || s.Etcd.HealthyVoters != 3 || len(s.Replicas) != 3 {
				t.Fatalf("the cluster changed: %+v", s.Etcd)
			}
			healthBefore, _ = os.ReadFile(healthPath)
			healthInfo, _ = os.Stat(healthPath)
		})
	}
	if _, err := os.Stat(filepath.Join(otherDir, "pki")); err == nil {
		t.Error("the other cluster's PKI was created by a refused apply")
	}

	// The plan as saved applies, and the cluster converges.
	if r := c.kubeha("apply", planPath); r.code != 0 {
		t.Fatalf("apply of the saved plan: %+v", r)
	}
	c.converged(1)
}

func itoa(n int) string { return strconv.Itoa(n) }
