package planner

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// genState makes a random, internally consistent observed state and spec.
func genState(r *rand.Rand) (*spec.Cluster, *state.Cluster, Options) {
	allZones := []string{"europe-west1-b", "europe-west1-c", "europe-west1-d"}
	sp := &spec.Cluster{APIVersion: spec.APIVersion, Kind: spec.Kind, Metadata: spec.Metadata{Name: "prod"},
		Spec: spec.ClusterSpec{GCE: spec.GCE{Project: "p", Region: "europe-west1"}, MultiZone: true}}
	sp.Spec.Masters.Replicas = []int{1, 3, 5, 7}[r.IntN(4)]
	nz := 1 + r.IntN(3)
	sp.Spec.Masters.Zones = allZones[:nz]
	if r.IntN(4) == 0 {
		sp.Spec.Masters.Zones = allZones[3-nz:]
	}
	sp.Spec.Masters.MachineType = []string{"n1-standard-2", "n1-standard-4"}[r.IntN(4)/3]
	sp.Spec.Remediation.ReplaceUnhealthy = r.IntN(2) == 0
	if r.IntN(2) == 0 {
		sp.Spec.Masters.ReplaceBy = spec.ReplaceByDisk
	}
	spec.SetDefaults(sp)

	obs := &state.Cluster{Name: "prod", Project: "p", Region: "europe-west1", Etcd: state.Etcd{Reachable: true, ClusterID: 1}}
	current := []int{0, 1, 1, 3, 3, 5, 7, 2, 4}[r.IntN(9)]
	id := uint64(0x10)
	if current > 0 {
		obs.StaticIP = &state.Address{Name: "prod-master-ip", Address: "203.0.113.10", Type: "EXTERNAL", Status: "RESERVED"}
		if r.IntN(10) > 0 {
			obs.Firewalls = []*state.Firewall{
				{Name: "prod-master-etcd", Ports: []string{"2380"}, SourceTags: []string{"prod-master"}, TargetTags: []string{"prod-master"}},
				{Name: "prod-master-health", Ports: []string{"3990"}, Sources: metadata.HealthCheckProbeRanges, TargetTags: []string{"prod-master"}},
				{Name: "prod-master-https", Ports: []string{"443"}, Sources: []string{"0.0.0.0/0"}, TargetTags: []string{"prod-master"}},
			}
		}
	}
	lb := current >= 2
	if lb {
		obs.HealthCheck = &state.HealthCheck{Name: "prod-master-hc", Port: metadata.HealthCheckPort, Path: metadata.HealthCheckPath}
		if r.IntN(5) == 0 { // made by a kubeha that probed 8080
			obs.HealthCheck.Port, obs.HealthCheck.Path = 8080, "/healthz"
		}
		obs.TargetPool = &state.TargetPool{Name: "prod-master"}
		obs.ForwardingRule = &state.ForwardingRule{Name: "prod-master", IPAddress: "203.0.113.10", Target: "prod-master"}
		obs.StaticIP.Status = "IN_USE"
		if r.IntN(8) == 0 {
			obs.ForwardingRule = nil // drift or an interrupted promotion
			obs.StaticIP.Status = "RESERVED"
		}
	}
	unhealthyBudget := (current - 1) / 2
	for i := 0; i < current; i++ {
		name := "prod-master"
		if i > 0 {
			name = fmt.Sprintf("prod-master-%c%c%d", 'a'+rune(i), 'k'+rune(r.IntN(10)), i)
		}
		zone := allZones[r.IntN(3)]
		ip := fmt.Sprintf("10.0.0.%d", 2+i)
		in := &state.Instance{Name: name, Zone: zone, Status: "RUNNING", InternalIP: ip, NatIP: "198.51.100.7", MachineType: "n1-standard-2", HasDataDisk: true,
			Labels: map[string]string{"kubeha-cluster": "prod", "kubeha-role": "master"},
			Config: &metadata.Config{MachineType: "n1-standard-2", Image: sp.Spec.Masters.Image, DiskSizeGb: 20, QuorumRead: true, ClientPort: 2379, PeerPort: 2380, MultiZone: true,
				KubernetesVersion: spec.DefaultKubernetesVersion, Addons: []string{"", "addons-1", "addons-1", "addons-0"}[r.IntN(4)]}}
		if current == 1 && r.IntN(6) > 0 {
			in.NatIP, obs.StaticIP.Status = "203.0.113.10", "IN_USE"
		}
		obs.Instances = append(obs.Instances, in)
		obs.Disks = append(obs.Disks, &state.Disk{Name: name + "-pd", Zone: zone, SizeGb: 20, Users: []string{name}})
		obs.Addresses = append(obs.Addresses, &state.Address{Name: name + "-internal", Address: ip, Type: "INTERNAL", Status: "IN_USE", Users: []string{name}})
		if lb && r.IntN(6) > 0 {
			obs.TargetPool.Instances = append(obs.TargetPool.Instances, name)
		}
		id++
		mem := &state.Member{ID: id, Name: name, Instance: name, Healthy: true}
		switch {
		case i > 0 && unhealthyBudget > 0 && r.IntN(4) == 0:
			unhealthyBudget--
			mem.Healthy, mem.Error = false, "down"
			mem.UnhealthyFor = []time.Duration{0, time.Minute, 10 * time.Minute}[r.IntN(3)]
		case i == current-1 && i > 0 && r.IntN(6) == 0:
			mem.IsLearner = true // an interrupted add
		case i > 0 && r.IntN(12) == 0:
			mem = nil // an interrupted removal: the VM has no member
		}
		if mem != nil {
			obs.Etcd.Members = append(obs.Etcd.Members, mem)
		}
		if mem != nil && !mem.Healthy {
			// Why it is down: its member, its VM stopped, its VM stopped by a
			// disk move cut short after the detach, or its VM gone with its
			// disk and address left.
			disk, addr := obs.Disks[len(obs.Disks)-1], obs.Addresses[len(obs.Addresses)-1]
			switch r.IntN(4) {
			case 1:
				in.Status, mem.Error = "TERMINATED", "stopped"
			case 2:
				in.Status, mem.Error, in.HasDataDisk, disk.Users = "TERMINATED", "stopped", false, nil
			case 3:
				obs.Instances = obs.Instances[:len(obs.Instances)-1]
				mem.Instance, mem.Error, disk.Users, addr.Status, addr.Users = "", "unreachable", nil, "RESERVED", nil
				if lb {
					obs.TargetPool.Instances = slices.DeleteFunc(obs.TargetPool.Instances, func(n string) bool { return n == name })
				}
			}
		}
	}
	for _, m := range obs.Etcd.Members {
		if !m.IsLearner && m.Healthy {
			m.Leader, obs.Etcd.LeaderID = true, m.ID
			break
		}
	}
	if current > 0 && r.IntN(6) == 0 {
		id++
		obs.Etcd.Members = append(obs.Etcd.Members, &state.Member{ID: id, IsLearner: true, Error: "not started"}) // orphaned learner
		obs.Disks = append(obs.Disks, &state.Disk{Name: "prod-master-zz9-pd", Zone: allZones[0], SizeGb: 20})
		obs.Addresses = append(obs.Addresses, &state.Address{Name: "prod-master-zz9-internal", Address: "10.0.9.9", Type: "INTERNAL", Status: "RESERVED"})
	}
	if r.IntN(2) == 0 {
		// The masters' identity observed: kubeha's account (missing before
		// the first apply), and the key secrets of the masters, one leaked.
		id := &state.Identity{ServiceAccount: "prod-master@p.iam.gserviceaccount.com", Managed: true, Exists: current > 0 || r.IntN(2) == 0}
		for _, in := range obs.Instances {
			id.Secrets = append(id.Secrets, in.Name+"-keys")
		}
		if r.IntN(4) == 0 {
			id.Secrets = append(id.Secrets, "prod-master-zz8-keys")
		}
		slices.Sort(id.Secrets)
		obs.Identity = id
	}
	if r.IntN(2) == 0 {
		// The masters' Nodes observed, one sometimes leaked by a removal
		// that was interrupted after its instance was deleted.
		obs.Nodes = &state.Nodes{}
		for _, in := range obs.Instances {
			obs.Nodes.Masters = append(obs.Nodes.Masters, in.Name)
		}
		if r.IntN(4) == 0 {
			obs.Nodes.Masters = append(obs.Nodes.Masters, "prod-master-zz7")
		}
		slices.Sort(obs.Nodes.Masters)
	}
	var opts Options
	if r.IntN(3) > 0 {
		opts.Addons = "addons-1" // else plans made without reading spec.addons
	}
	if current > 0 && r.IntN(8) == 0 {
		opts.Replace = []string{obs.Instances[r.IntN(len(obs.Instances))].Name}
	}
	genVersions(r, sp, obs)
	return sp, obs, opts
}

