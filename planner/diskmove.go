package planner

import (
	"fmt"
	"net/url"
	"path"
	"slices"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// Disk moves (spec.masters.replaceBy: disk): a master's VM is made again
// on its etcd data disk, with its name and internal address, so that its
// etcd member restarts with its data and member ID. Nothing is copied and
// no member is added or removed; the member is down while the VM is
// swapped, so a move of a healthy master is refused when the others are
// not a quorum, and moves run one at a time.

// vanished is a master whose VM is gone (deleted out of band, or by a disk
// move cut short) while its member is a voter and its disk and internal
// address are left: with replaceBy disk, its VM is made again on them.
type vanished struct {
	name, zone string
	member     *state.Member
}

// findVanished lists the voters of observed whose VM is gone and whose
// disk (attached to nothing) and internal address (with the member's peer
// IP) are left, when desired moves disks.
func findVanished(desired *spec.Cluster, observed *state.Cluster) []vanished {
	if desired.Spec.Masters.ReplaceBy != spec.ReplaceByDisk {
		return nil
	}
	var out []vanished
	for _, m := range observed.Orphans().Members {
		if m.IsLearner || !m.Started() || slices.ContainsFunc(observed.Instances, func(in *state.Instance) bool { return in.Name == m.Name }) {
			continue
		}
		disk := findDisk(observed, spec.DiskName(m.Name))
		addr := findAddress(observed, spec.InternalAddressName(m.Name))
		if disk == nil || len(disk.Users) > 0 || addr == nil || !peerOn(m, addr.Address) {
			continue
		}
		out = append(out, vanished{name: m.Name, zone: disk.Zone, member: m})
	}
	return out
}

func findDisk(c *state.Cluster, name string) *state.Disk {
	for _, d := range c.Disks {
		if d.Name == name {
			return d
		}
	}
	return nil
}

func findAddress(c *state.Cluster, name string) *state.Address {
	for _, a := range c.Addresses {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// peerOn says the member's peer URLs name ip (or it has none to say).
func peerOn(m *state.Member, ip string) bool {
	if len(m.PeerURLs) == 0 {
		return true
	}
	for _, u := range m.PeerURLs {
		if p, err := url.Parse(u); err == nil && p.Hostname() == ip {
			return true
		}
	}
	return false
}

// diskDetached says the replica's VM is there without its disk (detached
// by hand, or with gcloud), the disk attached to nothing and the member a
// voter: the VM cannot run the member, so it is made again on the disk
// whatever replaceBy says.
func diskDetached(r *replica) bool {
	o := r.obs
	return o != nil && o.Instance != nil && !o.Instance.HasDataDisk && o.Disk != nil && len(o.Disk.Users) == 0 &&
		r.member != nil && !r.member.IsLearner && r.member.Started()
}

// diskMove says why the replica's VM is replaced by moving its disk in
// this plan, or "" when it is not (it is kept, or replaced by member).
func (b *builder) diskMove(r *replica) string {
	if r.obs == nil || r.removed || r.member == nil || r.learner || !r.member.Started() {
		return ""
	}
	if diskDetached(r) {
		return "its disk is detached from it"
	}
	if b.spec.Spec.Masters.ReplaceBy != spec.ReplaceByDisk || !b.diskMovable(r) {
		return ""
	}
	status := r.obs.Instance.Status
	switch {
	case b.replacing(r) && r.healthy:
		return "named by --replace"
	case b.replacing(r) && status != "RUNNING":
		// The VM failed and its disk is intact. A member unhealthy on a
		// running VM is replaced by member instead: its data is suspect,
		// and a successor copies the leader's.
		return "its VM is " + status
	case b.replacing(r):
		return ""
	case r.healthy || status == "TERMINATED":
		return b.drift(r)
	}
	return ""
}

// diskMovable says the replica's disk can go to its next VM: the zone is
// still one of the spec's (a disk is zonal), the disk is kubeha's, of the
// spec's size and type, attached to no other VM, and its address is there.
func (b *builder) diskMovable(r *replica) bool {
	got, want := r.obs.Instance.Config, b.spec.Spec.Masters
	d := r.obs.Disk
	return inZones(r.zone, want.Zones) && got != nil && got.DiskSizeGb == int64(want.DiskSizeGb) && (got.DiskType == "" || got.DiskType == want.DiskType) &&
		d != nil && !slices.ContainsFunc(d.Users, func(u string) bool { return u != r.name }) && r.obs.Address != nil
}

// moveDisk plans the replacement of a master's VM on its own disk: hand
// etcd leadership away, take it out of the target pool, delete the VM
// after a snapshot, keeping its disk (GCE stops the guest, then detaches
// the disks it does not delete: a stop and a detach of their own would
// add theirs to the time the member is down), make it again on the disk
// with the same name and internal address, and put it back in the pool.
// Each move waits for the one before it and for every membership change
// planned so far.
func (b *builder) moveDisk(r *replica, why string) {
	phase := "replica " + r.name
	if r.healthy {
		if m := b.membership(); m.Voters >= 1 && m.HealthyVoters-1 < m.Quorum {
			b.err = refuse("replacing %s by moving its disk (spec.masters.replaceBy: disk; %s) stops its etcd member, which would leave %d of %d voters healthy, below quorum %d: "+
				"set spec.masters.replaceBy: member (a successor joins before it is removed), or make the unhealthy masters healthy first", r.name, why, m.HealthyVoters-1, m.Voters, m.Quorum)
			return
		}
	}
	deps := []string{b.lastAdd, b.lastMove, b.lastEtcd}
	if r.voter && r.healthy && b.leader == r.name {
		if to := b.leaderSuccessor(r); to != "" {
			deps = append(deps, b.add(&Step{Action: MoveLeader, Target: r.name, Zone: r.zone, Replica: r.name, LeaderTo: to, MemberID: memberID(r), Phase: phase,
				Reason: "its member stops while its disk moves: hand leadership to " + to + " first"}, deps...))
		}
	}
	if r.inPool {
		deps = append(deps, b.add(&Step{Action: RemoveFromPool, Target: spec.MasterName(b.spec.Metadata.Name), Replica: r.name, Zone: r.zone, Phase: phase,
			Reason: "stop sending API traffic to it while its VM is replaced"}, append(deps, b.poolStep)...))
		r.inPool = false
	}
	reason := "replace its VM by moving its disk (" + why + "): delete it after a snapshot, keeping its etcd data disk and internal address for the new VM; its etcd member is down until the new VM runs it"
	if !r.healthy {
		reason = "replace its VM by moving its disk (" + why + "): delete it, keeping its etcd data disk and internal address for the new VM"
	}
	del := b.add(&Step{Action: DeleteInstance, Target: r.name, Zone: r.zone, Replica: r.name, MemberID: memberID(r), KeepDisk: true, Phase: phase, Reason: reason}, deps...)
	r.removed = true
	b.recreate(r.name, r.zone, memberID(r), "made again on its etcd data disk ("+why+"): its member restarts with its data and ID, nothing is copied", del)
}

// recreate plans a master's VM on its existing disk and internal address,
// returning once its member is a healthy voter again, then puts it in the
// target pool.
func (b *builder) recreate(name, zone string, id uint64, reason string, deps ...string) {
	inst := &InstanceSpec{Name: name, Zone: zone, InternalAddress: spec.InternalAddressName(name), Disk: spec.DiskName(name),
		Config: b.config(), ClusterState: metadata.StateExisting, MoveDisk: true}
	vm := b.add(&Step{Action: CreateInstance, Target: name, Zone: zone, Replica: name, MemberID: id, Phase: "replica " + name, Instance: inst, Reason: reason},
		append(deps, b.fwEtcd, b.lastMove, b.lastEtcd)...)
	if vm == "" {
		return
	}
	b.lastEtcd = vm // later membership changes wait for the member to be back
	b.keep[name] = true
	if b.danglingEntry(name) {
		// The pool still names the VM that went (GCE keeps an entry of a
		// deleted instance): it is this VM's again once it runs.
		b.replicas = append(b.replicas, &replica{name: name, zone: zone, voter: true, healthy: true, inPool: true})
		b.lastAdd = vm
	} else {
		b.joined(name, zone, vm, false)
	}
	b.lastMove = b.lastAdd
}

// danglingEntry says the target pool names an instance of this name that
// does not exist.
func (b *builder) danglingEntry(name string) bool {
	return b.obs.TargetPool != nil && slices.ContainsFunc(b.obs.TargetPool.Dangling, func(l string) bool { return path.Base(l) == name })
}

// recreateVanished makes the VMs of vanished masters again on their disks.
// Their members are down already, so nothing is stopped and quorum only
// grows.
func (b *builder) recreateVanished() {
	for _, v := range b.vanished {
		b.recreate(v.name, v.zone, v.member.ID, fmt.Sprintf("its VM is gone and its etcd member %x, disk and internal address are left (spec.masters.replaceBy: disk): make the VM again on them; the member restarts with its data and ID", v.member.ID))
	}
}

// leaderSuccessor is the healthy voter leadership goes to when r's member
// stops: the first by name.
func (b *builder) leaderSuccessor(r *replica) string {
	to := ""
	for _, o := range b.kept() {
		if o != r && o.voter && o.healthy && (to == "" || o.name < to) {
			to = o.name
		}
	}
	return to
}
