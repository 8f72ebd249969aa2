package planner

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/internal/strs"
	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// model carries out plans on a copy of an observed state, as the executor
// would on GCE and etcd, and checks DESIGN.md §7 after every step.
type model struct {
	t      *testing.T
	sp     *spec.Cluster
	c      *state.Cluster
	nextIP int
	nextID uint64
	// destroying carries out a destroy plan: the masters go with their
	// members; saved says its final snapshot was taken.
	destroying, saved bool
	// addons is the add-ons digest the plans are made with (Options.Addons).
	addons string
	// anyOrder says the steps run in an order other than the plan's, so
	// the membership each step says it leaves (in plan order) is not checked.
	anyOrder bool
	// restoring carries out a restore: its plan stops the cluster that lost
	// quorum on purpose; uploaded are the restores whose snapshot is in
	// Cloud Storage.
	restoring bool
	uploaded  map[string]bool
	// diskMember is the member whose data each disk holds, once the model
	// booted one on it (see diskMemberOf).
	diskMember map[string]uint64
}

func (m *model) fail(format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf(format, args...)
}

func (m *model) member(replica string, id uint64) *state.Member {
	for _, mem := range m.c.Etcd.Members {
		if (id != 0 && mem.ID == id) || (replica != "" && mem.Instance == replica) {
			return mem
		}
	}
	return nil
}

func (m *model) instance(name string) *state.Instance {
	for _, in := range m.c.Instances {
		if in.Name == name {
			return in
		}
	}
	return nil
}