// Kubernetes releases of the generated masters: the spec's, an upgrade
// from the release before it (some masters done already), a rollback of
// one cut short, and now and then what is refused: a skipped minor
// version or an etcd downgrade (versionRefusal says which).
var (
	oldRelease   = spec.Release{Kubernetes: "v1.36.3", Etcd: "v3.6.8"}
	newRelease   = spec.Release{Kubernetes: "v1.37.2", Etcd: "v3.7.3"}
	olderRelease = spec.Release{Kubernetes: "v1.35.4", Etcd: "v3.6.5"}
)

func genVersions(r *rand.Rand, sp *spec.Cluster, obs *state.Cluster) {
	var pick func(i int) spec.Release
	switch r.IntN(16) {
	case 0, 1, 2: // an upgrade, under way in some cases
		sp.Spec.Kubernetes.Version = newRelease.Kubernetes
		pick = func(i int) spec.Release { return []spec.Release{oldRelease, oldRelease, newRelease}[r.IntN(3)] }
	case 3: // a rollback of an upgrade cut short: the first master kept the old release
		sp.Spec.Kubernetes.Version = oldRelease.Kubernetes
		pick = func(i int) spec.Release {
			if i == 0 {
				return oldRelease
			}
			return []spec.Release{oldRelease, newRelease}[r.IntN(2)]
		}
	case 4: // refused: a skip
		sp.Spec.Kubernetes.Version = newRelease.Kubernetes
		pick = func(int) spec.Release { return olderRelease }
	case 5: // refused: etcd 3.7 → 3.6
		sp.Spec.Kubernetes.Version = oldRelease.Kubernetes
		pick = func(int) spec.Release { return newRelease }
	default:
		return
	}
	members := map[string]*state.Member{}
	for _, m := range obs.Etcd.Members {
		members[m.Instance] = m
	}
	for i, in := range obs.Instances {
		rel := pick(i)
		if in.Config != nil {
			in.Config.KubernetesVersion = rel.Kubernetes
		}
		if m := members[in.Name]; m != nil && m.Healthy {
			m.Version = strings.TrimPrefix(rel.Etcd, "v")
		}
	}
}

