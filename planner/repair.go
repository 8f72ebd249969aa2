package planner

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// Repair: stopped masters, adoption, orphans, leaks, drift, replacements
// and certificate renewals.

// startStopped plans the start of stopped masters when none runs: etcd
// cannot be observed until one does, so the plan stops there and the next
// plan sees the rest.
func (b *builder) startStopped() bool {
	running := 0
	for _, r := range b.replicas {
		if r.obs.Instance.Status == "RUNNING" {
			running++
		}
	}
	stopped := false
	for _, r := range b.replicas {
		if r.obs.Instance.Status != "TERMINATED" {
			continue
		}
		if running > 0 && (r.member == nil || b.replacing(r) || b.diskMove(r) != "") {
			continue // it is replaced or cleaned up below instead
		}
		b.add(&Step{Action: StartInstance, Target: r.name, Zone: r.zone, Replica: r.name, Phase: "replica " + r.name,
			Reason: "the master is stopped (TERMINATED): start it so its etcd member runs again"})
		r.healthy = r.voter
		stopped = true
	}
	if running == 0 && stopped {
		b.warnings = append(b.warnings, "no master was running, so etcd could not be observed: apply this plan, then plan again to see what else is needed")
		return true
	}
	return false
}

// adopt labels the masters of this cluster that lack kubeha's labels: named
// as kubeha names them, reachable through etcd's client port with kubeha's
// CA (made by hand, or labels removed out of band). A cluster built by
// kube-up is not such a cluster: its etcd listens on 127.0.0.1 with its own
// CA and names members etcd-<host>, so kubeha cannot observe it.
func (b *builder) adopt() {
	for _, r := range b.replicas {
		if r.obs.Instance.Labels[spec.LabelCluster] == "" {
			b.add(&Step{Action: LabelInstance, Target: r.name, Zone: r.zone, Replica: r.name, Phase: "replica " + r.name,
				Reason: fmt.Sprintf("adopt a master kubeha did not create: label it %s=%s, %s=%s", spec.LabelCluster, b.spec.Metadata.Name, spec.LabelRole, spec.RoleMaster)})
		}
		if r.obs.Instance.Config == nil && r.member != nil {
			b.warnings = append(b.warnings, fmt.Sprintf("master %s was not created by kubeha, so its settings are unknown: it is kept as it is; run apply --replace %s to recreate it from the spec", r.name, r.name))
		}
	}
}

// orphans removes members with no instance: learners left by an
// interrupted add, and voters whose VM is gone.
func (b *builder) orphans() {
	orphans := b.obs.Orphans().Members
	sort.SliceStable(orphans, func(i, j int) bool { return orphans[i].IsLearner && !orphans[j].IsLearner })
	for _, m := range orphans {
		if b.isVanished(m) {
			continue // its VM is made again on its disk
		}
		kind := "voter"
		if m.IsLearner {
			kind = "learner"
		}
		reason := fmt.Sprintf("orphaned %s: etcd member %s has no master instance", kind, memberLabel(m))
		if m.IsLearner && !m.Started() {
			reason = fmt.Sprintf("orphaned learner %x: added for a master that was never created (an interrupted apply)", m.ID)
		}
		b.orphanRemovals = append(b.orphanRemovals, b.add(&Step{Action: RemoveMember, Target: memberLabel(m), MemberID: m.ID, Replica: memberKey(m), Phase: "cleanup", Reason: reason}))
	}
}

