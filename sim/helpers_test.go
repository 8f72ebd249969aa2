package sim

import (
	"context"
	"errors"
	"net/http"
	"path"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/googleapi"

	compute "google.golang.org/api/compute/v1"
)

const (
	project = "p-test"
	region  = "europe-west1"
	zoneB   = "europe-west1-b"
	zoneC   = "europe-west1-c"
	zoneD   = "europe-west1-d"
)

func startSim(t testing.TB, opts Options) (*Server, *compute.Service) {
	t.Helper()
	s, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	c, err := s.Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wait waits for an operation with the operations' wait method, as kubeha does.
func wait(t testing.TB, c *compute.Service, op *compute.Operation) *compute.Operation {
	t.Helper()
	ctx := ctxT(t)
	var err error
	for op.Status != "DONE" {
		switch {
		case op.Zone != "":
			op, err = c.ZoneOperations.Wait(project, path.Base(op.Zone), op.Name).Context(ctx).Do()
		case op.Region != "":
			op, err = c.RegionOperations.Wait(project, path.Base(op.Region), op.Name).Context(ctx).Do()
		default:
			op, err = c.GlobalOperations.Wait(project, op.Name).Context(ctx).Do()
		}
		if err != nil {
			t.Fatalf("wait operation: %v", err)
		}
	}
	return op
}

// ok returns a function that waits for an operation and fails the test on
// a call or operation error: ok(t, c)(c.Disks.Insert(...).Do()).
func ok(t testing.TB, c *compute.Service) func(*compute.Operation, error) *compute.Operation {
	return func(op *compute.Operation, err error) *compute.Operation {
		t.Helper()
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		op = wait(t, c, op)
		if op.Error != nil {
			t.Fatalf("operation %s failed: %+v", op.OperationType, op.Error.Errors[0])
		}
		return op
	}
}

// opFails waits for the operation and checks it finished with an error code.
func opFails(t *testing.T, op *compute.Operation, err error, c *compute.Service, code string) {
	t.Helper()
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	op = wait(t, c, op)
	if op.Error == nil || len(op.Error.Errors) == 0 || op.Error.Errors[0].Code != code {
		t.Fatalf("operation %s: error %+v, want code %s", op.OperationType, op.Error, code)
	}
}

// apiErr checks an API error's HTTP code and reason.
func apiErr(t *testing.T, err error, code int, reason string) {
	t.Helper()
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		t.Fatalf("error %v, want a googleapi.Error %d %s", err, code, reason)
	}
	if ge.Code != code || len(ge.Errors) == 0 || ge.Errors[0].Reason != reason {
		t.Fatalf("error %d %+v, want %d %s", ge.Code, ge.Errors, code, reason)
	}
}

func zonalLink(zone, kind, name string) string {
	return "projects/" + project + "/zones/" + zone + "/" + kind + "/" + name
}

func regionalLink(kind, name string) string {
	return "projects/" + project + "/regions/" + region + "/" + kind + "/" + name
}

func str(s string) *string { return &s }

func postAdmin(t *testing.T, s *Server, path, body string) {
	t.Helper()
	resp, err := http.Post(s.URL()+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %s", path, resp.Status)
	}
}