// versionRefusal says why a generated state's version change must be
// refused ("skips", "downgrade"), or "".
func versionRefusal(sp *spec.Cluster, obs *state.Cluster) string {
	runs := running(obs)
	want, _ := spec.MinorOf(sp.Spec.Kubernetes.Version)
	for v := range runs {
		if m, _ := spec.MinorOf(v); m.Next().Less(want) {
			return "skips"
		}
	}
	if len(runs) > 0 && sp.Spec.Kubernetes.Version == oldRelease.Kubernetes {
		// Refused unless some voter runs etcd 3.6: by what it answered,
		// or by its master's release when it did not answer.
		release := map[string]string{}
		for _, in := range obs.Instances {
			if in.Config != nil {
				release[in.Name] = in.Config.KubernetesVersion
			}
		}
		newer, older := false, false
		for _, m := range obs.Etcd.Members {
			switch {
			case m.IsLearner:
			case strings.HasPrefix(m.Version, "3.6."), m.Version == "" && release[m.Instance] == oldRelease.Kubernetes:
				older = true
			case strings.HasPrefix(m.Version, "3.7."), m.Version == "" && release[m.Instance] == newRelease.Kubernetes:
				newer = true
			}
		}
		if len(obs.Etcd.Members) == 0 {
			_, newer = runs[newRelease.Kubernetes]
			_, older = runs[oldRelease.Kubernetes]
		}
		if newer && !older {
			return "downgrade"
		}
	}
	return ""
}
