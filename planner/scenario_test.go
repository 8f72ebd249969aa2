package planner

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of planner/testdata scenarios (only commit what you understand)")

// scenarioNow is when every scenario's state is observed.
var scenarioNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const (
	tProject = "p-test"
	tRegion  = "europe-west1"
	tCluster = "prod"
)

// scenario is one testdata file: comment lines, a spec line, lines that
// describe what exists, then "----" and the expected plan (or "error: ...").
//
//	spec replicas=3 zones=b,c,d [remediation=on] [after=5m] [machineType=T] [image=I] [quorumRead=false] [replace=N,...]
//	instance NAME ZONE [status=S] [config=none|machineType=T|image=I] [labels=none|other] [nat=static|ephemeral|none] [pool] [nodisk] [noaddr]
//	member NAME voter|learner [unhealthy] [leader] [for=10m] [unstarted] [id=N]   (NAME without an instance is an orphan)
//	disk NAME ZONE | address NAME | static-ip [missing] | firewalls [missing|etcd-drift|https-missing]
//	healthcheck | pool [NAME,...] [dangling=NAME] | rule [ip=IP] | etcd unreachable | other-region R
func parseScenario(t *testing.T, path string) (*spec.Cluster, *state.Cluster, Options, string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	input, want, found := strings.Cut(string(data), "\n----\n")
	if !found {
		t.Fatalf("%s: no ---- line", path)
	}
	var opts Options
	sp := &spec.Cluster{APIVersion: spec.APIVersion, Kind: spec.Kind, Metadata: spec.Metadata{Name: tCluster},
		Spec: spec.ClusterSpec{GCE: spec.GCE{Project: tProject, Region: tRegion}, MultiZone: true}}
	obs := &state.Cluster{Name: tCluster, Project: tProject, Region: tRegion, Etcd: state.Etcd{Reachable: true, ClusterID: 0xc1},
		ObservedAt: scenarioNow}
	staticIP := true
	firewalls := "ok"
	nextIP := 2
	nextID := uint64(0x100)
	zone := func(z string) string {
		if len(z) == 1 {
			return tRegion + "-" + z
		}
		return z
	}
	for n, line := range strings.Split(input, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		kv := map[string]string{}
		flags := map[string]bool{}
		for _, a := range f[1:] {
			if k, v, ok := strings.Cut(a, "="); ok {
				kv[k] = v
			} else {
				flags[a] = true
			}
		}
		fail := func(msg string) { t.Fatalf("%s:%d: %s: %q", path, n+1, msg, line) }
		switch f[0] {
		case "spec":
			sp.Spec.Masters.Replicas, _ = strconv.Atoi(kv["replicas"])
			for _, z := range strings.Split(kv["zones"], ",") {
				sp.Spec.Masters.Zones = append(sp.Spec.Masters.Zones, zone(z))
			}
			sp.Spec.Masters.MachineType = kv["machineType"]
			sp.Spec.Masters.Image = kv["image"]
			sp.Spec.Remediation.ReplaceUnhealthy = kv["remediation"] == "on"
			if v, ok := kv["after"]; ok {
				d, _ := time.ParseDuration(v)
				sp.Spec.Remediation.UnhealthyAfter.Duration = d
			}
			if v, ok := kv["quorumRead"]; ok {
				b := v == "true"
				sp.Spec.Etcd.QuorumRead = &b
			}
			if v, ok := kv["replace"]; ok {
				opts.Replace = strings.Split(v, ",")
			}
			if v, ok := kv["region"]; ok {
				sp.Spec.GCE.Region = v
			}
			spec.SetDefaults(sp)
		case "instance":
			if len(f) < 3 {
				fail("instance NAME ZONE")
			}
			in := &state.Instance{Name: f[1], Zone: zone(f[2]), ID: uint64(1000 + len(obs.Instances)), Status: "RUNNING",
				InternalIP: fmt.Sprintf("10.0.0.%d", nextIP), MachineType: sp.Spec.Masters.MachineType, HasDataDisk: !flags["nodisk"],
				Labels: map[string]string{spec.LabelCluster: tCluster, spec.LabelRole: spec.RoleMaster}}
			nextIP++
			if v, ok := kv["status"]; ok {
				in.Status = v
			}
			cfg := metadata.Config{MachineType: sp.Spec.Masters.MachineType, Image: sp.Spec.Masters.Image, DiskSizeGb: int64(sp.Spec.Masters.DiskSizeGb),
				QuorumRead: sp.Spec.Etcd.QuorumReadEnabled(), ClientPort: sp.Spec.Etcd.ClientPort, PeerPort: sp.Spec.Etcd.PeerPort, MultiZone: sp.Spec.MultiZone,
				KubernetesVersion: sp.Spec.Kubernetes.Version}
			in.Config = &cfg
			switch v := kv["config"]; {
			case v == "none":
				in.Config = nil
			case strings.HasPrefix(v, "machineType:"):
				in.Config.MachineType = strings.TrimPrefix(v, "machineType:")
				in.MachineType = in.Config.MachineType
			case strings.HasPrefix(v, "image:"):
				in.Config.Image = strings.TrimPrefix(v, "image:")
			case strings.HasPrefix(v, "quorumRead:"):
				in.Config.QuorumRead = strings.TrimPrefix(v, "quorumRead:") == "true"
			case strings.HasPrefix(v, "kubernetesVersion:"):
				in.Config.KubernetesVersion = strings.TrimPrefix(v, "kubernetesVersion:")
			case strings.HasPrefix(v, "diskSizeGb:"):
				in.Config.DiskSizeGb, _ = strconv.ParseInt(strings.TrimPrefix(v, "diskSizeGb:"), 10, 64)
			}
			switch kv["certs"] {
			case "expiring":
				in.Certs = &state.CertInfo{NotAfter: scenarioNow.Add(10 * 24 * time.Hour), PeerIPs: []string{in.InternalIP}, APIServerIPs: []string{"203.0.113.10", in.InternalIP}}
			case "wrong-ip":
				in.Certs = &state.CertInfo{NotAfter: scenarioNow.Add(300 * 24 * time.Hour), PeerIPs: []string{"10.9.9.9"}, APIServerIPs: []string{"203.0.113.10"}}
			case "old-static-ip":
				in.Certs = &state.CertInfo{NotAfter: scenarioNow.Add(300 * 24 * time.Hour), PeerIPs: []string{in.InternalIP}, APIServerIPs: []string{"203.0.113.77", in.InternalIP}}
			case "":
				in.Certs = &state.CertInfo{NotAfter: scenarioNow.Add(300 * 24 * time.Hour), PeerIPs: []string{in.InternalIP}, APIServerIPs: []string{"203.0.113.10", in.InternalIP}}
			}
			switch kv["labels"] {
			case "none":
				in.Labels = nil
			}
			switch kv["nat"] {
			case "static":
				in.NatIP = "203.0.113.10"
			case "none":
			default:
				in.NatIP = fmt.Sprintf("198.51.100.%d", nextIP)
			}
			obs.Instances = append(obs.Instances, in)
			if !flags["nodisk"] {
				obs.Disks = append(obs.Disks, &state.Disk{Name: in.Name + "-pd", Zone: in.Zone, SizeGb: 20, Users: []string{in.Name}})
			}
			if !flags["noaddr"] {
				obs.Addresses = append(obs.Addresses, &state.Address{Name: in.Name + "-internal", Address: in.InternalIP, Type: "INTERNAL", Status: "IN_USE", Users: []string{in.Name}, Region: tRegion})
			}
			if flags["pool"] {
				if obs.TargetPool == nil {
					obs.TargetPool = &state.TargetPool{Name: "prod-master", HealthCheck: "prod-master-hc"}
				}
				obs.TargetPool.Instances = append(obs.TargetPool.Instances, in.Name)
			}
		case "member":
			m := &state.Member{ID: nextID, Name: f[1], IsLearner: f[2] == "learner", Healthy: !flags["unhealthy"], Leader: flags["leader"]}
			nextID++
			if v, ok := kv["id"]; ok {
				m.ID, _ = strconv.ParseUint(v, 16, 64)
			}
			for _, in := range obs.Instances {
				if in.Name == f[1] {
					m.Instance = in.Name
					m.PeerURLs = []string{"https://" + in.InternalIP + ":2380"}
				}
			}
			if flags["unstarted"] {
				m.Name, m.Healthy = "", false
				m.Error = "not started: the member has not joined yet"
			}
			if flags["unhealthy"] {
				m.Error = "status of https://x:2379: context deadline exceeded"
			}
			if v, ok := kv["for"]; ok {
				m.UnhealthyFor, _ = time.ParseDuration(v)
			}
			if m.Leader {
				obs.Etcd.LeaderID = m.ID
			}
			obs.Etcd.Members = append(obs.Etcd.Members, m)
		case "disk":
			obs.Disks = append(obs.Disks, &state.Disk{Name: f[1], Zone: zone(f[2]), SizeGb: 20})
		case "address":
			obs.Addresses = append(obs.Addresses, &state.Address{Name: f[1], Address: "10.0.9.9", Type: "INTERNAL", Status: "RESERVED", Region: tRegion})
		case "static-ip":
			staticIP = !flags["missing"]
		case "firewalls":
			firewalls = f[1]
		case "healthcheck":
			obs.HealthCheck = &state.HealthCheck{Name: "prod-master-hc", Port: metadata.HealthCheckPort, Path: metadata.HealthCheckPath}
			switch kv["probes"] {
			case "8080":
				obs.HealthCheck.Port, obs.HealthCheck.Path = 8080, "/healthz"
			case "":
			default:
				fail("unknown probes value")
			}
		case "pool":
			if obs.TargetPool == nil {
				obs.TargetPool = &state.TargetPool{Name: "prod-master", HealthCheck: "prod-master-hc"}
			}
			if v, ok := kv["dangling"]; ok {
				obs.TargetPool.Dangling = append(obs.TargetPool.Dangling, "projects/p-test/zones/europe-west1-b/instances/"+v)
			}
		case "rule":
			obs.ForwardingRule = &state.ForwardingRule{Name: "prod-master", IPAddress: "203.0.113.10", Target: "prod-master", PortRange: "443-443"}
			if v, ok := kv["ip"]; ok {
				obs.ForwardingRule.IPAddress = v
			}
		case "etcd":
			obs.Etcd = state.Etcd{Reachable: false, Error: "connect to etcd: context deadline exceeded"}
		case "other-region":
			obs.OtherRegions = append(obs.OtherRegions, f[1])
		default:
			fail("unknown line")
		}
	}
	if staticIP {
		st := &state.Address{Name: "prod-master-ip", Address: "203.0.113.10", Type: "EXTERNAL", Status: "RESERVED", Region: tRegion}
		for _, in := range obs.Instances {
			if in.NatIP == st.Address {
				st.Status, st.Users = "IN_USE", []string{in.Name}
			}
		}
		if obs.ForwardingRule != nil && obs.ForwardingRule.IPAddress == st.Address {
			st.Status, st.Users = "IN_USE", []string{"prod-master"}
		}
		obs.StaticIP = st
	}
	etcdFW := &state.Firewall{Name: "prod-master-etcd", Ports: []string{"2380"}, SourceTags: []string{"prod-master"}, TargetTags: []string{"prod-master"}}
	httpsFW := &state.Firewall{Name: "prod-master-https", Ports: []string{"443"}, Sources: []string{"0.0.0.0/0"}, TargetTags: []string{"prod-master"}}
	healthFW := &state.Firewall{Name: "prod-master-health", Ports: []string{"3990"}, Sources: metadata.HealthCheckProbeRanges, TargetTags: []string{"prod-master"}}
	switch firewalls {
	case "ok":
		obs.Firewalls = []*state.Firewall{etcdFW, healthFW, httpsFW}
	case "etcd-drift":
		etcdFW.Ports = []string{"2379-2380"}
		etcdFW.SourceTags = nil
		etcdFW.Sources = []string{"0.0.0.0/0"}
		obs.Firewalls = []*state.Firewall{etcdFW, healthFW, httpsFW}
	case "https-missing":
		obs.Firewalls = []*state.Firewall{etcdFW, healthFW}
	case "missing":
	}
	return sp, obs, opts, want
}

