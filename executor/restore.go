package executor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"
	storage "google.golang.org/api/storage/v1"

	"github.com/kubeha/kubeha/internal/snapshots"
	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/planner"
)

// A restore (planner.Restore): the snapshot goes to Cloud Storage, every
// master stops, then boots restoring it.

// storageClient is the Cloud Storage client a restore needs.
func (x *executor) storageClient(s *planner.Step) (*storage.Service, error) {
	if x.o.Storage == nil {
		return nil, fmt.Errorf("%s: kubeha has no Cloud Storage client to hand the snapshot to the masters", what(s))
	}
	return x.o.Storage, nil
}

// uploadSnapshot puts the snapshot in the restore's bucket (made in the
// cluster's region, with uniform access, when missing), lets the masters'
// service account read the bucket's objects, and uploads the snapshot
// unless the object is there with its digest.
func (x *executor) uploadSnapshot(ctx context.Context, s *planner.Step) error {
	gcs, err := x.storageClient(s)
	if err != nil {
		return err
	}
	r := s.Restore
	path := filepath.Join(x.o.BackupDir, r.Snapshot.File)
	sum, err := snapshots.Digest(path)
	if err != nil {
		return fmt.Errorf("%s: read the snapshot: %w", what(s), err)
	}
	if sum != r.SHA256 {
		return fmt.Errorf("%s: the snapshot %s hashes to %s, not the %s the plan restores: it changed since the plan was made; plan again", what(s), path, sum, r.SHA256)
	}
	_, err = gcs.Buckets.Insert(x.project(), &storage.Bucket{Name: r.Bucket, Location: x.o.Spec.Spec.GCE.Region,
		IamConfiguration: &storage.BucketIamConfiguration{UniformBucketLevelAccess: &storage.BucketIamConfigurationUniformBucketLevelAccess{Enabled: true}},
		Labels:           map[string]string{"kubeha-cluster": x.cluster()}}).Context(ctx).Do()
	if err != nil && httpCode(err) != http.StatusConflict {
		return fmt.Errorf("%s: create bucket %s: %w", what(s), r.Bucket, err)
	}
	if err := x.grantObjectViewer(ctx, gcs, r.Bucket); err != nil {
		return fmt.Errorf("%s: %w", what(s), err)
	}
	if obj, err := gcs.Objects.Get(r.Bucket, r.Object).Context(ctx).Do(); err == nil && obj.Metadata["sha256"] == r.SHA256 {
		x.progress(s, "the snapshot is in Cloud Storage already")
		return nil
	} else if err != nil && httpCode(err) != http.StatusNotFound {
		return fmt.Errorf("%s: read gs://%s/%s: %w", what(s), r.Bucket, r.Object, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what(s), err)
	}
	defer f.Close()
	obj := &storage.Object{Name: r.Object, ContentType: "application/octet-stream",
		Metadata: map[string]string{"sha256": r.SHA256, "revision": strconv.FormatInt(r.Snapshot.Revision, 10), "kubeha-cluster": x.cluster()}}
	// One request (ChunkSize 0): a retry sends the whole snapshot again,
	// which the step's own retry does too.
	if _, err := gcs.Objects.Insert(r.Bucket, obj).Media(f, googleapi.ChunkSize(0)).Context(ctx).Do(); err != nil {
		return fmt.Errorf("%s: upload %s: %w", what(s), path, err)
	}
	x.progress(s, "uploaded "+r.Snapshot.File)
	return nil
}

// grantObjectViewer lets the masters' service account read the bucket's
// objects (and no one else is added).
func (x *executor) grantObjectViewer(ctx context.Context, gcs *storage.Service, bucket string) error {
	member := "serviceAccount:" + x.o.Spec.MasterServiceAccount()
	for attempt := 0; attempt < 5; attempt++ {
		p, err := gcs.Buckets.GetIamPolicy(bucket).Context(ctx).Do()
		if err != nil {
			return fmt.Errorf("read the policy of bucket %s: %w", bucket, err)
		}
		for _, b := range p.Bindings {
			if b.Role == "roles/storage.objectViewer" && slices.Contains(b.Members, member) {
				return nil
			}
		}
		p.Bindings = append(p.Bindings, &storage.PolicyBindings{Role: "roles/storage.objectViewer", Members: []string{member}})
		_, err = gcs.Buckets.SetIamPolicy(bucket, p).Context(ctx).Do()
		if httpCode(err) == http.StatusPreconditionFailed || httpCode(err) == http.StatusConflict {
			continue // changed meanwhile: read it again
		}
		if err != nil {
			return fmt.Errorf("let %s read bucket %s: %w", member, bucket, err)
		}
		return nil
	}
	return fmt.Errorf("let %s read bucket %s: its policy kept changing", member, bucket)
}

// stopInstance stops a master before a restore. The apply lock lived in
// the etcd that stops: it goes with it.
func (x *executor) stopInstance(ctx context.Context, s *planner.Step) error {
	x.dropLock()
	return x.gce.op(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.Instances.Stop(x.project(), s.Zone, s.Target).Context(ctx).Do()
	})
}

