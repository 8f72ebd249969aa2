package executor

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
)

// handler carries out one kind of step. Every handler is idempotent: run
// again after it finished (or was interrupted), it succeeds and changes
// nothing more (TestEveryStepKindTwice).
type handler func(x *executor, ctx context.Context, s *planner.Step) error

// handlers is the executor's table of actions: one handler for each action
// of the planner's table (TestEveryActionHasAHandler).
var handlers = map[planner.Action]handler{
	planner.CreateFirewall:        (*executor).createFirewall,
	planner.UpdateFirewall:        (*executor).updateFirewall,
	planner.DeleteFirewall:        (*executor).deleteFirewall,
	planner.ReserveStaticIP:       (*executor).reserveStaticIP,
	planner.ReserveAddress:        (*executor).reserveAddress,
	planner.CreateDisk:            (*executor).createDisk,
	planner.AddLearner:            (*executor).addLearner,
	planner.CreateInstance:        (*executor).createInstance,
	planner.StartInstance:         (*executor).startInstance,
	planner.LabelInstance:         (*executor).label,
	planner.PromoteMember:         (*executor).promote,
	planner.CreateHealthCheck:     (*executor).createHealthCheck,
	planner.UpdateHealthCheck:     (*executor).updateHealthCheck,
	planner.CreateTargetPool:      (*executor).createTargetPool,
	planner.AddToPool:             (*executor).changePool,
	planner.RemoveFromPool:        (*executor).changePool,
	planner.DetachStaticIP:        func(x *executor, ctx context.Context, s *planner.Step) error { return x.setAccess(ctx, s, false) },
	planner.AttachStaticIP:        func(x *executor, ctx context.Context, s *planner.Step) error { return x.setAccess(ctx, s, true) },
	planner.CreateForwardingRule:  (*executor).createForwardingRule,
	planner.DeleteForwardingRule:  (*executor).deleteForwardingRule,
	planner.DeleteTargetPool:      (*executor).deleteTargetPool,
	planner.DeleteHealthCheck:     (*executor).deleteHealthCheck,
	planner.MoveLeader:            (*executor).moveLeader,
	planner.RemoveMember:          (*executor).removeMember,
	planner.DeleteInstance:        (*executor).deleteInstance,
	planner.DeleteDisk:            (*executor).deleteDisk,
	planner.ReleaseAddress:        (*executor).releaseAddress,
	planner.RenewCertificates:     (*executor).renew,
	planner.SaveSnapshot:          (*executor).saveSnapshot,
	planner.CreateServiceAccount:  (*executor).createServiceAccount,
	planner.DeleteServiceAccount:  (*executor).deleteServiceAccount,
	planner.DeleteSecret:          (*executor).deleteSecret,
	planner.DeleteNode:            (*executor).deleteNode,
	planner.UpdateAddons:          (*executor).updateAddons,
	planner.FormCluster:           (*executor).formCluster,
	planner.UploadSnapshot:        (*executor).uploadSnapshot,
	planner.StopInstance:          (*executor).stopInstance,
	planner.DeleteRestoreBucket:   (*executor).deleteRestoreBucket,
	planner.RestoreMember:         (*executor).restoreMember,
	planner.DeleteRestoreSnapshot: (*executor).deleteRestoreSnapshot,
}

func what(s *planner.Step) string { return string(s.Action) + " " + s.Target }

func (x *executor) firewall(s *planner.Step) *compute.Firewall {
	return &compute.Firewall{Name: s.Firewall.Name, Network: x.o.Spec.Spec.GCE.NetworkPath(), TargetTags: s.Firewall.TargetTags,
		SourceTags: s.Firewall.SourceTags, SourceRanges: s.Firewall.Sources, Direction: "INGRESS",
		Allowed: []*compute.FirewallAllowed{{IPProtocol: "tcp", Ports: s.Firewall.Ports}}}
}

func (x *executor) createFirewall(ctx context.Context, s *planner.Step) error {
	return x.gce.create(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.Firewalls.Insert(x.project(), x.firewall(s)).RequestId(x.requestID(s)).Context(ctx).Do()
	}, nil)
}

func (x *executor) updateFirewall(ctx context.Context, s *planner.Step) error {
	fw := x.firewall(s)
	fw.ForceSendFields = []string{"SourceTags", "SourceRanges"}
	return x.gce.op(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.Firewalls.Patch(x.project(), fw.Name, fw).Context(ctx).Do()
	})
}

func (x *executor) deleteFirewall(ctx context.Context, s *planner.Step) error {
	return x.gce.remove(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.Firewalls.Delete(x.project(), s.Target).Context(ctx).Do()
	})
}