func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 30 {
		t.Errorf("want at least 30 scenarios, found %d", len(files))
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			sp, obs, opts, want := parseScenario(t, path)
			var got string
			p, err := ComputeWith(sp, obs, opts)
			if err != nil {
				if !errors.Is(err, ErrRefused) {
					t.Fatalf("an error that is not a refusal: %v", err)
				}
				got = "error: " + err.Error() + "\n"
			} else {
				got = Format(p)
				// A plan never holds key material: certificates are issued
				// when a step runs.
				if data, _ := json.Marshal(p); strings.Contains(string(data), "PRIVATE KEY") || strings.Contains(string(data), "BEGIN CERTIFICATE") {
					t.Fatal("the plan holds key material")
				}
				// Determinism: the same inputs give the same plan.
				again, _ := ComputeWith(sp, obs, opts)
				if Format(again) != got {
					t.Fatal("the plan differs between two runs")
				}
				checkPlan(t, p)
			}
			if *rewrite {
				data, _ := os.ReadFile(path)
				input, _, _ := strings.Cut(string(data), "\n----\n")
				if err := os.WriteFile(path, []byte(input+"\n----\n"+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("plan differs (run go test ./planner -rewrite and review the diff):\n--- got\n%s--- want\n%s", got, want)
			}
		})
	}
}

