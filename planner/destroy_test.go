package planner

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kubeha/kubeha/spec"
)

// TestDestroyLeavesNothing: for every generated state, destroy (stopped
// anywhere once and run again, as after a kill) leaves nothing of the
// cluster: no master, disk, address, static IP, load balancer, key
// secret, kubeha-made service account or kubeha firewall; it touches only the cluster's resources; no data disk goes
// without a final snapshot unless --no-snapshot; and it is refused only
// when etcd cannot give that snapshot.
func TestDestroyLeavesNothing(t *testing.T) {
	const cases = 1000
	refused, deleted := 0, 0
	for i := 0; i < cases; i++ {
		r := rand.New(rand.NewPCG(uint64(i), 11))
		sp, obs, _ := genState(r)
		o := DestroyOptions{NoSnapshot: i%4 == 0}
		p, err := Destroy(sp, obs, o)
		if err != nil {
			ms := obs.Membership()
			canSnapshot := obs.Etcd.Reachable && ms.Voters > 0 && ms.HealthyVoters >= ms.Quorum
			if !errors.Is(err, ErrRefused) || o.NoSnapshot || canSnapshot || len(obs.Disks) == 0 {
				t.Fatalf("case %d: refused %v (no-snapshot %t, etcd %s reachable %t, %d disks)", i, err, o.NoSnapshot, MembershipString(ms), obs.Etcd.Reachable, len(obs.Disks))
			}
			refused++
			continue
		}
		t.Run(fmt.Sprintf("case%d", i), func(t *testing.T) {
			m := &model{t: t, sp: sp, c: clone(obs), destroying: true}
			checkDestroy(t, p, o)
			stop := r.IntN(len(p.Steps) + 1)
			for _, s := range p.Steps[:stop] {
				m.apply(p, s)
			}
			deleted += stop
			// Killed after stop steps: observe again and destroy again. The
			// snapshot the first run saved stands when no master is left.
			if m.saved {
				o.FinalSnapshot = "backups/before-destroy.db"
			}
			again, err := Destroy(sp, m.c, o)
			if err != nil {
				t.Fatalf("destroy again after %d of %d steps: %v", stop, len(p.Steps), err)
			}
			checkDestroy(t, again, o)
			for _, s := range again.Steps {
				m.apply(again, s)
			}
			deleted += len(again.Steps)
			c := m.c
			if len(c.Instances)+len(c.Disks)+len(c.Addresses) > 0 || c.StaticIP != nil || c.ForwardingRule != nil || c.TargetPool != nil || c.HealthCheck != nil {
				t.Fatalf("left behind: %s", mustJSON(c))
			}
			if id := c.Identity; id != nil && (id.Exists || len(id.Secrets) > 0) {
				t.Fatalf("left the service account (%t) or key secrets %v", id.Exists, id.Secrets)
			}
			for _, fw := range c.Firewalls {
				if slices.Contains(spec.AllResourceNames(sp.Metadata.Name), fw.Name) {
					t.Fatalf("left kubeha's firewall %s", fw.Name)
				}
			}
			if last, _ := Destroy(sp, m.c, o); !last.NoChanges {
				t.Fatalf("a third destroy plans more:\n%s", Format(last))
			}
		})
		if t.Failed() {
			t.Logf("case %d: observed %s", i, mustJSON(obs))
			return
		}
	}
	t.Logf("%d cases: %d refused (no final snapshot possible), %d deletions carried out", cases, refused, deleted)
	if refused > cases/2 {
		t.Errorf("%d of %d refused: the generator tests too little", refused, cases)
	}
}

// checkDestroy checks a destroy plan's order: dependencies point back, the
// snapshot comes first, and every disk deletion follows it (or the plan
// says why there is none).
func checkDestroy(t *testing.T, p *Plan, o DestroyOptions) {
	t.Helper()
	ids := map[string]bool{}
	snap := ""
	for i, s := range p.Steps {
		for _, d := range s.DependsOn {
			if !ids[d] {
				t.Fatalf("step %s depends on %s, which is not an earlier step", s.ID, d)
			}
		}
		ids[s.ID] = true
		switch s.Action {
		case SaveSnapshot:
			if i != 0 {
				t.Fatalf("the final snapshot is step %d, not the first", i+1)
			}
			snap = s.ID
		case DeleteDisk:
			if snap == "" && !o.NoSnapshot && o.FinalSnapshot == "" {
				t.Fatalf("step %s deletes a data disk with no final snapshot", s.ID)
			}
			if !s.FinalSnapshot {
				t.Fatalf("step %s: a destroy's disk deletion not marked as covered by its final snapshot", s.ID)
			}
		}
		if snap != "" && s.ID != snap && !slices.Contains(s.DependsOn, snap) {
			t.Fatalf("step %s does not wait for the final snapshot", s.ID)
		}
	}
}
