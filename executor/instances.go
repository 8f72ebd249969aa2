package executor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/pki"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
)

// Instances: what a master boots from, and the steps that create, label,
// readdress and restart one.

// instance reads a master instance, retrying transient errors.
func (x *executor) instance(ctx context.Context, zone, name string) (*compute.Instance, error) {
	return do(ctx, x.gce, "get instance "+name, func() (*compute.Instance, error) {
		return x.o.Compute.Instances.Get(x.project(), zone, name).Context(ctx).Do()
	})
}

// healthCheck is the target pool's legacy HTTP health check: the masters'
// kube-apiserver-healthcheck, asked for the API server's readiness every 2
// s; out of rotation after 3 failures, back after 2 passes.
func (x *executor) healthCheck(name string) *compute.HttpHealthCheck {
	return &compute.HttpHealthCheck{Name: name, Port: metadata.HealthCheckPort, RequestPath: metadata.HealthCheckPath,
		CheckIntervalSec: 2, TimeoutSec: 2, HealthyThreshold: 2, UnhealthyThreshold: 3,
		Description: "kubeha: the API servers of cluster " + x.cluster()}
}

// boot renders what a master boots with, issuing its certificates now. Its
// private keys go to a new version of its secret, which the kubeha-keys
// item names (keys, returned).
func (x *executor) boot(ctx context.Context, name, internalIP, initialCluster, state string, cfg metadata.Config, restore *metadata.Restore, startAfter ...string) (items []*compute.MetadataItems, keys string, err error) {
	static, err := x.staticIP(ctx)
	if err != nil {
		return nil, "", err
	}
	certs, err := x.o.PKI.IssueReplica(pki.ReplicaRequest{Cluster: x.cluster(), Name: name, InternalIP: internalIP, StaticIP: static})
	if err != nil {
		return nil, "", err
	}
	if cfg.KubernetesVersion == "" {
		// A master built before kubeha deployed Kubernetes: it boots what
		// the spec says now.
		cfg.KubernetesVersion = x.o.Spec.Spec.Kubernetes.Version
	}
	rel, ok := spec.ReleaseOf(cfg.KubernetesVersion)
	if !ok {
		return nil, "", fmt.Errorf("boot %s: Kubernetes %s is not a release this kubeha deploys (%s)", name, cfg.KubernetesVersion, strings.Join(spec.SupportedVersions(), ", "))
	}
	kubeletURL, kubeletSum, err := x.o.Spec.Kubelet(cfg.KubernetesVersion, x.o.Downloads)
	if err != nil {
		return nil, "", fmt.Errorf("boot %s: %w", name, err)
	}
	userAddons, err := metadata.ReadUserAddons(x.o.Spec.AddonsDir())
	if err != nil {
		return nil, "", fmt.Errorf("boot %s: %w", name, err)
	}
	interval := x.o.Spec.Spec.Addons.CheckInterval.Duration
	cfg.Addons = metadata.AddonsDigest(userAddons, interval)
	tls := certs.Metadata()
	if keys, err = x.storeKeys(ctx, name, tls.Keys()); err != nil {
		return nil, "", err
	}
	rendered, err := metadata.Render(metadata.Boot{Cluster: x.cluster(), Name: name, InternalIP: internalIP, StaticIP: static, InitialCluster: initialCluster,
		ClusterState: state, StartAfter: startAfter, Config: cfg, EtcdVersion: rel.Etcd, KubeletURL: kubeletURL, KubeletSHA512: kubeletSum, TLS: tls,
		Keys: keys, SecretManagerURL: x.o.SecretManagerURL, UserAddons: userAddons, AddonCheckInterval: interval, Restore: restore, StorageURL: x.o.StorageURL})
	if err != nil {
		return nil, "", err
	}
	for _, it := range rendered {
		v := it.Value
		items = append(items, &compute.MetadataItems{Key: it.Key, Value: &v})
	}
	return items, keys, nil
}

