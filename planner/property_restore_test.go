package planner

import (
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// The model of a restore: the snapshot must be in Cloud Storage before a
// member boots restoring it; no master of the cluster that lost quorum may
// run while a member restores (nothing writes to an etcd being restored);
// the restored members form one cluster, whose ID derives from the
// restore's token, once a quorum of them run; the copy in Cloud Storage
// goes only once every member restored it.

func restoredID(token string) uint64 {
	h := fnv.New64a()
	h.Write([]byte("restored/" + token))
	return h.Sum64()
}

func (m *model) applyRestore(s *Step) {
	c := m.c
	switch s.Action {
	case UploadSnapshot:
		m.uploaded[s.Restore.ID] = true
	case StopInstance:
		in := m.instance(s.Replica)
		if in == nil || in.Status != "RUNNING" {
			m.fail("step %s stops %s, which does not run", s.ID, s.Replica)
		}
		in.Status = "TERMINATED"
		if mem := m.member(s.Replica, 0); mem != nil && (in.Restore == nil || c.Etcd.ClusterID != restoredID(in.Restore.Token)) {
			mem.Healthy, mem.Error = false, "stopped"
		}
	case RestoreMember:
		in := m.instance(s.Replica)
		if in == nil || in.Status != "TERMINATED" {
			m.fail("step %s boots %s restoring, but it is not stopped", s.ID, s.Replica)
		}
		in.Status = "RUNNING"
		m.bootRestored(s, in, s.Members, s.Restore)
	case DeleteRestoreSnapshot:
		for _, n := range restoreNamesOf(c, s.Restore.ID) {
			if in := m.instance(n); in == nil || in.Status != "RUNNING" {
				m.fail("step %s deletes the snapshot before %s restored it", s.ID, n)
			}
		}
		m.uploaded[s.Restore.ID] = false
	}
}

// restoreNamesOf are the masters booting a restore.
func restoreNamesOf(c *state.Cluster, id string) []string {
	var out []string
	for _, in := range c.Instances {
		if in.Restore != nil && in.Restore.ID == id {
			out = append(out, in.Name)
		}
	}
	return out
}

// bootRestored starts a member restoring rs, in the restored cluster of
// names.
func (m *model) bootRestored(s *Step, in *state.Instance, names []string, rs *RestoreSpec) {
	c := m.c
	if !m.uploaded[rs.ID] {
		m.fail("step %s boots %s restoring %s before the snapshot is in Cloud Storage", s.ID, in.Name, rs.ID)
	}
	for _, x := range c.Instances {
		if x != in && x.Status == "RUNNING" && (x.Restore == nil || x.Restore.ID != rs.ID) {
			m.fail("step %s boots %s restoring while %s runs the cluster before the restore", s.ID, in.Name, x.Name)
		}
	}
	r := rs.Restore
	in.Restore, in.ClusterState, in.InitialCluster = &r, metadata.StateNew, m.initialOf(names)
	id := restoredID(rs.Token)
	if c.Etcd.Reachable && c.Etcd.ClusterID == id {
		mem := m.member("", 0)
		for _, x := range c.Etcd.Members {
			if x.Name == in.Name {
				mem = x
			}
		}
		if mem == nil {
			m.fail("step %s starts %s, which the restored cluster does not have", s.ID, in.Name)
		}
		mem.Instance, mem.Healthy, mem.Unstarted, mem.Error = in.Name, true, false, ""
		return
	}
	running := 0
	for _, x := range c.Instances {
		if x.Status == "RUNNING" && x.Restore != nil && x.Restore.ID == rs.ID {
			running++
		}
	}
	if running < state.Quorum(len(names)) {
		c.Etcd = state.Etcd{Error: "no quorum yet"}
		return
	}
	c.Etcd = state.Etcd{Reachable: true, ClusterID: id}
	for _, n := range names {
		m.nextID++
		mem := &state.Member{ID: m.nextID, Name: n, Unstarted: true, Error: "not started"}
		if x := m.instance(n); x != nil && x.Status == "RUNNING" && x.Restore != nil && x.Restore.ID == rs.ID {
			mem.Instance, mem.Healthy, mem.Unstarted, mem.Error = n, true, false, ""
		}
		c.Etcd.Members = append(c.Etcd.Members, mem)
	}
	c.Etcd.Members[slices.IndexFunc(c.Etcd.Members, func(x *state.Member) bool { return x.Healthy })].Leader = true
}

func (m *model) formedRestore(s *Step) {
	if len(s.Members) == 0 || !m.c.Etcd.Reachable {
		m.fail("step %s waits for the restored cluster, which has not formed", s.ID)
	}
	for _, in := range m.c.Instances {
		if in.Restore != nil && m.c.Etcd.ClusterID == restoredID(in.Restore.Token) {
			return
		}
	}
	m.fail("step %s waits for the restored cluster, but etcd is another cluster", s.ID)
}

// TestRestoreInterruptedAnywhere: a cluster of 3 or 5 loses a quorum of
// its masters, some with their disks and addresses; a restore runs in any
// order its dependencies allow and stops after any number of steps; then
// restore again while it has not formed, and apply until no change is
// left. Every master ends in the restored cluster, having restored the
// one snapshot, and the model never saw a master of the cluster before
// run while one restored, a member boot before the snapshot was uploaded,
// or the upload deleted before every member restored it.
func TestRestoreInterruptedAnywhere(t *testing.T) {
	cases, resumed := 0, 0
	for _, n := range []int{3, 5} {
		for i := 0; i < 250; i++ {
			r := rand.New(rand.NewPCG(uint64(i), uint64(n)+100))
			sp := &spec.Cluster{APIVersion: spec.APIVersion, Kind: spec.Kind, Metadata: spec.Metadata{Name: "prod"},
				Spec: spec.ClusterSpec{GCE: spec.GCE{Project: "p", Region: "europe-west1"}, MultiZone: true}}
			sp.Spec.Masters.Replicas = n
			sp.Spec.Masters.Zones = []string{"europe-west1-b", "europe-west1-c", "europe-west1-d"}
			spec.SetDefaults(sp)
			m := &model{t: t, sp: sp, c: &state.Cluster{Name: "prod", Project: "p", Region: "europe-west1"}, nextIP: 100, nextID: 0x1000, uploaded: map[string]bool{}}
			for round := 0; ; round++ {
				p, err := Compute(sp, m.c)
				if err != nil || round == 4 {
					t.Fatalf("n=%d case %d: the cluster before the loss: %v", n, i, err)
				}
				if p.NoChanges {
					break
				}
				runAnyOrder(m, p, r, -1)
			}
			// A quorum of masters is lost; some lose their disk and address too.
			lost := r.Perm(n)[:state.Quorum(n)]
			for _, k := range lost {
				in := m.c.Instances[k]
				in.Status = "GONE"
				if tp := m.c.TargetPool; tp != nil && slices.Contains(tp.Instances, in.Name) {
					tp.Instances = slices.DeleteFunc(tp.Instances, func(x string) bool { return x == in.Name })
					tp.Dangling = append(tp.Dangling, "projects/p/zones/"+in.Zone+"/instances/"+in.Name)
				}
				if r.IntN(2) == 0 {
					m.c.Disks = slices.DeleteFunc(m.c.Disks, func(d *state.Disk) bool { return d.Name == spec.DiskName(in.Name) })
					if r.IntN(2) == 0 {
						m.c.Addresses = slices.DeleteFunc(m.c.Addresses, func(a *state.Address) bool { return a.Name == spec.InternalAddressName(in.Name) })
					}
				}
			}
			m.c.Instances = slices.DeleteFunc(m.c.Instances, func(in *state.Instance) bool { return in.Status == "GONE" })
			for _, d := range m.c.Disks {
				d.Users = slices.DeleteFunc(d.Users, func(u string) bool { return m.instance(u) == nil })
			}
			m.c.Etcd = state.Etcd{Error: "no quorum"}
			m.restoring = true
			opts := RestoreOptions{ID: "r1", Bucket: "p-prod-kubeha", Snapshot: &Snapshot{File: "snap.db", SHA256: "abc", Revision: 7}}
			p, err := Restore(sp, m.c, opts)
			if err != nil {
				t.Fatalf("n=%d case %d: %v\nobserved: %s", n, i, err, mustJSON(m.c))
			}
			runAnyOrder(m, p, r, r.IntN(len(p.Steps)+1))
			for round := 0; ; round++ {
				ms := m.c.Membership()
				if !m.c.Etcd.Reachable || ms.HealthyVoters < ms.Quorum {
					if p, err = Restore(sp, m.c, opts); err != nil {
						t.Fatalf("n=%d case %d round %d: restore again: %v\nobserved: %s", n, i, round, err, mustJSON(m.c))
					}
					resumed++
				} else {
					m.restoring = false
					if p, err = Compute(sp, m.c); err != nil {
						t.Fatalf("n=%d case %d round %d: %v\nobserved: %s", n, i, round, err, mustJSON(m.c))
					}
				}
				if p.NoChanges {
					break
				}
				if round == 5 {
					t.Fatalf("n=%d case %d: no convergence after 5 rounds:\n%s", n, i, Format(p))
				}
				checkPlan(t, p)
				runAnyOrder(m, p, r, -1)
			}
			m.converged()
			for _, in := range m.c.Instances {
				if in.Restore != nil && restoredID(in.Restore.Token) != m.c.Etcd.ClusterID {
					t.Fatalf("n=%d case %d: %s restored into another cluster", n, i, in.Name)
				}
			}
			if m.c.Etcd.ClusterID != restoredID("prod-r1") {
				t.Fatalf("n=%d case %d: the cluster is not the restored one", n, i)
			}
			cases++
		}
	}
	t.Logf("%d restores interrupted anywhere, %d resumed by restore again, each converged to the restored cluster", cases, resumed)
}
