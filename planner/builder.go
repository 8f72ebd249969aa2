package planner

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// The builder: the steps so far, the replicas, and the etcd membership
// model that every step is checked against before it is added.

// replica is a master in the planner's model.
type replica struct {
	name, zone  string
	obs         *state.Replica // nil for a replica this plan adds
	member      *state.Member
	voter       bool
	learner     bool
	healthy     bool
	inPool      bool
	staticIP    bool // the static IP is on its access config
	removed     bool // this plan removes it
	promoted    bool // this plan promotes its learner (which may not have started yet)
	driftReason string
}

type builder struct {
	spec *spec.Cluster
	obs  *state.Cluster
	opts Options

	steps    []*Step
	warnings []string
	// err is the first refusal: once set, add adds nothing and every pass
	// that follows is a no-op, and build returns it.
	err error

	replicas  []*replica // every replica, kept and removed, observed and new
	etcdModel            // the etcd membership after the steps so far
	used      map[string]bool
	keep      map[string]bool // replicas whose disks and addresses are no leak (members of a bootstrap being completed)
	lb        bool            // the load balancer exists or is planned
	ft0       []string

	// Steps that later steps depend on, by ID ("" when not planned).
	lastEtcd   string // the last step that changed membership: etcd steps run one at a time
	fwEtcd     string // the etcd firewall: a new master's peers must reach it
	staticStep string // the static IP's reservation
	saStep     string // the masters' service account's creation
	hcStep     string // the health check's creation or update
	poolStep   string // the target pool's creation
	ruleStep   string // the forwarding rule's creation
	// lastAdd is the last step of the most recently added master: removals
	// wait for it, so a successor serves before its predecessor stops.
	lastAdd string
	// lastMove is the last step of the latest disk move: moves run one at
	// a time. vanished are the masters whose VMs are made again on their
	// disks (see findVanished).
	lastMove string
	vanished []vanished
	// orphanRemovals are the removals of orphaned members: leaked disks and
	// addresses go after them.
	orphanRemovals []string
	// lbWork are the steps the load balancer's removal waits for: every
	// pool and membership change, and the load balancer's own creation.
	lbWork []string
}

// etcdModel is the etcd membership the planner keeps as it adds steps, keyed
// by replica (memberKey).
type etcdModel struct {
	voters, learners, healthy map[string]bool
	leader                    string // replica of the leader ("" if none or an orphan)
}

func newModel() etcdModel {
	return etcdModel{voters: map[string]bool{}, learners: map[string]bool{}, healthy: map[string]bool{}}
}

func (m etcdModel) clone() etcdModel {
	return etcdModel{voters: maps.Clone(m.voters), learners: maps.Clone(m.learners), healthy: maps.Clone(m.healthy), leader: m.leader}
}

// apply changes the model as a step changes etcd.
func (m *etcdModel) apply(s *Step) {
	key := s.Replica
	switch s.Action {
	case AddLearner:
		m.learners[key] = true
	case PromoteMember:
		delete(m.learners, key)
		m.voters[key], m.healthy[key] = true, true
	case CreateInstance:
		if s.Instance.bootstrapsAlone() {
			m.voters[key], m.healthy[key] = true, true
			m.leader = key
		}
		if s.Instance.MoveDisk && m.voters[key] {
			m.healthy[key] = true
		}
	case FormCluster:
		for _, k := range s.Members {
			m.voters[k], m.healthy[k] = true, true
		}
		m.leader = ""
	case StartInstance:
		if m.voters[key] {
			m.healthy[key] = true
		}
	case DeleteInstance:
		if s.KeepDisk { // a disk move: the member is down until its VM is made again
			delete(m.healthy, key)
			if m.leader == key {
				m.leader = ""
			}
		}
	case MoveLeader:
		m.leader = s.LeaderTo
	case RemoveMember:
		delete(m.voters, key)
		delete(m.learners, key)
		delete(m.healthy, key)
		if m.leader == key {
			m.leader = ""
		}
	}
}

func newBuilder(desired *spec.Cluster, observed *state.Cluster, opts Options) *builder {
	b := &builder{spec: desired, obs: observed, opts: opts, etcdModel: newModel(), used: map[string]bool{}, keep: map[string]bool{},
		vanished: findVanished(desired, observed)}
	for _, m := range observed.Etcd.Members {
		k := memberKey(m)
		if b.isVanished(m) {
			k = m.Name // the VM made again on its disk has the member's name
		}
		if m.IsLearner {
			b.learners[k] = true
		} else {
			b.voters[k] = true
			if m.Healthy {
				b.healthy[k] = true
			}
		}
		if m.Leader {
			b.leader = k
		}
		b.used[m.Name] = true
	}
	for _, in := range observed.Instances {
		b.used[in.Name] = true
	}
	// A new cluster's masters have the names its plan derives, whatever
	// disks and addresses exist: a bootstrap interrupted before any master
	// was created, or another apply's bootstrap of the same cluster running
	// at once, made them for those very masters (reserve reuses them). Once
	// a master exists, the names of every disk and address are taken.
	if len(observed.Etcd.Members) > 0 || len(observed.Instances) > 0 {
		for _, d := range observed.Disks {
			b.used[strings.TrimSuffix(d.Name, "-pd")] = true
		}
		for _, a := range observed.Addresses {
			b.used[strings.TrimSuffix(a.Name, "-internal")] = true
		}
	}
	inPool := map[string]bool{}
	if observed.TargetPool != nil {
		for _, n := range observed.TargetPool.Instances {
			inPool[n] = true
		}
	}
	for _, r := range observed.Replicas() {
		rp := &replica{name: r.Name(), zone: r.Zone(), obs: r, member: r.Member, inPool: inPool[r.Name()]}
		if r.Member != nil {
			rp.voter = !r.Member.IsLearner
			rp.learner = r.Member.IsLearner
			rp.healthy = r.Healthy()
		}
		rp.staticIP = observed.StaticIP != nil && r.Instance.NatIP == observed.StaticIP.Address
		b.replicas = append(b.replicas, rp)
	}
	b.lb = observed.TargetPool != nil && observed.ForwardingRule != nil && observed.HealthCheck != nil
	return b
}

