package executor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/pki"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
)

func (x *executor) project() string { return x.o.Spec.Spec.GCE.Project }
func (x *executor) region() string  { return x.o.Spec.Spec.GCE.Region }
func (x *executor) cluster() string { return x.o.Spec.Metadata.Name }

func (x *executor) zoneOf(instance string) (string, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if z, ok := x.zones[instance]; ok {
		return z, nil
	}
	return "", fmt.Errorf("no zone known for instance %s", instance)
}

func (x *executor) instanceLink(instance string) (string, error) {
	z, err := x.zoneOf(instance)
	if err != nil {
		return "", err
	}
	return "projects/" + x.project() + "/zones/" + z + "/instances/" + instance, nil
}

func (x *executor) poolLink() string {
	return "projects/" + x.project() + "/regions/" + x.region() + "/targetPools/" + spec.MasterName(x.cluster())
}

// addressIP reads a reserved address's IP.
func (x *executor) addressIP(ctx context.Context, name string) (string, error) {
	a, err := do(ctx, x.gce, "get address "+name, func() (*compute.Address, error) {
		return x.o.Compute.Addresses.Get(x.project(), x.region(), name).Context(ctx).Do()
	})
	if err != nil {
		return "", err
	}
	return a.Address, nil
}

func (x *executor) staticIP(ctx context.Context) (string, error) {
	return x.addressIP(ctx, spec.StaticIPName(x.cluster()))
}

func (x *executor) peerURL(ip string) string {
	return "https://" + ip + ":" + strconv.Itoa(x.o.Spec.Spec.Etcd.PeerPort)
}

func (x *executor) clientURL(ip string) string {
	return "https://" + ip + ":" + strconv.Itoa(x.o.Spec.Spec.Etcd.ClientPort)
}

// step carries out one step. A membership change first takes the lock and
// checks its preflight; etcd's refusals name the members as they are.
func (x *executor) step(ctx context.Context, s *planner.Step) error {
	if s.Action.Etcd() {
		if err := x.takeLock(ctx); err != nil {
			return err
		}
		if err := x.preflight(ctx, s); err != nil {
			return err
		}
	}
	return x.refusal(ctx, x.do(ctx, s))
}

