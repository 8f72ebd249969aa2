package observe

import (
	"context"
	"strings"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// observeNetwork reads the network the spec names (in its own project: a
// Shared VPC's host project) and the subnetwork it names, if any.
func observeNetwork(ctx context.Context, svc *compute.Service, g spec.GCE) (*state.Network, error) {
	out := &state.Network{Path: g.NetworkPath()}
	np := strings.Split(out.Path, "/") // projects/P/global/networks/N
	n, err := ignoreNotFound(svc.Networks.Get(np[1], np[4]).Context(ctx).Do())
	if err != nil {
		return nil, err
	}
	if n != nil {
		out.Exists, out.AutoMode = true, n.AutoCreateSubnetworks
	}
	if g.Subnetwork == "" {
		return out, nil
	}
	out.Subnetwork = g.SubnetworkPath()
	sp := strings.Split(out.Subnetwork, "/") // projects/P/regions/R/subnetworks/S
	sn, err := ignoreNotFound(svc.Subnetworks.Get(sp[1], sp[3], sp[5]).Context(ctx).Do())
	if err != nil {
		return nil, err
	}
	if sn != nil {
		out.SubnetworkOf = sn.Network[strings.Index(sn.Network, "projects/"):]
	}
	return out, nil
}