func (x *executor) createInstance(ctx context.Context, s *planner.Step) error {
	in := s.Instance
	ip, err := x.addressIP(ctx, in.InternalAddress)
	if err != nil {
		return err
	}
	initial := in.Name + "=" + x.peerURL(ip)
	if len(in.InitialCluster) > 1 {
		if initial, err = x.staticCluster(ctx, in.InitialCluster); err != nil {
			return err
		}
	}
	if in.ClusterState == metadata.StateExisting {
		if initial, err = x.initialCluster(ctx, in.Name, x.peerURL(ip)); err != nil {
			return err
		}
	}
	ips, err := x.memberIPs(ctx, in.StartAfter)
	if err != nil {
		return err
	}
	var after []string
	for _, ip := range ips {
		after = append(after, x.peerURL(ip))
	}
	var restore *metadata.Restore
	if in.Restore != nil {
		restore = &in.Restore.Restore
	}
	items, _, err := x.boot(ctx, in.Name, ip, initial, in.ClusterState, in.Config, restore, after...)
	if err != nil {
		return err
	}
	p := x.project()
	g := x.o.Spec.Spec.GCE
	ni := &compute.NetworkInterface{Network: g.NetworkPath(), Subnetwork: g.SubnetworkPath(), NetworkIP: ip,
		AccessConfigs: []*compute.AccessConfig{{Name: "external-nat", Type: "ONE_TO_ONE_NAT"}}}
	if in.StaticIP {
		static, err := x.staticIP(ctx)
		if err != nil {
			return err
		}
		ni.AccessConfigs[0].NatIP = static
	}
	inst := &compute.Instance{
		Name:        in.Name,
		MachineType: "zones/" + in.Zone + "/machineTypes/" + in.Config.MachineType,
		Labels:      map[string]string{spec.LabelCluster: x.cluster(), spec.LabelRole: spec.RoleMaster},
		Tags:        &compute.Tags{Items: []string{spec.MasterTag(x.cluster())}},
		Disks: []*compute.AttachedDisk{
			{Boot: true, AutoDelete: true, InitializeParams: &compute.AttachedDiskInitializeParams{SourceImage: in.Config.Image, DiskSizeGb: 20}},
			{Source: "projects/" + p + "/zones/" + in.Zone + "/disks/" + in.Disk, DeviceName: spec.DiskDeviceName, AutoDelete: false},
		},
		NetworkInterfaces: []*compute.NetworkInterface{ni},
		Metadata:          &compute.Metadata{Items: items},
		ServiceAccounts:   []*compute.ServiceAccount{{Email: x.o.Spec.MasterServiceAccount(), Scopes: []string{compute.CloudPlatformScope}}},
	}
	err = x.gce.create(ctx, "create-instance "+in.Name, func() (*compute.Operation, error) {
		return x.o.Compute.Instances.Insert(p, in.Zone, inst).RequestId(x.requestID(s)).Context(ctx).Do()
	}, func() error {
		got, err := x.o.Compute.Instances.Get(p, in.Zone, in.Name).Context(ctx).Do()
		if err != nil {
			return err
		}
		if got.Labels[spec.LabelCluster] != x.cluster() {
			return fmt.Errorf("instance %s is labelled %s=%q", in.Name, spec.LabelCluster, got.Labels[spec.LabelCluster])
		}
		return nil
	})
	if err != nil {
		return err
	}
	// A step run again (an insert that found the instance made, or whose
	// requestId GCE recognised as an earlier run's) issued keys no instance
	// boots from: only the version the instance boots from, read from it,
	// stays readable.
	made, err := x.instance(ctx, in.Zone, in.Name)
	if err != nil {
		return err
	}
	if err := x.retireKeys(ctx, in.Name, keysOf(made)); err != nil {
		return err
	}
	if in.MoveDisk {
		// Made again on its disk: its member, a voter, restarts.
		return x.rejoined(ctx, s, s.MemberID)
	}
	if len(in.InitialCluster) > 1 {
		// A member of a cluster bootstrapped together: return once it has
		// started, which it can only once a quorum of them run.
		return x.etcdOf(in.InitialCluster, func(ctx context.Context) error {
			return x.etcd.started(ctx, x.peerURL(ip), func(msg string) { x.progress(s, msg) }, x.bootCheck(in.Zone, in.Name))
		})(ctx)
	}
	if in.ClusterState == metadata.StateNew {
		// The bootstrap master: wait for its new etcd, then take the lock
		// before any other membership change.
		if _, err := x.etcd.client([]string{x.clientURL(ip)}); err != nil {
			return err
		}
		if err := x.gate(ctx, s, 1, 0); err != nil {
			return fmt.Errorf("bootstrap master %s: %w", in.Name, err)
		}
		return x.takeLock(ctx)
	}
	// A joining member: return once it runs (as a learner that has caught
	// up), so that the next VM of a batch boots when this one no longer joins.
	return x.etcd.started(ctx, x.peerURL(ip), func(msg string) { x.progress(s, msg) }, x.bootCheck(in.Zone, in.Name))
}