// dropLock abandons the lock of an etcd being stopped for a restore: the
// restored cluster's lock is taken once it formed.
func (x *executor) dropLock() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.lock != nil {
		x.lock.abandon()
		x.lock = nil
	}
}

// restoreMember writes the restore into a stopped master's metadata (its
// etcd member boots restoring the snapshot, in the restored cluster of
// the step's members) and starts it; it returns once the member started.
func (x *executor) restoreMember(ctx context.Context, s *planner.Step) error {
	in, err := x.instance(ctx, s.Zone, s.Target)
	if err != nil {
		return err
	}
	if in.Status != "TERMINATED" {
		// Not stopped yet (a step run again after a start it made): stop
		// it, so that the metadata it boots with is the restore's.
		if err := x.stopInstance(ctx, s); err != nil {
			return err
		}
		if in, err = x.instance(ctx, s.Zone, s.Target); err != nil {
			return err
		}
	}
	cfg, err := metadata.ParseConfig(itemOf(in, metadata.KeyConfig))
	if err != nil {
		return fmt.Errorf("%s: %w", what(s), err)
	}
	initial, err := x.staticCluster(ctx, s.Members)
	if err != nil {
		return err
	}
	ip := in.NetworkInterfaces[0].NetworkIP
	items, keys, err := x.boot(ctx, s.Target, ip, initial, metadata.StateNew, *cfg, &s.Restore.Restore)
	if err != nil {
		return err
	}
	if err := x.setMetadata(ctx, s, in, items); err != nil {
		return err
	}
	if err := x.gce.op(ctx, what(s), func() (*compute.Operation, error) {
		return x.o.Compute.Instances.Start(x.project(), s.Zone, s.Target).Context(ctx).Do()
	}); err != nil {
		return err
	}
	if err := x.retireKeys(ctx, s.Target, keys); err != nil {
		return err
	}
	return x.etcdOf(s.Members, func(ctx context.Context) error {
		return x.etcd.started(ctx, x.peerURL(ip), func(msg string) { x.progress(s, msg) }, x.bootCheck(s.Zone, s.Target))
	})(ctx)
}

// deleteRestoreSnapshot deletes the restore's copy of the snapshot once
// every member restored it (with those of the cluster's restores cut short
// before a master booted them), and the bucket once it is empty.
func (x *executor) deleteRestoreSnapshot(ctx context.Context, s *planner.Step) error {
	gcs, err := x.storageClient(s)
	if err != nil {
		return err
	}
	r := s.Restore
	// The uploads of this cluster's restores that were interrupted before
	// any master booted them (a restore under way is continued, not
	// started again) go too.
	objects := []string{r.Object}
	list, err := gcs.Objects.List(r.Bucket).Prefix(x.cluster() + "/").Context(ctx).Do()
	if err != nil && httpCode(err) != http.StatusNotFound {
		return fmt.Errorf("%s: list gs://%s: %w", what(s), r.Bucket, err)
	}
	if list != nil {
		for _, o := range list.Items {
			if o.Name != r.Object {
				objects = append(objects, o.Name)
			}
		}
	}
	for _, o := range objects {
		if err := gcs.Objects.Delete(r.Bucket, o).Context(ctx).Do(); err != nil && httpCode(err) != http.StatusNotFound {
			return fmt.Errorf("%s: delete gs://%s/%s: %w", what(s), r.Bucket, o, err)
		}
	}
	err = gcs.Buckets.Delete(r.Bucket).Context(ctx).Do()
	var ge *googleapi.Error
	switch {
	case err == nil, httpCode(err) == http.StatusNotFound:
		return nil
	case errors.As(err, &ge) && ge.Code == http.StatusConflict:
		return nil // other objects (another restore's): the bucket stays
	}
	return fmt.Errorf("%s: delete bucket %s: %w", what(s), r.Bucket, err)
}

// deleteRestoreBucket deletes the bucket of the cluster's restores, with
// every object in it, as the cluster is destroyed; a bucket gone is done.
func (x *executor) deleteRestoreBucket(ctx context.Context, s *planner.Step) error {
	gcs, err := x.storageClient(s)
	if err != nil {
		return err
	}
	bucket := strings.TrimPrefix(s.Target, "gs://")
	err = gcs.Objects.List(bucket).Pages(ctx, func(list *storage.Objects) error {
		for _, o := range list.Items {
			if err := gcs.Objects.Delete(bucket, o.Name).Context(ctx).Do(); err != nil && httpCode(err) != http.StatusNotFound {
				return fmt.Errorf("delete gs://%s/%s: %w", bucket, o.Name, err)
			}
		}
		return nil
	})
	if err != nil && httpCode(err) != http.StatusNotFound {
		return fmt.Errorf("%s: %w", what(s), err)
	}
	if err := gcs.Buckets.Delete(bucket).Context(ctx).Do(); err != nil && httpCode(err) != http.StatusNotFound {
		return fmt.Errorf("%s: delete bucket %s: %w", what(s), bucket, err)
	}
	return nil
}