// do dispatches a step to what carries it out.
func (x *executor) do(ctx context.Context, s *planner.Step) error {
	g, p, r := x.gce, x.project(), x.region()
	c := x.o.Compute
	what := string(s.Action) + " " + s.Target
	switch s.Action {
	case planner.CreateFirewall, planner.UpdateFirewall:
		fw := &compute.Firewall{Name: s.Firewall.Name, Network: "global/networks/" + x.o.Spec.Spec.GCE.Network, TargetTags: s.Firewall.TargetTags,
			SourceTags: s.Firewall.SourceTags, SourceRanges: s.Firewall.Sources, Direction: "INGRESS",
			Allowed: []*compute.FirewallAllowed{{IPProtocol: "tcp", Ports: s.Firewall.Ports}}}
		if s.Action == planner.UpdateFirewall {
			fw.ForceSendFields = []string{"SourceTags", "SourceRanges"}
			return g.op(ctx, what, func() (*compute.Operation, error) { return c.Firewalls.Patch(p, fw.Name, fw).Context(ctx).Do() })
		}
		return g.create(ctx, what, func() (*compute.Operation, error) { return c.Firewalls.Insert(p, fw).Context(ctx).Do() }, nil)
	case planner.ReserveStaticIP:
		return g.create(ctx, what, func() (*compute.Operation, error) {
			return c.Addresses.Insert(p, r, &compute.Address{Name: s.Target, AddressType: "EXTERNAL", Description: "kubeha: the static IP of cluster " + x.cluster()}).Context(ctx).Do()
		}, nil)
	case planner.ReserveAddress:
		return g.create(ctx, what, func() (*compute.Operation, error) {
			return c.Addresses.Insert(p, r, &compute.Address{Name: s.Target, AddressType: "INTERNAL", Subnetwork: "regions/" + r + "/subnetworks/default",
				Description: "kubeha: internal address of master " + s.Replica}).Context(ctx).Do()
		}, nil)
	case planner.CreateDisk:
		return g.create(ctx, what, func() (*compute.Operation, error) {
			return c.Disks.Insert(p, s.Zone, &compute.Disk{Name: s.Target, SizeGb: int64(x.o.Spec.Spec.Masters.DiskSizeGb),
				Labels: map[string]string{spec.LabelCluster: x.cluster()}}).Context(ctx).Do()
		}, nil)
	case planner.AddLearner:
		return x.addLearner(ctx, s)
	case planner.CreateInstance:
		return x.createInstance(ctx, s)
	case planner.PromoteMember:
		id, err := x.memberID(ctx, s)
		if err != nil {
			return err
		}
		if err := x.etcd.promote(ctx, id); err != nil {
			return err
		}
		return x.gate(ctx, s, s.Etcd.HealthyVoters, id)
	case planner.StartInstance:
		if err := g.op(ctx, what, func() (*compute.Operation, error) { return c.Instances.Start(p, s.Zone, s.Target).Context(ctx).Do() }); err != nil {
			return err
		}
		if x.etcd.connected() {
			return x.gate(ctx, s, s.Etcd.HealthyVoters, 0)
		}
		return nil
	case planner.LabelInstance:
		return x.label(ctx, s)
	case planner.CreateHealthCheck:
		return g.create(ctx, what, func() (*compute.Operation, error) {
			return c.HttpHealthChecks.Insert(p, x.healthCheck(s.Target)).Context(ctx).Do()
		}, nil)
	case planner.UpdateHealthCheck:
		return g.op(ctx, what, func() (*compute.Operation, error) {
			return c.HttpHealthChecks.Update(p, s.Target, x.healthCheck(s.Target)).Context(ctx).Do()
		})
	case planner.CreateTargetPool:
		var links []string
		for _, n := range s.PoolMembers {
			l, err := x.instanceLink(n)
			if err != nil {
				return err
			}
			links = append(links, l)
		}
		return g.create(ctx, what, func() (*compute.Operation, error) {
			return c.TargetPools.Insert(p, r, &compute.TargetPool{Name: s.Target, Instances: links,
				HealthChecks: []string{"projects/" + p + "/global/httpHealthChecks/" + spec.HealthCheckName(x.cluster())}}).Context(ctx).Do()
		}, nil)
	case planner.AddToPool, planner.RemoveFromPool:
		link := s.PoolLink
		if link == "" {
			var err error
			if link, err = x.instanceLink(s.Replica); err != nil {
				return err
			}
		}
		ref := []*compute.InstanceReference{{Instance: link}}
		if s.Action == planner.AddToPool {
			return g.op(ctx, what, func() (*compute.Operation, error) {
				return c.TargetPools.AddInstance(p, r, s.Target, &compute.TargetPoolsAddInstanceRequest{Instances: ref}).Context(ctx).Do()
			})
		}
		return g.remove(ctx, what, func() (*compute.Operation, error) {
			return c.TargetPools.RemoveInstance(p, r, s.Target, &compute.TargetPoolsRemoveInstanceRequest{Instances: ref}).Context(ctx).Do()
		})
	case planner.DetachStaticIP:
		return x.setAccess(ctx, s, false)
	case planner.AttachStaticIP:
		return x.setAccess(ctx, s, true)
	case planner.CreateForwardingRule:
		ip, err := x.staticIP(ctx)
		if err != nil {
			return err
		}
		return g.create(ctx, what, func() (*compute.Operation, error) {
			return c.ForwardingRules.Insert(p, r, &compute.ForwardingRule{Name: s.Target, IPAddress: ip, IPProtocol: "TCP", PortRange: "443",
				Target: x.poolLink(), LoadBalancingScheme: "EXTERNAL"}).Context(ctx).Do()
		}, nil)
	case planner.DeleteForwardingRule:
		return g.remove(ctx, what, func() (*compute.Operation, error) { return c.ForwardingRules.Delete(p, r, s.Target).Context(ctx).Do() })
	case planner.DeleteTargetPool:
		return g.remove(ctx, what, func() (*compute.Operation, error) { return c.TargetPools.Delete(p, r, s.Target).Context(ctx).Do() })
	case planner.DeleteHealthCheck:
		return g.remove(ctx, what, func() (*compute.Operation, error) { return c.HttpHealthChecks.Delete(p, s.Target).Context(ctx).Do() })
	case planner.MoveLeader:
		to, err := x.memberByName(ctx, s.LeaderTo)
		if err != nil {
			return err
		}
		return x.etcd.moveLeader(ctx, s.MemberID, to)
	case planner.RemoveMember:
		id, err := x.memberID(ctx, s)
		if err != nil {
			return err
		}
		if id == 0 {
			return nil // its learner was never added, or it is gone already
		}
		if err := x.backup(ctx, s, "before-remove-"+s.Target, false, ""); err != nil {
			return err
		}
		if err := x.etcd.remove(ctx, id); err != nil {
			return err
		}
		return x.gate(ctx, s, s.Etcd.HealthyVoters, id)
	case planner.DeleteInstance:
		return g.remove(ctx, what, func() (*compute.Operation, error) { return c.Instances.Delete(p, s.Zone, s.Target).Context(ctx).Do() })
	case planner.DeleteDisk:
		if err := x.backup(ctx, s, "before-delete-"+s.Target, true, strings.TrimSuffix(s.Target, "-pd")); err != nil {
			return err
		}
		return x.retryInUse(ctx, what, func() (*compute.Operation, error) { return c.Disks.Delete(p, s.Zone, s.Target).Context(ctx).Do() })
	case planner.ReleaseAddress:
		return x.retryInUse(ctx, what, func() (*compute.Operation, error) { return c.Addresses.Delete(p, r, s.Target).Context(ctx).Do() })
	case planner.RenewCertificates:
		return x.renew(ctx, s)
	}
	return fmt.Errorf("unknown action %q: this kubeha is older than the plan", s.Action)
}

