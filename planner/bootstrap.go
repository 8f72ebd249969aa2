package planner

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// Bootstrap: a new cluster of several masters is created as one. Every
// address, disk and instance is created at once and every member starts
// with the same static initial cluster (etcd's --initial-cluster-state
// new), as kOps' etcd-manager does once its peers are up; the cluster forms
// as soon as a quorum of them runs. Only membership changes of a running
// cluster go one at a time, and a new cluster has none.

// bootstrapAll plans a new cluster of n members (n >= 3) created together.
func (b *builder) bootstrapAll(n int) {
	type newMember struct{ name, zone, disk string }
	var all []newMember
	var names, addrs []string
	for i := 0; i < n; i++ {
		zone := b.zoneFor("")
		name := b.newName(zone, i == 0)
		addr, disk := b.reserve(name, zone)
		all = append(all, newMember{name: name, zone: zone, disk: disk})
		names, addrs = append(names, name), append(addrs, addr)
		// Counted now, so that zoneFor spreads the rest.
		b.replicas = append(b.replicas, &replica{name: name, zone: zone})
	}
	b.replicas = b.replicas[:len(b.replicas)-n]
	creates := make([]string, n)
	for i, m := range all {
		inst := &InstanceSpec{Name: m.name, Zone: m.zone, InternalAddress: spec.InternalAddressName(m.name), Disk: spec.DiskName(m.name),
			Config: b.config(), ClusterState: metadata.StateNew, InitialCluster: names, StartAfter: slices.Clone(names[:i])}
		// Every member's address is in every member's initial cluster; the
		// static IP is in its certificates. The etcd firewall is needed
		// only once the members talk: the wait for the quorum waits for it.
		deps := append([]string{m.disk, b.staticStep}, addrs...)
		creates[i] = b.add(&Step{Action: CreateInstance, Target: m.name, Zone: m.zone, Replica: m.name, Phase: "replica " + m.name, Instance: inst,
			Reason: fmt.Sprintf("bootstrap: member %d of %d of a new etcd cluster, started with the others", i+1, n)}, deps...)
	}
	form := b.form(names, append(addrs, b.fwEtcd)...)
	for i, m := range all {
		b.joined(m.name, m.zone, form, false, creates[i])
	}
}

// form plans the wait for a new cluster's quorum.
func (b *builder) form(names []string, deps ...string) string {
	return b.add(&Step{Action: FormCluster, Target: spec.MasterName(b.spec.Metadata.Name), Members: names, Phase: "etcd",
		Reason: fmt.Sprintf("the new etcd cluster forms once a quorum (%d of %d) of its members run: wait for it, then take the apply lock",
			state.Quorum(len(names)), len(names))}, deps...)
}

// initialMember is a member of a new cluster's static initial cluster.
type initialMember struct{ name, ip string }

// parseInitialCluster reads etcd's --initial-cluster ("name=peerURL,...").
func parseInitialCluster(s string) ([]initialMember, error) {
	var out []initialMember
	for _, part := range strings.Split(s, ",") {
		name, peer, ok := strings.Cut(part, "=")
		u, err := url.Parse(peer)
		if !ok || err != nil || u.Hostname() == "" {
			return nil, fmt.Errorf("initial cluster entry %q is not name=peerURL", part)
		}
		out = append(out, initialMember{name: name, ip: u.Hostname()})
	}
	return out, nil
}

