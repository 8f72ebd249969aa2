package observe_test

import (
	"context"
	"fmt"
	"net/http"
	"path"
	"strings"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/sim"
	"github.com/kubeha/kubeha/sim/simtest"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
	"github.com/kubeha/kubeha/state/observe"
)

const project = "p-test"

func testSpec(replicas int) *spec.Cluster { return simtest.Spec("prod", project, replicas) }

type fixture struct {
	t   *testing.T
	srv *sim.Server
	c   *compute.Service
	sp  *spec.Cluster
}

func newFixture(t *testing.T, replicas int) *fixture {
	t.Helper()
	srv, c := simtest.Start(t, sim.Options{})
	return &fixture{t: t, srv: srv, c: c, sp: testSpec(replicas)}
}

func (f *fixture) do(op *compute.Operation, err error) {
	f.t.Helper()
	for err == nil && op.Status != "DONE" {
		switch {
		case op.Zone != "":
			op, err = f.c.ZoneOperations.Wait(project, path.Base(op.Zone), op.Name).Do()
		case op.Region != "":
			op, err = f.c.RegionOperations.Wait(project, path.Base(op.Region), op.Name).Do()
		default:
			op, err = f.c.GlobalOperations.Wait(project, op.Name).Do()
		}
	}
	if err != nil || op.Error != nil {
		f.t.Fatalf("operation: %v %+v", err, op)
	}
}

// build creates a cluster as kubeha's plan would leave it: firewalls, the
// static IP (on the master, or on a load balancer), and names masters that
// boot one etcd cluster.
func (f *fixture) build(names ...string) {
	f.t.Helper()
	region, cfg := "europe-west1", f.sp.Spec
	f.do(f.c.Firewalls.Insert(project, &compute.Firewall{Name: "prod-master-etcd", SourceTags: []string{"prod-master"}, TargetTags: []string{"prod-master"},
		Allowed: []*compute.FirewallAllowed{{IPProtocol: "tcp", Ports: []string{"2380"}}}}).Do())
	f.do(f.c.Firewalls.Insert(project, &compute.Firewall{Name: "prod-master-https", SourceRanges: []string{"0.0.0.0/0"}, TargetTags: []string{"prod-master"},
		Allowed: []*compute.FirewallAllowed{{IPProtocol: "tcp", Ports: []string{"443"}}}}).Do())
	f.do(f.c.Firewalls.Insert(project, &compute.Firewall{Name: "prod-master-health", SourceRanges: metadata.HealthCheckProbeRanges, TargetTags: []string{"prod-master"},
		Allowed: []*compute.FirewallAllowed{{IPProtocol: "tcp", Ports: []string{"3990"}}}}).Do())
	f.do(f.c.Addresses.Insert(project, region, &compute.Address{Name: "prod-master-ip"}).Do())
	static, _ := f.c.Addresses.Get(project, region, "prod-master-ip").Do()
	ips := map[string]string{}
	var initial []string
	for _, n := range names {
		f.do(f.c.Addresses.Insert(project, region, &compute.Address{Name: n + "-internal", AddressType: "INTERNAL"}).Do())
		a, _ := f.c.Addresses.Get(project, region, n+"-internal").Do()
		ips[n] = a.Address
		initial = append(initial, n+"=http://"+a.Address+":2380")
	}
	conf := metadata.Encode(metadata.Config{MachineType: cfg.Masters.MachineType, Image: cfg.Masters.Image, DiskSizeGb: int64(cfg.Masters.DiskSizeGb),
		QuorumRead: true, ClientPort: 2379, PeerPort: 2380, MultiZone: true, KubernetesVersion: spec.DefaultKubernetesVersion})
	for i, n := range names {
		zone := cfg.Masters.Zones[i%3]
		f.do(f.c.Disks.Insert(project, zone, &compute.Disk{Name: n + "-pd", SizeGb: 20}).Do())
		doc := metadata.Encode(metadata.Etcd{Name: n, PeerURL: "http://" + ips[n] + ":2380", ClientURL: "http://" + ips[n] + ":2379",
			InitialCluster: strings.Join(initial, ","), InitialClusterState: "new"})
		ni := &compute.NetworkInterface{NetworkIP: ips[n]}
		if len(names) == 1 {
			ni.AccessConfigs = []*compute.AccessConfig{{NatIP: static.Address}}
		}
		f.do(f.c.Instances.Insert(project, zone, &compute.Instance{Name: n, MachineType: cfg.Masters.MachineType,
			Labels: map[string]string{"kubeha-cluster": "prod", "kubeha-role": "master"}, Tags: &compute.Tags{Items: []string{"prod-master"}},
			Disks:             []*compute.AttachedDisk{{Source: "zones/" + zone + "/disks/" + n + "-pd", DeviceName: "master-pd"}},
			NetworkInterfaces: []*compute.NetworkInterface{ni},
			Metadata:          &compute.Metadata{Items: []*compute.MetadataItems{{Key: metadata.KeyEtcd, Value: &doc}, {Key: metadata.KeyConfig, Value: &conf}}},
		}).Do())
	}
	if len(names) > 1 {
		f.do(f.c.HttpHealthChecks.Insert(project, &compute.HttpHealthCheck{Name: "prod-master-hc", Port: metadata.HealthCheckPort, RequestPath: metadata.HealthCheckPath}).Do())
		var refs []string
		for i, n := range names {
			refs = append(refs, "zones/"+cfg.Masters.Zones[i%3]+"/instances/"+n)
		}
		f.do(f.c.TargetPools.Insert(project, region, &compute.TargetPool{Name: "prod-master", Instances: refs, HealthChecks: []string{"global/httpHealthChecks/prod-master-hc"}}).Do())
		f.do(f.c.ForwardingRules.Insert(project, region, &compute.ForwardingRule{Name: "prod-master", IPAddress: static.Address, PortRange: "443",
			Target: "regions/" + region + "/targetPools/prod-master"}).Do())
	}
}

