package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/api/option"
	storage "google.golang.org/api/storage/v1"
)

// loseQuorum deletes masters and their data disks out of band, with gcloud
// where it is installed (else the compute/v1 client, as a script would),
// as a zone outage or an operator's mistake would.
func (c *cluster) loseQuorum(t *testing.T, s status, names ...string) {
	t.Helper()
	zone := map[string]string{}
	for _, r := range s.Replicas {
		zone[r.Name] = r.Zone
	}
	gcloud := c.gcloud(t)
	gce := c.compute(t)
	for _, n := range names {
		if gcloud != nil {
			gcloud("compute", "instances", "delete", n, "--zone", zone[n])
			gcloud("compute", "disks", "delete", n+"-pd", "--zone", zone[n])
			continue
		}
		op, err := gce.Instances.Delete("kubeha-e2e", zone[n], n).Do()
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "instance "+n+" deleted", func() bool {
			got, err := gce.ZoneOperations.Get("kubeha-e2e", zone[n], op.Name).Do()
			return err == nil && got.Status == "DONE"
		})
		if _, err := gce.Disks.Delete("kubeha-e2e", zone[n], n+"-pd").Do(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, "the disks deleted", func() bool {
		for _, n := range names {
			if _, err := gce.Disks.Get("kubeha-e2e", zone[n], n+"-pd").Do(); err == nil {
				return false
			}
		}
		return true
	})
}

// putKeys writes n keys under prefix.
func putKeys(t *testing.T, cli *clientv3.Client, prefix string, n int) int64 {
	t.Helper()
	var rev int64
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := cli.Put(ctx, fmt.Sprintf("%s/%03d", prefix, i), "v")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	return rev
}

func countKeys(t *testing.T, cli *clientv3.Client, prefix string) (int, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return int(resp.Count), resp.Header.Revision
}