// checkPlan checks properties every plan has: dependencies point backwards
// and exist, etcd steps form one chain, no step names a non-master.
func checkPlan(t *testing.T, p *Plan) {
	t.Helper()
	ids := map[string]int{}
	lastEtcd := ""
	for i, s := range p.Steps {
		ids[s.ID] = i
		for _, d := range s.DependsOn {
			if j, ok := ids[d]; !ok || j >= i {
				t.Errorf("step %s depends on %s, which is not an earlier step", s.ID, d)
			}
		}
		if s.Action.Etcd() {
			if lastEtcd != "" && !dependsOn(p, s, lastEtcd) {
				t.Errorf("etcd step %s does not wait for etcd step %s: two membership changes could run at once", s.ID, lastEtcd)
			}
			lastEtcd = s.ID
		}
		if s.Etcd.Voters > 0 && s.Etcd.HealthyVoters < s.Etcd.Quorum {
			t.Errorf("step %s leaves %d healthy voters of %d (quorum %d)", s.ID, s.Etcd.HealthyVoters, s.Etcd.Voters, s.Etcd.Quorum)
		}
		if !strings.HasPrefix(s.Target, tCluster+"-master") && s.Phase != "cleanup" {
			t.Errorf("step %s targets %s, not a master resource of %s", s.ID, s.Target, tCluster)
		}
	}
}

// dependsOn says step s waits, directly or not, for step id.
func dependsOn(p *Plan, s *Step, id string) bool {
	byID := map[string]*Step{}
	for _, x := range p.Steps {
		byID[x.ID] = x
	}
	seen := map[string]bool{}
	var walk func(*Step) bool
	walk = func(x *Step) bool {
		for _, d := range x.DependsOn {
			if d == id {
				return true
			}
			if !seen[d] {
				seen[d] = true
				if walk(byID[d]) {
					return true
				}
			}
		}
		return false
	}
	return walk(s)
}
