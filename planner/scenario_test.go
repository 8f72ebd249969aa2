package planner

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubeha/kubeha/internal/golden"
	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// scenarioNow is when every scenario's state is observed.
var scenarioNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const (
	tProject = "p-test"
	tRegion  = "europe-west1"
	tCluster = "prod"
)

// checkSyntax fails a scenario line that scenarioSyntax does not allow.
func checkSyntax(f []string, fail func(string)) {
	syn, ok := scenarioSyntax[f[0]]
	if !ok {
		fail("unknown line")
		return
	}
	if len(f) < 1+syn.args {
		fail(fmt.Sprintf("%s takes %d arguments", f[0], syn.args))
		return
	}
	for _, a := range f[1+syn.args:] {
		k, v, isKey := strings.Cut(a, "=")
		switch {
		case isKey && !slices.Contains(syn.keys, k):
			fail("unknown key " + k)
		case isKey && syn.values[k] != nil && !slices.Contains(syn.values[k], v):
			fail(fmt.Sprintf("%s=%s: want one of %v", k, v, syn.values[k]))
		case !isKey && !slices.Contains(syn.flags, a):
			fail("unknown flag " + a)
		}
	}
}

func parseScenario(t *testing.T, path string) (*spec.Cluster, *state.Cluster, Options, *DestroyOptions, *RestoreOptions, string) {
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
	var destroy *DestroyOptions
	var restore *RestoreOptions
	sp := &spec.Cluster{APIVersion: spec.APIVersion, Kind: spec.Kind, Metadata: spec.Metadata{Name: tCluster},
		Spec: spec.ClusterSpec{GCE: spec.GCE{Project: tProject, Region: tRegion}, MultiZone: true}}
	obs := &state.Cluster{Name: tCluster, Project: tProject, Region: tRegion, Etcd: state.Etcd{Reachable: true, ClusterID: 0xc1},
		ObservedAt: scenarioNow}
	staticIP := true
	firewalls := "ok"
	clientFW := false
	nextIP := 2
	initial := map[*state.Instance][]string{}
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
		checkSyntax(f, fail)
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
			opts.Addons = kv["addons"] // the spec's add-ons (Options.Addons); the masters have them unless they say otherwise
			if v, ok := kv["region"]; ok {
				sp.Spec.GCE.Region = v
			}
			if v, ok := kv["access"]; ok {
				sp.Spec.Access.SourceRanges = strings.Split(v, ",")
			}
			sp.Spec.Masters.ReplaceBy = kv["replaceBy"]
			sp.Spec.Kubernetes.Version = kv["version"]
			spec.SetDefaults(sp)
		case "instance":
			if len(f) < 3 {
				fail("instance NAME ZONE")
			}
			in := &state.Instance{Name: f[1], Zone: zone(f[2]), ID: uint64(1000 + len(obs.Instances)), Status: "RUNNING",
				InternalIP: fmt.Sprintf("10.0.0.%d", nextIP), MachineType: sp.Spec.Masters.MachineType, HasDataDisk: !flags["nodisk"] && !flags["detached"],
				Labels: map[string]string{spec.LabelCluster: tCluster, spec.LabelRole: spec.RoleMaster}}
			nextIP++
			if v, ok := kv["status"]; ok {
				in.Status = v
			}
			cfg := metadata.Config{MachineType: sp.Spec.Masters.MachineType, Image: sp.Spec.Masters.Image, DiskSizeGb: int64(sp.Spec.Masters.DiskSizeGb),
				DiskType:   sp.Spec.Masters.DiskType,
				QuorumRead: sp.Spec.Etcd.QuorumReadEnabled(), ClientPort: sp.Spec.Etcd.ClientPort, PeerPort: sp.Spec.Etcd.PeerPort, MultiZone: sp.Spec.MultiZone,
				KubernetesVersion: sp.Spec.Kubernetes.Version, Addons: opts.Addons}
			switch v := kv["addons"]; v {
			case "":
			case "none":
				cfg.Addons = ""
			default:
				cfg.Addons = v
			}
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
			case strings.HasPrefix(v, "diskType:"):
				in.Config.DiskType = strings.TrimPrefix(v, "diskType:")
			case strings.HasPrefix(v, "diskSizeGb:"):
				in.Config.DiskSizeGb, _ = strconv.ParseInt(strings.TrimPrefix(v, "diskSizeGb:"), 10, 64)
			case v == "":
			default:
				fail("unknown config " + v)
			}
			switch kv["certs"] {
			case "expiring":
				in.Certs = &state.CertInfo{NotAfter: scenarioNow.Add(10 * 24 * time.Hour), PeerIPs: []string{in.InternalIP}, APIServerIPs: []string{"203.0.113.10", in.InternalIP}}
			case "wrong-ip":
				in.Certs = &state.CertInfo{NotAfter: scenarioNow.Add(300 * 24 * time.Hour), PeerIPs: []string{"10.9.9.9"}, APIServerIPs: []string{"203.0.113.10"}}
			case "old-static-ip":
				in.Certs = &state.CertInfo{NotAfter: scenarioNow.Add(300 * 24 * time.Hour), PeerIPs: []string{in.InternalIP}, APIServerIPs: []string{"203.0.113.77", in.InternalIP}}
			case "keys-in-metadata":
				in.Certs = &state.CertInfo{NotAfter: scenarioNow.Add(300 * 24 * time.Hour), PeerIPs: []string{in.InternalIP}, APIServerIPs: []string{"203.0.113.10", in.InternalIP}, KeysInMetadata: true}
			case "no-node-credentials":
				in.Certs = &state.CertInfo{NotAfter: scenarioNow.Add(300 * 24 * time.Hour), PeerIPs: []string{in.InternalIP}, APIServerIPs: []string{"203.0.113.10", in.InternalIP}, NoNodeCredentials: true}
			case "":
				in.Certs = &state.CertInfo{NotAfter: scenarioNow.Add(300 * 24 * time.Hour), PeerIPs: []string{in.InternalIP}, APIServerIPs: []string{"203.0.113.10", in.InternalIP}}
			}
			if kv["labels"] == "none" {
				in.Labels = nil
			}
			switch kv["nat"] {
			case "static":
				in.NatIP = "203.0.113.10"
			case "none":
			default: // ephemeral
				in.NatIP = fmt.Sprintf("198.51.100.%d", nextIP)
			}
			if v := kv["initial"]; v != "" {
				in.ClusterState = metadata.StateNew
				initial[in] = strings.Split(v, ",") // NAME or NAME@IP
			}
			if v := kv["joined"]; v != "" {
				in.ClusterState = metadata.StateExisting
				initial[in] = strings.Split(v, ",")
			}
			if v := kv["restore"]; v != "" {
				in.Restore = &metadata.Restore{ID: v, Bucket: "p-test-prod-kubeha", Object: "prod/" + v + "-snap.db", SHA256: "c0ffee", Token: "prod-" + v, RevisionBump: metadata.RestoreRevisionBump}
			}
			obs.Instances = append(obs.Instances, in)
			if !flags["nodisk"] {
				d := &state.Disk{Name: in.Name + "-pd", Zone: in.Zone, SizeGb: 20, Users: []string{in.Name}}
				if flags["detached"] { // a disk move cut short after the detach
					d.Users = nil
				}
				obs.Disks = append(obs.Disks, d)
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
			if f[2] != "voter" && f[2] != "learner" {
				fail("a member is a voter or a learner")
			}
			m := &state.Member{ID: nextID, Name: f[1], IsLearner: f[2] == "learner", Healthy: !flags["unhealthy"], Leader: flags["leader"]}
			nextID++
			if v, ok := kv["id"]; ok {
				m.ID, _ = strconv.ParseUint(v, 16, 64)
			}
			if v, ok := kv["peer"]; ok {
				m.PeerURLs = []string{"https://" + v + ":2380"}
			}
			m.Version = kv["version"] // the etcd server version it answers with
			for _, in := range obs.Instances {
				if in.Name == f[1] {
					m.Instance = in.Name
					m.PeerURLs = []string{"https://" + in.InternalIP + ":2380"}
				}
			}
			if flags["unstarted"] {
				// etcd names an unstarted learner "", and an unstarted
				// member of a static initial cluster by that cluster's name.
				m.Healthy, m.Unstarted = false, true
				if m.IsLearner {
					m.Name = ""
				}
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
			obs.Addresses = append(obs.Addresses, &state.Address{Name: f[1], Address: cmp.Or(kv["ip"], "10.0.9.9"), Type: "INTERNAL", Status: "RESERVED", Region: tRegion})
		case "static-ip":
			staticIP = !flags["missing"]
		case "firewalls":
			if !slices.Contains([]string{"missing", "etcd-drift", "https-missing"}, f[1]) {
				fail("firewalls missing|etcd-drift|https-missing")
			}
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
			if f[1] != "unreachable" {
				fail("etcd unreachable")
			}
			obs.Etcd = state.Etcd{Reachable: false, Error: "connect to etcd: context deadline exceeded"}
		case "etcd-client-firewall":
			clientFW = true
		case "other-region":
			obs.OtherRegions = append(obs.OtherRegions, f[1])
		case "network":
			sp.Spec.GCE.Network = f[1]
			n := &state.Network{Path: "projects/" + tProject + "/global/networks/" + f[1], Exists: !flags["missing"], AutoMode: !flags["custom"]}
			if v, ok := kv["subnetwork"]; ok {
				sp.Spec.GCE.Subnetwork = "masters"
				n.Subnetwork = "projects/" + tProject + "/regions/" + tRegion + "/subnetworks/masters"
				switch v {
				case "ours":
					n.SubnetworkOf = n.Path
				case "other-network":
					n.SubnetworkOf = "projects/" + tProject + "/global/networks/default"
				}
			}
			obs.Network = n
		case "identity":
			id := &state.Identity{ServiceAccount: "prod-master@" + tProject + ".iam.gserviceaccount.com", Managed: !flags["named"], Exists: !flags["missing"]}
			if flags["named"] {
				id.ServiceAccount = "masters@" + tProject + ".iam.gserviceaccount.com"
				sp.Spec.Masters.ServiceAccount = id.ServiceAccount
			}
			if v := kv["secrets"]; v != "" {
				id.Secrets = strings.Split(v, ",")
			}
			obs.Identity = id
		case "nodes":
			obs.Nodes = &state.Nodes{}
			if v := kv["masters"]; v != "" {
				obs.Nodes.Masters = strings.Split(v, ",")
			}
		case "destroy":
			destroy = &DestroyOptions{NoSnapshot: flags["no-snapshot"], FinalSnapshot: kv["final-snapshot"], RestoreBucket: kv["restore-bucket"]}
		case "newest-snapshot":
			opts.NewestSnapshot = &Snapshot{File: "20261207T003000.000Z-prod-before-remove-r4242.db", SHA256: "c0ffee", Revision: 4242, Taken: time.Date(2026, 12, 7, 0, 30, 0, 0, time.UTC)}
		case "restore":
			restore = &RestoreOptions{Force: flags["force"], ID: "r20261207t0100", Bucket: "p-test-prod-kubeha"}
			if !flags["no-snapshot"] {
				rev, _ := strconv.ParseInt(cmp.Or(kv["rev"], "4242"), 10, 64)
				sha := "c0ffee"
				if flags["other-snapshot"] {
					sha = "0dd"
				}
				restore.Snapshot = &Snapshot{File: "snap.db", SHA256: sha, Revision: rev, Taken: time.Date(2026, 12, 7, 0, 30, 0, 0, time.UTC)}
			}
		default:
			fail("unknown line")
		}
	}
	// A master of a bootstrap of several names the peer URL of every member
	// on its address (10.0.9.8 for one that has none).
	for in, names := range initial {
		var parts []string
		for _, n := range names {
			n, ip, found := strings.Cut(n, "@")
			for _, a := range obs.Addresses {
				if a.Name == n+"-internal" && !found {
					ip = a.Address
				}
			}
			ip = cmp.Or(ip, "10.0.9.8")
			parts = append(parts, n+"=https://"+ip+":2380")
		}
		in.InitialCluster = strings.Join(parts, ",")
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
	if clientFW {
		obs.Firewalls = append(obs.Firewalls, &state.Firewall{Name: "prod-master-etcd-client", Ports: []string{"2379"}, Sources: []string{"10.128.0.5/32"}, TargetTags: []string{"prod-master"}})
	}
	return sp, obs, opts, destroy, restore, want
}

func TestScenarios(t *testing.T) {
	files := golden.Files(t, "testdata/*.txt", 30)
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			sp, obs, opts, destroy, restore, want := parseScenario(t, path)
			plan := func() (*Plan, error) {
				if destroy != nil {
					return Destroy(sp, obs, *destroy)
				}
				if restore != nil {
					return Restore(sp, obs, *restore)
				}
				return ComputeWith(sp, obs, opts)
			}
			var got string
			p, err := plan()
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
				again, _ := plan()
				if Format(again) != got {
					t.Fatal("the plan differs between two runs")
				}
				checkPlan(t, p)
			}
			if golden.Update() {
				data, _ := os.ReadFile(path)
				input, _, _ := strings.Cut(string(data), "\n----\n")
				if err := os.WriteFile(path, []byte(input+"\n----\n"+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("plan differs (run go test ./planner -update and review the diff):\n--- got\n%s--- want\n%s", got, want)
			}
		})
	}
}
