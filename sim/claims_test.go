package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	compute "google.golang.org/api/compute/v1"
)

// TestEmulatorsNeverShareAddresses: two emulators started with default
// options on one machine hand out disjoint ranges; one asked for a range
// another holds is refused at start, naming the holder; a stopped
// emulator's state keeps its range, which its next start gets back and a
// new emulator does not take; custom-mode subnetworks' blocks are claimed
// too; an address a process listens on is not handed out.
func TestEmulatorsNeverShareAddresses(t *testing.T) {
	a, ca := startSim(t, Options{})
	b, cb := startSim(t, Options{})
	pa, pb := netip.MustParsePrefix(a.w.Subnet), netip.MustParsePrefix(b.w.Subnet)
	if pa.Overlaps(pb) {
		t.Fatalf("two emulators with default options share addresses: %s and %s", pa, pb)
	}
	_, err := Start(context.Background(), Options{Subnet: pb.String()})
	if !errors.Is(err, ErrRangeInUse) || !strings.Contains(err.Error(), fmt.Sprintf("process %d (", os.Getpid())) || !strings.Contains(err.Error(), pb.String()) {
		t.Fatalf("an emulator asked for a range another holds: %v", err)
	}
	_, err = Start(context.Background(), Options{Subnet: netip.PrefixFrom(pa.Addr(), 24).String()})
	if !errors.Is(err, ErrRangeInUse) {
		t.Fatalf("an emulator asked for a part of a range another holds: %v", err)
	}

	// A stopped emulator's state keeps its range.
	dir := t.TempDir()
	c, _ := startSim(t, Options{Dir: dir})
	kept := c.w.Subnet
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	d, _ := startSim(t, Options{})
	if d.w.Subnet == kept {
		t.Fatalf("a new emulator took %s, which a stopped emulator's state in %s hands out", kept, dir)
	}
	c2, _ := startSim(t, Options{Dir: dir})
	if c2.w.Subnet != kept {
		t.Fatalf("the state's emulator got %s back, want %s", c2.w.Subnet, kept)
	}
	_, err = Start(context.Background(), Options{Dir: dir})
	if !errors.Is(err, ErrRangeInUse) {
		t.Fatalf("a second emulator of one running state: %v", err)
	}

	// A custom-mode subnetwork's block is claimed.
	ctx := ctxT(t)
	ok(t, cb)(cb.Networks.Insert(project, &compute.Network{Name: "vpc", AutoCreateSubnetworks: false}).Context(ctx).Do())
	ok(t, cb)(cb.Subnetworks.Insert(project, region, &compute.Subnetwork{Name: "masters", Network: "global/networks/vpc", IpCidrRange: "10.8.0.0/20"}).Context(ctx).Do())
	var block netip.Prefix
	for k, bl := range b.w.Blocks {
		if strings.HasSuffix(k, "/masters") {
			block = netip.MustParsePrefix(bl.Loopback)
		}
	}
	if _, err := Start(context.Background(), Options{Subnet: block.String()}); !errors.Is(err, ErrRangeInUse) {
		t.Fatalf("the block %s of a subnetwork is not claimed: %v", block, err)
	}

	// An address a process listens on is skipped.
	first := a.w.blockOf("").next
	next := addToIP(pa.Addr(), *first).String()
	l, err := net.Listen("tcp", next+":2379")
	if err != nil {
		t.Skipf("cannot listen on %s: %v", next, err)
	}
	defer l.Close()
	ok(t, ca)(ca.Addresses.Insert(project, region, &compute.Address{Name: "m-internal", AddressType: "INTERNAL"}).Context(ctx).Do())
	got, err := ca.Addresses.Get(project, region, "m-internal").Context(ctx).Do()
	if err != nil || got.Address == next || !pa.Contains(netip.MustParseAddr(got.Address)) {
		t.Fatalf("internal address %v (%v) while a process listens on %s", got, err, next)
	}
}
