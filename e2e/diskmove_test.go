package e2e

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kubeha/kubeha/cmd/kubeha/cli"
)

// moveDisks rewrites the spec with spec.masters.replaceBy: disk and the
// given machine type.
func (c *cluster) moveDisks(replicas int, machineType string) {
	c.t.Helper()
	c.write(replicas, false)
	text, err := os.ReadFile(c.spec)
	if err != nil {
		c.t.Fatal(err)
	}
	masters := "    replaceBy: disk\n"
	if machineType != "" {
		masters += "    machineType: " + machineType + "\n"
	}
	out := strings.Replace(string(text), "  masters:\n", "  masters:\n"+masters, 1)
	if err := os.WriteFile(c.spec, []byte(out), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// memberIDs are etcd's member IDs, sorted.
func memberIDs(t *testing.T, cli *clientv3.Client) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, m := range resp.Members {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	return ids
}

// machineTypes are the machine types of the cluster's masters, by name.
func (c *cluster) machineTypes(t *testing.T, s status) map[string]string {
	t.Helper()
	gce := c.compute(t)
	out := map[string]string{}
	for _, r := range s.Replicas {
		in, err := gce.Instances.Get("kubeha-e2e", r.Zone, r.Name).Do()
		if err != nil {
			t.Fatal(err)
		}
		out[r.Name] = in.MachineType[strings.LastIndex(in.MachineType, "/")+1:]
	}
	return out
}

// TestReplaceByDisk: 3 masters with keys in etcd; the machine type changed
// with spec.masters.replaceBy: disk: the plan makes each VM again on its
// own disk (no learner added, no member removed); the apply is killed
// mid-way and run again; every master then has the new machine type, the
// members their old IDs and the keys are there. Then a VM deleted out of
// band with gcloud (its disk kept): plan names it, apply makes it again on
// its disk with its member's ID, and the keys written while it was gone
// reach it.
func TestReplaceByDisk(t *testing.T) {
	t.Parallel()
	c, s := appliedCluster(t, "diskmove", 3, false)
	cli := c.etcd(s)
	putKeys(t, cli, "before", 30)
	ids := memberIDs(t, cli)

	c.moveDisks(3, "n1-standard-4")
	plan := c.kubeha("plan", "-f", c.spec)
	if plan.code != 0 || strings.Contains(plan.stdout, "add-etcd-learner") || strings.Contains(plan.stdout, "remove-etcd-member") ||
		strings.Count(plan.stdout, "made again on its etcd data disk") != 3 {
		t.Fatalf("plan of 3 disk moves:\n%s\n%s", plan.stdout, plan.stderr)
	}
	if !c.killAfter("apply", 3, true) {
		t.Log("the apply ended before it could be killed")
	}
	c.quorumHeld("after the apply was killed")
	c.apply()
	s = c.converged(3)
	for name, mt := range c.machineTypes(t, s) {
		if mt != "n1-standard-4" {
			t.Errorf("%s runs on %s after the disk moves", name, mt)
		}
	}
	cli = c.etcd(s)
	if got := memberIDs(t, cli); !slices.Equal(got, ids) {
		t.Errorf("member IDs after the disk moves: %x, before: %x", got, ids)
	}
	if n, _ := countKeys(t, cli, "before"); n != 30 {
		t.Errorf("%d of the 30 keys after the disk moves", n)
	}

	// A VM deleted out of band, its disk kept.
	gone := s.Replicas[1]
	if gcloud := c.gcloud(t); gcloud != nil {
		gcloud("compute", "instances", "delete", gone.Name, "--zone", gone.Zone, "--keep-disks", "data")
	} else {
		gce := c.compute(t)
		if _, err := gce.Instances.Delete("kubeha-e2e", gone.Zone, gone.Name).Do(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, gone.Name+" deleted", func() bool {
		_, err := c.compute(t).Instances.Get("kubeha-e2e", gone.Zone, gone.Name).Do()
		return err != nil
	})
	putKeys(t, c.etcd(c.status()), "while-gone", 10)
	plan = c.kubeha("plan", "-f", c.spec)
	if plan.code != 0 || !strings.Contains(plan.stdout, "its VM is gone") || strings.Contains(plan.stdout, "add-etcd-learner") {
		t.Fatalf("plan after a VM was deleted out of band:\n%s\n%s", plan.stdout, plan.stderr)
	}
	c.apply()
	s = c.converged(3)
	cli = c.etcd(s)
	if got := memberIDs(t, cli); !slices.Equal(got, ids) {
		t.Errorf("member IDs after the VM was made again: %x, before: %x", got, ids)
	}
	one := c.etcdAt(t, gone.InternalIP)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := one.Get(ctx, "while-gone/", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithSerializable()); err != nil || resp.Count != 10 {
		t.Errorf("the master made again has %v of the 10 keys written while it was gone: %v", resp, err)
	}
}

// etcdAt is an etcd client of the one member at ip.
func (c *cluster) etcdAt(t *testing.T, ip string) *clientv3.Client {
	t.Helper()
	s := c.status()
	s.Replicas = slices.DeleteFunc(s.Replicas, func(r cli.StatusReplica) bool { return r.InternalIP != ip })
	if len(s.Replicas) != 1 {
		t.Fatalf("no master at %s", ip)
	}
	return c.etcd(s)
}
