package sim

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/metadata"
)

// TestDiskMovesToANewVM: through the compute client, a stopped master's
// data disk is detached, its VM deleted and made again on the disk, and
// its etcd member comes back with its data and member ID. A disk in use
// cannot be attached twice, and a hot detach crashes the guest's etcd.
func TestDiskMovesToANewVM(t *testing.T) {
	_, c := startSim(t, Options{})
	ms := []master{reserve(t, c, "m1", zoneB), reserve(t, c, "m2", zoneC), reserve(t, c, "m3", zoneD)}
	cluster := initialCluster("http", ms...)
	for _, m := range ms {
		boot(t, c, m, "http", cluster, metadata.StateNew, nil)
	}
	cli := etcdClient(t, nil, ms[0].clientURL("http"), ms[1].clientURL("http"))
	var before *clientv3.MemberListResponse
	eventually(t, 20*time.Second, "cluster of three", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := cli.Put(ctx, "/before", "1"); err != nil {
			return err
		}
		var err error
		before, err = memberList(cli)
		return err
	})
	m3 := ms[2]
	ctx := ctxT(t)

	// A disk in use by m3 cannot go to another VM.
	op, err := c.Instances.AttachDisk(project, zoneD, "m3", &compute.AttachedDisk{Source: zonalLink(zoneD, "disks", "m3-pd"), DeviceName: "again"}).Context(ctx).Do()
	opFails(t, op, err, c, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE")

	ok(t, c)(c.Instances.Stop(project, zoneD, "m3").Context(ctx).Do())
	if _, err := c.Instances.DetachDisk(project, zoneD, "m3", "nothing").Context(ctx).Do(); err == nil {
		t.Error("detaching a device the instance has not succeeded")
	}
	ok(t, c)(c.Instances.DetachDisk(project, zoneD, "m3", "master-pd").Context(ctx).Do())
	if d, _ := c.Disks.Get(project, zoneD, "m3-pd").Context(ctx).Do(); d == nil || len(d.Users) != 0 {
		t.Fatalf("detached disk: %+v", d)
	}
	in, _ := c.Instances.Get(project, zoneD, "m3").Context(ctx).Do()
	if len(in.Disks) != 0 { // boot gives it no boot disk
		t.Fatalf("instance after the detach has disks %+v", in.Disks)
	}
	ok(t, c)(c.Instances.Delete(project, zoneD, "m3").Context(ctx).Do())
	if _, err := c.Disks.Get(project, zoneD, "m3-pd").Context(ctx).Do(); err != nil {
		t.Fatalf("the detached disk went with its VM: %v", err)
	}
	ctxPut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctxPut, "/while-moving", "2"); err != nil {
		t.Fatal(err)
	}

	// The VM made again on the disk, with its name and IP: the same member.
	boot(t, c, m3, "http", cluster, metadata.StateExisting, nil)
	only3 := etcdClient(t, nil, m3.clientURL("http"))
	eventually(t, 30*time.Second, "the member back on its disk catches up", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := only3.Get(ctx, "/while-moving", clientv3.WithSerializable())
		if err != nil {
			return err
		}
		if len(r.Kvs) != 1 {
			return fmt.Errorf("the key written while it moved is not there yet")
		}
		return nil
	})
	after, err := memberList(cli)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Members) != 3 || after.Header.ClusterId != before.Header.ClusterId {
		t.Fatalf("members after the move: %d, cluster %x (before %x)", len(after.Members), after.Header.ClusterId, before.Header.ClusterId)
	}
	for i := range before.Members {
		if before.Members[i].ID != after.Members[i].ID {
			t.Errorf("member %s: ID %x before the move, %x after", before.Members[i].Name, before.Members[i].ID, after.Members[i].ID)
		}
	}

	// A disk taken from a running guest: its etcd stops, as on an I/O error.
	ok(t, c)(c.Instances.DetachDisk(project, zoneD, "m3", "master-pd").Context(ctx).Do())
	eventually(t, 10*time.Second, "etcd of a guest whose disk went stops", func() error {
		if err := status(only3, m3.clientURL("http")); err == nil {
			return fmt.Errorf("it still answers")
		}
		return nil
	})
	// And attached again to the stopped VM, it boots on it.
	ok(t, c)(c.Instances.Stop(project, zoneD, "m3").Context(ctx).Do())
	ok(t, c)(c.Instances.AttachDisk(project, zoneD, "m3", &compute.AttachedDisk{Source: zonalLink(zoneD, "disks", "m3-pd"), DeviceName: "master-pd"}).Context(ctx).Do())
	if d, _ := c.Disks.Get(project, zoneD, "m3-pd").Context(ctx).Do(); d == nil || len(d.Users) != 1 {
		t.Fatalf("attached disk: %+v", d)
	}
}

// TestDiskAutoDelete: a data disk set to stay outlives its instance; set
// to go, it is deleted with it.
func TestDiskAutoDelete(t *testing.T) {
	_, c := startSim(t, Options{})
	ctx := ctxT(t)
	for _, keep := range []bool{true, false} {
		name := fmt.Sprintf("vm-%t", keep)
		ok(t, c)(c.Disks.Insert(project, zoneB, &compute.Disk{Name: name + "-pd", SizeGb: 20}).Context(ctx).Do())
		ok(t, c)(c.Instances.Insert(project, zoneB, &compute.Instance{Name: name, MachineType: "n1-standard-2",
			Disks: []*compute.AttachedDisk{{Source: zonalLink(zoneB, "disks", name+"-pd"), DeviceName: "data", AutoDelete: keep}}}).Context(ctx).Do())
		ok(t, c)(c.Instances.SetDiskAutoDelete(project, zoneB, name, !keep, "data").Context(ctx).Do())
		if _, err := c.Instances.SetDiskAutoDelete(project, zoneB, name, true, "nothing").Context(ctx).Do(); err == nil {
			t.Error("setDiskAutoDelete of a device the instance has not succeeded")
		}
		ok(t, c)(c.Instances.Delete(project, zoneB, name).Context(ctx).Do())
		_, err := c.Disks.Get(project, zoneB, name+"-pd").Context(ctx).Do()
		if keep && err != nil {
			t.Errorf("a disk set to stay went with its instance: %v", err)
		}
		if !keep && err == nil {
			t.Error("a disk set to be deleted with its instance stayed")
		}
	}
}