// observeHealthy observes until every member is healthy and has a leader.
func (f *fixture) observeHealthy(want int) *state.Cluster {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		obs, err := observe.Cluster(context.Background(), observe.Source{Compute: f.c, EtcdTimeout: 2 * time.Second}, f.sp)
		if err != nil {
			f.t.Fatal(err)
		}
		if len(obs.HealthyVoters()) == want && obs.Leader() != nil {
			return obs
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("cluster not healthy: %d healthy voters, etcd %+v", len(obs.HealthyVoters()), obs.Etcd)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestObserveEmptyProject(t *testing.T) {
	f := newFixture(t, 3)
	f.srv.ResetRequests()
	obs, err := observe.Cluster(context.Background(), observe.Source{Compute: f.c}, f.sp)
	if err != nil {
		t.Fatal(err)
	}
	if !obs.Empty() || obs.Etcd.Reachable {
		t.Fatalf("empty project observed as %+v", obs)
	}
	if got := f.srv.Requests().Total; got != observe.ComputeRequests {
		t.Errorf("%d requests, want %d", got, observe.ComputeRequests)
	}
	p, err := planner.Compute(f.sp, obs)
	if err != nil || p.NoChanges || p.After.Voters != 3 {
		t.Fatalf("plan of an empty project: %v %+v", err, p)
	}
	// GCE's 429s and 503s are retried, not reported.
	resp, err := http.Post(f.srv.URL()+"/sim/v1/faults", "application/json", strings.NewReader(`{"rate":0.4,"codes":[429,503]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for i := 0; i < 5; i++ {
		if _, err := observe.Cluster(context.Background(), observe.Source{Compute: f.c}, f.sp); err != nil {
			t.Fatalf("observe with 40%% of requests failing transiently: %v", err)
		}
	}
	// A 400 is not retried: it is reported.
	bad := testSpec(3)
	bad.Spec.GCE.Region = "mars-north1"
	if _, err := observe.Cluster(context.Background(), observe.Source{Compute: f.c}, bad); err == nil || !strings.Contains(err.Error(), "Unknown region") {
		t.Fatalf("observe of an unknown region: %v", err)
	}
}

func TestObserveClusters(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d masters", n), func(t *testing.T) {
			f := newFixture(t, n)
			names := []string{"prod-master"}
			for i := 1; i < n; i++ {
				names = append(names, fmt.Sprintf("prod-master-a%d%c", i, 'a'+rune(i)))
			}
			f.build(names...)
			// Instances named like masters that are not this cluster's: never counted.
			f.do(f.c.Instances.Insert(project, "europe-west1-b", &compute.Instance{Name: "prod-master-zz1", MachineType: "n1-standard-1",
				Labels: map[string]string{"kubeha-cluster": "other"}}).Do())
			f.do(f.c.Instances.Insert(project, "europe-west1-b", &compute.Instance{Name: "prod-node-1", MachineType: "n1-standard-1"}).Do())
			f.do(f.c.Instances.Insert(project, "europe-west1-b", &compute.Instance{Name: "prod-master-zz2", MachineType: "n1-standard-1",
				Labels: map[string]string{"kubeha-cluster": "prod", "kubeha-role": "node"}}).Do())
			f.observeHealthy(n)
			f.srv.ResetRequests()
			obs := f.observeHealthy(n)
			if got := f.srv.Requests().Total; got > 8 || got != observe.ComputeRequests {
				t.Errorf("observe made %d compute requests (%v), want %d and at most 8", got, f.srv.Requests().ByMethod, observe.ComputeRequests)
			}
			if len(obs.Instances) != n || len(obs.Replicas()) != n || len(obs.Voters()) != n || obs.Etcd.ClusterID == 0 {
				t.Fatalf("observed %d instances, %d voters", len(obs.Instances), len(obs.Voters()))
			}
			for _, r := range obs.Replicas() {
				if r.Member == nil || r.Disk == nil || r.Address == nil || !r.Healthy() || r.Instance.Config == nil || !r.Instance.HasDataDisk {
					t.Errorf("replica %s not joined: %+v", r.Name(), r)
				}
			}
			if obs.StaticIP == nil || obs.ForwardingRule == nil || obs.ForwardingRule.IPAddress != obs.StaticIP.Address || len(obs.TargetPool.Instances) != n {
				t.Errorf("load balancer: %+v %+v %+v", obs.StaticIP, obs.ForwardingRule, obs.TargetPool)
			}
			if len(obs.ByZone()) != 3 || len(obs.Unhealthy()) != 0 || len(obs.Orphans().Members) != 0 {
				t.Errorf("zones %d, unhealthy %d, orphans %+v", len(obs.ByZone()), len(obs.Unhealthy()), obs.Orphans())
			}
			p, err := planner.Compute(f.sp, obs)
			if err != nil || !p.NoChanges {
				t.Fatalf("plan of a cluster that matches its spec: %v\n%s", err, planner.Format(p))
			}
			// Crash a member that is not the leader: it is unhealthy, the rest keep quorum.
			var victim *state.Replica
			for _, r := range obs.Replicas() {
				if !r.Member.Leader {
					victim = r
				}
			}
			resp, err := http.Post(f.srv.URL()+"/sim/v1/projects/"+project+"/zones/"+victim.Zone()+"/instances/"+victim.Name()+"/crash", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			obs, err = observe.Cluster(context.Background(), observe.Source{Compute: f.c, EtcdTimeout: time.Second}, f.sp)
			if err != nil {
				t.Fatal(err)
			}
			if un := obs.Unhealthy(); len(un) != 1 || un[0].Name() != victim.Name() || un[0].Member.Error == "" {
				t.Fatalf("unhealthy after a crash: %+v", un)
			}
			if obs.LostQuorum() {
				t.Fatal("one crash lost quorum")
			}
			p, err = planner.ComputeWith(f.sp, obs, planner.Options{Replace: []string{victim.Name()}})
			if err != nil || p.After.Voters != n || p.Summary.Delete == 0 {
				t.Fatalf("replace plan: %v\n%s", err, planner.Format(p))
			}
		})
	}
}

func TestObserveKubeUpMaster(t *testing.T) {
	f := newFixture(t, 1)
	// kube-up's master: kube-up's name, no kubeha labels or config.
	f.do(f.c.Instances.Insert(project, "europe-west1-b", &compute.Instance{Name: "prod-master", MachineType: "n1-standard-2"}).Do())
	obs, err := observe.Cluster(context.Background(), observe.Source{Compute: f.c, EtcdTimeout: time.Second}, f.sp)
	if err != nil {
		t.Fatal(err)
	}
	if len(obs.Instances) != 1 || obs.Instances[0].Config != nil || obs.Etcd.Reachable {
		t.Fatalf("kube-up master observed as %+v, etcd %+v", obs.Instances, obs.Etcd)
	}
	// It runs no etcd the observer can reach: the planner refuses rather than guess.
	if _, err := planner.Compute(f.sp, obs); err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("plan: %v", err)
	}
}

func TestHealthRecord(t *testing.T) {
	path := t.TempDir() + "/health.json"
	h, err := state.LoadHealth(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &state.Cluster{ObservedAt: t0, Etcd: state.Etcd{Members: []*state.Member{{ID: 1, Healthy: false}, {ID: 2, Healthy: true}}}}
	h.Apply(c)
	if err := h.Save(path); err != nil {
		t.Fatal(err)
	}
	h, _ = state.LoadHealth(path)
	c = &state.Cluster{ObservedAt: t0.Add(7 * time.Minute), Etcd: state.Etcd{Members: []*state.Member{{ID: 1, Healthy: false}, {ID: 2, Healthy: true}}}}
	h.Apply(c)
	if c.Etcd.Members[0].UnhealthyFor != 7*time.Minute || c.Etcd.Members[1].UnhealthyFor != 0 {
		t.Fatalf("unhealthy for %v, %v", c.Etcd.Members[0].UnhealthyFor, c.Etcd.Members[1].UnhealthyFor)
	}
	c = &state.Cluster{ObservedAt: t0.Add(8 * time.Minute), Etcd: state.Etcd{Members: []*state.Member{{ID: 1, Healthy: true}}}}
	h.Apply(c)
	if len(h.UnhealthySince) != 0 {
		t.Fatalf("a recovered member is still recorded: %v", h.UnhealthySince)
	}
}
