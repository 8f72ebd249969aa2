package executor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"
	storage "google.golang.org/api/storage/v1"

	"github.com/kubeha/kubeha/internal/snapshots"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/state"
	"github.com/kubeha/kubeha/state/observe"
)

// restoreEveryStepTwice takes a snapshot of e's cluster of three, deletes
// two of its masters and their disks, and restores it with every step run
// twice and one request in ten failing after the emulator acted; the
// restored cluster then needs no change.
func restoreEveryStepTwice(t *testing.T, e *env, seen Hooks) {
	t.Helper()
	ctx := context.Background()
	obs, err := observe.Cluster(ctx, e.src, e.sp)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := e.pki.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	etc := &etcd{tls: tlsCfg, timeout: 5 * time.Second, gate: 10 * time.Second}
	defer etc.close()
	backups := t.TempDir()
	var eps []string
	for _, m := range obs.Etcd.Members {
		eps = append(eps, m.ClientURLs...)
	}
	path, err := etc.snapshot(ctx, eps[0], backups, "20261207T000000.000Z-exe-test-r1.db", 5)
	if err != nil {
		t.Fatal(err)
	}
	info, err := snapshots.Describe(path)
	if err != nil {
		t.Fatal(err)
	}
	c, project := e.src.Compute, e.sp.Spec.GCE.Project
	for _, in := range obs.Instances[1:] {
		waitOp(t, c, project)(c.Instances.Delete(project, in.Zone, in.Name).Do())
		waitOp(t, c, project)(c.Disks.Delete(project, in.Zone, in.Name+"-pd").Do())
	}
	if obs, err = observe.Cluster(ctx, e.src, e.sp); err != nil {
		t.Fatal(err)
	}
	p, err := planner.Restore(e.sp, obs, planner.RestoreOptions{ID: "r1", Bucket: "p-exe-kubeha",
		Snapshot: &planner.Snapshot{File: filepath.Base(path), SHA256: info.SHA256, Revision: info.Revision}})
	if err != nil {
		t.Fatal(err)
	}
	// twice applies a plan with every step run twice and one request in
	// ten failing after the emulator acted.
	twice := func(p *planner.Plan, obs *state.Cluster) error {
		faults(t, e, `{"rate":0.1,"codes":[503],"after":true}`)
		defer faults(t, e, `{"rate":0}`)
		return Apply(ctx, p, Options{Compute: c, IAM: e.src.IAM, Secrets: e.src.Secrets, SecretManagerURL: e.smURL, Storage: e.apis.Storage, StorageURL: e.apis.StorageURL,
			Spec: e.sp, Observed: obs, PKI: e.pki, BackupDir: backups, Hooks: seen, twice: true})
	}
	if err = twice(p, obs); err != nil {
		t.Fatalf("restore, every step twice: %v\n%s", err, planner.Format(p))
	}
	after, err := observe.Cluster(ctx, e.src, e.sp)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := planner.Compute(e.sp, after); err != nil || !again.NoChanges {
		t.Fatalf("the restored cluster did not converge: %v\n%v", err, again)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the snapshot restored is gone from the backups directory: %v", err)
	}

	// A restore's bucket left with an upload in it (a restore cut short
	// and never finished) goes with the cluster.
	gcs := e.apis.Storage
	if _, err := gcs.Buckets.Insert(e.sp.Spec.GCE.Project, &storage.Bucket{Name: "p-exe-kubeha"}).Do(); err != nil && !strings.Contains(err.Error(), "409") {
		t.Fatal(err)
	}
	if _, err := gcs.Objects.Insert("p-exe-kubeha", &storage.Object{Name: "exe/r9-left.db"}).Media(strings.NewReader("left")).Do(); err != nil {
		t.Fatal(err)
	}
	p, err = planner.Destroy(e.sp, after, planner.DestroyOptions{RestoreBucket: "p-exe-kubeha"})
	if err != nil {
		t.Fatal(err)
	}
	if err = twice(p, after); err != nil {
		t.Fatalf("destroy after the restore, every step twice: %v\n%s", err, planner.Format(p))
	}
	if _, err := gcs.Buckets.Get("p-exe-kubeha").Do(); err == nil {
		t.Error("the restore's bucket is there after destroy")
	}
}

// waitOp waits for an operation of project's.
func waitOp(t *testing.T, c *compute.Service, project string) func(*compute.Operation, error) {
	return func(op *compute.Operation, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		for op.Status != "DONE" {
			if op, err = c.ZoneOperations.Wait(project, filepath.Base(op.Zone), op.Name).Do(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
