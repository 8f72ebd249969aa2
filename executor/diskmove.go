package executor

import (
	"context"
	"errors"
	"fmt"
	"time"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
)

// Disk moves (spec.masters.replaceBy: disk): a master is stopped, its etcd
// data disk detached, its VM deleted and made again on the disk with its
// name and internal address (createInstance with MoveDisk), and its
// member restarts with its data and ID.

// stopForMove stops a master whose disk is to move. Its member goes down,
// so this is a membership change in all but name: under the apply lock,
// with the healthy voters the plan assumes checked first, after a
// snapshot.
func (x *executor) stopForMove(ctx context.Context, s *planner.Step) error {
	in, err := x.instance(ctx, s.Zone, s.Target)
	if err != nil {
		return err
	}
	if in.Status == "TERMINATED" {
		return nil // stopped already (the step run again)
	}
	if err := x.takeLock(ctx); err != nil {
		return err
	}
	if err := x.preflight(ctx, s); err != nil {
		return err
	}
	if err := x.backup(ctx, s, "before-move-"+s.Target, false, ""); err != nil {
		return err
	}
	return x.stop(ctx, s)
}

// detachDisk detaches a stopped master's etcd data disk. It never detaches
// the disk of a running VM (its etcd would lose its data under it); a disk
// no longer attached, or a VM already gone, is done. With no stop before
// it in the plan (its VM had stopped, or failed), it saves the snapshot.
func (x *executor) detachDisk(ctx context.Context, s *planner.Step) error {
	in, err := x.instance(ctx, s.Zone, s.Replica)
	if errors.Is(err, errNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	attached := false
	for _, d := range in.Disks {
		attached = attached || d.DeviceName == spec.DiskDeviceName
	}
	if !attached {
		return nil
	}
	if in.Status != "TERMINATED" {
		return fmt.Errorf("%s: instance %s is %s, and its etcd member runs on the disk: kubeha detaches only the disk of a stopped master; run kubeha plan again", what(s), s.Replica, in.Status)
	}
	if err := x.backup(ctx, s, "before-move-"+s.Replica, false, ""); err != nil {
		return err
	}
	return x.gce.op(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.Instances.DetachDisk(x.project(), s.Zone, s.Replica, spec.DiskDeviceName).Context(ctx).Do()
	})
}

// rejoined waits for a master made again on its disk: its member (id)
// answers as a healthy voter, with the VM's boot watched for a failure;
// then for the healthy voters the step leaves.
func (x *executor) rejoined(ctx context.Context, s *planner.Step, id uint64) error {
	if id == 0 {
		return fmt.Errorf("%s: the plan names no etcd member for the master made again on its disk: plan again", what(s))
	}
	booted := x.bootCheck(s.Zone, s.Target)
	waiting := fmt.Sprintf("wait for etcd member %x to run again on its disk", id)
	last, lastCheck := "", time.Now()
	err := x.etcd.poll(ctx, waiting, gatePoll, func(err error) bool { return !errors.Is(err, errBootFailed) }, func(cctx context.Context) error {
		if time.Since(lastCheck) >= bootCheckEvery {
			lastCheck = time.Now()
			if err := booted(cctx); err != nil {
				return err
			}
		}
		err := x.memberUp(cctx, id)
		if err != nil && err.Error() != last {
			last = err.Error()
			x.progress(s, waiting+": "+last)
		}
		return err
	})
	if err != nil {
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
