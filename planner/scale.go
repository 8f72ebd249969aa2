package planner

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// Scale: every voter change, additions and removals, one at a time.

// membershipChanges plans every voter change: promotions of pending
// learners, removals of failed and broken replicas, additions, rolling
// replacements and scale-down, with the static IP promoted to a load
// balancer before there are two masters and demoted when one is left.
//
// Order: failed and broken replicas are removed first (that costs no healthy
// voter); then masters are added (a failed master's successor in its own
// zone first); then healthy masters that must be replaced are replaced one
// at a time, successor first, so fault tolerance never drops below what it
// is; the healthy surplus of a scale-down goes last.
func (b *builder) membershipChanges() {
	n := b.spec.Spec.Masters.Replicas
	if members, ok, _ := halfBootstrapped(b.obs); ok {
		b.promoteLB()
		b.completeBootstrap(members)
		return
	}
	// Pending learners whose instance runs: promote them first (etcd allows
	// one learner at a time).
	for _, r := range b.replicas {
		if r.learner && r.obs.Instance.Status == "RUNNING" && !b.replacing(r) && b.staleJoin(r) == "" {
			b.add(&Step{Action: PromoteMember, Target: r.name, Zone: r.zone, Replica: r.name, MemberID: r.member.ID, Phase: "replica " + r.name,
				Reason: "a learner left by an interrupted apply: promote it once it is in sync"})
			r.learner, r.voter, r.healthy, r.promoted = false, true, true, true
		}
	}
	bootstrap := len(b.obs.Etcd.Members) == 0
	var failed, forced, broken, rolling, moves []*replica
	for _, r := range b.replicas {
		if why := b.diskMove(r); why != "" {
			r.driftReason = why
			moves = append(moves, r)
			continue
		}
		switch {
		case r.member == nil || r.learner || r.member.Unstarted && !r.promoted:
			// No member, a learner whose VM is not running, or a member of
			// a new cluster whose VM never started it: start over.
			broken = append(broken, r)
		case b.replacing(r) && r.healthy:
			forced = append(forced, r)
		case b.replacing(r):
			failed = append(failed, r)
		case !r.healthy:
			b.warnings = append(b.warnings, fmt.Sprintf("master %s is unhealthy (%s): it counts against fault tolerance; set spec.remediation.replaceUnhealthy, or run apply --replace %s",
				r.name, cmp.Or(r.member.Error, r.obs.Instance.Status), r.name))
		default:
			if w := b.diskWarning(r); w != "" {
				b.warnings = append(b.warnings, w)
			}
			if why := b.drift(r); why != "" {
				r.driftReason = why
				rolling = append(rolling, r)
			}
		}
	}
	for _, r := range broken {
		why := "the master has no etcd member (an interrupted apply): delete it and start over"
		switch {
		case r.learner && b.staleJoin(r) != "":
			why = b.staleJoin(r)
		case r.learner:
			why = "the master's learner never joined and its VM is not running: delete it and start over"
		case r.member != nil && r.member.Unstarted:
			why = "the master's etcd member never started (its boot failed): it holds no data; delete it and start over"
		}
		b.removeReplica(r, why)
	}
	for _, r := range failed {
		why := fmt.Sprintf("failed: etcd member unhealthy (%s)", cmp.Or(r.member.Error, r.obs.Instance.Status))
		if r.member.UnhealthyFor > 0 {
			why = fmt.Sprintf("failed: etcd member unhealthy for %s (%s)", r.member.UnhealthyFor, cmp.Or(r.member.Error, r.obs.Instance.Status))
		}
		b.removeReplica(r, why)
	}
	// Scale down: pick the surplus in the documented priority order.
	var victims []*replica
	for len(b.kept())-len(victims) > n {
		victims = append(victims, b.pickVictim(victims))
	}
	var healthyVictims []*replica
	for _, v := range victims {
		if v.healthy {
			healthyVictims = append(healthyVictims, v)
		} else {
			b.removeReplica(v, fmt.Sprintf("scale down to %s: unhealthy masters go first", masters(n)))
		}
	}
	rolling = without(append(forced, rolling...), victims)
	moves = without(moves, victims)
	target := n + len(healthyVictims)
	peak := max(len(b.kept()), target)
	if len(rolling) > 0 {
		peak++
	}
	if peak >= 2 {
		b.promoteLB()
	} else {
		b.singleMasterIP()
	}
	// Masters whose members are down already come back on their disks
	// first: that costs nothing and only adds healthy voters.
	b.recreateVanished()
	for _, r := range moves {
		if !r.healthy {
			b.moveDisk(r, r.driftReason)
		}
	}
	if bootstrap && len(b.voters) == 0 && len(b.kept()) < target {
		if target-len(b.kept()) >= 3 {
			b.bootstrapAll(target - len(b.kept()))
		} else {
			b.addReplica(b.zoneFor(""), "bootstrap: the first master, with a new etcd cluster", true, peak)
		}
	}
	var adds []pendingAdd
	for _, r := range failed {
		if len(b.kept())+len(adds) < target {
			adds = append(adds, pendingAdd{prefer: r.zone, reason: fmt.Sprintf("replaces failed master %s in its zone", r.name)})
		}
	}
	for len(b.kept())+len(adds) < target {
		adds = append(adds, pendingAdd{reason: fmt.Sprintf("scale up to %s", masters(n))})
	}
	b.addReplicas(adds, peak)
	for _, r := range rolling {
		reason := cmp.Or(r.driftReason, "named by --replace")
		b.addReplica(b.zoneFor(r.zone), fmt.Sprintf("replaces %s (%s)", r.name, reason), false, peak)
		b.removeReplica(r, "replaced by a new master: "+reason)
	}
	// The leader's disk moves last: leadership is handed away once.
	slices.SortStableFunc(moves, func(x, y *replica) int { return boolInt(x.name == b.leader) - boolInt(y.name == b.leader) })
	for _, r := range moves {
		if r.healthy {
			b.moveDisk(r, r.driftReason)
		}
	}
	for _, v := range healthyVictims {
		b.removeReplica(v, fmt.Sprintf("scale down to %s", masters(n)))
	}
	b.poolDrift()
	if len(b.kept()) == 1 && b.lbAny() {
		b.demoteLB()
	}
}

