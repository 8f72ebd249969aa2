package sim

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	compute "google.golang.org/api/compute/v1"
)

func TestInstanceLifecycle(t *testing.T) {
	s, c := startSim(t, Options{})
	ctx := ctxT(t)
	ok(t, c)(c.Disks.Insert(project, zoneB, &compute.Disk{Name: "m1-pd", SizeGb: 20}).Context(ctx).Do())
	ok(t, c)(c.Addresses.Insert(project, region, &compute.Address{Name: "m1-internal", AddressType: "INTERNAL"}).Context(ctx).Do())
	ok(t, c)(c.Addresses.Insert(project, region, &compute.Address{Name: "static"}).Context(ctx).Do())
	internal, err := c.Addresses.Get(project, region, "m1-internal").Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	static, _ := c.Addresses.Get(project, region, "static").Context(ctx).Do()
	// Both are this machine's loopback addresses, so the static IP can be
	// reached here: internal ones from the subnet's bottom, external ones
	// from its top.
	if !strings.HasPrefix(internal.Address, "127.") || !strings.HasSuffix(static.Address, ".254") || internal.Status != "RESERVED" {
		t.Fatalf("internal %s (%s), static %s", internal.Address, internal.Status, static.Address)
	}
	// The insert takes long enough that the Get below always sees it
	// provisioning: with the fast profile's 10ms a loaded machine could
	// finish it first.
	postAdmin(t, s, "/sim/v1/latency", `{"instances.insert":"2s"}`)
	in := &compute.Instance{
		Name:        "m1",
		MachineType: "zones/" + zoneB + "/machineTypes/n1-standard-2",
		Labels:      map[string]string{"kubeha-cluster": "prod", "kubeha-role": "master"},
		Tags:        &compute.Tags{Items: []string{"prod-master"}},
		Disks: []*compute.AttachedDisk{
			{Boot: true, AutoDelete: true, InitializeParams: &compute.AttachedDiskInitializeParams{SourceImage: "projects/cos-cloud/global/images/family/cos-stable"}},
			{Source: zonalLink(zoneB, "disks", "m1-pd"), DeviceName: "master-pd"},
		},
		NetworkInterfaces: []*compute.NetworkInterface{{
			Network: "global/networks/default", NetworkIP: internal.Address,
			AccessConfigs: []*compute.AccessConfig{{NatIP: static.Address}},
		}},
		Metadata: &compute.Metadata{Items: []*compute.MetadataItems{{Key: "k", Value: str("v")}}},
	}
	op, err := c.Instances.Insert(project, zoneB, in).Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	if op.Status == "DONE" || op.OperationType != "insert" || op.TargetLink == "" {
		t.Fatalf("insert operation %+v: want an unfinished insert", op)
	}
	// Visible at once while provisioning, as in GCE.
	got, err := c.Instances.Get(project, zoneB, "m1").Context(ctx).Do()
	if err != nil || got.Status == "RUNNING" {
		t.Fatalf("instance before DONE: %v, %v", got, err)
	}
	ok(t, c)(op, nil)
	got, _ = c.Instances.Get(project, zoneB, "m1").Context(ctx).Do()
	if got.Status != "RUNNING" || got.NetworkInterfaces[0].NetworkIP != internal.Address ||
		got.NetworkInterfaces[0].AccessConfigs[0].NatIP != static.Address || got.Id == 0 ||
		!strings.HasPrefix(got.SelfLink, s.Endpoint()) {
		t.Fatalf("instance after DONE: %+v", got)
	}
	for _, name := range []string{"m1-internal", "static"} {
		a, _ := c.Addresses.Get(project, region, name).Context(ctx).Do()
		if a.Status != "IN_USE" || len(a.Users) != 1 || !strings.HasSuffix(a.Users[0], "/instances/m1") {
			t.Errorf("address %s: %s %v", name, a.Status, a.Users)
		}
	}
	d, _ := c.Disks.Get(project, zoneB, "m1-pd").Context(ctx).Do()
	if len(d.Users) != 1 {
		t.Errorf("disk users %v", d.Users)
	}
	if _, err := c.Disks.Get(project, zoneB, "m1").Context(ctx).Do(); err != nil {
		t.Errorf("boot disk not created: %v", err)
	}

	// Metadata and labels with fingerprints.
	stale := got.Metadata.Fingerprint
	ok(t, c)(c.Instances.SetMetadata(project, zoneB, "m1", &compute.Metadata{Fingerprint: stale,
		Items: []*compute.MetadataItems{{Key: "k", Value: str("v2")}}}).Context(ctx).Do())
	_, err = c.Instances.SetMetadata(project, zoneB, "m1", &compute.Metadata{Fingerprint: stale}).Context(ctx).Do()
	apiErr(t, err, 412, "conditionNotMet")
	got, _ = c.Instances.Get(project, zoneB, "m1").Context(ctx).Do()
	if *got.Metadata.Items[0].Value != "v2" || got.Metadata.Fingerprint == stale {
		t.Errorf("metadata %+v", got.Metadata)
	}
	ok(t, c)(c.Instances.SetLabels(project, zoneB, "m1", &compute.InstancesSetLabelsRequest{
		LabelFingerprint: got.LabelFingerprint, Labels: map[string]string{"kubeha-cluster": "prod", "x": "y"}}).Context(ctx).Do())
	_, err = c.Instances.SetLabels(project, zoneB, "m1", &compute.InstancesSetLabelsRequest{LabelFingerprint: got.LabelFingerprint}).Context(ctx).Do()
	apiErr(t, err, 412, "conditionNotMet")

	// Move the static IP off the instance and back.
	ok(t, c)(c.Instances.DeleteAccessConfig(project, zoneB, "m1", "external-nat", "nic0").Context(ctx).Do())
	a, _ := c.Addresses.Get(project, region, "static").Context(ctx).Do()
	if a.Status != "RESERVED" || len(a.Users) != 0 {
		t.Errorf("static after deleteAccessConfig: %s %v", a.Status, a.Users)
	}
	op, err = c.Instances.DeleteAccessConfig(project, zoneB, "m1", "external-nat", "nic0").Context(ctx).Do()
	opFails(t, op, err, c, "INVALID_USAGE")
	ok(t, c)(c.Instances.AddAccessConfig(project, zoneB, "m1", "nic0", &compute.AccessConfig{Name: "external-nat", NatIP: static.Address}).Context(ctx).Do())
	op, err = c.Instances.AddAccessConfig(project, zoneB, "m1", "nic0", &compute.AccessConfig{Name: "second"}).Context(ctx).Do()
	opFails(t, op, err, c, "INVALID_USAGE")

	// Stop and start.
	ok(t, c)(c.Instances.Stop(project, zoneB, "m1").Context(ctx).Do())
	got, _ = c.Instances.Get(project, zoneB, "m1").Context(ctx).Do()
	if got.Status != "TERMINATED" || got.NetworkInterfaces[0].AccessConfigs[0].NatIP != static.Address {
		t.Errorf("after stop: %s, nat %s", got.Status, got.NetworkInterfaces[0].AccessConfigs[0].NatIP)
	}
	ok(t, c)(c.Instances.Start(project, zoneB, "m1").Context(ctx).Do())
	got, _ = c.Instances.Get(project, zoneB, "m1").Context(ctx).Do()
	if got.Status != "RUNNING" {
		t.Errorf("after start: %s", got.Status)
	}

	// Delete: the data disk stays (autoDelete false), the boot disk goes,
	// the addresses are released.
	_, err = c.Disks.Delete(project, zoneB, "m1-pd").Context(ctx).Do()
	apiErr(t, err, 400, "resourceInUseByAnotherResource")
	_, err = c.Addresses.Delete(project, region, "m1-internal").Context(ctx).Do()
	apiErr(t, err, 400, "resourceInUseByAnotherResource")
	ok(t, c)(c.Instances.Delete(project, zoneB, "m1").Context(ctx).Do())
	_, err = c.Instances.Get(project, zoneB, "m1").Context(ctx).Do()
	apiErr(t, err, 404, "notFound")
	if _, err := c.Disks.Get(project, zoneB, "m1").Context(ctx).Do(); err == nil {
		t.Error("boot disk survived its instance")
	}
	d, err = c.Disks.Get(project, zoneB, "m1-pd").Context(ctx).Do()
	if err != nil || len(d.Users) != 0 {
		t.Fatalf("data disk after delete: %v %v", d, err)
	}
	a, _ = c.Addresses.Get(project, region, "m1-internal").Context(ctx).Do()
	if a.Status != "RESERVED" {
		t.Errorf("internal address after delete: %s", a.Status)
	}
	ok(t, c)(c.Disks.Delete(project, zoneB, "m1-pd").Context(ctx).Do())
	ok(t, c)(c.Addresses.Delete(project, region, "m1-internal").Context(ctx).Do())
}

