package planner

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// Restore: a cluster whose etcd lost quorum (or, with --force, any
// cluster) is started again from one snapshot, as kOps' etcd-manager-ctl
// restore-backup, RKE2's --cluster-reset-restore-path and Talos' bootstrap
// --recover-from do. Every master stops first, so that no kube-apiserver
// writes to an etcd being restored; the snapshot goes to Cloud Storage,
// where the masters' service account alone may read it; every member then
// boots restoring it (its data directory set aside, never deleted), the
// masters whose instances are gone are created again restoring it too, and
// the members start together as one new cluster with a token, hence a
// cluster ID, of its own. The API servers start after their etcd.

// Snapshot is an etcd snapshot in the backups directory.
type Snapshot struct {
	File     string    `json:"file"` // its name in the backups directory
	SHA256   string    `json:"sha256"`
	Revision int64     `json:"revision"`
	Taken    time.Time `json:"taken"`
}

// RestoreSpec is the restore a step carries out: what the masters boot
// with (metadata.Restore) and the snapshot it comes from.
type RestoreSpec struct {
	metadata.Restore
	Snapshot Snapshot `json:"snapshot"`
}

// RestoreOptions tune Restore.
type RestoreOptions struct {
	// Snapshot is the snapshot to restore (kubeha restore --from, or the
	// newest of the cluster's in the backups directory); nil when there is
	// none.
	Snapshot *Snapshot
	// ID names a new restore (the CLI derives it from the time); a restore
	// under way keeps its own.
	ID string
	// Force restores a cluster whose etcd has quorum, after a snapshot of
	// its current data.
	Force bool
	// Bucket is the Cloud Storage bucket the snapshot goes through.
	Bucket string
}

// RestoreUnderway is the restore the cluster's masters boot with, or nil
// (for plan and status too): it is under way while etcd has no quorum.
func RestoreUnderway(obs *state.Cluster) *metadata.Restore {
	for _, in := range obs.Instances {
		if in.Restore != nil {
			return in.Restore
		}
	}
	return nil
}