// TestRestoreAfterQuorumLoss: 5 masters scaled to 3 (kubeha saves a
// snapshot before each removal); keys written before and after the last
// snapshot; two masters and their disks deleted with gcloud: quorum is
// lost. plan and status name the newest snapshot and kubeha restore;
// restore (killed once mid-way, then run again) brings etcd back to that
// snapshot on the one master left and two masters created again: the keys
// of the snapshot are there, those written after it are not, the revision
// moved on by a billion, the masters booted with the restore's cluster
// token (a new cluster ID), no snapshot copy is left in Cloud Storage; then
// apply converges and the cluster scales to 5.
func TestRestoreAfterQuorumLoss(t *testing.T) {
	t.Parallel()
	c, _ := appliedCluster(t, "restore", 5, false)
	s := c.status()
	cli := c.etcd(s)
	putKeys(t, cli, "before", 40)
	c.write(3, false)
	c.apply()
	s = c.converged(3)
	entries, _ := os.ReadDir(filepath.Join(c.dir, "backups"))
	if len(entries) == 0 {
		t.Fatal("no snapshot saved by the scale-down")
	}
	cli = c.etcd(s)
	_, snapRev := countKeys(t, cli, "before")
	putKeys(t, cli, "after", 10) // after the newest snapshot: lost by the restore
	oldID := clusterIDOf(t, cli)

	c.loseQuorum(t, s, s.Replicas[1].Name, s.Replicas[2].Name)
	plan := c.kubeha("plan", "-f", c.spec)
	if plan.code == 0 || !strings.Contains(plan.stderr, "kubeha restore -f cluster.yaml") || !regexp.MustCompile(`newest snapshot, \S+-restore-before-\S+-r\d+\.db`).MatchString(plan.stderr) {
		t.Fatalf("plan with quorum lost names no snapshot and no restore: %+v", plan)
	}
	if st := c.kubeha("status", "-f", c.spec); !strings.Contains(st.stdout, "kubeha restore -f "+c.spec+" restores its newest snapshot") {
		t.Errorf("status with quorum lost names no restore: %+v", st)
	}
	var doc status
	if st := c.kubeha("status", "-f", c.spec, "-o", "json"); json.Unmarshal([]byte(st.stdout), &doc) != nil || doc.Restore == nil ||
		doc.Restore.Command != "kubeha restore -f "+c.spec || !strings.Contains(doc.Restore.Snapshot, "-restore-before-") || doc.Restore.Revision == 0 {
		t.Errorf("status -o json with quorum lost names no restore: %+v", st)
	}
	// Killed once the first masters are stopped and restoring, then again.
	if !c.killAfter("restore", 3, true) {
		t.Log("the restore ended before it could be killed")
	}
	r := c.kubeha("restore", "-f", c.spec, "--auto-approve")
	if r.code != 0 {
		t.Fatalf("restore again: %+v", r)
	}
	if !strings.Contains(r.stderr, "is restored from") {
		t.Errorf("restore says nothing of what it restored: %s", r.stderr)
	}
	noKeyMaterial(t, "restore output", r.stdout, r.stderr)
	s = c.status()
	if s.Etcd.Voters != 3 || s.Etcd.HealthyVoters != 3 {
		t.Fatalf("after the restore: %+v", s.Etcd)
	}
	cli = c.etcd(s)
	n, rev := countKeys(t, cli, "before")
	if n != 40 {
		t.Errorf("%d of the 40 keys of the snapshot are there", n)
	}
	if lost, _ := countKeys(t, cli, "after"); lost != 0 {
		t.Errorf("%d keys written after the snapshot are there", lost)
	}
	if rev < snapRev+1_000_000_000 {
		t.Errorf("revision %d after the restore, want at least the snapshot's %d plus a billion", rev, snapRev)
	}
	if id := clusterIDOf(t, cli); id == oldID {
		t.Errorf("the restored cluster has the old cluster ID %x", id)
	}
	// The copy in Cloud Storage is gone once every member restored it.
	if objs := c.bucketObjects(t, "kubeha-e2e-restore-kubeha"); len(objs) != 0 {
		t.Errorf("objects left in the restore bucket: %v", objs)
	}
	c.apply()
	c.converged(3)
	c.write(5, false)
	c.apply()
	c.converged(5)
	if n, _ := countKeys(t, c.etcd(c.status()), "before"); n != 40 {
		t.Errorf("after 3 -> 5, %d of the 40 keys", n)
	}

	// An upload left in the restore bucket (a restore cut short and never
	// finished): destroy deletes the bucket with the cluster.
	gcs := c.storage(t)
	if _, err := gcs.Buckets.Insert("kubeha-e2e", &storage.Bucket{Name: "kubeha-e2e-restore-kubeha"}).Do(); err != nil {
		t.Fatal(err)
	}
	if _, err := gcs.Objects.Insert("kubeha-e2e-restore-kubeha", &storage.Object{Name: "restore/r9-left.db"}).Media(strings.NewReader("left")).Do(); err != nil {
		t.Fatal(err)
	}
	if d := c.kubeha("destroy", "-f", c.spec, "--auto-approve"); d.code != 0 || !strings.Contains(d.stdout, "delete-restore-bucket gs://kubeha-e2e-restore-kubeha") {
		t.Fatalf("destroy: %+v", d)
	}
	if _, err := gcs.Buckets.Get("kubeha-e2e-restore-kubeha").Do(); err == nil {
		t.Error("the restore bucket is there after destroy")
	}
}

