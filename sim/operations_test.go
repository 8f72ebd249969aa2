package sim

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"
)

func TestOperationsLatencyAndWait(t *testing.T) {
	s, c := startSim(t, Options{WaitTimeout: 100 * time.Millisecond})
	ctx := ctxT(t)
	postAdmin(t, s, "/sim/v1/latency", `{"disks.insert":"600ms"}`)
	op, err := c.Disks.Insert(project, zoneB, &compute.Disk{Name: "slow"}).Context(ctx).Do()
	if err != nil || op.Status != "PENDING" {
		t.Fatalf("insert: %v %v", op, err)
	}
	seen := map[string]bool{}
	// The wait times out while the operation is still RUNNING, as GCE's may.
	waited, err := c.ZoneOperations.Wait(project, zoneB, op.Name).Context(ctx).Do()
	if err != nil || waited.Status != "RUNNING" {
		t.Fatalf("first wait: %v %v", waited.Status, err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		got, err := c.ZoneOperations.Get(project, zoneB, op.Name).Context(ctx).Do()
		if err != nil {
			t.Fatal(err)
		}
		seen[got.Status] = true
		if got.Status == "DONE" {
			if got.Progress != 100 || got.EndTime == "" || got.Error != nil {
				t.Errorf("done op %+v", got)
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !seen["RUNNING"] || !seen["DONE"] {
		t.Errorf("statuses seen %v", seen)
	}
	ops, err := c.ZoneOperations.List(project, zoneB).Context(ctx).Do()
	if err != nil || len(ops.Items) != 1 {
		t.Fatalf("operations list: %v %v", ops, err)
	}
	postAdmin(t, s, "/sim/v1/latency", `{"default":"0s","disks.insert":"0s"}`)
	op, err = c.Disks.Insert(project, zoneB, &compute.Disk{Name: "fast"}).Context(ctx).Do()
	if err != nil || op.Status != "DONE" {
		t.Fatalf("zero-latency insert: %v %v", op, err)
	}
}

func TestFaultsAndRequestCounts(t *testing.T) {
	s, c := startSim(t, Options{})
	ctx := ctxT(t)
	postAdmin(t, s, "/sim/v1/faults", `{"rate":1,"codes":[429],"retryAfter":"2s"}`)
	_, err := c.Firewalls.List(project).Context(ctx).Do()
	apiErr(t, err, 429, "rateLimitExceeded")
	postAdmin(t, s, "/sim/v1/faults", `{"rate":1,"codes":[503]}`)
	_, err = c.Firewalls.List(project).Context(ctx).Do()
	apiErr(t, err, 503, "backendError")
	postAdmin(t, s, "/sim/v1/faults", `{"rate":0}`)
	if _, err := c.Firewalls.List(project).Context(ctx).Do(); err != nil {
		t.Fatal(err)
	}
	// A faulted insert changes nothing.
	postAdmin(t, s, "/sim/v1/faults", `{"rate":1,"codes":[503],"methods":["firewalls.insert"]}`)
	_, err = c.Firewalls.Insert(project, &compute.Firewall{Name: "x"}).Context(ctx).Do()
	apiErr(t, err, 503, "backendError")
	if l, _ := c.Firewalls.List(project).Context(ctx).Do(); len(l.Items) != 0 {
		t.Error("a faulted insert created a firewall")
	}
	resp, err := http.Get(s.URL() + "/sim/v1/requests")
	if err != nil {
		t.Fatal(err)
	}
	var counts RequestCounts
	if err := json.NewDecoder(resp.Body).Decode(&counts); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if counts.Total != 5 || counts.ByMethod["GET firewalls.list"] != 4 || counts.ByMethod["POST firewalls.insert"] != 1 {
		t.Errorf("counts %+v", counts)
	}
	req, _ := http.NewRequest(http.MethodDelete, s.URL()+"/sim/v1/requests", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	if s.Requests().Total != 0 {
		t.Error("reset did not zero the counts")
	}
	// One that fails after the work ("after") created it all the same, and
	// its retry with the same requestId gets the first call's operation.
	postAdmin(t, s, "/sim/v1/faults", `{"rate":1,"codes":[503],"methods":["firewalls.insert"],"after":true}`)
	const rid = "8c5e5f0e-3d2b-4c1a-9f1e-2b7a6d5c4e3f"
	_, err = c.Firewalls.Insert(project, &compute.Firewall{Name: "y"}).RequestId(rid).Context(ctx).Do()
	apiErr(t, err, 503, "backendError")
	if l, _ := c.Firewalls.List(project).Context(ctx).Do(); len(l.Items) != 1 || l.Items[0].Name != "y" {
		t.Errorf("a request failed after the work: firewalls %v", l)
	}
	postAdmin(t, s, "/sim/v1/faults", `{"rate":0}`)
	op, err := c.Firewalls.Insert(project, &compute.Firewall{Name: "y"}).RequestId(rid).Context(ctx).Do()
	if err != nil || op.TargetLink == "" {
		t.Errorf("the retry with the same requestId: %v, %v", op, err)
	}
	for _, bad := range []string{`{"rate":2}`, `{"rate":0.5,"codes":[200]}`, `nope`} {
		resp, err := http.Post(s.URL()+"/sim/v1/faults", "application/json", strings.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("faults %s: %s", bad, resp.Status)
		}
	}
}

// TestRequestIDs: an insert retried with the requestId of a call that got
// through returns that call's operation and creates nothing again; a
// requestId that is not a UUID is refused; inserts without one are counted.
func TestRequestIDs(t *testing.T) {
	s, c := startSim(t, Options{})
	ctx := ctxT(t)
	const id = "6f1e8d2a-4c3b-4a5e-9b7d-0123456789ab"
	first := ok(t, c)(c.Disks.Insert(project, zoneB, &compute.Disk{Name: "d1", SizeGb: 10}).RequestId(id).Context(ctx).Do())
	again, err := c.Disks.Insert(project, zoneB, &compute.Disk{Name: "d1", SizeGb: 10}).RequestId(id).Context(ctx).Do()
	if err != nil || again.Name != first.Name || again.Error != nil {
		t.Fatalf("the insert again with its requestId: %v %+v, want operation %s", err, again, first.Name)
	}
	if l, _ := c.Disks.List(project, zoneB).Context(ctx).Do(); len(l.Items) != 1 {
		t.Fatalf("%d disks after one insert sent twice", len(l.Items))
	}
	// Another requestId is another request: the name is taken.
	_, err = c.Disks.Insert(project, zoneB, &compute.Disk{Name: "d1", SizeGb: 10}).RequestId("7f1e8d2a-4c3b-4a5e-9b7d-0123456789ab").Context(ctx).Do()
	if !isCode(err, 409) {
		t.Fatalf("a second insert with another requestId: %v, want 409", err)
	}
	for _, bad := range []string{"retry-1", "00000000-0000-0000-0000-000000000000"} {
		if _, err := c.Disks.Insert(project, zoneB, &compute.Disk{Name: "d2", SizeGb: 10}).RequestId(bad).Context(ctx).Do(); !isCode(err, 400) {
			t.Errorf("requestId %q: %v, want 400", bad, err)
		}
	}
	ok(t, c)(c.Disks.Insert(project, zoneB, &compute.Disk{Name: "d3", SizeGb: 10}).Context(ctx).Do())
	if n := s.Requests().InsertsWithoutRequestID["disks.insert"]; n != 1 {
		t.Errorf("inserts without a requestId: %d, want 1", n)
	}
}

func isCode(err error, code int) bool {
	var ge *googleapi.Error
	return errors.As(err, &ge) && ge.Code == code
}

// TestFingerprintForms: a fingerprint sent back in base64's URL-safe form
// (as gcloud sends it) is the same fingerprint.
func TestFingerprintForms(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"ab+/cd==", "ab-_cd==", true},
		{"ab+/cd==", "ab-_cd", true},
		{"ab+/cd==", "ab+/ce==", false},
	} {
		if got := sameFingerprint(tc.a, tc.b); got != tc.same {
			t.Errorf("sameFingerprint(%q, %q) = %t", tc.a, tc.b, got)
		}
	}
}