func TestErrors(t *testing.T) {
	_, c := startSim(t, Options{})
	ctx := ctxT(t)
	_, err := c.Instances.Get(project, zoneB, "nope").Context(ctx).Do()
	apiErr(t, err, 404, "notFound")
	_, err = c.Instances.Get(project, "mars-north1-a", "x").Context(ctx).Do()
	apiErr(t, err, 400, "invalid")
	_, err = c.Addresses.List(project, "mars-north1").Context(ctx).Do()
	apiErr(t, err, 400, "invalid")
	_, err = c.Firewalls.Insert(project, &compute.Firewall{Name: "Bad_Name"}).Context(ctx).Do()
	apiErr(t, err, 400, "invalid")
	_, err = c.Disks.Insert(project, zoneB, &compute.Disk{Name: strings.Repeat("a", 64)}).Context(ctx).Do()
	apiErr(t, err, 400, "invalid")
	ok(t, c)(c.Firewalls.Insert(project, &compute.Firewall{Name: "fw"}).Context(ctx).Do())
	_, err = c.Firewalls.Insert(project, &compute.Firewall{Name: "fw"}).Context(ctx).Do()
	apiErr(t, err, 409, "alreadyExists")
	_, err = c.Firewalls.Delete(project, "nope").Context(ctx).Do()
	apiErr(t, err, 404, "notFound")
	_, err = c.ZoneOperations.Get(project, zoneB, "operation-nope").Context(ctx).Do()
	apiErr(t, err, 404, "notFound")

	// Problems GCE finds after accepting a request finish the operation
	// with an error and change nothing.
	op, err := c.Instances.Insert(project, zoneB, &compute.Instance{Name: "vm", MachineType: "n1-standard-1",
		Disks: []*compute.AttachedDisk{{Source: zonalLink(zoneB, "disks", "missing")}}}).Context(ctx).Do()
	opFails(t, op, err, c, "RESOURCE_NOT_FOUND")
	if _, err := c.Instances.Get(project, zoneB, "vm").Context(ctx).Do(); err == nil {
		t.Error("a failed insert left an instance")
	}
	op, err = c.Instances.Insert(project, zoneB, &compute.Instance{Name: "vm", MachineType: "n1-standard-1",
		NetworkInterfaces: []*compute.NetworkInterface{{AccessConfigs: []*compute.AccessConfig{{NatIP: "203.0.113.200"}}}}}).Context(ctx).Do()
	opFails(t, op, err, c, "INVALID_USAGE")
	op, err = c.ForwardingRules.Insert(project, region, &compute.ForwardingRule{Name: "fr", Target: regionalLink("targetPools", "missing")}).Context(ctx).Do()
	opFails(t, op, err, c, "RESOURCE_NOT_FOUND")
	_, err = c.Instances.Insert(project, zoneB, &compute.Instance{Name: "vm"}).Context(ctx).Do()
	apiErr(t, err, 400, "invalid")
	// A disk attached read-write to one instance cannot be attached to another.
	ok(t, c)(c.Disks.Insert(project, zoneB, &compute.Disk{Name: "d"}).Context(ctx).Do())
	ok(t, c)(c.Instances.Insert(project, zoneB, &compute.Instance{Name: "a", MachineType: "n1-standard-1",
		Disks: []*compute.AttachedDisk{{Source: zonalLink(zoneB, "disks", "d")}}}).Context(ctx).Do())
	op, err = c.Instances.Insert(project, zoneB, &compute.Instance{Name: "b", MachineType: "n1-standard-1",
		Disks: []*compute.AttachedDisk{{Source: zonalLink(zoneB, "disks", "d")}}}).Context(ctx).Do()
	opFails(t, op, err, c, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE")
	// A disk must be in the instance's zone.
	ok(t, c)(c.Disks.Insert(project, zoneC, &compute.Disk{Name: "dc"}).Context(ctx).Do())
	op, err = c.Instances.Insert(project, zoneB, &compute.Instance{Name: "b", MachineType: "n1-standard-1",
		Disks: []*compute.AttachedDisk{{Source: zonalLink(zoneC, "disks", "dc")}}}).Context(ctx).Do()
	opFails(t, op, err, c, "INVALID_USAGE")
}

func TestLoadBalancerResources(t *testing.T) {
	_, c := startSim(t, Options{})
	ctx := ctxT(t)
	ok(t, c)(c.Addresses.Insert(project, region, &compute.Address{Name: "ip"}).Context(ctx).Do())
	ok(t, c)(c.HttpHealthChecks.Insert(project, &compute.HttpHealthCheck{Name: "hc", Port: 8080, RequestPath: "/healthz"}).Context(ctx).Do())
	ok(t, c)(c.Instances.Insert(project, zoneB, &compute.Instance{Name: "m", MachineType: "n1-standard-1"}).Context(ctx).Do())
	ok(t, c)(c.TargetPools.Insert(project, region, &compute.TargetPool{Name: "pool",
		HealthChecks: []string{"global/httpHealthChecks/hc"}}).Context(ctx).Do())
	ok(t, c)(c.TargetPools.AddInstance(project, region, "pool", &compute.TargetPoolsAddInstanceRequest{
		Instances: []*compute.InstanceReference{{Instance: zonalLink(zoneB, "instances", "m")}}}).Context(ctx).Do())
	op, err := c.TargetPools.AddInstance(project, region, "pool", &compute.TargetPoolsAddInstanceRequest{
		Instances: []*compute.InstanceReference{{Instance: zonalLink(zoneB, "instances", "ghost")}}}).Context(ctx).Do()
	opFails(t, op, err, c, "RESOURCE_NOT_FOUND")
	p, _ := c.TargetPools.Get(project, region, "pool").Context(ctx).Do()
	if len(p.Instances) != 1 || len(p.HealthChecks) != 1 {
		t.Fatalf("pool %+v", p)
	}
	ip, _ := c.Addresses.Get(project, region, "ip").Context(ctx).Do()
	ok(t, c)(c.ForwardingRules.Insert(project, region, &compute.ForwardingRule{Name: "fr", IPAddress: ip.Address,
		IPProtocol: "TCP", PortRange: "443", Target: regionalLink("targetPools", "pool")}).Context(ctx).Do())
	// The IP is the rule's now: an instance cannot take it.
	op, err = c.Instances.AddAccessConfig(project, zoneB, "m", "nic0", &compute.AccessConfig{NatIP: ip.Address}).Context(ctx).Do()
	opFails(t, op, err, c, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE")
	ip, _ = c.Addresses.Get(project, region, "ip").Context(ctx).Do()
	if ip.Status != "IN_USE" || !strings.HasSuffix(ip.Users[0], "/forwardingRules/fr") {
		t.Fatalf("address %s %v", ip.Status, ip.Users)
	}
	_, err = c.TargetPools.Delete(project, region, "pool").Context(ctx).Do()
	apiErr(t, err, 400, "resourceInUseByAnotherResource")
	_, err = c.HttpHealthChecks.Delete(project, "hc").Context(ctx).Do()
	apiErr(t, err, 400, "resourceInUseByAnotherResource")
	_, err = c.Addresses.Delete(project, region, "ip").Context(ctx).Do()
	apiErr(t, err, 400, "resourceInUseByAnotherResource")
	rules, err := c.ForwardingRules.AggregatedList(project).Context(ctx).Do()
	if err != nil || len(rules.Items["regions/"+region].ForwardingRules) != 1 {
		t.Fatalf("aggregated rules %v %v", rules, err)
	}
	ok(t, c)(c.ForwardingRules.Delete(project, region, "fr").Context(ctx).Do())
	ok(t, c)(c.TargetPools.RemoveInstance(project, region, "pool", &compute.TargetPoolsRemoveInstanceRequest{
		Instances: []*compute.InstanceReference{{Instance: zonalLink(zoneB, "instances", "m")}}}).Context(ctx).Do())
	ok(t, c)(c.TargetPools.Delete(project, region, "pool").Context(ctx).Do())
	ok(t, c)(c.HttpHealthChecks.Delete(project, "hc").Context(ctx).Do())
	ok(t, c)(c.Addresses.Delete(project, region, "ip").Context(ctx).Do())
	if l, _ := c.HttpHealthChecks.List(project).Context(ctx).Do(); len(l.Items) != 0 {
		t.Errorf("health checks left: %d", len(l.Items))
	}
}

func TestFirewalls(t *testing.T) {
	_, c := startSim(t, Options{})
	ctx := ctxT(t)
	ok(t, c)(c.Firewalls.Insert(project, &compute.Firewall{Name: "prod-master-etcd", SourceTags: []string{"prod-master"},
		TargetTags: []string{"prod-master"}, Allowed: []*compute.FirewallAllowed{{IPProtocol: "tcp", Ports: []string{"2380"}}}}).Context(ctx).Do())
	ok(t, c)(c.Firewalls.Patch(project, "prod-master-etcd", &compute.Firewall{
		Allowed: []*compute.FirewallAllowed{{IPProtocol: "tcp", Ports: []string{"2381"}}}}).Context(ctx).Do())
	f, err := c.Firewalls.Get(project, "prod-master-etcd").Context(ctx).Do()
	if err != nil || f.Allowed[0].Ports[0] != "2381" || f.SourceTags[0] != "prod-master" || f.Network == "" || f.Priority != 1000 {
		t.Fatalf("patched firewall %+v %v", f, err)
	}
	_, err = c.Firewalls.Patch(project, "nope", &compute.Firewall{}).Context(ctx).Do()
	apiErr(t, err, 404, "notFound")
	op, err := c.Firewalls.Insert(project, &compute.Firewall{Name: "other-net", Network: "global/networks/nope"}).Context(ctx).Do()
	opFails(t, op, err, c, "RESOURCE_NOT_FOUND")
	ok(t, c)(c.Firewalls.Delete(project, "prod-master-etcd").Context(ctx).Do())
}

func TestPaginationAndFilters(t *testing.T) {
	_, c := startSim(t, Options{})
	ctx := ctxT(t)
	for i := 0; i < 7; i++ {
		ok(t, c)(c.Firewalls.Insert(project, &compute.Firewall{Name: fmt.Sprintf("fw-%d", i)}).Context(ctx).Do())
	}
	var pages, total int
	err := c.Firewalls.List(project).MaxResults(3).Pages(ctx, func(l *compute.FirewallList) error {
		pages++
		total += len(l.Items)
		return nil
	})
	if err != nil || pages != 3 || total != 7 {
		t.Fatalf("pages %d total %d err %v", pages, total, err)
	}
	_, err = c.Firewalls.List(project).PageToken("garbage").Context(ctx).Do()
	apiErr(t, err, 400, "invalid")

	for i, z := range []string{zoneB, zoneC, zoneD, zoneB} {
		labels := map[string]string{"kubeha-cluster": "prod", "kubeha-role": "master"}
		if i == 3 {
			labels = map[string]string{"kubeha-cluster": "other"}
		}
		ok(t, c)(c.Instances.Insert(project, z, &compute.Instance{Name: fmt.Sprintf("vm-%d", i), MachineType: "n1-standard-1", Labels: labels}).Context(ctx).Do())
	}
	count := func(call *compute.InstancesAggregatedListCall) int {
		n := 0
		if err := call.Pages(ctx, func(l *compute.InstanceAggregatedList) error {
			for _, sl := range l.Items {
				n += len(sl.Instances)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for filter, want := range map[string]int{
		``:                               4,
		`labels.kubeha-cluster = "prod"`: 3,
		`labels.kubeha-cluster = prod`:   3,
		`(labels.kubeha-cluster = "prod") AND (labels.kubeha-role = "master")`: 3,
		`name = "vm-1"`:     1,
		`name != "vm-1"`:    3,
		`name eq "vm-[12]"`: 2,
		`name eq vm-.*`:     4,
		`name ne "vm-[12]"`: 2,
		`labels.kubeha-cluster = "prod" name eq "vm-(0|3)"`: 1,
		`zone = "europe-west1-b"`:                           2,
	} {
		if got := count(c.Instances.AggregatedList(project).Filter(filter).MaxResults(2)); got != want {
			t.Errorf("filter %q: %d instances, want %d", filter, got, want)
		}
	}
	_, err = c.Instances.AggregatedList(project).Filter(`name ~~ x`).Context(ctx).Do()
	apiErr(t, err, 400, "invalid")
	l, err := c.Instances.List(project, zoneB).Filter(`labels.kubeha-cluster = "prod"`).Context(ctx).Do()
	if err != nil || len(l.Items) != 1 || l.Items[0].Name != "vm-0" {
		t.Fatalf("zonal list: %v %v", l, err)
	}
}

func TestZonesRegionsNetworks(t *testing.T) {
	_, c := startSim(t, Options{})
	ctx := ctxT(t)
	z, err := c.Zones.Get(project, zoneC).Context(ctx).Do()
	if err != nil || z.Status != "UP" || !strings.HasSuffix(z.Region, "/regions/"+region) {
		t.Fatalf("zone %+v %v", z, err)
	}
	zl, err := c.Zones.List(project).Context(ctx).Do()
	if err != nil || len(zl.Items) < 10 {
		t.Fatalf("zones %v %v", zl, err)
	}
	rg, err := c.Regions.Get(project, region).Context(ctx).Do()
	if err != nil || len(rg.Zones) != 3 {
		t.Fatalf("region %+v %v", rg, err)
	}
	if _, err := c.Regions.List(project).Context(ctx).Do(); err != nil {
		t.Fatal(err)
	}
	n, err := c.Networks.Get(project, "default").Context(ctx).Do()
	if err != nil || n.Name != "default" {
		t.Fatalf("network %v %v", n, err)
	}
	_, err = c.Networks.Get(project, "other").Context(ctx).Do()
	apiErr(t, err, 404, "notFound")
	nl, err := c.Networks.List(project).Context(ctx).Do()
	if err != nil || len(nl.Items) != 1 {
		t.Fatalf("networks %v %v", nl, err)
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	s, c := startSim(t, Options{Dir: dir})
	subnet := s.w.Subnet
	ctx := ctxT(t)
	ok(t, c)(c.Addresses.Insert(project, region, &compute.Address{Name: "ip"}).Context(ctx).Do())
	postAdmin(t, s, "/sim/v1/latency", `{"firewalls.insert":"1h"}`)
	op, err := c.Firewalls.Insert(project, &compute.Firewall{Name: "slow"}).Context(ctx).Do()
	if err != nil || op.Status == "DONE" {
		t.Fatal(op, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir + "/state.json"); err != nil || fi.Size() == 0 {
		t.Fatalf("state.json: %v", err)
	}
	s2, c2 := startSim(t, Options{Dir: dir})
	a, err := c2.Addresses.Get(project, region, "ip").Context(ctx).Do()
	if err != nil || !strings.HasPrefix(a.SelfLink, s2.Endpoint()) {
		t.Fatalf("address after restart: %v %v", a, err)
	}
	// The unfinished operation finished on restart.
	got, err := c2.GlobalOperations.Get(project, op.Name).Context(ctx).Do()
	if err != nil || got.Status != "DONE" {
		t.Fatalf("operation after restart: %v %v", got, err)
	}
	if _, err := c2.Firewalls.Get(project, "slow").Context(ctx).Do(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range s2.w.Addresses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if s2.w.Subnet != subnet || len(keys) != 1 {
		t.Errorf("restored subnet %s, addresses %v", s2.w.Subnet, keys)
	}
}

// TestListMethods calls every list and aggregatedList method through the
// client and checks each sees what was created, in the right scope.
func TestListMethods(t *testing.T) {
	_, c := startSim(t, Options{})
	ctx := ctxT(t)
	ok(t, c)(c.Disks.Insert(project, zoneC, &compute.Disk{Name: "d"}).Context(ctx).Do())
	ok(t, c)(c.Addresses.Insert(project, region, &compute.Address{Name: "a"}).Context(ctx).Do())
	ok(t, c)(c.HttpHealthChecks.Insert(project, &compute.HttpHealthCheck{Name: "hc"}).Context(ctx).Do())
	ok(t, c)(c.TargetPools.Insert(project, region, &compute.TargetPool{Name: "tp"}).Context(ctx).Do())
	ok(t, c)(c.ForwardingRules.Insert(project, region, &compute.ForwardingRule{Name: "fr", Target: regionalLink("targetPools", "tp")}).Context(ctx).Do())
	if l, err := c.Disks.List(project, zoneC).Context(ctx).Do(); err != nil || len(l.Items) != 1 {
		t.Errorf("disks.list: %v %v", l, err)
	}
	if l, err := c.Disks.List(project, zoneB).Context(ctx).Do(); err != nil || len(l.Items) != 0 {
		t.Errorf("disks.list other zone: %v %v", l, err)
	}
	if l, err := c.Disks.AggregatedList(project).Context(ctx).Do(); err != nil || len(l.Items["zones/"+zoneC].Disks) != 1 ||
		l.Items["zones/"+zoneB].Warning == nil || l.Items["zones/"+zoneB].Warning.Code != "NO_RESULTS_ON_PAGE" {
		t.Errorf("disks.aggregatedList: %+v %v", l, err)
	}
	if l, err := c.Addresses.List(project, region).Context(ctx).Do(); err != nil || len(l.Items) != 1 {
		t.Errorf("addresses.list: %v %v", l, err)
	}
	if l, err := c.Addresses.AggregatedList(project).Context(ctx).Do(); err != nil || len(l.Items["regions/"+region].Addresses) != 1 {
		t.Errorf("addresses.aggregatedList: %v %v", l, err)
	}
	if l, err := c.TargetPools.List(project, region).Context(ctx).Do(); err != nil || len(l.Items) != 1 {
		t.Errorf("targetPools.list: %v %v", l, err)
	}
	if l, err := c.ForwardingRules.List(project, region).Context(ctx).Do(); err != nil || len(l.Items) != 1 {
		t.Errorf("forwardingRules.list: %v %v", l, err)
	}
	if hc, err := c.HttpHealthChecks.Get(project, "hc").Context(ctx).Do(); err != nil || hc.Port != 80 || hc.RequestPath != "/" {
		t.Errorf("httpHealthChecks.get: %v %v", hc, err)
	}
	if l, err := c.RegionOperations.List(project, region).Context(ctx).Do(); err != nil || len(l.Items) != 3 {
		t.Errorf("regionOperations.list: %d %v", len(l.Items), err)
	}
	if l, err := c.GlobalOperations.List(project).Context(ctx).Do(); err != nil || len(l.Items) != 1 {
		t.Errorf("globalOperations.list: %v", err)
	}
}

// TestDiskTypes: a disk gets the type asked (pd-standard when none), and
// a type the zone has not is refused as GCE refuses it.
func TestDiskTypes(t *testing.T) {
	_, c := startSim(t, Options{})
	ctx := ctxT(t)
	ok(t, c)(c.Disks.Insert(project, zoneB, &compute.Disk{Name: "ssd", SizeGb: 10, Type: "zones/" + zoneB + "/diskTypes/pd-ssd"}).Context(ctx).Do())
	ok(t, c)(c.Disks.Insert(project, zoneB, &compute.Disk{Name: "std", SizeGb: 10}).Context(ctx).Do())
	for name, want := range map[string]string{"ssd": "pd-ssd", "std": "pd-standard"} {
		d, err := c.Disks.Get(project, zoneB, name).Context(ctx).Do()
		if err != nil || !strings.HasSuffix(d.Type, "/diskTypes/"+want) {
			t.Errorf("disk %s: %v, type %s, want %s", name, err, d.Type, want)
		}
	}
	for _, bad := range []string{"zones/" + zoneB + "/diskTypes/ssd", "zones/" + zoneC + "/diskTypes/pd-ssd"} {
		_, err := c.Disks.Insert(project, zoneB, &compute.Disk{Name: "bad", SizeGb: 10, Type: bad}).Context(ctx).Do()
		if !isCode(err, 404) {
			t.Errorf("disk type %s: %v, want 404", bad, err)
		}
	}
}