// apply carries out one step and checks that it keeps quorum and touches
// only this cluster's resources.
func (m *model) apply(p *Plan, s *Step) {
	m.t.Helper()
	if !strings.HasPrefix(s.Target, m.sp.Metadata.Name+"-master") && !strings.HasPrefix(s.Target, "member-") && !(s.Action == SaveSnapshot && s.Target == m.sp.Metadata.Name) &&
		!(s.Restore != nil && s.Target == "gs://"+s.Restore.Bucket+"/"+s.Restore.Object && strings.HasPrefix(s.Restore.Object, m.sp.Metadata.Name+"/")) &&
		!(s.Action == DeleteRestoreBucket && s.Target == "gs://"+spec.RestoreBucketName(m.sp.Spec.GCE.Project, m.sp.Metadata.Name)) {
		m.fail("step %s %s targets %s, not a resource of cluster %s (invariant 5)", s.ID, s.Action, s.Target, m.sp.Metadata.Name)
	}
	c := m.c
	switch s.Action {
	case DeleteFirewall:
		c.Firewalls = slices.DeleteFunc(c.Firewalls, func(f *state.Firewall) bool { return f.Name == s.Target })
	case CreateFirewall, UpdateFirewall:
		c.Firewalls = slices.DeleteFunc(c.Firewalls, func(f *state.Firewall) bool { return f.Name == s.Target })
		c.Firewalls = append(c.Firewalls, &state.Firewall{Name: s.Target, Ports: s.Firewall.Ports, SourceTags: s.Firewall.SourceTags, TargetTags: s.Firewall.TargetTags, Sources: s.Firewall.Sources})
		slices.SortFunc(c.Firewalls, func(a, b *state.Firewall) int { return strings.Compare(a.Name, b.Name) })
	case ReserveStaticIP:
		c.StaticIP = &state.Address{Name: s.Target, Address: "203.0.113.99", Type: "EXTERNAL", Status: "RESERVED"}
	case ReserveAddress:
		m.nextIP++
		c.Addresses = append(c.Addresses, &state.Address{Name: s.Target, Address: fmt.Sprintf("10.1.0.%d", m.nextIP), Type: "INTERNAL", Status: "RESERVED"})
	case CreateDisk:
		c.Disks = append(c.Disks, &state.Disk{Name: s.Target, Zone: s.Zone, SizeGb: int64(m.sp.Spec.Masters.DiskSizeGb)})
	case AddLearner:
		// etcd's --max-learners, which every member must share: the smallest
		// of the members' (an unknown one is etcd's default, 1).
		limit := metadata.DefaultMaxLearners
		for _, mem := range c.Etcd.Members {
			if in := m.instance(mem.Instance); in != nil {
				n := 1
				if in.Config != nil && in.Config.MaxLearners > 0 {
					n = in.Config.MaxLearners
				}
				limit = min(limit, n)
			}
		}
		if len(c.Learners()) >= limit {
			m.fail("step %s adds learner %d while the members allow %d", s.ID, len(c.Learners())+1, limit)
		}
		m.nextID++
		c.Etcd.Members = append(c.Etcd.Members, &state.Member{ID: m.nextID, IsLearner: true, Instance: s.Replica, Error: "not started"})
	case CreateInstance:
		spec := s.Instance
		if c.Identity != nil {
			if !c.Identity.Exists {
				m.fail("step %s creates %s before the service account it runs as", s.ID, spec.Name)
			}
			if !slices.Contains(c.Identity.Secrets, spec.Name+"-keys") {
				c.Identity.Secrets = append(c.Identity.Secrets, spec.Name+"-keys")
				slices.Sort(c.Identity.Secrets)
			}
		}
		if c.Nodes != nil && !slices.Contains(c.Nodes.Masters, spec.Name) {
			// The master registers its Node as it boots.
			c.Nodes.Masters = append(c.Nodes.Masters, spec.Name)
			slices.Sort(c.Nodes.Masters)
		}
		in := &state.Instance{Name: spec.Name, Zone: spec.Zone, Status: "RUNNING", MachineType: spec.Config.MachineType, HasDataDisk: true,
			Labels: map[string]string{"kubeha-cluster": m.sp.Metadata.Name, "kubeha-role": "master"}}
		cfg := spec.Config
		in.Config = &cfg
		for _, a := range c.Addresses {
			if a.Name == spec.InternalAddress {
				in.InternalIP, a.Status = a.Address, "IN_USE"
			}
		}
		if in.InternalIP == "" {
			m.fail("step %s creates %s before its address %s exists", s.ID, spec.Name, spec.InternalAddress)
		}
		if spec.StaticIP {
			if c.StaticIP == nil || c.StaticIP.Status == "IN_USE" {
				m.fail("step %s puts the static IP on %s, but it is missing or in use", s.ID, spec.Name)
			}
			in.NatIP, c.StaticIP.Status = c.StaticIP.Address, "IN_USE"
		} else {
			in.NatIP = "198.51.100.1"
		}
		c.Instances = append(c.Instances, in)
		in.ClusterState = spec.ClusterState
		if m.diskMember == nil {
			m.diskMember = map[string]uint64{}
		}
		m.attach(s, spec.Name, spec.Disk)
		if spec.MoveDisk {
			m.bootOnDisk(s, in, spec.Disk)
		} else if spec.Restore != nil {
			m.bootRestored(s, in, spec.InitialCluster, spec.Restore)
		} else if len(spec.InitialCluster) > 1 {
			m.bootMember(s, in, spec.InitialCluster)
		} else if spec.ClusterState == metadata.StateNew {
			if len(c.Etcd.Members) > 0 {
				m.fail("step %s starts a new etcd cluster while one exists", s.ID)
			}
			m.nextID++
			c.Etcd.Members = append(c.Etcd.Members, &state.Member{ID: m.nextID, Name: spec.Name, Instance: spec.Name, Healthy: true, Leader: true})
			c.Etcd.Reachable = true
		} else {
			mem := m.member(spec.Name, 0)
			if mem == nil || !mem.IsLearner {
				m.fail("step %s boots %s with state existing before its learner was added", s.ID, spec.Name)
			}
			mem.Name, mem.Healthy, mem.Error = spec.Name, true, ""
			m.joinOnDisk(s, spec.Disk, mem.ID)
		}
	case FormCluster:
		if m.restoring {
			m.formedRestore(s)
			break
		}
		if !c.Etcd.Reachable || len(c.Etcd.Members) == 0 || c.Etcd.ClusterID != clusterID(m.initialOf(s.Members)) {
			m.fail("step %s waits for the cluster of %v, which has not formed (%d of its masters exist)", s.ID, s.Members, len(c.Instances))
		}
	case PromoteMember:
		mem := m.member(s.Replica, s.MemberID)
		if mem == nil || !mem.IsLearner || m.instance(s.Replica) == nil {
			m.fail("step %s promotes %s, which is not a started learner", s.ID, s.Replica)
		}
		mem.IsLearner, mem.Healthy = false, true
	case StartInstance:
		m.instance(s.Replica).Status = "RUNNING"
		if mem := m.member(s.Replica, 0); mem != nil {
			mem.Healthy, mem.Error, mem.UnhealthyFor = true, "", 0
		}
		c.Etcd.Reachable = true
	case LabelInstance:
		m.instance(s.Replica).Labels = map[string]string{"kubeha-cluster": m.sp.Metadata.Name, "kubeha-role": "master"}
	case CreateHealthCheck, UpdateHealthCheck:
		c.HealthCheck = &state.HealthCheck{Name: s.Target, Port: metadata.HealthCheckPort, Path: metadata.HealthCheckPath}
	case CreateTargetPool:
		c.TargetPool = &state.TargetPool{Name: s.Target, Instances: append([]string(nil), s.PoolMembers...)}
	case AddToPool:
		if !slices.Contains(c.TargetPool.Instances, s.Replica) {
			c.TargetPool.Instances = append(c.TargetPool.Instances, s.Replica)
		}
	case RemoveFromPool:
		c.TargetPool.Instances = slices.DeleteFunc(c.TargetPool.Instances, func(n string) bool { return n == s.Replica })
		c.TargetPool.Dangling = slices.DeleteFunc(c.TargetPool.Dangling, func(n string) bool { return n == s.PoolLink })
	case DetachStaticIP:
		m.instance(s.Replica).NatIP = "198.51.100.2"
		c.StaticIP.Status = "RESERVED"
	case CreateForwardingRule:
		if c.StaticIP == nil || c.StaticIP.Status == "IN_USE" {
			m.fail("step %s gives the forwarding rule the static IP while it is missing or in use", s.ID)
		}
		c.ForwardingRule = &state.ForwardingRule{Name: s.Target, IPAddress: c.StaticIP.Address, Target: s.Target}
		c.StaticIP.Status = "IN_USE"
	case DeleteForwardingRule:
		c.ForwardingRule = nil
		if c.StaticIP != nil {
			c.StaticIP.Status = "RESERVED"
		}
	case AttachStaticIP:
		if c.StaticIP == nil || c.StaticIP.Status == "IN_USE" {
			m.fail("step %s attaches the static IP while it is missing or in use", s.ID)
		}
		m.instance(s.Replica).NatIP, c.StaticIP.Status = c.StaticIP.Address, "IN_USE"
	case DeleteTargetPool:
		c.TargetPool = nil
	case DeleteHealthCheck:
		c.HealthCheck = nil
	case MoveLeader:
		for _, mem := range c.Etcd.Members {
			mem.Leader = mem.Instance == s.LeaderTo
		}
	case RemoveMember:
		mem := m.member(s.Replica, s.MemberID)
		if mem == nil {
			m.fail("step %s removes a member of %s that does not exist", s.ID, s.Replica)
		}
		if mem.Leader && len(c.Voters()) > 1 {
			m.fail("step %s removes the etcd leader %s without moving leadership first", s.ID, s.Replica)
		}
		c.Etcd.Members = slices.DeleteFunc(c.Etcd.Members, func(x *state.Member) bool { return x == mem })
	case DeleteInstance:
		m.deleteVM(s)
	case DeleteDisk:
		c.Disks = slices.DeleteFunc(c.Disks, func(d *state.Disk) bool { return d.Name == s.Target })
	case ReleaseAddress:
		c.Addresses = slices.DeleteFunc(c.Addresses, func(a *state.Address) bool { return a.Name == s.Target })
		if c.StaticIP != nil && c.StaticIP.Name == s.Target {
			if c.StaticIP.Status == "IN_USE" {
				m.fail("step %s releases the static IP while it is in use", s.ID)
			}
			c.StaticIP = nil
		}
	case CreateServiceAccount:
		c.Identity.Exists = true
	case DeleteServiceAccount:
		if len(c.Instances) > 0 {
			m.fail("step %s deletes the masters' service account while masters run as it", s.ID)
		}
		c.Identity.Exists = false
	case DeleteSecret:
		if m.instance(strings.TrimSuffix(s.Target, "-keys")) != nil {
			m.fail("step %s deletes the keys of %s, which still runs", s.ID, s.Target)
		}
		c.Identity.Secrets = slices.DeleteFunc(c.Identity.Secrets, func(n string) bool { return n == s.Target })
	case DeleteNode:
		if m.instance(s.Target) != nil {
			m.fail("step %s deletes the Node of %s, which still runs", s.ID, s.Target)
		}
		if c.Nodes != nil {
			c.Nodes.Masters = slices.DeleteFunc(c.Nodes.Masters, func(n string) bool { return n == s.Target })
		}
	case SaveSnapshot:
		if !c.Etcd.Reachable || len(c.Instances) == 0 {
			m.fail("step %s saves a snapshot of an etcd that cannot give one", s.ID)
		}
		m.saved = true
	case RenewCertificates:
		if mem := m.member(s.Replica, 0); mem == nil || !mem.Healthy {
			m.fail("step %s restarts %s, which is not a healthy member", s.ID, s.Replica)
		}
		if ms := c.Membership(); ms.Voters >= 2 && ms.HealthyVoters-1 < ms.Quorum {
			m.fail("step %s restarts %s while the cluster cannot spare a member", s.ID, s.Replica)
		}
		in := m.instance(s.Replica)
		in.Certs = nil
		if m.addons != "" && in.Config != nil {
			in.Config.Addons = m.addons // the master is booted again with the spec's add-ons
		}
	case UpdateAddons:
		in := m.instance(s.Target)
		if in == nil || in.Status != "RUNNING" || in.Config == nil {
			m.fail("step %s writes the add-ons of %s, which is not a running master", s.ID, s.Target)
		}
		if m.addons == "" || in.Config.Addons == m.addons {
			m.fail("step %s writes the add-ons of %s, which has them (%q)", s.ID, s.Target, m.addons)
		}
		in.Config.Addons = m.addons
	case UploadSnapshot, StopInstance, RestoreMember, DeleteRestoreSnapshot:
		m.applyRestore(s)
	case DeleteRestoreBucket:
		if !m.destroying {
			m.fail("step %s deletes the restore bucket outside a destroy", s.ID)
		}
	default:
		m.fail("unknown action %s", s.Action)
	}
	if m.destroying && len(c.Instances) == 0 {
		c.Etcd.Members, c.Etcd.Reachable = nil, false // the last master is gone
	}
	if ms := c.Membership(); !m.destroying && !m.restoring && ms.Voters > 0 && ms.HealthyVoters < ms.Quorum {
		m.fail("after step %s (%s %s) %d of %d voters are healthy, below quorum %d (invariant 2)", s.ID, s.Action, s.Target, ms.HealthyVoters, ms.Voters, ms.Quorum)
	}
	// A member of a new cluster bootstrapped together may form it: the
	// plan says the cluster is there at its form-etcd-cluster step.
	together := s.Action == CreateInstance && len(s.Instance.InitialCluster) > 1
	if got := c.Membership(); !m.destroying && !m.restoring && !m.anyOrder && !together && (got.Voters != s.Etcd.Voters || got.Learners != s.Etcd.Learners) {
		m.fail("step %s says it leaves %s, the model has %s", s.ID, MembershipString(s.Etcd), MembershipString(got))
	}
}