// pendingAdd is a master to add: in zone prefer when it is listed, else
// where the spread is shortest.
type pendingAdd struct {
	prefer, reason string
}

// addReplica plans one new master (a bootstrap master, or the successor in
// a rolling replacement): see addReplicas.
func (b *builder) addReplica(zone, reason string, first bool, peak int) {
	if first {
		name := b.newName(zone, true)
		addr, disk := b.reserve(name, zone)
		inst := &InstanceSpec{Name: name, Zone: zone, InternalAddress: spec.InternalAddressName(name), Disk: spec.DiskName(name),
			Config: b.config(), ClusterState: metadata.StateNew, StaticIP: peak < 2}
		vm := b.add(&Step{Action: CreateInstance, Target: name, Zone: zone, Replica: name, Phase: "replica " + name, Instance: inst, Reason: reason},
			addr, disk, b.fwEtcd, b.staticStep)
		b.joined(name, zone, vm, inst.StaticIP)
		return
	}
	b.addReplicas([]pendingAdd{{prefer: zone, reason: reason}}, peak)
}

// addReplicas plans new masters. For each: reserve its internal address and
// create its disk (independent GCE work), add its member as a learner, and
// create the VM, which boots with initial-cluster-state=existing. Then, one
// at a time, promote each learner once it is in sync and add it to the
// target pool. Learners do not vote, so up to the cluster's learner limit
// are added before the first promotion and their VMs boot in parallel;
// etcd refuses any member add until the voters have been connected for 5s,
// which a promotion resets, so adding them first saves that wait too.
func (b *builder) addReplicas(adds []pendingAdd, peak int) {
	for len(adds) > 0 {
		n := min(len(adds), max(1, b.learnerLimit()-len(b.learners)))
		type started struct{ name, zone, disk, learner, vm string }
		var batch []started
		for _, a := range adds[:n] {
			zone := b.zoneFor(a.prefer)
			name := b.newName(zone, false)
			addr, disk := b.reserve(name, zone)
			learner := b.add(&Step{Action: AddLearner, Target: name, Zone: zone, Replica: name, Phase: "replica " + name,
				Reason: "join etcd as a non-voting learner before the VM boots: " + a.reason}, addr)
			batch = append(batch, started{name: name, zone: zone, disk: disk, learner: learner})
			// Counted now, so that zoneFor spreads the rest of the batch.
			b.replicas = append(b.replicas, &replica{name: name, zone: zone, learner: true})
		}
		// The VMs are created together once the batch's last learner is in
		// (a VM boots with the member list of that moment, and etcd refuses
		// a member whose list differs from the cluster's). Each
		// create-instance returns when its member runs.
		last := batch[len(batch)-1].learner
		for i, st := range batch {
			inst := &InstanceSpec{Name: st.name, Zone: st.zone, InternalAddress: spec.InternalAddressName(st.name), Disk: spec.DiskName(st.name),
				Config: b.config(), ClusterState: metadata.StateExisting}
			for _, before := range batch[:i] {
				inst.StartAfter = append(inst.StartAfter, before.name)
			}
			batch[i].vm = b.add(&Step{Action: CreateInstance, Target: st.name, Zone: st.zone, Replica: st.name, Phase: "replica " + st.name,
				Instance: inst, Reason: adds[i].reason}, st.disk, st.learner, last, b.fwEtcd)
		}
		for _, st := range batch {
			promote := b.add(&Step{Action: PromoteMember, Target: st.name, Zone: st.zone, Replica: st.name, Phase: "replica " + st.name,
				Reason: "make the learner a voter once it is in sync"}, st.vm)
			b.replicas = slices.DeleteFunc(b.replicas, func(r *replica) bool { return r.name == st.name && r.obs == nil })
			b.joined(st.name, st.zone, promote, false)
		}
		adds = adds[n:]
	}
}