// leaks deletes disks and releases addresses that belong to no master and
// to no step of this plan.
func (b *builder) leaks() {
	orph := b.obs.Orphans()
	orph.Disks = slices.DeleteFunc(orph.Disks, func(d *state.Disk) bool { return b.keep[strings.TrimSuffix(d.Name, "-pd")] })
	orph.Addresses = slices.DeleteFunc(orph.Addresses, func(a *state.Address) bool { return b.keep[strings.TrimSuffix(a.Name, "-internal")] })
	for _, d := range orph.Disks {
		b.add(&Step{Action: DeleteDisk, Target: d.Name, Zone: d.Zone, Phase: "cleanup",
			Reason: "leaked: an etcd data disk with no master (left by an interrupted apply or a manual delete)"}, b.orphanRemovals...)
	}
	for _, a := range orph.Addresses {
		b.add(&Step{Action: ReleaseAddress, Target: a.Name, Phase: "cleanup",
			Reason: "leaked: an internal address with no master"}, b.orphanRemovals...)
	}
	if id := b.obs.Identity; id != nil {
		for _, name := range id.Secrets {
			if !b.hasReplica(strings.TrimSuffix(name, "-keys")) {
				b.add(&Step{Action: DeleteSecret, Target: name, Phase: "cleanup",
					Reason: "leaked: the private keys of a master that no longer exists"}, b.orphanRemovals...)
			}
		}
	}
	if n := b.obs.Nodes; n != nil {
		for _, name := range n.Masters {
			if !b.hasReplica(name) {
				b.add(&Step{Action: DeleteNode, Target: name, Phase: "cleanup",
					Reason: "leaked: the Node of a master that no longer exists (its removal was interrupted)"}, b.orphanRemovals...)
			}
		}
	}
	if b.obs.TargetPool != nil {
		for _, l := range b.obs.TargetPool.Dangling {
			if slices.ContainsFunc(b.vanished, func(v vanished) bool { return v.name == path.Base(l) }) {
				continue // its VM is made again on its disk: the entry is its own
			}
			b.add(&Step{Action: RemoveFromPool, Target: spec.MasterName(b.spec.Metadata.Name), PoolLink: l, Phase: "load balancer",
				Reason: "the pool names an instance that no longer exists: " + path.Base(l)})
		}
	}
}

// replacing says a replica is to be replaced: named by --replace, or a
// failed member and remediation is on and it has been unhealthy long enough.
func (b *builder) replacing(r *replica) bool {
	for _, n := range b.opts.Replace {
		if n == r.name {
			return true
		}
	}
	if r.healthy || !r.voter || !b.spec.Spec.Remediation.ReplaceUnhealthy {
		return false
	}
	return r.member.UnhealthyFor >= b.spec.Spec.Remediation.UnhealthyAfter.Duration ||
		r.obs.Instance.Status == "TERMINATED"
}

// drift says why a healthy replica differs from the spec, or "". It
// has no side effect.
func (b *builder) drift(r *replica) string {
	want := b.config()
	if !inZones(r.zone, b.spec.Spec.Masters.Zones) {
		return fmt.Sprintf("zone %s is no longer in spec.masters.zones", r.zone)
	}
	got := r.obs.Instance.Config
	if got == nil {
		return ""
	}
	var diffs []string
	if got.MachineType != want.MachineType || r.obs.Instance.MachineType != "" && r.obs.Instance.MachineType != want.MachineType {
		diffs = append(diffs, fmt.Sprintf("machine type %s → %s", cmp.Or(r.obs.Instance.MachineType, got.MachineType), want.MachineType))
	}
	if got.Image != want.Image {
		diffs = append(diffs, fmt.Sprintf("image %s → %s", got.Image, want.Image))
	}
	if got.QuorumRead != want.QuorumRead {
		diffs = append(diffs, fmt.Sprintf("etcd quorum read %t → %t", got.QuorumRead, want.QuorumRead))
	}
	if got.ClientPort != want.ClientPort || got.PeerPort != want.PeerPort {
		diffs = append(diffs, fmt.Sprintf("etcd ports %d/%d → %d/%d", got.ClientPort, got.PeerPort, want.ClientPort, want.PeerPort))
	}
	if got.MultiZone != want.MultiZone {
		diffs = append(diffs, fmt.Sprintf("multiZone %t → %t", got.MultiZone, want.MultiZone))
	}
	if got.KubernetesVersion != want.KubernetesVersion {
		diffs = append(diffs, fmt.Sprintf("Kubernetes %s → %s", cmp.Or(got.KubernetesVersion, "none (etcd only)"), want.KubernetesVersion))
	}
	return strings.Join(diffs, ", ")
}

