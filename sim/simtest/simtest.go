// Package simtest starts kubeha's Compute API emulator for the tests of
// other packages, as net/http/httptest starts HTTP servers: on a loopback
// subnet of its own, stopped when the test ends, with a compute/v1 client of
// it. It also gives the cluster spec those tests plan and apply.
package simtest

import (
	"context"
	"testing"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/internal/gcpapi"
	"github.com/kubeha/kubeha/sim"
	"github.com/kubeha/kubeha/spec"
)

// Start starts an emulator with opts (on a loopback range no other
// emulator of this machine holds, unless opts names one) and a client of
// it; both end with the test.
func Start(t testing.TB, opts sim.Options) (*sim.Server, *compute.Service) {
	t.Helper()
	srv, err := sim.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start the emulator: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := srv.Client(context.Background())
	if err != nil {
		t.Fatalf("a client of the emulator: %v", err)
	}
	return srv, c
}

// Spec is a valid spec, defaults set, of cluster name in project, with
// replicas masters spread over europe-west1-b, -c and -d.
func Spec(name, project string, replicas int) *spec.Cluster {
	c := &spec.Cluster{APIVersion: spec.APIVersion, Kind: spec.Kind, Metadata: spec.Metadata{Name: name},
		Spec: spec.ClusterSpec{GCE: spec.GCE{Project: project, Region: "europe-west1"}, MultiZone: true,
			Masters: spec.Masters{Replicas: replicas, Zones: []string{"europe-west1-b", "europe-west1-c", "europe-west1-d"}}}}
	spec.SetDefaults(c)
	return c
}

// Clients are clients of the emulator's Compute, IAM and Secret Manager
// APIs.
func Clients(t testing.TB, srv *sim.Server) *gcpapi.Clients {
	t.Helper()
	c, err := gcpapi.Emulator(context.Background(), srv.URL())
	if err != nil {
		t.Fatalf("clients of the emulator: %v", err)
	}
	return c
}