// converged checks the state the spec asks for: replicas healthy voters, no
// learners, no orphan, and the static IP routing to the masters (invariant 4).
func (m *model) converged() {
	m.t.Helper()
	c, n := m.c, m.sp.Spec.Masters.Replicas
	if len(c.Instances) != n || len(c.Voters()) != n || len(c.Learners()) != 0 {
		m.fail("converged to %d instances, %d voters, %d learners; want %d", len(c.Instances), len(c.Voters()), len(c.Learners()), n)
	}
	if id := c.Identity; id != nil {
		if !id.Exists || len(id.Secrets) != n {
			m.fail("converged with the service account existing=%t and key secrets %v for %d masters", id.Exists, id.Secrets, n)
		}
	}
	if c.Nodes != nil {
		var names []string
		for _, in := range c.Instances {
			names = append(names, in.Name)
		}
		if !strs.SameSet(names, c.Nodes.Masters) {
			m.fail("converged with master Nodes %v for masters %v", c.Nodes.Masters, names)
		}
	}
	for _, in := range c.Instances {
		if m.addons != "" && in.Status == "RUNNING" && (in.Config == nil || in.Config.Addons != m.addons) {
			m.fail("converged with %s running other add-ons than the spec's", in.Name)
		}
	}
	o := c.Orphans()
	if len(o.Members)+len(o.Disks)+len(o.Addresses) > 0 {
		m.fail("leaked: %d members, %d disks, %d addresses with no master", len(o.Members), len(o.Disks), len(o.Addresses))
	}
	if n == 1 {
		if c.ForwardingRule != nil || c.TargetPool != nil || c.HealthCheck != nil || c.Instances[0].NatIP != c.StaticIP.Address {
			m.fail("one master, but the static IP is not on it or a load balancer remains")
		}
	} else {
		if c.ForwardingRule == nil || c.ForwardingRule.IPAddress != c.StaticIP.Address || c.TargetPool == nil || len(c.TargetPool.Instances) != n {
			m.fail("%d masters, but the static IP does not route to all of them through the load balancer", n)
		}
	}
}