// instance reads a master instance, retrying transient errors.
func (x *executor) instance(ctx context.Context, zone, name string) (*compute.Instance, error) {
	return do(ctx, x.gce, "get instance "+name, func() (*compute.Instance, error) {
		return x.o.Compute.Instances.Get(x.project(), zone, name).Context(ctx).Do()
	})
}

// retryInUse deletes a resource that may still be released by a deletion
// that just finished (GCE answers 400 resourceInUseByAnotherResource).
func (x *executor) retryInUse(ctx context.Context, what string, call func() (*compute.Operation, error)) error {
	deadline := time.Now().Add(x.o.Gate)
	for attempt := 0; ; attempt++ {
		err := x.gce.remove(ctx, what, call)
		if err == nil || httpCode(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "resourceInUse") || time.Now().After(deadline) {
			return err
		}
		if serr := sleep(ctx, backoff(attempt)); serr != nil {
			return err
		}
	}
}

func (x *executor) addLearner(ctx context.Context, s *planner.Step) error {
	ip, err := x.addressIP(ctx, spec.InternalAddressName(s.Replica))
	if err != nil {
		return err
	}
	id, err := x.etcd.addLearner(ctx, x.peerURL(ip))
	if err != nil {
		return err
	}
	x.mu.Lock()
	x.learners[s.Replica] = id
	x.mu.Unlock()
	return nil
}

