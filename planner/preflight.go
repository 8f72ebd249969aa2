package planner

import (
	"fmt"
	"strings"
	"time"

	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// Preflight: what no plan can do safely is refused before any pass runs.

// preflight refuses what no plan can do safely.
func preflight(desired *spec.Cluster, observed *state.Cluster, opts Options) error {
	n := desired.Spec.Masters.Replicas
	if n < 1 || n > 7 || n%2 == 0 {
		return refuse("spec.masters.replicas is %d: kubeha manages 1, 3, 5 or 7 masters (an even count adds no fault tolerance, and two is worse than one)", n)
	}
	if len(observed.OtherRegions) > 0 {
		return refuse("cluster %s has masters or its static IP in %s, but the spec says region %s: kubeha does not move a control plane between regions. Set spec.gce.region back, or create a new cluster in %s and migrate to it",
			observed.Name, strings.Join(observed.OtherRegions, ", "), desired.Spec.GCE.Region, desired.Spec.GCE.Region)
	}
	if err := networkPreflight(desired, observed.Network); err != nil {
		return err
	}
	if id := observed.Identity; id != nil && !id.Managed && !id.Exists {
		return refuse("spec.masters.serviceAccount: %s does not exist in project %s: create it, or leave the field out and kubeha manages one (%s)",
			id.ServiceAccount, desired.Spec.GCE.Project, spec.MasterServiceAccountID(desired.Metadata.Name))
	}
	names := map[string]bool{}
	var all []string
	for _, in := range observed.Instances {
		names[in.Name] = true
		all = append(all, in.Name)
	}
	for _, r := range opts.Replace {
		if !names[r] {
			return refuse("--replace %s: there is no master of cluster %s by that name (masters: %s)", r, observed.Name, orNone(all))
		}
	}
	if err := versionPreflight(desired, observed); err != nil {
		return err
	}
	if observed.Etcd.CertError != "" {
		return refuse("%s", observed.Etcd.CertError)
	}
	if observed.LostQuorum() {
		var bad []string
		for _, m := range observed.Voters() {
			if !m.Healthy {
				bad = append(bad, fmt.Sprintf("%s (%s)", memberLabel(m), m.Error))
			}
		}
		ms := observed.Membership()
		return refuse("etcd of cluster %s has lost quorum: %d of %d voters are healthy and quorum is %d. Unhealthy: %s. No membership change is safe without quorum: bring the members back, or %s",
			observed.Name, ms.HealthyVoters, ms.Voters, ms.Quorum, strings.Join(bad, ", "), restoreAdvice(opts.NewestSnapshot))
	}
	running := 0
	for _, in := range observed.Instances {
		if in.Status == "RUNNING" {
			running++
		}
	}
	if r := RestoreUnderway(observed); r != nil && (!observed.Etcd.Reachable || observed.LostQuorum()) {
		return refuse("restore %s of cluster %s from gs://%s/%s is under way and its etcd has not formed yet: finish it with kubeha restore -f cluster.yaml",
			r.ID, observed.Name, r.Bucket, r.Object)
	}
	if _, ok, problem := halfBootstrapped(observed); ok {
		if problem != "" {
			return refuse("%s", problem)
		}
		return nil
	}
	if !observed.Etcd.Reachable && running > 0 {
		return refuse("etcd of cluster %s does not answer on any running master (%s). If the masters are still booting, plan again in a minute; if etcd has lost its data or quorum, %s",
			observed.Name, observed.Etcd.Error, restoreAdvice(opts.NewestSnapshot))
	}
	return nil
}

// restoreAdvice says how to restore etcd, naming the newest snapshot.
func restoreAdvice(newest *Snapshot) string {
	if newest == nil {
		return "restore it from a snapshot with kubeha restore -f cluster.yaml --from FILE (kubeha saves them in backups/ beside the PKI; this cluster has none there)"
	}
	return fmt.Sprintf("restore it from its newest snapshot, %s (revision %d, taken %s), with kubeha restore -f cluster.yaml",
		newest.File, newest.Revision, newest.Taken.UTC().Format(time.RFC3339))
}

// networkPreflight refuses a network or subnetwork the masters cannot be
// created on, naming the field, before anything is created: a missing
// network, a custom-mode network without spec.gce.subnetwork, a missing
// subnetwork, or one of another network.
func networkPreflight(desired *spec.Cluster, n *state.Network) error {
	if n == nil {
		return nil // not observed
	}
	g := desired.Spec.GCE
	switch {
	case !n.Exists:
		return refuse("spec.gce.network: network %s does not exist: create it (gcloud compute networks create) or name an existing one", n.Path)
	case n.Subnetwork == "" && !n.AutoMode:
		return refuse("spec.gce.subnetwork: required, as network %s is a custom-mode VPC (it has no subnetwork of its own in %s): name the subnetwork of region %s the masters use",
			n.Path, g.Region, g.Region)
	case n.Subnetwork != "" && n.SubnetworkOf == "":
		return refuse("spec.gce.subnetwork: subnetwork %s does not exist: create it (gcloud compute networks subnets create) or name an existing one", n.Subnetwork)
	case n.Subnetwork != "" && n.SubnetworkOf != n.Path:
		return refuse("spec.gce.subnetwork: subnetwork %s belongs to network %s, not to spec.gce.network %s: name a subnetwork of %s, or set spec.gce.network to %s",
			n.Subnetwork, n.SubnetworkOf, n.Path, n.Path, n.SubnetworkOf)
	}
	return nil
}