func (x *executor) reserveStaticIP(ctx context.Context, s *planner.Step) error {
	return x.gce.create(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.Addresses.Insert(x.project(), x.region(), &compute.Address{Name: s.Target, AddressType: "EXTERNAL",
			Description: "kubeha: the static IP of cluster " + x.cluster()}).RequestId(x.requestID(s)).Context(ctx).Do()
	}, func() error { return x.addressReady(ctx, s) })
}

// addressReady waits for an address an earlier apply reserved.
func (x *executor) addressReady(ctx context.Context, s *planner.Step) error {
	return until(ctx, x.o.Gate, what(s), func() (bool, string, error) {
		a, err := do(ctx, x.gce, "get address "+s.Target, func() (*compute.Address, error) {
			return x.o.Compute.Addresses.Get(x.project(), x.region(), s.Target).Context(ctx).Do()
		})
		if httpCode(err) == http.StatusNotFound {
			return false, "being created (by another apply)", nil // its insert answered 409: it exists once that insert is done
		}
		if err != nil {
			return false, "", err
		}
		return a.Status == "RESERVED" || a.Status == "IN_USE", a.Status, nil
	})
}

// diskReady waits for a disk an earlier apply created.
func (x *executor) diskReady(ctx context.Context, s *planner.Step) error {
	return until(ctx, x.o.Gate, what(s), func() (bool, string, error) {
		d, err := do(ctx, x.gce, "get disk "+s.Target, func() (*compute.Disk, error) {
			return x.o.Compute.Disks.Get(x.project(), s.Zone, s.Target).Context(ctx).Do()
		})
		if httpCode(err) == http.StatusNotFound {
			return false, "being created (by another apply)", nil
		}
		if err != nil {
			return false, "", err
		}
		return d.Status == "READY", d.Status, nil
	})
}

func (x *executor) reserveAddress(ctx context.Context, s *planner.Step) error {
	r := x.region()
	return x.gce.create(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.Addresses.Insert(x.project(), r, &compute.Address{Name: s.Target, AddressType: "INTERNAL", Subnetwork: x.o.Spec.Spec.GCE.SubnetworkPath(),
			Description: "kubeha: internal address of master " + s.Replica}).RequestId(x.requestID(s)).Context(ctx).Do()
	}, func() error { return x.addressReady(ctx, s) })
}

func (x *executor) createDisk(ctx context.Context, s *planner.Step) error {
	return x.gce.create(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.Disks.Insert(x.project(), s.Zone, &compute.Disk{Name: s.Target, SizeGb: int64(x.o.Spec.Spec.Masters.DiskSizeGb),
			Type:   "zones/" + s.Zone + "/diskTypes/" + x.o.Spec.Spec.Masters.DiskType,
			Labels: map[string]string{spec.LabelCluster: x.cluster()}}).RequestId(x.requestID(s)).Context(ctx).Do()
	}, func() error { return x.diskReady(ctx, s) })
}

func (x *executor) startInstance(ctx context.Context, s *planner.Step) error {
	if err := x.gce.op(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.Instances.Start(x.project(), s.Zone, s.Target).Context(ctx).Do()
	}); err != nil {
		return err
	}
	if x.etcd.connected() {
		return x.gate(ctx, s, s.Etcd.HealthyVoters, 0)
	}
	return nil
}

func (x *executor) createHealthCheck(ctx context.Context, s *planner.Step) error {
	return x.gce.create(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.HttpHealthChecks.Insert(x.project(), x.healthCheck(s.Target)).RequestId(x.requestID(s)).Context(ctx).Do()
	}, nil)
}

func (x *executor) updateHealthCheck(ctx context.Context, s *planner.Step) error {
	return x.gce.op(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.HttpHealthChecks.Update(x.project(), s.Target, x.healthCheck(s.Target)).Context(ctx).Do()
	})
}

func (x *executor) createTargetPool(ctx context.Context, s *planner.Step) error {
	var links []string
	for _, n := range s.PoolMembers {
		l, err := x.instanceLink(n)
		if err != nil {
			return err
		}
		links = append(links, l)
	}
	p := x.project()
	return x.gce.create(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.TargetPools.Insert(p, x.region(), &compute.TargetPool{Name: s.Target, Instances: links,
			HealthChecks: []string{"projects/" + p + "/global/httpHealthChecks/" + spec.HealthCheckName(x.cluster())}}).RequestId(x.requestID(s)).Context(ctx).Do()
	}, nil)
}

// poolRef is the instance a pool step adds or removes: a dangling link as
// observed, or the replica's.
func (x *executor) poolRef(s *planner.Step) ([]*compute.InstanceReference, error) {
	link := s.PoolLink
	if link == "" {
		var err error
		if link, err = x.instanceLink(s.Replica); err != nil {
			return nil, err
		}
	}
	return []*compute.InstanceReference{{Instance: link}}, nil
}