// isVanished says the member's VM is made again on its disk by this plan.
func (b *builder) isVanished(m *state.Member) bool {
	return slices.ContainsFunc(b.vanished, func(v vanished) bool { return v.member.ID == m.ID })
}

// memberKey names a member in the model: its instance's name, or its ID
// for a member with no instance.
func memberKey(m *state.Member) string {
	if m.Instance != "" {
		return m.Instance
	}
	return fmt.Sprintf("member-%x", m.ID)
}

func (m etcdModel) membership() state.Membership {
	h := 0
	for k := range m.voters {
		if m.healthy[k] {
			h++
		}
	}
	return state.NewMembership(len(m.voters), len(m.learners), h)
}

// add appends a step and returns its ID. It chains etcd steps one after
// another and records the membership the step leaves, checked on a copy of
// the model first: a step that would leave fewer healthy voters than quorum
// is refused (b.err), and nothing is added from then on.
func (b *builder) add(s *Step, deps ...string) string {
	if b.err != nil {
		return ""
	}
	s.ID = strconv.Itoa(len(b.steps) + 1)
	s.Change = s.Action.Change()
	if s.Action == CreateInstance || s.Action == RenewCertificates {
		deps = append(deps, b.saStep) // a master runs as it, and its keys are readable by it
	}
	if s.Action.Etcd() && b.lastEtcd != "" {
		deps = append(deps, b.lastEtcd)
	}
	s.DependsOn = uniq(deps)
	next := b.etcdModel.clone()
	next.apply(s)
	s.Etcd = next.membership()
	if s.Etcd.Voters > 0 && s.Etcd.HealthyVoters < s.Etcd.Quorum {
		b.err = refuse("step %s (%s %s) would leave %d healthy voters of %d, below quorum %d: no plan is safe until more members are healthy",
			s.ID, s.Action, s.Target, s.Etcd.HealthyVoters, s.Etcd.Voters, s.Etcd.Quorum)
		return ""
	}
	b.etcdModel = next
	etcdStep := s.Action.Etcd() || s.Action == CreateInstance && s.Instance.bootstrapsAlone()
	if etcdStep {
		b.lastEtcd = s.ID
	}
	// A disk move's delete takes its member down until the VM is made again.
	if (etcdStep || s.KeepDisk) && s.Etcd.Voters >= 2 && s.Etcd.FaultTolerance == 0 {
		b.ft0 = append(b.ft0, s.ID)
	}
	switch s.Action {
	case RemoveFromPool, AddToPool, RemoveMember, PromoteMember, CreateForwardingRule, CreateTargetPool, CreateHealthCheck:
		b.lbWork = append(b.lbWork, s.ID)
	}
	b.steps = append(b.steps, s)
	return s.ID
}

func uniq(deps []string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, d := range deps {
		if d != "" && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return atoi(out[i]) < atoi(out[j]) })
	return out
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// finish fills in the summary, warnings and memberships.
func (b *builder) finish() *Plan {
	p := &Plan{FormatVersion: FormatVersion, Cluster: b.spec.Metadata.Name, Project: b.spec.Spec.GCE.Project, Region: b.spec.Spec.GCE.Region,
		Steps: b.steps, Before: b.obs.Membership(), After: b.membership(), Warnings: []string{}}
	if p.Steps == nil {
		p.Steps = []*Step{}
	}
	b.annotateRuns()
	p.summarize()
	if len(b.ft0) > 0 {
		b.warnings = append(b.warnings, fmt.Sprintf("step(s) %s leave etcd at fault tolerance 0: a failure of any member while they run loses quorum", strings.Join(b.ft0, ", ")))
	}
	seen := map[string]bool{}
	for _, w := range b.warnings {
		if !seen[w] {
			seen[w] = true
			p.Warnings = append(p.Warnings, w)
		}
	}
	return p
}

func (b *builder) lastStepOf(replica string) string {
	last := ""
	for _, s := range b.steps {
		if s.Replica == replica {
			last = s.ID
		}
	}
	return last
}

func (b *builder) kept() []*replica {
	var out []*replica
	for _, r := range b.replicas {
		if !r.removed {
			out = append(out, r)
		}
	}
	return out
}

func memberID(r *replica) uint64 {
	if r.member != nil {
		return r.member.ID
	}
	return 0
}

func (b *builder) config() metadata.Config {
	s := b.spec.Spec
	return metadata.Config{MachineType: s.Masters.MachineType, Image: s.Masters.Image, DiskSizeGb: int64(s.Masters.DiskSizeGb),
		DiskType:   s.Masters.DiskType,
		QuorumRead: s.Etcd.QuorumReadEnabled(), ClientPort: s.Etcd.ClientPort, PeerPort: s.Etcd.PeerPort, MultiZone: s.MultiZone,
		KubernetesVersion: s.Kubernetes.Version, MaxLearners: metadata.DefaultMaxLearners, Addons: b.opts.Addons}
}
