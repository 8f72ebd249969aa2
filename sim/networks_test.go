package sim

import (
	"net/netip"
	"strings"
	"testing"

	compute "google.golang.org/api/compute/v1"
)

// TestNetworks: the default auto-mode network and its subnetworks; a
// custom-mode network with a subnetwork whose range maps onto a loopback
// block; and what GCE refuses: an instance or internal address on a
// custom-mode network without a subnetwork, a subnetwork of another
// network or region, an address outside its subnetwork, overlapping
// ranges.
func TestNetworks(t *testing.T) {
	_, c := startSim(t, Options{})
	ctx := ctxT(t)
	n, err := c.Networks.Get(project, "default").Context(ctx).Do()
	if err != nil || !n.AutoCreateSubnetworks || len(n.Subnetworks) == 0 {
		t.Fatalf("default network %+v %v", n, err)
	}
	if _, err := c.Subnetworks.Get(project, region, "default").Context(ctx).Do(); err != nil {
		t.Fatalf("default subnetwork: %v", err)
	}
	_, err = c.Networks.Get(project, "other").Context(ctx).Do()
	apiErr(t, err, 404, "notFound")

	ok(t, c)(c.Networks.Insert(project, &compute.Network{Name: "vpc", AutoCreateSubnetworks: false, ForceSendFields: []string{"AutoCreateSubnetworks"}}).Context(ctx).Do())
	ok(t, c)(c.Subnetworks.Insert(project, region, &compute.Subnetwork{Name: "masters", Network: "global/networks/vpc", IpCidrRange: "10.20.0.0/24"}).Context(ctx).Do())
	sn, err := c.Subnetworks.Get(project, region, "masters").Context(ctx).Do()
	if err != nil || sn.IpCidrRange != "10.20.0.0/24" || !strings.HasSuffix(sn.Network, "/global/networks/vpc") {
		t.Fatalf("subnetwork %+v %v", sn, err)
	}
	_, err = c.Subnetworks.Insert(project, region, &compute.Subnetwork{Name: "overlap", Network: "global/networks/vpc", IpCidrRange: "10.20.0.128/25"}).Context(ctx).Do()
	apiErr(t, err, 400, "invalid")
	_, err = c.Subnetworks.Insert(project, region, &compute.Subnetwork{Name: "orphan", Network: "global/networks/nope", IpCidrRange: "10.30.0.0/24"}).Context(ctx).Do()
	apiErr(t, err, 404, "notFound")

	// A custom-mode network needs a subnetwork.
	addr := func(name, subnet, ip string) (*compute.Operation, error) {
		return c.Addresses.Insert(project, region, &compute.Address{Name: name, AddressType: "INTERNAL", Subnetwork: subnet, Address: ip}).Context(ctx).Do()
	}
	ok(t, c)(addr("in-vpc", "regions/"+region+"/subnetworks/masters", ""))
	a, _ := c.Addresses.Get(project, region, "in-vpc").Context(ctx).Do()
	if ip := netip.MustParseAddr(a.Address); !ip.IsLoopback() || !strings.HasSuffix(a.Subnetwork, "/subnetworks/masters") {
		t.Errorf("an address of the mapped subnetwork: %s on %s", a.Address, a.Subnetwork)
	}
	op, err := addr("outside", "regions/"+region+"/subnetworks/masters", "127.0.0.99")
	opFails(t, op, err, c, "INVALID_USAGE")
	_, err = addr("elsewhere", "regions/us-central1/subnetworks/default", "")
	if err == nil {
		t.Error("an address of another region's subnetwork was accepted")
	}
	inst := func(name string, ni *compute.NetworkInterface) (*compute.Operation, error) {
		return c.Instances.Insert(project, zoneB, &compute.Instance{Name: name, MachineType: "n1-standard-1",
			NetworkInterfaces: []*compute.NetworkInterface{ni},
			Disks:             []*compute.AttachedDisk{{Boot: true, AutoDelete: true, InitializeParams: &compute.AttachedDiskInitializeParams{SourceImage: "projects/cos-cloud/global/images/family/cos-stable"}}}}).Context(ctx).Do()
	}
	op, err = inst("no-subnet", &compute.NetworkInterface{Network: "global/networks/vpc"})
	opFails(t, op, err, c, "INVALID_USAGE")
	op, err = inst("wrong-network", &compute.NetworkInterface{Network: "global/networks/default", Subnetwork: "regions/" + region + "/subnetworks/masters"})
	opFails(t, op, err, c, "INVALID_USAGE")
	ok(t, c)(inst("in-vpc", &compute.NetworkInterface{Subnetwork: "regions/" + region + "/subnetworks/masters"}))
	in, err := c.Instances.Get(project, zoneB, "in-vpc").Context(ctx).Do()
	if err != nil || !strings.HasSuffix(in.NetworkInterfaces[0].Network, "/global/networks/vpc") || !netip.MustParseAddr(in.NetworkInterfaces[0].NetworkIP).IsLoopback() {
		t.Fatalf("instance on the subnetwork: %+v %v", in.NetworkInterfaces[0], err)
	}
	if l, err := c.Subnetworks.AggregatedList(project).Context(ctx).Do(); err != nil || len(l.Items) == 0 {
		t.Errorf("subnetworks.aggregatedList: %v", err)
	}
}