// halfBootstrapped recognises a new cluster whose bootstrap was interrupted
// before it could form: etcd does not answer, every master boots the same
// static initial cluster of several members (state new), fewer than a
// quorum of those members have an instance, so no quorum can ever have run,
// and none is in the target pool (a bootstrap adds its masters to the pool
// only once the cluster formed). It holds no data: etcd never committed
// anything beyond its bootstrap membership. ok is false when the
// observation is something else; problem, when not empty, says why such a
// cluster cannot be completed.
func halfBootstrapped(obs *state.Cluster) (members []initialMember, ok bool, problem string) {
	if obs.Etcd.Reachable || len(obs.Instances) == 0 {
		return nil, false, ""
	}
	initial := obs.Instances[0].InitialCluster
	for _, in := range obs.Instances {
		if in.ClusterState != metadata.StateNew || in.InitialCluster != initial || initial == "" {
			return nil, false, ""
		}
	}
	members, err := parseInitialCluster(initial)
	if err != nil || len(members) < 3 {
		return nil, false, ""
	}
	have := 0
	for _, in := range obs.Instances {
		if !slices.ContainsFunc(members, func(m initialMember) bool { return m.name == in.Name }) {
			return nil, false, ""
		}
		have++
	}
	if have >= state.Quorum(len(members)) || obs.TargetPool != nil && len(obs.TargetPool.Instances) > 0 {
		return nil, false, "" // it may have formed: etcd is still booting, or has lost quorum
	}
	for _, m := range members {
		var addr *state.Address
		for _, a := range obs.Addresses {
			if a.Name == spec.InternalAddressName(m.name) {
				addr = a
			}
		}
		if addr == nil || addr.Address != m.ip {
			return members, true, fmt.Sprintf("the new etcd cluster of %s never formed (%d of its %d members were created), and the internal address %s of member %s is no longer %s: no member holds data yet, so delete the masters of cluster %s (kubeha destroy) and apply again",
				obs.Name, have, len(members), spec.InternalAddressName(m.name), m.name, m.ip, obs.Name)
		}
	}
	return members, true, ""
}

// halfBootstrappedAny says the cluster is a bootstrap that never formed,
// whether or not it can be completed.
func halfBootstrappedAny(obs *state.Cluster) bool {
	_, ok, _ := halfBootstrapped(obs)
	return ok
}

// completeBootstrap finishes a bootstrap that was interrupted before its
// cluster formed: the members without an instance are created with the same
// initial cluster, so that every member is of the one cluster the first
// ones expect (a member of another initial cluster would form a second
// cluster of the same name). Completed rather than started over: nothing
// is lost either way, and completing keeps the VMs already booted.
func (b *builder) completeBootstrap(members []initialMember) {
	var names []string
	for _, m := range members {
		names = append(names, m.name)
		b.keep[m.name] = true
	}
	creates := map[string]string{}
	zones := map[string]string{}
	for _, m := range members {
		if r := b.replicaNamed(m.name); r != nil {
			zones[m.name] = r.zone
			continue
		}
		disk, zone := "", ""
		for _, d := range b.obs.Disks {
			if d.Name == spec.DiskName(m.name) {
				zone = d.Zone
			}
		}
		if zone == "" {
			zone = b.zoneFor("")
			disk = b.createDisk(m.name, zone)
		}
		zones[m.name] = zone
		inst := &InstanceSpec{Name: m.name, Zone: zone, InternalAddress: spec.InternalAddressName(m.name), Disk: spec.DiskName(m.name),
			Config: b.config(), ClusterState: metadata.StateNew, InitialCluster: names}
		creates[m.name] = b.add(&Step{Action: CreateInstance, Target: m.name, Zone: zone, Replica: m.name, Phase: "replica " + m.name, Instance: inst,
			Reason: "complete the bootstrap an earlier apply began: a member of the new etcd cluster, which never formed (it holds no data yet)"},
			disk, b.staticStep)
		b.replicas = append(b.replicas, &replica{name: m.name, zone: zone})
	}
	form := b.form(names, b.fwEtcd)
	for _, m := range members {
		if id := creates[m.name]; id != "" {
			b.replicas = slices.DeleteFunc(b.replicas, func(r *replica) bool { return r.name == m.name && r.obs == nil })
			b.joined(m.name, zones[m.name], form, false, id)
			continue
		}
		r := b.replicaNamed(m.name)
		r.voter, r.healthy = true, true
		if b.lb && !r.inPool {
			b.add(&Step{Action: AddToPool, Target: spec.MasterName(b.spec.Metadata.Name), Replica: r.name, Zone: r.zone, Phase: "replica " + r.name,
				Reason: "serve the API behind the load balancer"}, form, b.poolStep)
			r.inPool = true
		}
	}
}

// replicaNamed is the kept replica of that name, or nil.
func (b *builder) replicaNamed(name string) *replica {
	for _, r := range b.kept() {
		if r.name == name {
			return r
		}
	}
	return nil
}