// diskWarning says when a master's etcd disk is not the size the spec
// asks: disks are not resized in place, so that is no drift to replace.
func (b *builder) diskWarning(r *replica) string {
	got, want := r.obs.Instance.Config, b.spec.Spec.Masters
	switch {
	case got == nil:
		return ""
	case got.DiskSizeGb != int64(want.DiskSizeGb):
		return fmt.Sprintf("master %s has a %d GB etcd disk and the spec says %d GB: disks are not resized in place; run apply --replace %s to recreate it", r.name, got.DiskSizeGb, want.DiskSizeGb, r.name)
	case got.DiskType != "" && got.DiskType != want.DiskType:
		return fmt.Sprintf("master %s has a %s etcd disk and the spec says %s: a disk's type does not change in place; run apply --replace %s to recreate it", r.name, got.DiskType, want.DiskType, r.name)
	}
	return ""
}

// RenewBefore is how long before expiry certificates are renewed.
const RenewBefore = 30 * 24 * time.Hour

// renewals renews the certificates of masters that keep running when they
// expire within RenewBefore or no longer name the master's internal IP or
// the static IP. A renewal restarts the member, so it runs only while the
// cluster can spare one member (a single master restarts regardless, with a
// warning: it has no other).
func (b *builder) renewals() {
	static := ""
	if b.obs.StaticIP != nil && b.staticStep == "" {
		static = b.obs.StaticIP.Address
	}
	for _, r := range b.kept() {
		if r.obs == nil || r.obs.Instance.Certs == nil || !r.voter || !r.healthy {
			continue
		}
		certs := r.obs.Instance.Certs
		var why []string
		if !b.obs.ObservedAt.IsZero() && b.obs.ObservedAt.Add(RenewBefore).After(certs.NotAfter) {
			why = append(why, "they expire "+certs.NotAfter.UTC().Format("2006-01-02"))
		}
		if !slices.Contains(certs.PeerIPs, r.obs.Instance.InternalIP) {
			why = append(why, "the etcd certificate does not name the master's IP "+r.obs.Instance.InternalIP)
		}
		if static != "" && !slices.Contains(certs.APIServerIPs, static) {
			why = append(why, "the API server certificate does not name the static IP "+static)
		}
		if certs.KeysInMetadata {
			why = append(why, "its private keys are in instance metadata, which anyone with compute.instances.get reads: they move to Secret Manager")
		}
		if certs.NoNodeCredentials {
			why = append(why, "it has no kubelet certificate nor the cluster signing key (a master of an earlier kubeha): it registers no Node and signs no kubelet's certificate")
		}
		if len(why) == 0 {
			continue
		}
		m := b.membership()
		if m.Voters >= 2 && m.HealthyVoters-1 < m.Quorum {
			b.warnings = append(b.warnings, fmt.Sprintf("the certificates of %s need renewal (%s), but restarting it now would lose quorum: it waits until more members are healthy", r.name, strings.Join(why, "; ")))
			continue
		}
		if m.Voters == 1 {
			b.warnings = append(b.warnings, fmt.Sprintf("renewing the certificates of the single master %s restarts it: the API is unavailable for about a minute", r.name))
		}
		b.add(&Step{Action: RenewCertificates, Target: r.name, Zone: r.zone, Replica: r.name, MemberID: memberID(r), Phase: "replica " + r.name,
			Reason: "renew its certificates and restart it: " + strings.Join(why, "; ")}, b.lastStepOf(r.name))
	}
}

// addonUpdates writes the add-ons of every running master that keeps
// running whose add-ons are not the spec's (spec.addons changed, or a
// master of an earlier kubeha). Nothing restarts, so it needs no quorum
// check; a master renewed or created by this plan gets them as it boots.
func (b *builder) addonUpdates() {
	if b.opts.Addons == "" {
		return
	}
	for _, r := range b.kept() {
		if r.obs == nil || r.obs.Instance.Config == nil || r.obs.Instance.Status != "RUNNING" || r.obs.Instance.Config.Addons == b.opts.Addons {
			continue
		}
		if slices.ContainsFunc(b.steps, func(s *Step) bool { return s.Action == RenewCertificates && s.Target == r.name }) {
			continue
		}
		why := "spec.addons changed"
		if r.obs.Instance.Config.Addons == "" {
			why = "its add-ons were set by an earlier kubeha"
		}
		b.add(&Step{Action: UpdateAddons, Target: r.name, Zone: r.zone, Replica: r.name, Phase: "replica " + r.name,
			Reason: "write its add-ons (" + why + "); the add-on manager applies them, nothing restarts"})
	}
}
