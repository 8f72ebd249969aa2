package sim

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	storage "google.golang.org/api/storage/v1"
)

// TestStorageThroughTheClient: buckets, a bucket's policy and objects
// through the real storage/v1 client, and an object's bytes given to the
// owner and to the bucket's object viewers only, as a master asks for them
// (curl with its metadata server's token).
func TestStorageThroughTheClient(t *testing.T) {
	s, _ := startSim(t, Options{})
	ctx := ctxT(t)
	gcs, err := storage.NewService(ctx, option.WithEndpoint(s.URL()+"/storage/v1/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gcs.Buckets.Insert(project, &storage.Bucket{Name: "Bad_Name"}).Context(ctx).Do(); code(err) != 400 {
		t.Errorf("a bad bucket name: %v, want 400", err)
	}
	if _, err := gcs.Buckets.Get("snaps").Context(ctx).Do(); code(err) != 404 {
		t.Errorf("a missing bucket: %v, want 404", err)
	}
	if _, err := gcs.Buckets.Insert(project, &storage.Bucket{Name: "snaps", Location: "europe-west1"}).Context(ctx).Do(); err != nil {
		t.Fatal(err)
	}
	if _, err := gcs.Buckets.Insert(project, &storage.Bucket{Name: "snaps"}).Context(ctx).Do(); code(err) != 409 {
		t.Errorf("the bucket again: %v, want 409", err)
	}
	data := bytes.Repeat([]byte("etcd snapshot "), 100000)
	obj, err := gcs.Objects.Insert("snaps", &storage.Object{Name: "c/at-1.db", Metadata: map[string]string{"sha256": "x"}}).
		Media(bytes.NewReader(data), googleapi.ChunkSize(0)).Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	if obj.Size != uint64(len(data)) || obj.Metadata["sha256"] != "x" {
		t.Errorf("uploaded: size %d metadata %v", obj.Size, obj.Metadata)
	}
	list, err := gcs.Objects.List("snaps").Prefix("c/").Context(ctx).Do()
	if err != nil || len(list.Items) != 1 || list.Items[0].Name != "c/at-1.db" {
		t.Fatalf("list: %v %+v", err, list)
	}
	resp, err := gcs.Objects.Get("snaps", "c/at-1.db").Context(ctx).Download()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, data) {
		t.Errorf("downloaded %d bytes, uploaded %d", len(got), len(data))
	}

	// A master's service account reads only once the bucket's policy lets it.
	master := "c-master@" + project + ".iam.gserviceaccount.com"
	asMaster := func() int {
		req, _ := http.NewRequest("GET", s.URL()+"/storage/v1/b/snaps/o/c%2Fat-1.db?alt=media", nil)
		req.Header.Set("Authorization", "Bearer "+s.token(master))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == 200 && !bytes.Equal(b, data) {
			t.Errorf("the master read %d bytes", len(b))
		}
		return resp.StatusCode
	}
	if c := asMaster(); c != 403 {
		t.Errorf("a master without a role: %d, want 403", c)
	}
	p, err := gcs.Buckets.GetIamPolicy("snaps").Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	p.Bindings = append(p.Bindings, &storage.PolicyBindings{Role: ObjectViewerRole, Members: []string{"serviceAccount:" + master}})
	if _, err := gcs.Buckets.SetIamPolicy("snaps", p).Context(ctx).Do(); err != nil {
		t.Fatal(err)
	}
	if _, err := gcs.Buckets.SetIamPolicy("snaps", p).Context(ctx).Do(); code(err) != 412 {
		t.Errorf("a policy of a stale etag: %v, want 412", err)
	}
	if c := asMaster(); c != 200 {
		t.Errorf("a master of the bucket's object viewers: %d, want 200", c)
	}
	if b, err := s.readObject(master, "snaps", "c/at-1.db"); err != nil || len(b) != len(data) {
		t.Errorf("readObject: %d bytes, %v", len(b), err)
	}
	if _, err := s.readObject("other@p.iam.gserviceaccount.com", "snaps", "c/at-1.db"); err == nil || !strings.Contains(err.Error(), "storage.objects.get") {
		t.Errorf("readObject by another account: %v", err)
	}

	if err := gcs.Buckets.Delete("snaps").Context(ctx).Do(); code(err) != 409 {
		t.Errorf("deleting a bucket with an object: %v, want 409", err)
	}
	if err := gcs.Objects.Delete("snaps", "c/at-1.db").Context(ctx).Do(); err != nil {
		t.Fatal(err)
	}
	if err := gcs.Buckets.Delete("snaps").Context(ctx).Do(); err != nil {
		t.Fatal(err)
	}
}

func code(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}