func clone(c *state.Cluster) *state.Cluster {
	var out state.Cluster
	b, _ := jsonMarshal(c)
	_ = jsonUnmarshal(b, &out)
	return &out
}

// onlyCase replays one generated case with every round's plan printed:
// go test ./planner -run TestPlansKeepInvariants -case 192 -v
var onlyCase = flag.Int("case", -1, "run only this case of TestPlansKeepInvariants, printing each round's plan")

// run plans and carries out plans until one has no changes, checking every
// step, and fails after too many rounds (a plan that does not converge).
func run(t *testing.T, sp *spec.Cluster, m *model, opts Options, stopAfter int) {
	t.Helper()
	for round := 0; round < 4; round++ {
		p, err := ComputeWith(sp, m.c, opts)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if *onlyCase >= 0 {
			t.Logf("round %d (the first stops after %d steps):\n%s", round, stopAfter, Format(p))
		}
		if p.NoChanges {
			m.converged()
			return
		}
		checkPlan(t, p)
		for i, s := range p.Steps {
			if stopAfter >= 0 && round == 0 && i == stopAfter {
				break // interrupted: the next round must pick up from here
			}
			m.apply(p, s)
		}
		opts.Replace = nil // --replace applies to the first apply only
		// What the next observation sees: members that were down for long
		// stay down, new ones are healthy.
	}
	p, _ := ComputeWith(sp, m.c, opts)
	t.Fatalf("no convergence after 4 rounds; last plan:\n%s", Format(p))
}