func (x *executor) label(ctx context.Context, s *planner.Step) error {
	p := x.project()
	for attempt := 0; attempt < 5; attempt++ {
		in, err := x.instance(ctx, s.Zone, s.Target)
		if err != nil {
			return err
		}
		labels := map[string]string{}
		for k, v := range in.Labels {
			labels[k] = v
		}
		labels[spec.LabelCluster], labels[spec.LabelRole] = x.cluster(), spec.RoleMaster
		err = x.gce.op(ctx, "label-instance "+s.Target, func() (*compute.Operation, error) {
			return x.o.Compute.Instances.SetLabels(p, s.Zone, s.Target, &compute.InstancesSetLabelsRequest{Labels: labels, LabelFingerprint: in.LabelFingerprint}).Context(ctx).Do()
		})
		if httpCode(err) != http.StatusPreconditionFailed {
			return err
		}
	}
	return fmt.Errorf("label-instance %s: its labels kept changing", s.Target)
}

// setAccess puts the static IP on a master (attach) or moves the master to
// an ephemeral IP (detach). Either is done when the instance already is so.
func (x *executor) setAccess(ctx context.Context, s *planner.Step, attach bool) error {
	for attempt := 1; ; attempt++ {
		err := x.setAccessOnce(ctx, s, attach)
		// A call retried after GCE acted on it (its reply lost) fails
		// against the state it made itself ("access config not found", "at
		// most one access config"): look at the instance again and go on
		// from there.
		if err == nil || attempt == 3 || ctx.Err() != nil {
			return err
		}
	}
}

func (x *executor) setAccessOnce(ctx context.Context, s *planner.Step, attach bool) error {
	p := x.project()
	static, err := x.staticIP(ctx)
	if err != nil {
		return err
	}
	in, err := x.instance(ctx, s.Zone, s.Target)
	if err != nil {
		return err
	}
	var cur *compute.AccessConfig
	if len(in.NetworkInterfaces) > 0 && len(in.NetworkInterfaces[0].AccessConfigs) > 0 {
		cur = in.NetworkInterfaces[0].AccessConfigs[0]
	}
	has := cur != nil && cur.NatIP == static
	if has == attach && (attach || cur != nil) {
		return nil
	}
	what := string(s.Action) + " " + s.Target
	if cur != nil {
		if err := x.gce.op(ctx, what, func() (*compute.Operation, error) {
			return x.o.Compute.Instances.DeleteAccessConfig(p, s.Zone, s.Target, cur.Name, "nic0").Context(ctx).Do()
		}); err != nil && !errors.Is(err, errNotFound) {
			return err
		}
	}
	ac := &compute.AccessConfig{Name: "external-nat", Type: "ONE_TO_ONE_NAT"}
	if attach {
		ac.NatIP = static
	}
	return x.gce.op(ctx, what, func() (*compute.Operation, error) {
		return x.o.Compute.Instances.AddAccessConfig(p, s.Zone, s.Target, "nic0", ac).Context(ctx).Do()
	})
}

