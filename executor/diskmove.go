package executor

import (
	"context"
	"fmt"
	"net/http"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
)

// Disk moves (spec.masters.replaceBy: disk): a master's VM is deleted,
// keeping its etcd data disk, and made again on the disk with its name and
// internal address (createInstance with MoveDisk); its member restarts
// with its data and ID.

// deleteForMove deletes a master's VM for its disk to move. Its member
// goes down, so this is a membership change in all but name: under the
// apply lock, with the healthy voters the plan assumes checked first,
// after a snapshot. The disk must outlive the VM: one attached to be
// deleted with it (a master made by hand, or changed out of band) is set
// to stay first. GCE stops the guest before it deletes the VM, and
// detaches the disks it keeps.
func (x *executor) deleteForMove(ctx context.Context, s *planner.Step) error {
	in, err := x.instance(ctx, s.Zone, s.Target)
	if httpCode(err) == http.StatusNotFound {
		return nil // deleted already (the step run again)
	}
	if err != nil {
		return err
	}
	if err := x.takeLock(ctx); err != nil {
		return err
	}
	if in.Status == "RUNNING" {
		if err := x.preflight(ctx, s); err != nil {
			return err
		}
	}
	if err := x.backup(ctx, s, "before-move-"+s.Target, false, ""); err != nil {
		return err
	}
	for _, d := range in.Disks {
		if d.DeviceName != spec.DiskDeviceName || !d.AutoDelete {
			continue
		}
		x.progress(s, "its etcd data disk is set to be deleted with the VM: keep it")
		if err := x.gce.op(ctx, what(s), func() (*compute.Operation, error) {
			return x.o.Compute.Instances.SetDiskAutoDelete(x.project(), s.Zone, s.Target, false, spec.DiskDeviceName).Context(ctx).Do()
		}); err != nil {
			return fmt.Errorf("%s: keep its etcd data disk: %w (nothing was deleted)", what(s), err)
		}
	}
	return x.gce.remove(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.Instances.Delete(x.project(), s.Zone, s.Target).Context(ctx).Do()
	})
}

// rejoined waits for a master made again on its disk: its member (id)
// answers as a healthy voter, with the VM's boot watched for a failure;
// then for the healthy voters the step leaves.
func (x *executor) rejoined(ctx context.Context, s *planner.Step, id uint64) error {
	if id == 0 {
		return fmt.Errorf("%s: the plan names no etcd member for the master made again on its disk: plan again", what(s))
	}
	waiting := fmt.Sprintf("wait for etcd member %x to run again on its disk", id)
	if err := x.etcd.waitBooted(ctx, waiting, func(msg string) { x.progress(s, msg) }, x.bootCheck(s.Zone, s.Target),
		func(cctx context.Context) error { return x.memberUp(cctx, id) }); err != nil {
		return err
	}
	return x.gate(ctx, s, s.Etcd.HealthyVoters, id)
}

// memberUp says whether member id is a healthy voter now.
func (x *executor) memberUp(ctx context.Context, id uint64) error {
	h, err := x.etcd.check(ctx, x.etcd.timeout, 0)
	if err != nil {
		return err
	}
	for _, m := range h.Members {
		switch {
		case m.ID != id:
		case m.Learner:
			return fmt.Errorf("member %s is a learner", m.Name)
		case !m.Healthy:
			return fmt.Errorf("member %s: %s", m.Name, m.Why)
		default:
			return nil
		}
	}
	return fmt.Errorf("etcd has no member %x: it was removed, and its data cannot join again", id)
}