func TestPlansKeepInvariants(t *testing.T) {
	const cases = 3000
	refused, interrupted, steps, movesRefused, versionsRefused := 0, 0, 0, 0, 0
	booted := movesBooted
	for i := 0; i < cases; i++ {
		if *onlyCase >= 0 && i != *onlyCase {
			continue
		}
		r := rand.New(rand.NewPCG(uint64(i), 7))
		sp, obs, opts := genState(r)
		p, err := ComputeWith(sp, obs, opts)
		if why := versionRefusal(sp, obs); why != "" || err != nil && strings.Contains(err.Error(), "spec.kubernetes.version") && !strings.Contains(err.Error(), "rolling back to") {
			// A skipped minor version or an etcd downgrade is refused
			// before anything else; nothing else is.
			if err == nil || !strings.Contains(err.Error(), why) || why == "" {
				t.Fatalf("case %d: the version change should be refused (%q), got %v", i, why, err)
			}
			versionsRefused++
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("case %d: not a refusal: %v", i, err)
			}
			if strings.Contains(err.Error(), "rolling back to") {
				// A rollback whose plan would remove the last member of
				// the older etcd first: refused, never planned.
				if sp.Spec.Kubernetes.Version != oldRelease.Kubernetes {
					t.Fatalf("case %d: a rollback refused that is none: %v", i, err)
				}
				refused++
				continue
			}
			if moving := strings.Contains(err.Error(), "by moving its disk"); !obs.LostQuorum() && !strings.Contains(err.Error(), "lost quorum") && !moving {
				t.Fatalf("case %d: refused a plan with quorum intact: %v", i, err)
			} else if moving {
				// A disk move the others cannot spare a member for: the same
				// state is planned by member.
				bymember := *sp
				bymember.Spec.Masters.ReplaceBy = spec.ReplaceByMember
				if _, err := ComputeWith(&bymember, obs, opts); err != nil && !obs.LostQuorum() {
					t.Fatalf("case %d: refused a disk move, and by member too: %v", i, err)
				}
				movesRefused++
			}
			refused++
			continue
		}
		stop := -1
		if i%3 == 0 && len(p.Steps) > 0 {
			stop = r.IntN(len(p.Steps)) // interrupt the first apply anywhere
			interrupted++
		}
		steps += len(p.Steps)
		t.Run(fmt.Sprintf("case%d", i), func(t *testing.T) {
			m := &model{t: t, sp: sp, c: clone(obs), nextIP: 100, nextID: 0x1000, addons: opts.Addons}
			run(t, sp, m, opts, stop)
		})
		if t.Failed() {
			t.Logf("case %d: spec replicas=%d zones=%v remediation=%t replace=%v\nobserved: %s", i, sp.Spec.Masters.Replicas, sp.Spec.Masters.Zones,
				sp.Spec.Remediation.ReplaceUnhealthy, opts.Replace, mustJSON(obs))
			return
		}
	}
	t.Logf("%d cases: %d refused (lost quorum, or %d disk moves the others cannot spare a member for), %d version changes refused, %d interrupted and resumed, %d steps carried out, %d VMs made again on their disks",
		cases, refused, movesRefused, versionsRefused, interrupted, steps, movesBooted-booted)
	if versionsRefused < cases/40 && *onlyCase < 0 {
		t.Errorf("only %d version changes were refused: the generator tests too few skips and downgrades", versionsRefused)
	}
	if movesBooted-booted < cases/20 && *onlyCase < 0 {
		t.Errorf("only %d VMs were made again on their disks: the generator tests too few disk moves", movesBooted-booted)
	}
	if refused > cases/4 && *onlyCase < 0 {
		t.Errorf("%d of %d generated states were refused: the generator is too harsh to test much", refused, cases)
	}
}
