package planner

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// The model of a bootstrap of several members: etcd forms a cluster, whose
// ID derives from its static initial cluster, once a quorum of the members
// of one initial cluster run; a member started with another initial cluster
// would form (or try to form) a second cluster of the same name, which the
// model fails on.

// clusterID is the ID etcd derives from an initial cluster's members.
func clusterID(initial string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(initial))
	return h.Sum64()
}

// initialOf is the initial cluster a member of names boots with: each name
// and the peer URL on its reserved address.
func (m *model) initialOf(names []string) string {
	var parts []string
	for _, n := range names {
		ip := ""
		for _, a := range m.c.Addresses {
			if a.Name == spec.InternalAddressName(n) {
				ip = a.Address
			}
		}
		if ip == "" {
			m.fail("member %s of a new cluster has no reserved address", n)
		}
		parts = append(parts, n+"=https://"+ip+":2380")
	}
	return strings.Join(parts, ",")
}

// bootMember starts a member of a static initial cluster of names.
func (m *model) bootMember(s *Step, in *state.Instance, names []string) {
	c := m.c
	in.InitialCluster = m.initialOf(names)
	id := clusterID(in.InitialCluster)
	if c.Etcd.Reachable && len(c.Etcd.Members) > 0 {
		if c.Etcd.ClusterID != id {
			m.fail("step %s starts %s with initial cluster %s: a second etcd cluster beside %x", s.ID, in.Name, in.InitialCluster, c.Etcd.ClusterID)
		}
		// A late member of a formed cluster joins it (it never started, so
		// the cluster expects it).
		mem := m.member("", 0)
		for _, x := range c.Etcd.Members {
			if x.Name == in.Name {
				mem = x
			}
		}
		if mem == nil {
			m.fail("step %s starts %s, which the formed cluster no longer has as a member", s.ID, in.Name)
		}
		mem.Instance, mem.Healthy, mem.Unstarted, mem.Error = in.Name, true, false, ""
		return
	}
	running := 0
	for _, x := range c.Instances {
		if x.InitialCluster == in.InitialCluster {
			running++
		} else if x.ClusterState == "new" && len(strings.Split(x.InitialCluster, ",")) > 1 {
			m.fail("step %s starts %s with initial cluster %s while %s boots %s: two clusters of one name", s.ID, in.Name, in.InitialCluster, x.Name, x.InitialCluster)
		}
	}
	if running < state.Quorum(len(names)) {
		c.Etcd.Error = "no quorum yet"
		return
	}
	// A quorum runs: the cluster forms, with every member of the initial
	// cluster; those not running have not started.
	c.Etcd = state.Etcd{Reachable: true, ClusterID: id}
	for _, n := range names {
		m.nextID++
		mem := &state.Member{ID: m.nextID, Name: n, Unstarted: true, Error: "not started"}
		if x := m.instance(n); x != nil {
			mem.Instance, mem.Healthy, mem.Unstarted, mem.Error = n, true, false, ""
		}
		c.Etcd.Members = append(c.Etcd.Members, mem)
	}
	c.Etcd.Members[slices.IndexFunc(c.Etcd.Members, func(x *state.Member) bool { return x.Healthy })].Leader = true
}

// runAnyOrder carries out plan p's steps in a random order that respects
// every dependency (as the executor runs them at once), stopping after
// stop steps (-1: all). A form-etcd-cluster waits for the quorum it needs,
// as the executor's does.
func runAnyOrder(m *model, p *Plan, r *rand.Rand, stop int) {
	done := map[string]bool{}
	for n := 0; n != stop && len(done) < len(p.Steps); n++ {
		var ready []*Step
		for _, s := range p.Steps {
			if done[s.ID] {
				continue
			}
			ok := !slices.ContainsFunc(s.DependsOn, func(d string) bool { return !done[d] })
			if ok && s.Action == FormCluster {
				ok = m.c.Etcd.Reachable && len(m.c.Etcd.Members) > 0
			}
			if ok {
				ready = append(ready, s)
			}
		}
		if len(ready) == 0 {
			m.fail("no step of the plan can run, %d of %d done:\n%s", len(done), len(p.Steps), Format(p))
		}
		s := ready[r.IntN(len(ready))]
		m.anyOrder = true
		m.apply(p, s)
		done[s.ID] = true
	}
	m.anyOrder = false
}

// TestBootstrapInterruptedAnywhere bootstraps 3, 5 and 7 masters, runs the
// first apply's steps in any order the dependencies allow, stops it after
// any number of steps, and plans and applies again until no change is left:
// every member ends in the one cluster the first plan began (no second
// cluster of the same name), whatever was done before the interruption.
func TestBootstrapInterruptedAnywhere(t *testing.T) {
	cases, completed, replaced := 0, 0, 0
	for _, n := range []int{3, 5, 7} {
		for i := 0; i < 300; i++ {
			r := rand.New(rand.NewPCG(uint64(i), uint64(n)))
			sp := &spec.Cluster{APIVersion: spec.APIVersion, Kind: spec.Kind, Metadata: spec.Metadata{Name: "prod"},
				Spec: spec.ClusterSpec{GCE: spec.GCE{Project: "p", Region: "europe-west1"}, MultiZone: true}}
			sp.Spec.Masters.Replicas = n
			sp.Spec.Masters.Zones = []string{"europe-west1-b", "europe-west1-c", "europe-west1-d"}
			spec.SetDefaults(sp)
			obs := &state.Cluster{Name: "prod", Project: "p", Region: "europe-west1"}
			m := &model{t: t, sp: sp, c: obs, nextIP: 100, nextID: 0x1000}
			p, err := Compute(sp, m.c)
			if err != nil {
				t.Fatalf("n=%d case %d: %v", n, i, err)
			}
			runAnyOrder(m, p, r, r.IntN(len(p.Steps)+1))
			for round := 0; ; round++ {
				if round == 4 {
					t.Fatalf("n=%d case %d: no convergence after 4 rounds:\n%s", n, i, Format(p))
				}
				if p, err = Compute(sp, m.c); err != nil {
					t.Fatalf("n=%d case %d round %d: %v\nobserved: %s", n, i, round, err, mustJSON(m.c))
				}
				if p.NoChanges {
					break
				}
				checkPlan(t, p)
				for _, s := range p.Steps {
					if s.Action == FormCluster {
						completed++
						break
					}
					if s.Action == RemoveMember {
						replaced++
						break
					}
				}
				runAnyOrder(m, p, r, -1)
			}
			m.converged()
			for _, in := range m.c.Instances {
				if in.ClusterState == "new" && clusterID(in.InitialCluster) != m.c.Etcd.ClusterID {
					t.Fatalf("n=%d case %d: %s boots initial cluster %s, not the cluster's (%x): %s", n, i, in.Name, in.InitialCluster, m.c.Etcd.ClusterID, fmt.Sprint(m.c.Etcd.Members))
				}
			}
			cases++
		}
	}
	t.Logf("%d bootstraps interrupted anywhere and resumed, each converged to one cluster: %d resumed a cluster not yet formed, %d replaced members that never started", cases, completed, replaced)
	if completed < cases/10 || replaced < cases/10 {
		t.Errorf("the interruptions hit too few half-bootstrapped clusters to test much")
	}
}
