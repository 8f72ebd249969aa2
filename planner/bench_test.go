package planner

import (
	"fmt"
	"testing"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// BenchmarkPlanHeavyDrift plans a 7-master cluster with heavy drift: every
// master on an old machine type, two unhealthy and due for replacement, an
// orphaned learner, leaked disks and addresses, a dangling pool entry and a
// changed firewall.
func BenchmarkPlanHeavyDrift(b *testing.B) {
	sp := &spec.Cluster{APIVersion: spec.APIVersion, Kind: spec.Kind, Metadata: spec.Metadata{Name: "prod"},
		Spec: spec.ClusterSpec{GCE: spec.GCE{Project: "p", Region: "europe-west1"}, MultiZone: true,
			Masters:     spec.Masters{Replicas: 7, Zones: []string{"europe-west1-b", "europe-west1-c", "europe-west1-d"}, MachineType: "n1-standard-8"},
			Remediation: spec.Remediation{ReplaceUnhealthy: true}}}
	spec.SetDefaults(sp)
	obs := &state.Cluster{Name: "prod", Project: "p", Region: "europe-west1", Etcd: state.Etcd{Reachable: true, ClusterID: 1},
		StaticIP:       &state.Address{Name: "prod-master-ip", Address: "203.0.113.10", Status: "IN_USE"},
		HealthCheck:    &state.HealthCheck{Name: "prod-master-hc"},
		TargetPool:     &state.TargetPool{Name: "prod-master", Dangling: []string{"zones/europe-west1-b/instances/prod-master-old"}},
		ForwardingRule: &state.ForwardingRule{Name: "prod-master", IPAddress: "203.0.113.10"},
		Firewalls:      []*state.Firewall{{Name: "prod-master-etcd", Ports: []string{"1-65535"}, TargetTags: []string{"prod-master"}}}}
	for i := 0; i < 7; i++ {
		name := fmt.Sprintf("prod-master-x%02d", i)
		zone := sp.Spec.Masters.Zones[i%3]
		obs.Instances = append(obs.Instances, &state.Instance{Name: name, Zone: zone, Status: "RUNNING", InternalIP: fmt.Sprintf("10.0.0.%d", i+2),
			MachineType: "n1-standard-2", Labels: map[string]string{"kubeha-cluster": "prod", "kubeha-role": "master"}, HasDataDisk: true,
			Config: &metadata.Config{MachineType: "n1-standard-2", Image: spec.DefaultImage, DiskSizeGb: 20, QuorumRead: true, ClientPort: 2379, PeerPort: 2380, MultiZone: true, KubernetesVersion: spec.DefaultKubernetesVersion}})
		obs.Disks = append(obs.Disks, &state.Disk{Name: name + "-pd", Zone: zone})
		obs.Addresses = append(obs.Addresses, &state.Address{Name: name + "-internal", Address: fmt.Sprintf("10.0.0.%d", i+2)})
		obs.TargetPool.Instances = append(obs.TargetPool.Instances, name)
		m := &state.Member{ID: uint64(i + 1), Name: name, Instance: name, Healthy: i >= 2, Leader: i == 3}
		if i < 2 {
			m.UnhealthyFor, m.Error = 3600e9, "down"
		}
		obs.Etcd.Members = append(obs.Etcd.Members, m)
	}
	obs.Etcd.Members = append(obs.Etcd.Members, &state.Member{ID: 99, IsLearner: true})
	for i := 0; i < 3; i++ {
		obs.Disks = append(obs.Disks, &state.Disk{Name: fmt.Sprintf("prod-master-l%02d-pd", i), Zone: "europe-west1-b"})
		obs.Addresses = append(obs.Addresses, &state.Address{Name: fmt.Sprintf("prod-master-l%02d-internal", i)})
	}
	var steps int
	for b.Loop() {
		p, err := Compute(sp, obs)
		if err != nil {
			b.Fatal(err)
		}
		steps = len(p.Steps)
	}
	b.ReportMetric(float64(steps), "steps")
}
