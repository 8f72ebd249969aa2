package planner

import (
	"slices"
	"strconv"
	"strings"

	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// DestroyOptions tune Destroy.
type DestroyOptions struct {
	// NoSnapshot deletes the cluster without a final etcd snapshot when its
	// etcd cannot give one (kubeha destroy --no-snapshot).
	NoSnapshot bool
	// FinalSnapshot is the snapshot a destroy that was interrupted saved
	// (the newest before-destroy snapshot in the backups directory). When
	// etcd cannot give another (its masters half deleted), it stands as the
	// final snapshot, named in the plan's warnings.
	FinalSnapshot string
	// RestoreBucket is the Cloud Storage bucket kubeha's restores of the
	// cluster made (spec.RestoreBucketName), when it exists: it goes with
	// the cluster. "" when there is none.
	RestoreBucket string
}

// Destroy returns the plan that deletes everything of the cluster observed
// holds, as kube-down.sh does: first a final etcd snapshot, then the load
// balancer and the masters (with their etcd members: the whole cluster
// goes, so no member is removed one by one), then their disks, addresses
// and key secrets, the static IP, the masters' service account (when
// kubeha made it), the bucket of its restores and the firewalls. It acts on observed alone,
// whose resources carry this cluster's names and labels, and of the
// firewalls on kubeha's own only: nothing of another cluster is touched.
// Run again after an interruption, it plans what is left.
//
// Without a final snapshot (etcd unreachable or without quorum) it refuses
// while data disks exist, unless o.NoSnapshot or o.FinalSnapshot.
func Destroy(desired *spec.Cluster, observed *state.Cluster, o DestroyOptions) (*Plan, error) {
	name := desired.Metadata.Name
	p := &Plan{FormatVersion: FormatVersion, Cluster: name, Project: desired.Spec.GCE.Project, Region: desired.Spec.GCE.Region,
		Steps: []*Step{}, Warnings: []string{}, Before: observed.Membership()}
	add := func(s *Step, deps ...string) string {
		s.ID = strconv.Itoa(len(p.Steps) + 1)
		s.Change = s.Action.Change()
		s.DependsOn = uniq(deps)
		s.Phase = "destroy"
		p.Steps = append(p.Steps, s)
		return s.ID
	}

	snap := ""
	if len(observed.Instances) > 0 || len(observed.Disks) > 0 {
		m := observed.Membership()
		switch {
		case observed.Etcd.Reachable && m.Voters > 0 && m.HealthyVoters >= m.Quorum:
			snap = add(&Step{Action: SaveSnapshot, Target: name, Etcd: m,
				Reason: "a final etcd snapshot, kept in the backups directory beside the PKI, before anything is deleted"})
		case len(observed.Disks) == 0:
			// Masters without data disks hold no etcd data to lose.
		case halfBootstrappedAny(observed):
			p.Warnings = append(p.Warnings, "no final etcd snapshot: the new cluster's etcd never formed (fewer than a quorum of its masters were created), so it holds no data")
		case o.FinalSnapshot != "":
			p.Warnings = append(p.Warnings, "etcd cannot give a final snapshot (a destroy was interrupted after deleting masters): the one it saved stands, "+
				o.FinalSnapshot+"; etcd's changes after it are lost")
		case o.NoSnapshot:
			p.Warnings = append(p.Warnings, "no final etcd snapshot (--no-snapshot): the etcd data on the disks is deleted with them")
		default:
			why := observed.Etcd.Error
			if why == "" {
				why = "it has " + strconv.Itoa(m.HealthyVoters) + " healthy voter(s) of " + strconv.Itoa(m.Voters) + ", quorum " + strconv.Itoa(m.Quorum)
			}
			return nil, refuse("etcd of cluster %s cannot give a final snapshot (%s), and destroying deletes its data disks: "+
				"start its masters (kubeha apply) and destroy again, or pass --no-snapshot to delete the data without one", name, why)
		}
	}

	// The load balancer: the rule, then the pool and its health check.
	rule, pool := "", ""
	if observed.ForwardingRule != nil {
		rule = add(&Step{Action: DeleteForwardingRule, Target: observed.ForwardingRule.Name, Reason: "the cluster is destroyed"}, snap)
	}
	if observed.TargetPool != nil {
		pool = add(&Step{Action: DeleteTargetPool, Target: observed.TargetPool.Name, Reason: "the cluster is destroyed"}, snap, rule)
	}
	if observed.HealthCheck != nil {
		add(&Step{Action: DeleteHealthCheck, Target: observed.HealthCheck.Name, Reason: "the cluster is destroyed"}, snap, pool)
	}

	// The masters, their disks and addresses.
	gone := map[string]string{} // instance -> the step that deletes it
	var masters []string
	for _, in := range observed.Instances {
		id := add(&Step{Action: DeleteInstance, Target: in.Name, Zone: in.Zone, Replica: in.Name,
			Reason: "the cluster is destroyed: its etcd member goes with it"}, snap)
		gone[in.Name] = id
		masters = append(masters, id)
	}
	for _, d := range observed.Disks {
		owner := strings.TrimSuffix(d.Name, "-pd")
		reason := "the master's etcd data disk"
		switch {
		case snap != "":
			reason += ", saved by step " + snap
		case o.FinalSnapshot != "":
			reason += ", saved in " + o.FinalSnapshot
		}
		add(&Step{Action: DeleteDisk, Target: d.Name, Zone: d.Zone, Replica: owner, FinalSnapshot: true, Reason: reason}, snap, gone[owner])
	}
	for _, a := range observed.Addresses {
		owner := strings.TrimSuffix(a.Name, "-internal")
		add(&Step{Action: ReleaseAddress, Target: a.Name, Replica: owner, Reason: "the master's internal address"}, snap, gone[owner])
	}
	if observed.StaticIP != nil {
		// On the single master's access config or on the rule.
		add(&Step{Action: ReleaseAddress, Target: observed.StaticIP.Name, Reason: "the cluster's static IP"}, append([]string{snap, rule}, masters...)...)
	}

	// The masters' keys and, if kubeha made it, their service account.
	if id := observed.Identity; id != nil {
		for _, name := range id.Secrets {
			owner := strings.TrimSuffix(name, "-keys")
			add(&Step{Action: DeleteSecret, Target: name, Replica: owner, Reason: "the master's private keys in Secret Manager"}, snap, gone[owner])
		}
		if id.Managed && id.Exists {
			add(&Step{Action: DeleteServiceAccount, Target: id.ServiceAccount, Reason: "the account kubeha made for the masters"}, append([]string{snap}, masters...)...)
		}
	}

	// The bucket restores handed their snapshots to the masters through.
	if o.RestoreBucket != "" {
		add(&Step{Action: DeleteRestoreBucket, Target: "gs://" + o.RestoreBucket,
			Reason: "the Cloud Storage bucket kubeha restore made for the cluster's snapshots, with any object left in it"}, snap)
	}

	// kubeha's firewalls, last.
	for _, fw := range observed.Firewalls {
		if slices.Contains(spec.AllResourceNames(name), fw.Name) {
			add(&Step{Action: DeleteFirewall, Target: fw.Name, Reason: "the cluster is destroyed"}, append([]string{snap}, masters...)...)
		}
	}

	p.summarize()
	return p, nil
}