// restoreNames are the masters of the restored cluster: every master the
// cluster has an instance, disk or internal address of, sorted.
func restoreNames(obs *state.Cluster) []string {
	seen := map[string]bool{}
	for _, in := range obs.Instances {
		seen[in.Name] = true
	}
	for _, d := range obs.Disks {
		seen[strings.TrimSuffix(d.Name, "-pd")] = true
	}
	for _, a := range obs.Addresses {
		seen[strings.TrimSuffix(a.Name, "-internal")] = true
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Restore returns the plan that restores the cluster's etcd from a
// snapshot. Refused while etcd has quorum unless o.Force; a restore under
// way (its masters boot with it and etcd has no quorum yet) is continued
// with its own snapshot, whatever o says.
func Restore(desired *spec.Cluster, observed *state.Cluster, o RestoreOptions) (*Plan, error) {
	name := desired.Metadata.Name
	m := observed.Membership()
	quorum := observed.Etcd.Reachable && m.Voters > 0 && m.HealthyVoters >= m.Quorum
	underway := RestoreUnderway(observed)
	var rs RestoreSpec
	switch {
	case underway != nil && !quorum:
		rs.Restore = *underway
		if o.Snapshot == nil || o.Snapshot.SHA256 != underway.SHA256 {
			return nil, refuse("restore %s of cluster %s is under way from another snapshot (gs://%s/%s): run kubeha restore again without --from to finish it",
				underway.ID, name, underway.Bucket, underway.Object)
		}
		rs.Snapshot = *o.Snapshot
	case o.Snapshot == nil:
		return nil, refuse("cluster %s has no etcd snapshot in its backups directory to restore: name one with --from FILE", name)
	case quorum && !o.Force:
		return nil, refuse("etcd of cluster %s has quorum (%d of %d voters healthy): a restore would undo every change since the snapshot %s (revision %d, %s); "+
			"pass --force to restore anyway (a snapshot of the current data is saved first)", name, m.HealthyVoters, m.Voters,
			o.Snapshot.File, o.Snapshot.Revision, o.Snapshot.Taken.UTC().Format(time.RFC3339))
	default:
		if o.ID == "" || o.Bucket == "" {
			return nil, fmt.Errorf("restore of cluster %s: no restore ID or bucket given", name)
		}
		rs.Snapshot = *o.Snapshot
		rs.Restore = metadata.Restore{ID: o.ID, Bucket: o.Bucket, Object: name + "/" + o.ID + "-" + o.Snapshot.File, SHA256: o.Snapshot.SHA256,
			Token: name + "-" + o.ID, RevisionBump: metadata.RestoreRevisionBump}
	}

	b := newBuilder(desired, observed, Options{})
	save := ""
	if quorum {
		save = b.add(&Step{Action: SaveSnapshot, Target: name, Phase: "restore",
			Reason: "a snapshot of etcd's current data before the restore (--force) undoes every change since " + rs.Snapshot.File})
	}
	// From here on the model is the restored cluster's: none until it forms.
	b.etcdModel = newModel()
	b.lastEtcd = ""
	snap := rs
	upload := b.add(&Step{Action: UploadSnapshot, Target: "gs://" + rs.Bucket + "/" + rs.Object, Phase: "restore", Restore: &snap,
		Reason: fmt.Sprintf("the snapshot %s (revision %d, taken %s) goes where the masters' service account alone may read it",
			rs.Snapshot.File, rs.Snapshot.Revision, rs.Snapshot.Taken.UTC().Format(time.RFC3339))}, save)

	names := restoreNames(observed)
	for _, n := range names {
		b.used[n] = true
	}
	zones := map[string]string{}
	for _, r := range b.replicas {
		zones[r.name] = r.zone
	}
	for _, d := range observed.Disks {
		if n := strings.TrimSuffix(d.Name, "-pd"); zones[n] == "" {
			zones[n] = d.Zone
		}
	}
	for len(names) < desired.Spec.Masters.Replicas {
		zone := b.zoneFor("")
		n := b.newName(zone, len(names) == 0)
		names = append(names, n)
		zones[n] = zone
		b.replicas = append(b.replicas, &replica{name: n, zone: zone})
	}
	slices.Sort(names)

	// Every master that runs stops first: nothing writes to etcd while it
	// is restored. A master already booting this restore is not stopped.
	var stops []string
	instances := map[string]*state.Instance{}
	for _, in := range observed.Instances {
		instances[in.Name] = in
		if in.Status == "TERMINATED" || in.Status == "STOPPING" || in.Restore != nil && in.Restore.ID == rs.ID {
			continue
		}
		stops = append(stops, b.add(&Step{Action: StopInstance, Target: in.Name, Zone: in.Zone, Replica: in.Name, Phase: "restore",
			Reason: "stop its kube-apiserver and etcd member: nothing may write to an etcd being restored"}, save))
	}

	// Every member's restored cluster names every member's address: they
	// are reserved (or kept) before any member boots.
	addrs, disks := map[string]string{}, map[string]string{}
	for _, n := range names {
		if zones[n] == "" {
			// Only its internal address is left, which is regional.
			zones[n] = b.zoneFor("")
			b.replicas = append(b.replicas, &replica{name: n, zone: zones[n]})
		}
		if instances[n] == nil {
			addrs[n], disks[n] = b.reserve(n, zones[n])
		}
	}
	before := append([]string{upload}, stops...)
	for _, n := range names {
		before = append(before, addrs[n])
	}
	var starts []string
	for _, n := range names {
		zone, phase := zones[n], "replica "+n
		snap := rs
		if in := instances[n]; in != nil {
			if in.Restore != nil && in.Restore.ID == rs.ID && in.Status == "RUNNING" {
				continue // it boots this restore already
			}
			starts = append(starts, b.add(&Step{Action: RestoreMember, Target: n, Zone: in.Zone, Replica: n, Phase: phase, Members: names, Restore: &snap,
				Reason: fmt.Sprintf("boot again restoring %s: its data directory is set aside, and its member starts in the restored cluster of %s",
					rs.Snapshot.File, strings.Join(names, ", "))}, before...))
			continue
		}
		inst := &InstanceSpec{Name: n, Zone: zone, InternalAddress: spec.InternalAddressName(n), Disk: spec.DiskName(n), Config: b.config(),
			ClusterState: metadata.StateNew, InitialCluster: names, Restore: &snap}
		starts = append(starts, b.add(&Step{Action: CreateInstance, Target: n, Zone: zone, Replica: n, Phase: phase, Instance: inst,
			Reason: fmt.Sprintf("its instance is gone: create it again, restoring %s into the restored cluster of %s", rs.Snapshot.File, strings.Join(names, ", "))},
			append([]string{disks[n], b.staticStep, b.saStep}, before...)...))
	}

	form := b.add(&Step{Action: FormCluster, Target: spec.MasterName(name), Members: names, Phase: "etcd",
		Reason: fmt.Sprintf("the restored etcd cluster forms once a quorum (%d of %d) of its members run: wait for it, then take the apply lock",
			state.Quorum(len(names)), len(names))}, append(starts, b.fwEtcd)...)
	inPool := map[string]bool{}
	if tp := observed.TargetPool; tp != nil {
		for _, n := range tp.Instances {
			inPool[n] = true
		}
		// The entry of a master made again in its own zone names it again.
		for _, l := range tp.Dangling {
			if n := path.Base(l); zones[n] != "" && strings.HasSuffix(l, "/zones/"+zones[n]+"/instances/"+n) {
				inPool[n] = true
			}
		}
	}
	var pooled []string
	for _, n := range names {
		if b.lb && !inPool[n] {
			pooled = append(pooled, b.add(&Step{Action: AddToPool, Target: spec.MasterName(name), Replica: n, Zone: zones[n], Phase: "replica " + n,
				Reason: "serve the API behind the load balancer"}, form))
		}
	}
	snap = rs
	b.add(&Step{Action: DeleteRestoreSnapshot, Target: "gs://" + rs.Bucket + "/" + rs.Object, Phase: "restore", Restore: &snap,
		Reason: "every member restored it: the copy in Cloud Storage goes, with any of an earlier restore cut short (the snapshot stays in the backups directory)"},
		append(append([]string{form}, starts...), pooled...)...)
	if b.err != nil {
		return nil, b.err
	}
	p := b.finish()
	p.Warnings = append(p.Warnings, fmt.Sprintf("restore %s: etcd goes back to revision %d of %s (%s); every change after it is lost, and the revision moves on by %d so that watches start over",
		rs.ID, rs.Snapshot.Revision, rs.Snapshot.Taken.UTC().Format(time.RFC3339), rs.Snapshot.File, rs.RevisionBump))
	return p, nil
}