// reserve plans a new master's internal address and disk. Those of its
// name that exist already (made for it by an earlier or a concurrent
// bootstrap: see newBuilder) are used as they are.
func (b *builder) reserve(name, zone string) (addr, disk string) {
	if slices.ContainsFunc(b.obs.Addresses, func(a *state.Address) bool { return a.Name == spec.InternalAddressName(name) }) {
		b.keep[name] = true
	} else {
		addr = b.add(&Step{Action: ReserveAddress, Target: spec.InternalAddressName(name), Replica: name, Phase: "replica " + name,
			Reason: "the internal address etcd peers and certificates name, known before the VM exists"})
	}
	if slices.ContainsFunc(b.obs.Disks, func(d *state.Disk) bool { return d.Name == spec.DiskName(name) }) {
		b.keep[name] = true
	} else {
		disk = b.createDisk(name, zone)
	}
	return addr, disk
}

// createDisk plans a new master's etcd data disk.
func (b *builder) createDisk(name, zone string) string {
	return b.add(&Step{Action: CreateDisk, Target: spec.DiskName(name), Zone: zone, Replica: name, Phase: "replica " + name,
		Reason: fmt.Sprintf("the etcd data disk (%d GB), attached as %s", b.spec.Spec.Masters.DiskSizeGb, spec.DiskDeviceName)})
}

// joined records a new voter and puts it behind the load balancer.
func (b *builder) joined(name, zone, last string, staticIP bool, deps ...string) {
	r := &replica{name: name, zone: zone, voter: true, healthy: true, staticIP: staticIP}
	if b.lb {
		last = b.add(&Step{Action: AddToPool, Target: spec.MasterName(b.spec.Metadata.Name), Replica: name, Zone: zone, Phase: "replica " + name,
			Reason: "serve the API behind the load balancer"}, append(deps, last, b.poolStep)...)
		r.inPool = true
	}
	b.lastAdd = last
	b.replicas = append(b.replicas, r)
}