// storage is a Cloud Storage client of the emulator.
func (c *cluster) storage(t *testing.T) *storage.Service {
	t.Helper()
	gcs, err := storage.NewService(context.Background(), option.WithEndpoint(c.endpoint+"/storage/v1/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	return gcs
}

// bucketObjects lists a Cloud Storage bucket of the emulator (none when
// the bucket is gone).
func (c *cluster) bucketObjects(t *testing.T, bucket string) []string {
	t.Helper()
	list, err := c.storage(t).Objects.List(bucket).Do()
	if err != nil {
		return nil
	}
	var out []string
	for _, o := range list.Items {
		out = append(out, o.Name)
	}
	return out
}

func clusterIDOf(t *testing.T, cli *clientv3.Client) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.ClusterId
}

// TestRestoreTheControlPlane: 3 masters of the whole control plane, 5
// hollow nodes running a Deployment of 10 pods; ConfigMaps written, a
// snapshot taken with etcd's own client, more written; a kubectl get
// --watch started; two masters and their disks deleted with gcloud;
// kubeha restore --from the snapshot: the API answers through the load
// balancer again, kubectl sees every ConfigMap of the snapshot and none
// written after it, a watch from a resource version before the restore is
// told it expired (410: the revision moved on and was marked compacted,
// so informers list again rather than being served a past that was
// undone). The kubectl watch ended when the API servers stopped (kubectl
// get --watch does not retry: it is not left serving a past); what
// recovers by itself are informers: the hollow nodes' kubelets are Ready
// again and the Deployment scaled to 20 runs 20 pods, which needs the
// controller manager's, the scheduler's and the kubelets' informers to
// have listed the restored cluster again. kubeha apply then converges it.
func TestRestoreTheControlPlane(t *testing.T) {
	t.Parallel()
	c, s, k := joinedCluster(t, "cprestore", 5)
	api := c.adminAPI(t)
	k.must("create", "deployment", "web", "--image=registry.k8s.io/pause:3.10", "--replicas=10")
	waitFor(t, 4*time.Minute, "10 pods Running", func() bool { return runningPods(k, "app=web") == 10 })
	for i := 0; i < 5; i++ {
		k.must("create", "configmap", fmt.Sprintf("kept-%d", i), "--from-literal=k=v")
	}
	cli := c.etcd(s)
	snap := filepath.Join(c.dir, "by-hand.db")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Create(snap)
	if _, err := f.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rc.Close()
	cancel()
	for i := 0; i < 3; i++ {
		k.must("create", "configmap", fmt.Sprintf("lost-%d", i), "--from-literal=k=v")
	}
	var list struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if code, body := api.viaLB("GET", "/api/v1/namespaces/default/configmaps", ""); code != 200 || json.Unmarshal([]byte(body), &list) != nil || list.Metadata.ResourceVersion == "" {
		t.Fatalf("list ConfigMaps: %d %s", code, body)
	}
	kw := startCmd(t, exec.Command("kubectl", "--kubeconfig", k.kubeconfig, "get", "configmaps", "--watch", "-o", "name"))
	kw.waitFor("configmap/kept-4", 30*time.Second)
	c.loseQuorum(t, s, s.Replicas[1].Name, s.Replicas[2].Name)
	r := c.kubeha("restore", "-f", c.spec, "--from", snap, "--auto-approve")
	if r.code != 0 {
		t.Fatalf("restore: %+v", r)
	}
	s = c.status()
	api.serving(s)
	out := k.must("get", "configmaps", "-n", "default", "-o", "name")
	for i := 0; i < 5; i++ {
		if !strings.Contains(out, fmt.Sprintf("configmap/kept-%d\n", i)) {
			t.Errorf("ConfigMap kept-%d of the snapshot is missing:\n%s", i, out)
		}
	}
	if strings.Contains(out, "lost-") {
		t.Errorf("ConfigMaps written after the snapshot are there:\n%s", out)
	}
	// A watch from before the restore: expired, not served a past.
	code, body := api.viaLB("GET", "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=5&resourceVersion="+list.Metadata.ResourceVersion, "")
	if code != 410 && !strings.Contains(body, `"code":410`) {
		t.Errorf("a watch from resource version %s (before the restore): %d %s, want 410 (expired)", list.Metadata.ResourceVersion, code, body)
	}
	select {
	case <-kw.done:
		t.Logf("measured: the kubectl get --watch started before the restore ended when the API servers stopped (exit %d): %q", kw.code, strings.TrimSpace(kw.text()))
	case <-time.After(30 * time.Second):
		t.Errorf("the kubectl get --watch started before the restore is still running after it, so it may be serving a past that was undone:\n%s", kw.text())
	}
	// Informers recover by themselves: the kubelets', the controller
	// manager's, the scheduler's.
	waitFor(t, 3*time.Minute, "5 hollow nodes Ready after the restore", func() bool {
		var l nodeList
		w := 0
		if k.decode(&l, "get", "nodes") == nil {
			w, _ = l.ready()
		}
		return w == 5
	})
	k.must("scale", "deployment", "web", "--replicas=20")
	waitFor(t, 4*time.Minute, "20 pods Running after the restore", func() bool { return runningPods(k, "app=web") == 20 })
	k.must("create", "configmap", "after-restore", "--from-literal=k=v")
	// kubeha apply converges the restored cluster (the etcd-only test
	// scales it to 5 after its restore).
	c.apply()
	api.serving(c.converged(3))
	if out := k.must("get", "configmaps", "-n", "default", "-o", "name"); !strings.Contains(out, "configmap/after-restore") || !strings.Contains(out, "configmap/kept-4") {
		t.Errorf("after the apply:\n%s", out)
	}
}
