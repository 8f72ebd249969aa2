package sim

import (
	"context"
	"fmt"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/metadata"
)

func benchSim(b *testing.B) (*Server, *compute.Service) {
	b.Helper()
	return startSim(b, Options{})
}

// BenchmarkRequestLatency measures one API round trip through the real
// compute/v1 client: a get and an aggregated list over 7 masters.
func BenchmarkRequestLatency(b *testing.B) {
	_, c := benchSim(b)
	ctx := context.Background()
	zones := []string{zoneB, zoneC, zoneD}
	for i := 0; i < 7; i++ {
		op, err := c.Instances.Insert(project, zones[i%3], &compute.Instance{Name: fmt.Sprintf("m%d", i), MachineType: "n1-standard-2",
			Labels: map[string]string{"kubeha-cluster": "prod"}}).Do()
		if err != nil {
			b.Fatal(err)
		}
		for op.Status != "DONE" {
			if op, err = c.ZoneOperations.Wait(project, path.Base(op.Zone), op.Name).Do(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("instances.get", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Instances.Get(project, zoneB, "m0").Context(ctx).Do(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("instances.aggregatedList", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Instances.AggregatedList(project).Filter(`labels.kubeha-cluster = "prod"`).Context(ctx).Do(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkMasterBoot boots one single-member master per iteration (address,
// disk, instance, etcd ready) and reports the resident memory each running
// master adds to the emulator's process.
func BenchmarkMasterBoot(b *testing.B) {
	s, c := benchSim(b)
	runtime.GC()
	before := rssBytes(b)
	i := 0
	for b.Loop() {
		name := fmt.Sprintf("m%d", i)
		i++
		op, err := c.Addresses.Insert(project, region, &compute.Address{Name: name + "-internal", AddressType: "INTERNAL"}).Do()
		waitB(b, c, op, err)
		a, err := c.Addresses.Get(project, region, name+"-internal").Do()
		if err != nil {
			b.Fatal(err)
		}
		op, err = c.Disks.Insert(project, zoneB, &compute.Disk{Name: name + "-pd"}).Do()
		waitB(b, c, op, err)
		peer, client := "http://"+a.Address+":2380", "http://"+a.Address+":2379"
		doc := metadata.Encode(metadata.Etcd{Name: name, PeerURL: peer, ClientURL: client, InitialCluster: name + "=" + peer, InitialClusterState: "new"})
		op, err = c.Instances.Insert(project, zoneB, &compute.Instance{Name: name, MachineType: "n1-standard-2",
			Disks:             []*compute.AttachedDisk{{Source: zonalLink(zoneB, "disks", name+"-pd"), DeviceName: "master-pd"}},
			NetworkInterfaces: []*compute.NetworkInterface{{NetworkIP: a.Address}},
			Metadata:          &compute.Metadata{Items: []*compute.MetadataItems{{Key: metadata.KeyEtcd, Value: &doc}}}}).Do()
		waitB(b, c, op, err)
		for deadline := time.Now().Add(30 * time.Second); ; {
			ready := false
			for _, m := range s.Members() {
				ready = ready || (strings.HasSuffix(m.Instance, "/"+name) && m.State == "ready")
			}
			if ready {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("master %s not ready: %+v", name, s.Members())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	b.StopTimer()
	runtime.GC()
	b.ReportMetric(float64(rssBytes(b)-before)/float64(i)/(1<<20), "MiB-RSS/master")
}

func waitB(b *testing.B, c *compute.Service, op *compute.Operation, err error) {
	b.Helper()
	for err == nil && op.Status != "DONE" {
		switch {
		case op.Zone != "":
			op, err = c.ZoneOperations.Wait(project, path.Base(op.Zone), op.Name).Do()
		default:
			op, err = c.RegionOperations.Wait(project, path.Base(op.Region), op.Name).Do()
		}
	}
	if err != nil || op.Error != nil {
		b.Fatalf("operation: %v %+v", err, op)
	}
}

func rssBytes(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status: resident memory is not measured on this system")
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