// removeReplica plans a master's removal: move etcd leadership away if it
// leads, take it out of the target pool, remove its member (after a
// snapshot), delete the VM, then its disk and internal address.
func (b *builder) removeReplica(r *replica, reason string) {
	phase := "replica " + r.name
	deps := []string{b.lastAdd}
	if r.voter && b.leader == r.name {
		if to := b.leaderSuccessor(r); to != "" {
			b.add(&Step{Action: MoveLeader, Target: r.name, Zone: r.zone, Replica: r.name, LeaderTo: to, MemberID: memberID(r), Phase: phase,
				Reason: "the leader is never removed: hand leadership to " + to + " first"})
		}
	}
	if r.inPool {
		deps = append(deps, b.add(&Step{Action: RemoveFromPool, Target: spec.MasterName(b.spec.Metadata.Name), Replica: r.name, Zone: r.zone, Phase: phase,
			Reason: "stop sending API traffic to it: " + reason}, append(deps, b.poolStep)...))
		r.inPool = false
	}
	if r.member != nil || r.obs == nil {
		deps = []string{b.add(&Step{Action: RemoveMember, Target: r.name, Zone: r.zone, Replica: r.name, MemberID: memberID(r), Phase: phase,
			Reason: reason}, deps...)}
	}
	del := b.add(&Step{Action: DeleteInstance, Target: r.name, Zone: r.zone, Replica: r.name, Phase: phase, Reason: reason}, deps...)
	if r.obs == nil || r.obs.Disk != nil {
		b.add(&Step{Action: DeleteDisk, Target: spec.DiskName(r.name), Zone: r.zone, Replica: r.name, Phase: phase,
			Reason: "its etcd data disk (a snapshot is saved first)"}, del)
	}
	if r.obs == nil || r.obs.Address != nil {
		b.add(&Step{Action: ReleaseAddress, Target: spec.InternalAddressName(r.name), Replica: r.name, Phase: phase,
			Reason: "its internal address"}, del)
	}
	if id := b.obs.Identity; id != nil && (r.obs == nil || slices.Contains(id.Secrets, spec.KeysSecretName(r.name))) {
		b.add(&Step{Action: DeleteSecret, Target: spec.KeysSecretName(r.name), Replica: r.name, Phase: phase,
			Reason: "its private keys in Secret Manager"}, del)
	}
	if n := b.obs.Nodes; n != nil && (r.obs == nil || slices.Contains(n.Masters, r.name)) {
		b.add(&Step{Action: DeleteNode, Target: r.name, Replica: r.name, Phase: phase,
			Reason: "its Node in the Kubernetes API, as kube-down deletes the masters' Nodes"}, del)
	}
	r.removed = true
}

// staleJoin says why a learner that never started cannot join: its VM
// boots etcd (state existing) with an initial cluster that is not the
// cluster's membership (a member of it was removed since: an interrupted
// scale-up's other learner, removed as an orphan), which etcd refuses at
// start; "" when it can.
func (b *builder) staleJoin(r *replica) string {
	in := r.obs.Instance
	if !r.learner || r.member == nil || !r.member.Unstarted || in == nil || in.ClusterState != metadata.StateExisting || in.InitialCluster == "" {
		return ""
	}
	initial, err := parseInitialCluster(in.InitialCluster)
	if err != nil {
		return ""
	}
	// Members without an instance (orphans) are removed by this plan: a
	// learner whose VM expects one can no more join than if it were gone.
	peers := map[string]bool{}
	for _, m := range b.obs.Etcd.Members {
		for _, u := range m.PeerURLs {
			if p, err := url.Parse(u); err == nil && m.Instance != "" {
				peers[p.Hostname()] = true
			}
		}
	}
	var gone []string
	for _, m := range initial {
		if !peers[m.ip] {
			gone = append(gone, m.name)
		}
	}
	if len(gone) == 0 && len(initial) == len(b.obs.Etcd.Members) {
		return ""
	}
	return fmt.Sprintf("the master's learner never joined, and its VM boots etcd with an initial cluster that is not the cluster's (it names %s, which the cluster no longer has or removes as an orphan; etcd refuses such a member): delete it and start over",
		orNone(gone))
}

// learnerLimit is how many learners etcd accepts at once: the smallest
// --max-learners of the current members (a master whose settings are unknown
// runs etcd's default, 1), or kubeha's default for a new cluster.
func (b *builder) learnerLimit() int {
	limit := metadata.DefaultMaxLearners
	for _, r := range b.replicas {
		if r.obs == nil || r.removed || r.member == nil {
			continue
		}
		n := 1
		if r.obs.Instance.Config != nil && r.obs.Instance.Config.MaxLearners > 0 {
			n = r.obs.Instance.Config.MaxLearners
		}
		limit = min(limit, n)
	}
	return limit
}