// initialCluster is what a joining member boots with: every member, read
// when its VM is created. etcd checks it against the cluster by peer URL
// but keys it by name, so a learner that has not started yet (it has no
// name) is listed under a unique placeholder; it publishes its own name
// when it starts.
func (x *executor) initialCluster(ctx context.Context, name, peerURL string) (string, error) {
	members, err := x.etcd.members(ctx)
	if err != nil {
		return "", err
	}
	var parts []string
	found := false
	for _, m := range members {
		n := m.Name
		if slices.Contains(m.PeerURLs, peerURL) {
			n, found = name, true
		} else if n == "" {
			n = fmt.Sprintf("unstarted-%x", m.ID)
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	if !found {
		return "", fmt.Errorf("create %s: etcd has no learner at %s: plan again", name, peerURL)
	}
	return strings.Join(parts, ","), nil
}

// memberID resolves the member a step acts on: the plan's ID for an
// existing member, else the learner this apply added, else the member
// whose peer URL is on the replica's address.
func (x *executor) memberID(ctx context.Context, s *planner.Step) (uint64, error) {
	if s.MemberID != 0 {
		return s.MemberID, nil
	}
	x.mu.Lock()
	id, ok := x.learners[s.Replica]
	x.mu.Unlock()
	if ok {
		return id, nil
	}
	members, err := x.etcd.members(ctx)
	if err != nil {
		return 0, err
	}
	for _, m := range members {
		if m.Name == s.Replica {
			return m.ID, nil
		}
	}
	ip, err := x.addressIP(ctx, spec.InternalAddressName(s.Replica))
	if httpCode(err) == http.StatusNotFound {
		// No address and no member by name or learner: there is no
		// member of this replica to find (its address is released last).
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find the etcd member of %s: %w", s.Replica, err)
	}
	for _, m := range members {
		if slices.Contains(m.PeerURLs, x.peerURL(ip)) {
			return m.ID, nil
		}
	}
	return 0, nil
}

func (x *executor) memberByName(ctx context.Context, name string) (uint64, error) {
	members, err := x.etcd.members(ctx)
	if err != nil {
		return 0, err
	}
	for _, m := range members {
		if m.Name == name {
			return m.ID, nil
		}
	}
	return 0, fmt.Errorf("no etcd member named %s to hand leadership to", name)
}

// boot renders what a master boots with, issuing its certificates now.
// healthCheck is the target pool's legacy HTTP health check: the masters'
// kube-apiserver-healthcheck, asked for the API server's readiness every 2
// s; out of rotation after 3 failures, back after 2 passes.
func (x *executor) healthCheck(name string) *compute.HttpHealthCheck {
	return &compute.HttpHealthCheck{Name: name, Port: metadata.HealthCheckPort, RequestPath: metadata.HealthCheckPath,
		CheckIntervalSec: 2, TimeoutSec: 2, HealthyThreshold: 2, UnhealthyThreshold: 3,
		Description: "kubeha: the API servers of cluster " + x.cluster()}
}

func (x *executor) boot(ctx context.Context, name, internalIP, initialCluster, state string, cfg metadata.Config) ([]*compute.MetadataItems, error) {
	static, err := x.staticIP(ctx)
	if err != nil {
		return nil, err
	}
	certs, err := x.o.PKI.IssueReplica(pki.ReplicaRequest{Cluster: x.cluster(), Name: name, InternalIP: internalIP, StaticIP: static})
	if err != nil {
		return nil, err
	}
	if cfg.KubernetesVersion == "" {
		// A master built before kubeha deployed Kubernetes: it boots what
		// the spec says now.
		cfg.KubernetesVersion = x.o.Spec.Spec.Kubernetes.Version
	}
	rel, ok := spec.ReleaseOf(cfg.KubernetesVersion)
	if !ok {
		return nil, fmt.Errorf("boot %s: Kubernetes %s is not a release this kubeha deploys (%s)", name, cfg.KubernetesVersion, strings.Join(spec.SupportedVersions(), ", "))
	}
	kubeletURL, kubeletSum, err := x.o.Spec.Kubelet(cfg.KubernetesVersion, x.o.Downloads)
	if err != nil {
		return nil, fmt.Errorf("boot %s: %w", name, err)
	}
	items, err := metadata.Render(metadata.Boot{Name: name, InternalIP: internalIP, StaticIP: static, InitialCluster: initialCluster,
		ClusterState: state, Config: cfg, EtcdVersion: rel.Etcd, KubeletURL: kubeletURL, KubeletSHA512: kubeletSum, TLS: certs.Metadata()})
	if err != nil {
		return nil, err
	}
	var out []*compute.MetadataItems
	for _, it := range items {
		v := it.Value
		out = append(out, &compute.MetadataItems{Key: it.Key, Value: &v})
	}
	return out, nil
}

func (x *executor) createInstance(ctx context.Context, s *planner.Step) error {
	in := s.Instance
	ip, err := x.addressIP(ctx, in.InternalAddress)
	if err != nil {
		return err
	}
	initial := in.Name + "=" + x.peerURL(ip)
	if in.ClusterState == metadata.StateExisting {
		if initial, err = x.initialCluster(ctx, in.Name, x.peerURL(ip)); err != nil {
			return err
		}
	}
	items, err := x.boot(ctx, in.Name, ip, initial, in.ClusterState, in.Config)
	if err != nil {
		return err
	}
	p := x.project()
	ni := &compute.NetworkInterface{Network: "global/networks/" + x.o.Spec.Spec.GCE.Network, NetworkIP: ip,
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
		ServiceAccounts:   []*compute.ServiceAccount{{Email: "default", Scopes: []string{"https://www.googleapis.com/auth/cloud-platform"}}},
	}
	err = x.gce.create(ctx, "create-instance "+in.Name, func() (*compute.Operation, error) {
		return x.o.Compute.Instances.Insert(p, in.Zone, inst).Context(ctx).Do()
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
	return x.etcd.started(ctx, x.peerURL(ip), func(msg string) { x.progress(s, msg) })
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
	var etcdDoc, cfgDoc string
	for _, it := range in.Metadata.Items {
		if it.Value != nil && it.Key == metadata.KeyEtcd {
			etcdDoc = *it.Value
		}
		if it.Value != nil && it.Key == metadata.KeyConfig {
			cfgDoc = *it.Value
		}
	}
	boot, err := metadata.ParseEtcd(etcdDoc)
	if err != nil {
		return fmt.Errorf("renew certificates of %s: %w", s.Target, err)
	}
	cfg, err := metadata.ParseConfig(cfgDoc)
	if err != nil {
		return fmt.Errorf("renew certificates of %s: %w", s.Target, err)
	}
	items, err := x.boot(ctx, s.Target, in.NetworkInterfaces[0].NetworkIP, boot.InitialCluster, boot.InitialClusterState, *cfg)
	if err != nil {
		return err
	}
	what := "renew-certificates " + s.Target
	if err := x.gce.op(ctx, what, func() (*compute.Operation, error) {
		return x.o.Compute.Instances.SetMetadata(p, s.Zone, s.Target, &compute.Metadata{Items: items, Fingerprint: in.Metadata.Fingerprint}).Context(ctx).Do()
	}); err != nil {
		return err
	}
	if err := x.gce.op(ctx, what, func() (*compute.Operation, error) {
		return x.o.Compute.Instances.Stop(p, s.Zone, s.Target).Context(ctx).Do()
	}); err != nil {
		return err
	}
	if err := x.gce.op(ctx, what, func() (*compute.Operation, error) {
		return x.o.Compute.Instances.Start(p, s.Zone, s.Target).Context(ctx).Do()
	}); err != nil {
		return err
	}
	return x.gate(ctx, s, s.Etcd.HealthyVoters, 0)
}