// changePool adds a master to the target pool or removes it; a pool that
// is already gone has no master to remove.
func (x *executor) changePool(ctx context.Context, s *planner.Step) error {
	ref, err := x.poolRef(s)
	if err != nil {
		return err
	}
	pools := x.o.Compute.TargetPools
	if s.Action == planner.RemoveFromPool {
		return x.gce.remove(ctx, what(s), func() (*compute.Operation, error) {
			return pools.RemoveInstance(x.project(), x.region(), s.Target, &compute.TargetPoolsRemoveInstanceRequest{Instances: ref}).Context(ctx).Do()
		})
	}
	return x.gce.op(ctx, what(s), func() (*compute.Operation, error) {
		return pools.AddInstance(x.project(), x.region(), s.Target, &compute.TargetPoolsAddInstanceRequest{Instances: ref}).Context(ctx).Do()
	})
}

func (x *executor) createForwardingRule(ctx context.Context, s *planner.Step) error {
	ip, err := x.staticIP(ctx)
	if err != nil {
		return err
	}
	return x.gce.create(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.ForwardingRules.Insert(x.project(), x.region(), &compute.ForwardingRule{Name: s.Target, IPAddress: ip, IPProtocol: "TCP", PortRange: "443",
			Target: x.poolLink(), LoadBalancingScheme: "EXTERNAL"}).RequestId(x.requestID(s)).Context(ctx).Do()
	}, nil)
}

func (x *executor) deleteForwardingRule(ctx context.Context, s *planner.Step) error {
	return x.gce.remove(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.ForwardingRules.Delete(x.project(), x.region(), s.Target).Context(ctx).Do()
	})
}

func (x *executor) deleteTargetPool(ctx context.Context, s *planner.Step) error {
	return x.gce.remove(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.TargetPools.Delete(x.project(), x.region(), s.Target).Context(ctx).Do()
	})
}

func (x *executor) deleteHealthCheck(ctx context.Context, s *planner.Step) error {
	return x.gce.remove(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.HttpHealthChecks.Delete(x.project(), s.Target).Context(ctx).Do()
	})
}

func (x *executor) deleteInstance(ctx context.Context, s *planner.Step) error {
	if s.KeepDisk {
		return x.deleteForMove(ctx, s)
	}
	return x.gce.remove(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.Instances.Delete(x.project(), s.Zone, s.Target).Context(ctx).Do()
	})
}

// deleteDisk saves a snapshot of the disk's data first, unless a destroy's
// final snapshot covers it.
func (x *executor) deleteDisk(ctx context.Context, s *planner.Step) error {
	if !s.FinalSnapshot {
		if err := x.backup(ctx, s, "before-delete-"+s.Target, true, strings.TrimSuffix(s.Target, "-pd")); err != nil {
			return err
		}
	}
	return x.retryInUse(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.Disks.Delete(x.project(), s.Zone, s.Target).Context(ctx).Do()
	})
}

func (x *executor) releaseAddress(ctx context.Context, s *planner.Step) error {
	x.forgetAddress(s.Target)
	return x.retryInUse(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.Addresses.Delete(x.project(), x.region(), s.Target).Context(ctx).Do()
	})
}

// --- etcd membership ---

func (x *executor) promote(ctx context.Context, s *planner.Step) error {
	id, err := x.memberID(ctx, s)
	if err != nil {
		return err
	}
	if err := x.etcd.promote(ctx, id); err != nil {
		return err
	}
	return x.gate(ctx, s, s.Etcd.HealthyVoters, id)
}

func (x *executor) moveLeader(ctx context.Context, s *planner.Step) error {
	to, err := x.memberByName(ctx, s.LeaderTo)
	if err != nil {
		return err
	}
	return x.etcd.moveLeader(ctx, s.MemberID, to)
}

// saveSnapshot saves a destroy's final snapshot, or the snapshot of the
// current data a forced restore takes first; with no etcd to give it,
// nothing is deleted or restored.
func (x *executor) saveSnapshot(ctx context.Context, s *planner.Step) error {
	if x.o.BackupDir == "" {
		return fmt.Errorf("%s: no backups directory to save it in (nothing was deleted)", what(s))
	}
	if !x.etcd.connected() {
		return fmt.Errorf("%s: etcd of cluster %s cannot be reached, so no snapshot can be saved (nothing was deleted)", what(s), x.cluster())
	}
	// Not "always": run again in this apply at the same revision, it
	// points at the snapshot it saved instead of saving it twice.
	why := "before-destroy"
	if restores(x.plan) {
		why = "before-restore"
	}
	return x.backup(ctx, s, why, false, "")
}

// removeMember saves a snapshot when etcd's data moved since the last one.
func (x *executor) removeMember(ctx context.Context, s *planner.Step) error {
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
}
