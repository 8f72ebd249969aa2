package planner

import (
	"slices"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/spec"
)

// checkPlan checks properties every plan has: dependencies point backwards
// and exist, etcd steps form one chain, no step names a non-master.
func checkPlan(t *testing.T, p *Plan) {
	t.Helper()
	ids := map[string]int{}
	lastEtcd := ""
	restore := slices.ContainsFunc(p.Steps, func(s *Step) bool { return s.Action == UploadSnapshot })
	for i, s := range p.Steps {
		ids[s.ID] = i
		// The version skew policy: API servers at most one minor apart.
		var minors []spec.Minor
		for _, r := range s.Runs {
			if m, ok := spec.MinorOf(r.Kubernetes); ok {
				minors = append(minors, m)
			}
		}
		if len(minors) > 1 && minors[0].Next().Less(minors[len(minors)-1]) {
			t.Errorf("step %s leaves masters more than one minor version apart: %s", s.ID, RunsString(s.Runs))
		}
		for _, d := range s.DependsOn {
			if j, ok := ids[d]; !ok || j >= i {
				t.Errorf("step %s depends on %s, which is not an earlier step", s.ID, d)
			}
		}
		// A disk move's stop and its VM made again take a voter down and
		// bring it back: they run one at a time with membership changes.
		moves := !restore && (s.Action == DeleteInstance && s.KeepDisk || s.Action == CreateInstance && s.Instance.MoveDisk)
		if s.Action.Etcd() || moves {
			if lastEtcd != "" && !dependsOn(p, s, lastEtcd) {
				t.Errorf("etcd step %s does not wait for etcd step %s: two membership changes could run at once", s.ID, lastEtcd)
			}
			lastEtcd = s.ID
		}
		if s.Etcd.Voters > 0 && s.Etcd.HealthyVoters < s.Etcd.Quorum {
			t.Errorf("step %s leaves %d healthy voters of %d (quorum %d)", s.ID, s.Etcd.HealthyVoters, s.Etcd.Voters, s.Etcd.Quorum)
		}
		if !strings.HasPrefix(s.Target, tCluster+"-master") && !strings.HasPrefix(s.Target, "member-") && !(s.Action == SaveSnapshot && s.Target == tCluster) &&
			!(s.Restore != nil && s.Target == "gs://"+s.Restore.Bucket+"/"+s.Restore.Object && strings.HasPrefix(s.Restore.Object, tCluster+"/")) &&
			!(s.Action == DeleteRestoreBucket && strings.HasPrefix(s.Target, "gs://") && strings.HasSuffix(s.Target, "-"+tCluster+"-kubeha")) {
			t.Errorf("step %s targets %s, not a master resource of %s", s.ID, s.Target, tCluster)
		}
	}
}

// dependsOn says step s waits, directly or not, for step id.
func dependsOn(p *Plan, s *Step, id string) bool {
	byID := map[string]*Step{}
	for _, x := range p.Steps {
		byID[x.ID] = x
	}
	seen := map[string]bool{}
	var walk func(*Step) bool
	walk = func(x *Step) bool {
		for _, d := range x.DependsOn {
			if d == id {
				return true
			}
			if !seen[d] {
				seen[d] = true
				if walk(byID[d]) {
					return true
				}
			}
		}
		return false
	}
	return walk(s)
}