// renew issues a master new certificates, writes them to its metadata and
// restarts it, then waits for its member to be healthy again.
func (x *executor) renew(ctx context.Context, s *planner.Step) error {
	p := x.project()
	in, err := x.instance(ctx, s.Zone, s.Target)
	if err != nil {
		return err
	}
	boot, err := metadata.ParseEtcd(itemOf(in, metadata.KeyEtcd))
	if err != nil {
		return fmt.Errorf("renew certificates of %s: %w", s.Target, err)
	}
	cfg, err := metadata.ParseConfig(itemOf(in, metadata.KeyConfig))
	if err != nil {
		return fmt.Errorf("renew certificates of %s: %w", s.Target, err)
	}
	// A renewal keeps the restore the member booted with: its disk records
	// it as applied, so it changes nothing, and a member not yet started
	// still restores.
	items, keys, err := x.boot(ctx, s.Target, in.NetworkInterfaces[0].NetworkIP, boot.InitialCluster, boot.InitialClusterState, *cfg, boot.Restore)
	if err != nil {
		return err
	}
	what := "renew-certificates " + s.Target
	if err := x.setMetadata(ctx, s, in, items); err != nil {
		return err
	}
	if err := x.gce.op(ctx, what, func() (*compute.Operation, error) {
		return x.o.Compute.Instances.Stop(p, s.Zone, s.Target).Context(ctx).Do()
	}); err != nil {
		return err
	}
	// A master of a kubeha before its masters had their own account runs
	// as another one, which may not read its keys: it moves to the masters'
	// account while it is stopped.
	if sa := x.o.Spec.MasterServiceAccount(); len(in.ServiceAccounts) == 0 || in.ServiceAccounts[0].Email != sa {
		if err := x.gce.op(ctx, what, func() (*compute.Operation, error) {
			return x.o.Compute.Instances.SetServiceAccount(p, s.Zone, s.Target, &compute.InstancesSetServiceAccountRequest{Email: sa,
				Scopes: []string{compute.CloudPlatformScope}}).Context(ctx).Do()
		}); err != nil {
			return err
		}
	}
	if err := x.gce.op(ctx, what, func() (*compute.Operation, error) {
		return x.o.Compute.Instances.Start(p, s.Zone, s.Target).Context(ctx).Do()
	}); err != nil {
		return err
	}
	if err := x.gate(ctx, s, s.Etcd.HealthyVoters, 0); err != nil {
		return err
	}
	// The master runs on its new keys: the old versions are disabled.
	return x.retireKeys(ctx, s.Target, keys)
}

// keepForeign adds to kubeha's metadata items every item of the instance's
// current metadata whose key kubeha does not write: setMetadata replaces
// the whole set, and ssh-keys, enable-oslogin and the keys other tools set
// must survive a renewal.
func keepForeign(ours, current []*compute.MetadataItems) []*compute.MetadataItems {
	owned := map[string]bool{}
	for _, it := range ours {
		owned[it.Key] = true
	}
	out := slices.Clone(ours)
	for _, it := range current {
		if !owned[it.Key] {
			out = append(out, it)
		}
	}
	return out
}

// setMetadata writes kubeha's metadata items to an instance, keeping the
// others. A 412 (the fingerprint changed: another tool wrote, or a retried
// call that GCE carried out already) reads the metadata again: written
// already, it is done; else it is written on the new fingerprint.
func (x *executor) setMetadata(ctx context.Context, s *planner.Step, in *compute.Instance, items []*compute.MetadataItems) error {
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			var err error
			if in, err = x.instance(ctx, s.Zone, s.Target); err != nil {
				return err
			}
			if hasItems(in.Metadata.Items, items) {
				return nil
			}
		}
		all := keepForeign(items, in.Metadata.Items)
		err := x.gce.op(ctx, what(s), func() (*compute.Operation, error) {
			return x.o.Compute.Instances.SetMetadata(x.project(), s.Zone, s.Target, &compute.Metadata{Items: all, Fingerprint: in.Metadata.Fingerprint}).Context(ctx).Do()
		})
		if httpCode(err) != http.StatusPreconditionFailed {
			return err
		}
	}
	return fmt.Errorf("renew-certificates %s: its metadata kept changing", s.Target)
}

// hasItems says every item of want is in have, with its value.
func hasItems(have, want []*compute.MetadataItems) bool {
	values := map[string]string{}
	for _, it := range have {
		if it.Value != nil {
			values[it.Key] = *it.Value
		}
	}
	for _, it := range want {
		if v, ok := values[it.Key]; !ok || it.Value == nil || v != *it.Value {
			return false
		}
	}
	return true
}

// keysOf is the Secret Manager version an instance boots its keys from.
func keysOf(in *compute.Instance) string { return itemOf(in, metadata.KeyKeys) }

// itemOf is the value of an instance's metadata item key ("" when none).
func itemOf(in *compute.Instance, key string) string {
	if in.Metadata == nil {
		return ""
	}
	for _, it := range in.Metadata.Items {
		if it.Key == key && it.Value != nil {
			return *it.Value
		}
	}
	return ""
}
