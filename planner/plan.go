package planner

import (
	"slices"
	"time"

	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// Options change what a plan does.
type Options struct {
	// Replace names replicas to replace in their own zone (apply --replace).
	Replace []string
}

// Compute returns the plan that takes observed to desired: ComputeWith with
// no options. (DESIGN.md names it Plan; Go cannot have a function and the
// Plan type under one name.)
func Compute(desired *spec.Cluster, observed *state.Cluster) (*Plan, error) {
	return ComputeWith(desired, observed, Options{})
}

// ErrRefused wraps every refusal, so callers can tell a refusal from a bug.
var ErrRefused = errors.New("refused")

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRefused}, args...)...)
}

// ComputeWith returns the plan that takes observed to desired, or refuses
// with an error that says what to do.
func ComputeWith(desired *spec.Cluster, observed *state.Cluster, opts Options) (*Plan, error) {
	if err := preflight(desired, observed, opts); err != nil {
		return nil, err
	}
	b := newBuilder(desired, observed, opts)
	if err := b.build(); err != nil {
		return nil, err
	}
	return b.finish(), nil
}

// preflight refuses what no plan can do safely.
func preflight(desired *spec.Cluster, observed *state.Cluster, opts Options) error {
	n := desired.Spec.Masters.Replicas
	if n < 1 || n > 7 || n%2 == 0 {
		return refuse("spec.masters.replicas is %d: kubeha manages 1, 3, 5 or 7 masters (an even count adds no fault tolerance, and two is worse than one)", n)
	}
	if len(observed.OtherRegions) > 0 {
		return refuse("cluster %s has masters or its static IP in %s, but the spec says region %s: kubeha does not move a control plane between regions. Set spec.gce.region back, or create a new cluster in %s and migrate to it",
			observed.Name, strings.Join(observed.OtherRegions, ", "), desired.Spec.GCE.Region, desired.Spec.GCE.Region)
	}
	names := map[string]bool{}
	var all []string
	for _, in := range observed.Instances {
		names[in.Name] = true
		all = append(all, in.Name)
	}
	for _, r := range opts.Replace {
		if !names[r] {
			return refuse("--replace %s: there is no master of cluster %s by that name (masters: %s)", r, observed.Name, orNone(all))
		}
	}
	if observed.Etcd.CertError != "" {
		return refuse("%s", observed.Etcd.CertError)
	}
	if observed.LostQuorum() {
		var bad []string
		for _, m := range observed.Voters() {
			if !m.Healthy {
				bad = append(bad, fmt.Sprintf("%s (%s)", memberLabel(m), m.Error))
			}
		}
		ms := observed.Membership()
		return refuse("etcd of cluster %s has lost quorum: %d of %d voters are healthy and quorum is %d. Unhealthy: %s. No membership change is safe without quorum: bring the members back, or restore etcd from a snapshot (kubeha saves them in backups/ beside the PKI) into a new cluster",
			observed.Name, ms.HealthyVoters, ms.Voters, ms.Quorum, strings.Join(bad, ", "))
	}
	running := 0
	for _, in := range observed.Instances {
		if in.Status == "RUNNING" {
			running++
		}
	}
	if !observed.Etcd.Reachable && running > 0 {
		return refuse("etcd of cluster %s does not answer on any running master (%s). If the masters are still booting, plan again in a minute; if etcd has lost its data or quorum, restore it from a snapshot (kubeha saves them in backups/ beside the PKI)",
			observed.Name, observed.Etcd.Error)
	}
	return nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func memberLabel(m *state.Member) string {
	if m.Instance != "" {
		return m.Instance
	}
	if m.Name != "" {
		return m.Name
	}
	return fmt.Sprintf("member-%x", m.ID)
}

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
	driftReason string
}

type builder struct {
	spec *spec.Cluster
	obs  *state.Cluster
	opts Options

	steps    []*Step
	warnings []string

	replicas []*replica // every replica, kept and removed, observed and new
	leader   string     // replica name of the leader ("" if none or an orphan)
	// the membership model
	voters, learners, healthy map[string]bool
	lastEtcd                  string // ID of the last step that changed membership
	used                      map[string]bool

	fwEtcd, staticStep string // steps new instances depend on
	hcStep, poolStep   string
	ruleStep           string
	lb                 bool // the load balancer exists or is planned
	ft0                []string
	// lastAdd is the last step of the most recently added master: removals
	// wait for it, so a successor serves before its predecessor stops.
	lastAdd string
}

func newBuilder(desired *spec.Cluster, observed *state.Cluster, opts Options) *builder {
	b := &builder{spec: desired, obs: observed, opts: opts,
		voters: map[string]bool{}, learners: map[string]bool{}, healthy: map[string]bool{}, used: map[string]bool{}}
	for _, m := range observed.Etcd.Members {
		k := memberKey(m)
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
	for _, d := range observed.Disks {
		b.used[strings.TrimSuffix(d.Name, "-pd")] = true
	}
	for _, a := range observed.Addresses {
		b.used[strings.TrimSuffix(a.Name, "-internal")] = true
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

// memberKey names a member in the model: its instance's name, or its ID
// for a member with no instance.
func memberKey(m *state.Member) string {
	if m.Instance != "" {
		return m.Instance
	}
	return fmt.Sprintf("member-%x", m.ID)
}

func (b *builder) membership() state.Membership {
	h := 0
	for k := range b.voters {
		if b.healthy[k] {
			h++
		}
	}
	return state.NewMembership(len(b.voters), len(b.learners), h)
}

// add appends a step, chains etcd steps one after another, records the
// membership it leaves and refuses a step that would cost quorum.
func (b *builder) add(s *Step, deps ...string) (string, error) {
	s.ID = strconv.Itoa(len(b.steps) + 1)
	s.Change = change[s.Action]
	if s.Action.Etcd() && b.lastEtcd != "" {
		deps = append(deps, b.lastEtcd)
	}
	s.DependsOn = uniq(deps)
	key := s.Replica
	switch s.Action {
	case AddLearner:
		b.learners[key] = true
	case PromoteMember:
		delete(b.learners, key)
		b.voters[key], b.healthy[key] = true, true
	case CreateInstance:
		if s.Instance.ClusterState == metadata.StateNew {
			b.voters[key], b.healthy[key] = true, true
			b.leader = key
		}
	case StartInstance:
		if b.voters[key] {
			b.healthy[key] = true
		}
	case MoveLeader:
		b.leader = s.LeaderTo
	case RemoveMember:
		delete(b.voters, key)
		delete(b.learners, key)
		delete(b.healthy, key)
		if b.leader == key {
			b.leader = ""
		}
	}
	s.Etcd = b.membership()
	if s.Etcd.Voters > 0 && s.Etcd.HealthyVoters < s.Etcd.Quorum {
		return "", refuse("step %s (%s %s) would leave %d healthy voters of %d, below quorum %d: no plan is safe until more members are healthy",
			s.ID, s.Action, s.Target, s.Etcd.HealthyVoters, s.Etcd.Voters, s.Etcd.Quorum)
	}
	if s.Action.Etcd() || s.Action == CreateInstance && s.Instance.ClusterState == metadata.StateNew {
		b.lastEtcd = s.ID
		if s.Etcd.Voters >= 2 && s.Etcd.FaultTolerance == 0 {
			b.ft0 = append(b.ft0, s.ID)
		}
	}
	b.steps = append(b.steps, s)
	return s.ID, nil
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

func (b *builder) must(id string, err error) string {
	if err != nil {
		panic(refusal{err})
	}
	return id
}

// refusal carries a refusal out of deep builder code to build.
type refusal struct{ err error }

func (b *builder) build() (err error) {
	defer func() {
		if r := recover(); r != nil {
			rf, ok := r.(refusal)
			if !ok {
				panic(r)
			}
			err = rf.err
		}
	}()
	b.network()
	if b.startStopped() {
		return nil
	}
	b.adopt()
	b.orphans()
	b.membershipChanges()
	b.leaks()
	return nil
}

// --- network ---

func (b *builder) wantFirewalls() []*FirewallSpec {
	name := b.spec.Metadata.Name
	tag := spec.MasterTag(name)
	return []*FirewallSpec{
		{Name: spec.EtcdFirewallName(name), Ports: []string{strconv.Itoa(b.spec.Spec.Etcd.PeerPort)}, SourceTags: []string{tag}, TargetTags: []string{tag}},
		{Name: spec.HTTPSFirewallName(name), Ports: []string{"443"}, Sources: []string{"0.0.0.0/0"}, TargetTags: []string{tag}},
		{Name: spec.HealthFirewallName(name), Ports: []string{strconv.Itoa(metadata.HealthCheckPort)}, Sources: metadata.HealthCheckProbeRanges, TargetTags: []string{tag}},
	}
}

func (b *builder) network() {
	for _, want := range b.wantFirewalls() {
		var got *state.Firewall
		for _, f := range b.obs.Firewalls {
			if f.Name == want.Name {
				got = f
			}
		}
		var id string
		switch {
		case got == nil:
			id = b.must(b.add(&Step{Action: CreateFirewall, Target: want.Name, Phase: "network", Firewall: want,
				Reason: "missing: " + firewallPurpose(want)}))
		case !sameSet(got.Ports, want.Ports) || !sameSet(got.SourceTags, want.SourceTags) || !sameSet(got.TargetTags, want.TargetTags) ||
			(len(want.Sources) > 0 && !sameSet(got.Sources, want.Sources)):
			id = b.must(b.add(&Step{Action: UpdateFirewall, Target: want.Name, Phase: "network", Firewall: want,
				Reason: fmt.Sprintf("changed out of band: allows tcp %s from %s to %s; want tcp %s from %s to %s",
					strings.Join(got.Ports, ","), orNone(append(got.SourceTags, got.Sources...)), orNone(got.TargetTags),
					strings.Join(want.Ports, ","), orNone(append(want.SourceTags, want.Sources...)), strings.Join(want.TargetTags, ","))}))
		}
		if want.Name == spec.EtcdFirewallName(b.spec.Metadata.Name) {
			b.fwEtcd = id
		}
	}
	if b.obs.StaticIP == nil {
		b.staticStep = b.must(b.add(&Step{Action: ReserveStaticIP, Target: spec.StaticIPName(b.spec.Metadata.Name), Phase: "network",
			Reason: "missing: the external IP that always routes to the masters"}))
	}
}

func firewallPurpose(f *FirewallSpec) string {
	if len(f.SourceTags) > 0 {
		return "etcd peers talk between masters only (tcp " + strings.Join(f.Ports, ",") + ")"
	}
	if f.Ports[0] != "443" {
		return "the load balancer's health checks reach the masters' health endpoint (tcp " + strings.Join(f.Ports, ",") + ")"
	}
	return "the API server is reached on tcp 443"
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x := append([]string(nil), a...)
	y := append([]string(nil), b...)
	sort.Strings(x)
	sort.Strings(y)
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// startStopped plans the start of stopped masters when none runs: etcd
// cannot be observed until one does, so the plan stops there and the next
// plan sees the rest.
func (b *builder) startStopped() bool {
	running := 0
	for _, r := range b.replicas {
		if r.obs.Instance.Status == "RUNNING" {
			running++
		}
	}
	stopped := false
	for _, r := range b.replicas {
		if r.obs.Instance.Status != "TERMINATED" {
			continue
		}
		if running > 0 && (r.member == nil || b.replacing(r)) {
			continue // it is replaced or cleaned up below instead
		}
		b.must(b.add(&Step{Action: StartInstance, Target: r.name, Zone: r.zone, Replica: r.name, Phase: "replica " + r.name,
			Reason: "the master is stopped (TERMINATED): start it so its etcd member runs again"}))
		r.healthy = r.voter
		stopped = true
	}
	if running == 0 && stopped {
		b.warnings = append(b.warnings, "no master was running, so etcd could not be observed: apply this plan, then plan again to see what else is needed")
		return true
	}
	return false
}

// adopt labels masters created by kube-up, so that kubeha knows them as its own.
func (b *builder) adopt() {
	for _, r := range b.replicas {
		if r.obs.Instance.Labels[spec.LabelCluster] == "" {
			b.must(b.add(&Step{Action: LabelInstance, Target: r.name, Zone: r.zone, Replica: r.name, Phase: "replica " + r.name,
				Reason: fmt.Sprintf("adopt a master kubeha did not create: label it %s=%s, %s=%s", spec.LabelCluster, b.spec.Metadata.Name, spec.LabelRole, spec.RoleMaster)}))
		}
		if r.obs.Instance.Config == nil && r.member != nil {
			b.warnings = append(b.warnings, fmt.Sprintf("master %s was not created by kubeha, so its settings are unknown: it is kept as it is; run apply --replace %s to recreate it from the spec", r.name, r.name))
		}
	}
}

// orphans removes members with no instance: learners left by an
// interrupted add, and voters whose VM is gone.
func (b *builder) orphans() {
	orphans := b.obs.Orphans().Members
	sort.SliceStable(orphans, func(i, j int) bool { return orphans[i].IsLearner && !orphans[j].IsLearner })
	for _, m := range orphans {
		kind := "voter"
		if m.IsLearner {
			kind = "learner"
		}
		reason := fmt.Sprintf("orphaned %s: etcd member %s has no master instance", kind, memberLabel(m))
		if m.IsLearner && !m.Started() {
			reason = fmt.Sprintf("orphaned learner %x: added for a master that was never created (an interrupted apply)", m.ID)
		}
		b.must(b.add(&Step{Action: RemoveMember, Target: memberLabel(m), MemberID: m.ID, Replica: memberKey(m), Phase: "cleanup", Reason: reason}))
	}
}

// leaks deletes disks and releases addresses that belong to no master and
// to no step of this plan.
func (b *builder) leaks() {
	orph := b.obs.Orphans()
	for _, d := range orph.Disks {
		b.must(b.add(&Step{Action: DeleteDisk, Target: d.Name, Zone: d.Zone, Phase: "cleanup",
			Reason: "leaked: an etcd data disk with no master (left by an interrupted apply or a manual delete)"}, b.orphanMemberSteps()...))
	}
	for _, a := range orph.Addresses {
		b.must(b.add(&Step{Action: ReleaseAddress, Target: a.Name, Phase: "cleanup",
			Reason: "leaked: an internal address with no master"}, b.orphanMemberSteps()...))
	}
	if b.obs.TargetPool != nil {
		for _, l := range b.obs.TargetPool.Dangling {
			b.must(b.add(&Step{Action: RemoveFromPool, Target: spec.MasterName(b.spec.Metadata.Name), PoolLink: l, Phase: "load balancer",
				Reason: "the pool names an instance that no longer exists: " + lastSegment(l)}))
		}
	}
}

func (b *builder) orphanMemberSteps() []string {
	var ids []string
	for _, s := range b.steps {
		if s.Action == RemoveMember && s.Phase == "cleanup" {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

func lastSegment(s string) string { return s[strings.LastIndex(s, "/")+1:] }

// --- membership ---

// replacing says a replica is to be replaced: named by --replace, or a
// failed member and remediation is on and it has been unhealthy long enough.
func (b *builder) replacing(r *replica) bool {
	for _, n := range b.opts.Replace {
		if n == r.name {
			return true
		}
	}
	if r.healthy || !r.voter || !b.spec.Spec.Remediation.ReplaceUnhealthy {
		return false
	}
	return r.member.UnhealthyFor >= b.spec.Spec.Remediation.UnhealthyAfter.Duration ||
		r.obs.Instance.Status == "TERMINATED"
}

// drift says why a healthy replica differs from the spec, or "".
func (b *builder) drift(r *replica) string {
	want := b.config()
	if !inZones(r.zone, b.spec.Spec.Masters.Zones) {
		return fmt.Sprintf("zone %s is no longer in spec.masters.zones", r.zone)
	}
	got := r.obs.Instance.Config
	if got == nil {
		return ""
	}
	var diffs []string
	if got.MachineType != want.MachineType || r.obs.Instance.MachineType != "" && r.obs.Instance.MachineType != want.MachineType {
		diffs = append(diffs, fmt.Sprintf("machine type %s → %s", firstNonEmpty(r.obs.Instance.MachineType, got.MachineType), want.MachineType))
	}
	if got.Image != want.Image {
		diffs = append(diffs, fmt.Sprintf("image %s → %s", got.Image, want.Image))
	}
	if got.QuorumRead != want.QuorumRead {
		diffs = append(diffs, fmt.Sprintf("etcd quorum read %t → %t", got.QuorumRead, want.QuorumRead))
	}
	if got.ClientPort != want.ClientPort || got.PeerPort != want.PeerPort {
		diffs = append(diffs, fmt.Sprintf("etcd ports %d/%d → %d/%d", got.ClientPort, got.PeerPort, want.ClientPort, want.PeerPort))
	}
	if got.MultiZone != want.MultiZone {
		diffs = append(diffs, fmt.Sprintf("multiZone %t → %t", got.MultiZone, want.MultiZone))
	}
	if got.KubernetesVersion != want.KubernetesVersion {
		diffs = append(diffs, fmt.Sprintf("Kubernetes %s → %s", firstNonEmpty(got.KubernetesVersion, "none (etcd only)"), want.KubernetesVersion))
	}
	if got.DiskSizeGb != want.DiskSizeGb {
		b.warnings = append(b.warnings, fmt.Sprintf("master %s has a %d GB etcd disk and the spec says %d GB: disks are not resized in place; run apply --replace %s to recreate it", r.name, got.DiskSizeGb, want.DiskSizeGb, r.name))
	}
	return strings.Join(diffs, ", ")
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func inZones(z string, zones []string) bool {
	for _, x := range zones {
		if x == z {
			return true
		}
	}
	return false
}

func (b *builder) config() metadata.Config {
	s := b.spec.Spec
	return metadata.Config{MachineType: s.Masters.MachineType, Image: s.Masters.Image, DiskSizeGb: int64(s.Masters.DiskSizeGb),
		QuorumRead: s.Etcd.QuorumReadEnabled(), ClientPort: s.Etcd.ClientPort, PeerPort: s.Etcd.PeerPort, MultiZone: s.MultiZone,
		KubernetesVersion: s.Kubernetes.Version, MaxLearners: metadata.DefaultMaxLearners}
}

// learnerLimit is how many learners etcd accepts at once: the smallest
// --max-learners of the current members (a master whose settings are unknown
// runs etcd's default, 1), or kubeha's default for a new cluster.
func (b *builder) learnerLimit() int {
	limit := metadata.DefaultMaxLearners
	for _, r := range b.replicas {
		if r.obs == nil || r.removed || r.member == nil {
			continue
		}
		n := 1
		if r.obs.Instance.Config != nil && r.obs.Instance.Config.MaxLearners > 0 {
			n = r.obs.Instance.Config.MaxLearners
		}
		limit = min(limit, n)
	}
	return limit
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

// membershipChanges plans every voter change: promotions of pending
// learners, removals of failed and broken replicas, additions, rolling
// replacements and scale-down, with the static IP promoted to a load
// balancer before there are two masters and demoted when one is left.
//
// Order: failed and broken replicas are removed first (that costs no healthy
// voter); then masters are added (a failed master's successor in its own
// zone first); then healthy masters that must be replaced are replaced one
// at a time, successor first, so fault tolerance never drops below what it
// is; the healthy surplus of a scale-down goes last.
func (b *builder) membershipChanges() {
	n := b.spec.Spec.Masters.Replicas
	// Pending learners whose instance runs: promote them first (etcd allows
	// one learner at a time).
	for _, r := range b.replicas {
		if r.learner && r.obs.Instance.Status == "RUNNING" && !b.replacing(r) {
			b.must(b.add(&Step{Action: PromoteMember, Target: r.name, Zone: r.zone, Replica: r.name, MemberID: r.member.ID, Phase: "replica " + r.name,
				Reason: "a learner left by an interrupted apply: promote it once it is in sync"}))
			r.learner, r.voter, r.healthy = false, true, true
		}
	}
	bootstrap := len(b.obs.Etcd.Members) == 0
	var failed, forced, broken, rolling []*replica
	for _, r := range b.replicas {
		switch {
		case r.member == nil || r.learner:
			broken = append(broken, r) // no member, or a learner whose VM is not running: start over
		case b.replacing(r) && r.healthy:
			forced = append(forced, r)
		case b.replacing(r):
			failed = append(failed, r)
		case !r.healthy:
			b.warnings = append(b.warnings, fmt.Sprintf("master %s is unhealthy (%s): it counts against fault tolerance; set spec.remediation.replaceUnhealthy, or run apply --replace %s",
				r.name, firstNonEmpty(r.member.Error, r.obs.Instance.Status), r.name))
		default:
			if why := b.drift(r); why != "" {
				r.driftReason = why
				rolling = append(rolling, r)
			}
		}
	}
	for _, r := range broken {
		why := "the master has no etcd member (an interrupted apply): delete it and start over"
		if r.learner {
			why = "the master's learner never joined and its VM is not running: delete it and start over"
		}
		b.removeReplica(r, why)
	}
	for _, r := range failed {
		why := fmt.Sprintf("failed: etcd member unhealthy (%s)", firstNonEmpty(r.member.Error, r.obs.Instance.Status))
		if r.member.UnhealthyFor > 0 {
			why = fmt.Sprintf("failed: etcd member unhealthy for %s (%s)", r.member.UnhealthyFor, firstNonEmpty(r.member.Error, r.obs.Instance.Status))
		}
		b.removeReplica(r, why)
	}
	// Scale down: pick the surplus in the documented priority order.
	var victims []*replica
	for len(b.kept())-len(victims) > n {
		victims = append(victims, b.pickVictim(victims))
	}
	var healthyVictims []*replica
	for _, v := range victims {
		if v.healthy {
			healthyVictims = append(healthyVictims, v)
		} else {
			b.removeReplica(v, fmt.Sprintf("scale down to %s: unhealthy masters go first", masters(n)))
		}
	}
	rolling = without(append(forced, rolling...), victims)
	target := n + len(healthyVictims)
	peak := max(len(b.kept()), target)
	if len(rolling) > 0 {
		peak++
	}
	if peak >= 2 {
		b.promoteLB()
	} else {
		b.singleMasterIP()
	}
	if bootstrap && len(b.voters) == 0 && len(b.kept()) < target {
		b.addReplica(b.zoneFor(""), "bootstrap: the first master, with a new etcd cluster", true, peak)
	}
	var adds []pendingAdd
	for _, r := range failed {
		if len(b.kept())+len(adds) < target {
			adds = append(adds, pendingAdd{prefer: r.zone, reason: fmt.Sprintf("replaces failed master %s in its zone", r.name)})
		}
	}
	for len(b.kept())+len(adds) < target {
		adds = append(adds, pendingAdd{reason: fmt.Sprintf("scale up to %s", masters(n))})
	}
	b.addReplicas(adds, peak)
	for _, r := range rolling {
		reason := firstNonEmpty(r.driftReason, "named by --replace")
		b.addReplica(b.zoneFor(r.zone), fmt.Sprintf("replaces %s (%s)", r.name, reason), false, peak)
		b.removeReplica(r, "replaced by a new master: "+reason)
	}
	for _, v := range healthyVictims {
		b.removeReplica(v, fmt.Sprintf("scale down to %s", masters(n)))
	}
	b.poolDrift()
	if len(b.kept()) == 1 && b.lbAny() {
		b.demoteLB()
	}
	b.renewals()
}

// RenewBefore is how long before expiry certificates are renewed.
const RenewBefore = 30 * 24 * time.Hour

// renewals renews the certificates of masters that keep running when they
// expire within RenewBefore or no longer name the master's internal IP or
// the static IP. A renewal restarts the member, so it runs only while the
// cluster can spare one member (a single master restarts regardless, with a
// warning: it has no other).
func (b *builder) renewals() {
	static := ""
	if b.obs.StaticIP != nil && b.staticStep == "" {
		static = b.obs.StaticIP.Address
	}
	for _, r := range b.kept() {
		if r.obs == nil || r.obs.Instance.Certs == nil || !r.voter || !r.healthy {
			continue
		}
		certs := r.obs.Instance.Certs
		var why []string
		if !b.obs.ObservedAt.IsZero() && b.obs.ObservedAt.Add(RenewBefore).After(certs.NotAfter) {
			why = append(why, "they expire "+certs.NotAfter.UTC().Format("2006-01-02"))
		}
		if !slices.Contains(certs.PeerIPs, r.obs.Instance.InternalIP) {
			why = append(why, "the etcd certificate does not name the master's IP "+r.obs.Instance.InternalIP)
		}
		if static != "" && !slices.Contains(certs.APIServerIPs, static) {
			why = append(why, "the API server certificate does not name the static IP "+static)
		}
		if len(why) == 0 {
			continue
		}
		m := b.membership()
		if m.Voters >= 2 && m.HealthyVoters-1 < m.Quorum {
			b.warnings = append(b.warnings, fmt.Sprintf("the certificates of %s need renewal (%s), but restarting it now would lose quorum: it waits until more members are healthy", r.name, strings.Join(why, "; ")))
			continue
		}
		if m.Voters == 1 {
			b.warnings = append(b.warnings, fmt.Sprintf("renewing the certificates of the single master %s restarts it: the API is unavailable for about a minute", r.name))
		}
		b.must(b.add(&Step{Action: RenewCertificates, Target: r.name, Zone: r.zone, Replica: r.name, MemberID: memberID(r), Phase: "replica " + r.name,
			Reason: "renew its certificates and restart it: " + strings.Join(why, "; ")}, b.lastStepOf(r.name)))
	}
}

func without(list, drop []*replica) []*replica {
	var out []*replica
	for _, r := range list {
		keep := true
		for _, d := range drop {
			keep = keep && d != r
		}
		if keep {
			out = append(out, r)
		}
	}
	return out
}

// pickVictim chooses the next master to remove in a scale-down, in this
// priority order:
//  1. an unhealthy master;
//  2. a master in a zone that is no longer in spec.masters.zones;
//  3. a master in the most crowded zone (the most masters above the spec's spread);
//  4. not the etcd leader (it would need a MoveLeader first);
//  5. a master whose settings differ from the spec;
//  6. the last name, so the choice is deterministic.
func (b *builder) pickVictim(chosen []*replica) *replica {
	desired := map[string]int{}
	for _, zc := range b.spec.Spec.Spread() {
		desired[zc.Zone] = zc.Count
	}
	count := map[string]int{}
	for _, r := range without(b.kept(), chosen) {
		count[r.zone]++
	}
	key := func(r *replica) []int {
		return []int{boolInt(r.healthy), boolInt(inZones(r.zone, b.spec.Spec.Masters.Zones)), -(count[r.zone] - desired[r.zone]),
			boolInt(b.leader == r.name), boolInt(r.driftReason == "")}
	}
	var best *replica
	for _, r := range without(b.kept(), chosen) {
		if best == nil {
			best = r
			continue
		}
		kr, kb := key(r), key(best)
		less, decided := false, false
		for i := range kr {
			if kr[i] != kb[i] {
				less, decided = kr[i] < kb[i], true
				break
			}
		}
		if !decided {
			less = r.name > best.name
		}
		if less {
			best = r
		}
	}
	return best
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

// zoneFor is the zone of a new master: prefer, when it is still one of the
// spec's zones (a replacement stays in its zone); otherwise the zone
// furthest below the spec's spread, the earliest in spec order on a tie.
func (b *builder) zoneFor(prefer string) string {
	if prefer != "" && inZones(prefer, b.spec.Spec.Masters.Zones) {
		return prefer
	}
	count := map[string]int{}
	for _, r := range b.kept() {
		count[r.zone]++
	}
	best, bestDeficit := b.spec.Spec.Masters.Zones[0], -1<<30
	for _, zc := range b.spec.Spec.Spread() {
		if d := zc.Count - count[zc.Zone]; d > bestDeficit {
			best, bestDeficit = zc.Zone, d
		}
	}
	return best
}

// newName derives a replica name that no instance, disk, address or member
// uses or used in this plan: <name>-master for the first master of a new
// cluster, else <name>-master-xyz with xyz derived from the cluster, the
// zone and the current members, so that it is deterministic yet differs
// from the names of earlier generations.
func (b *builder) newName(zone string, first bool) string {
	cluster := b.spec.Metadata.Name
	if first && !b.used[spec.MasterName(cluster)] {
		b.used[spec.MasterName(cluster)] = true
		return spec.MasterName(cluster)
	}
	var ids []string
	for _, m := range b.obs.Etcd.Members {
		ids = append(ids, strconv.FormatUint(m.ID, 16))
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	for i := 0; ; i++ {
		sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%s/%s/%d", cluster, zone, strings.Join(ids, ","), i)))
		v := binary.BigEndian.Uint64(sum[:8])
		var suffix [spec.ReplicaSuffixLength]byte
		for j := range suffix {
			suffix[j] = alphabet[v%uint64(len(alphabet))]
			v /= uint64(len(alphabet))
		}
		name := spec.ReplicaName(cluster, string(suffix[:]))
		if !b.used[name] {
			b.used[name] = true
			return name
		}
	}
}

// pendingAdd is a master to add: in zone prefer when it is listed, else
// where the spread is shortest.
type pendingAdd struct {
	prefer, reason string
}

// addReplica plans one new master (a bootstrap master, or the successor in
// a rolling replacement): see addReplicas.
func (b *builder) addReplica(zone, reason string, first bool, peak int) {
	if first {
		name := b.newName(zone, true)
		addr, disk := b.reserve(name, zone)
		inst := &InstanceSpec{Name: name, Zone: zone, InternalAddress: spec.InternalAddressName(name), Disk: spec.DiskName(name),
			Config: b.config(), ClusterState: metadata.StateNew, StaticIP: peak < 2}
		vm := b.must(b.add(&Step{Action: CreateInstance, Target: name, Zone: zone, Replica: name, Phase: "replica " + name, Instance: inst, Reason: reason},
			addr, disk, b.fwEtcd, b.staticStep))
		b.joined(name, zone, vm, inst.StaticIP)
		return
	}
	b.addReplicas([]pendingAdd{{prefer: zone, reason: reason}}, peak)
}

// addReplicas plans new masters. For each: reserve its internal address and
// create its disk (independent GCE work), add its member as a learner, and
// create the VM, which boots with initial-cluster-state=existing. Then, one
// at a time, promote each learner once it is in sync and add it to the
// target pool. Learners do not vote, so up to the cluster's learner limit
// are added before the first promotion and their VMs boot in parallel;
// etcd refuses any member add until the voters have been connected for 5s,
// which a promotion resets, so adding them first saves that wait too.
func (b *builder) addReplicas(adds []pendingAdd, peak int) {
	for len(adds) > 0 {
		n := min(len(adds), max(1, b.learnerLimit()-len(b.learners)))
		type started struct{ name, zone, disk, learner, vm string }
		var batch []started
		for _, a := range adds[:n] {
			zone := b.zoneFor(a.prefer)
			name := b.newName(zone, false)
			addr, disk := b.reserve(name, zone)
			learner := b.must(b.add(&Step{Action: AddLearner, Target: name, Zone: zone, Replica: name, Phase: "replica " + name,
				Reason: "join etcd as a non-voting learner before the VM boots: " + a.reason}, addr))
			batch = append(batch, started{name: name, zone: zone, disk: disk, learner: learner})
			// Counted now, so that zoneFor spreads the rest of the batch.
			b.replicas = append(b.replicas, &replica{name: name, zone: zone, learner: true})
		}
		// The VMs are created once the batch's last learner is in (a VM boots
		// with the member list of that moment, and etcd refuses a member whose
		// list differs from the cluster's), and one after another: a joining
		// member waits up to 10s on every member it cannot reach, so members
		// started at once would wait on each other. Each create-instance
		// returns when its member runs.
		prev := batch[len(batch)-1].learner
		for i, st := range batch {
			inst := &InstanceSpec{Name: st.name, Zone: st.zone, InternalAddress: spec.InternalAddressName(st.name), Disk: spec.DiskName(st.name),
				Config: b.config(), ClusterState: metadata.StateExisting}
			batch[i].vm = b.must(b.add(&Step{Action: CreateInstance, Target: st.name, Zone: st.zone, Replica: st.name, Phase: "replica " + st.name,
				Instance: inst, Reason: adds[i].reason}, st.disk, st.learner, prev, b.fwEtcd))
			prev = batch[i].vm
		}
		for _, st := range batch {
			promote := b.must(b.add(&Step{Action: PromoteMember, Target: st.name, Zone: st.zone, Replica: st.name, Phase: "replica " + st.name,
				Reason: "make the learner a voter once it is in sync"}, st.vm))
			b.replicas = slices.DeleteFunc(b.replicas, func(r *replica) bool { return r.name == st.name && r.obs == nil })
			b.joined(st.name, st.zone, promote, false)
		}
		adds = adds[n:]
	}
}

// reserve plans a new master's internal address and disk.
func (b *builder) reserve(name, zone string) (addr, disk string) {
	phase := "replica " + name
	addr = b.must(b.add(&Step{Action: ReserveAddress, Target: spec.InternalAddressName(name), Replica: name, Phase: phase,
		Reason: "the internal address etcd peers and certificates name, known before the VM exists"}))
	disk = b.must(b.add(&Step{Action: CreateDisk, Target: spec.DiskName(name), Zone: zone, Replica: name, Phase: phase,
		Reason: fmt.Sprintf("the etcd data disk (%d GB), attached as %s", b.spec.Spec.Masters.DiskSizeGb, spec.DiskDeviceName)}))
	return addr, disk
}

// joined records a new voter and puts it behind the load balancer.
func (b *builder) joined(name, zone, last string, staticIP bool) {
	r := &replica{name: name, zone: zone, voter: true, healthy: true, staticIP: staticIP}
	if b.lb {
		last = b.must(b.add(&Step{Action: AddToPool, Target: spec.MasterName(b.spec.Metadata.Name), Replica: name, Zone: zone, Phase: "replica " + name,
			Reason: "serve the API behind the load balancer"}, last, b.poolStep))
		r.inPool = true
	}
	b.lastAdd = last
	b.replicas = append(b.replicas, r)
}

// removeReplica plans a master's removal: move etcd leadership away if it
// leads, take it out of the target pool, remove its member (after a
// snapshot), delete the VM, then its disk and internal address.
func (b *builder) removeReplica(r *replica, reason string) {
	phase := "replica " + r.name
	deps := []string{b.lastAdd}
	if r.voter && b.leader == r.name {
		to := ""
		for _, o := range b.kept() {
			if o != r && o.voter && o.healthy && (to == "" || o.name < to) {
				to = o.name
			}
		}
		if to != "" {
			b.must(b.add(&Step{Action: MoveLeader, Target: r.name, Zone: r.zone, Replica: r.name, LeaderTo: to, MemberID: memberID(r), Phase: phase,
				Reason: "the leader is never removed: hand leadership to " + to + " first"}))
		}
	}
	if r.inPool {
		deps = append(deps, b.must(b.add(&Step{Action: RemoveFromPool, Target: spec.MasterName(b.spec.Metadata.Name), Replica: r.name, Zone: r.zone, Phase: phase,
			Reason: "stop sending API traffic to it: " + reason}, append(deps, b.poolStep)...)))
		r.inPool = false
	}
	if r.member != nil || r.obs == nil {
		deps = []string{b.must(b.add(&Step{Action: RemoveMember, Target: r.name, Zone: r.zone, Replica: r.name, MemberID: memberID(r), Phase: phase,
			Reason: reason}, deps...))}
	}
	del := b.must(b.add(&Step{Action: DeleteInstance, Target: r.name, Zone: r.zone, Replica: r.name, Phase: phase, Reason: reason}, deps...))
	if r.obs == nil || r.obs.Disk != nil {
		b.must(b.add(&Step{Action: DeleteDisk, Target: spec.DiskName(r.name), Zone: r.zone, Replica: r.name, Phase: phase,
			Reason: "its etcd data disk (a snapshot is saved first)"}, del))
	}
	if r.obs == nil || r.obs.Address != nil {
		b.must(b.add(&Step{Action: ReleaseAddress, Target: spec.InternalAddressName(r.name), Replica: r.name, Phase: phase,
			Reason: "its internal address"}, del))
	}
	r.removed = true
}

func memberID(r *replica) uint64 {
	if r.member != nil {
		return r.member.ID
	}
	return 0
}

func (b *builder) lbAny() bool {
	return b.lb || b.obs.HealthCheck != nil || b.obs.TargetPool != nil || b.obs.ForwardingRule != nil || b.poolStep != "" || b.hcStep != ""
}

// promoteLB makes sure the health check, the target pool with the masters,
// and the forwarding rule holding the static IP exist, moving the static IP
// off a single master first (the HA-masters guide: "the IP address of the first replica
// will be promoted to IP address of load balancer").
func (b *builder) promoteLB() {
	name := b.spec.Metadata.Name
	created := false
	if b.obs.HealthCheck == nil {
		b.hcStep = b.must(b.add(&Step{Action: CreateHealthCheck, Target: spec.HealthCheckName(name), Phase: "load balancer",
			Reason: "the load balancer's HTTP health check of the masters"}))
		created = true
	} else if hc := b.obs.HealthCheck; hc.Port != metadata.HealthCheckPort || hc.Path != metadata.HealthCheckPath {
		b.hcStep = b.must(b.add(&Step{Action: UpdateHealthCheck, Target: hc.Name, Phase: "load balancer",
			Reason: fmt.Sprintf("it probes port %d, path %q, where the masters' health endpoint is not: want port %d, path %s",
				hc.Port, hc.Path, metadata.HealthCheckPort, metadata.HealthCheckPath)}))
	}
	if b.obs.TargetPool == nil {
		var members []string
		for _, r := range b.kept() {
			if r.voter {
				members = append(members, r.name)
				r.inPool = true
			}
		}
		b.poolStep = b.must(b.add(&Step{Action: CreateTargetPool, Target: spec.MasterName(name), Phase: "load balancer", PoolMembers: members,
			Reason: "the masters behind the load balancer: " + orNone(members)}, b.hcStep))
		created = true
	}
	rule := b.obs.ForwardingRule
	staticIP := ""
	if b.obs.StaticIP != nil {
		staticIP = b.obs.StaticIP.Address
	}
	var deps []string
	for _, r := range b.kept() {
		if r.staticIP {
			deps = append(deps, b.must(b.add(&Step{Action: DetachStaticIP, Target: r.name, Zone: r.zone, Replica: r.name, Phase: "load balancer",
				Reason: "move the static IP from the single master to the load balancer; the master gets an ephemeral IP"}, b.poolStep)))
			r.staticIP = false
		}
	}
	if rule != nil && b.staticStep == "" && rule.IPAddress != staticIP {
		deps = append(deps, b.must(b.add(&Step{Action: DeleteForwardingRule, Target: rule.Name, Phase: "load balancer",
			Reason: fmt.Sprintf("it holds %s, not the static IP %s", rule.IPAddress, staticIP)})))
		rule = nil
	}
	if rule == nil || b.staticStep != "" {
		b.ruleStep = b.must(b.add(&Step{Action: CreateForwardingRule, Target: spec.MasterName(name), Phase: "load balancer",
			Reason: "the static IP routes to the masters through the load balancer (tcp 443)"}, append(deps, b.poolStep, b.staticStep)...))
		created = true
	}
	if created {
		b.warnings = append(b.warnings, "the load balancer is created: GCE may take about 20 minutes to propagate it (the Kubernetes guide \"Set up High-Availability Kubernetes Masters\"), during which the static IP may not route")
	}
	b.lb = true
}

// singleMasterIP puts the static IP on a single master that lacks it.
func (b *builder) singleMasterIP() {
	kept := b.kept()
	if len(kept) != 1 || b.lbAny() || kept[0].staticIP || kept[0].obs == nil {
		return
	}
	r := kept[0]
	b.must(b.add(&Step{Action: AttachStaticIP, Target: r.name, Zone: r.zone, Replica: r.name, Phase: "network",
		Reason: "the static IP must route to the single master"}, b.staticStep))
	r.staticIP = true
}

// poolDrift adds kept voters missing from the target pool.
func (b *builder) poolDrift() {
	if !b.lb {
		return
	}
	for _, r := range b.kept() {
		if r.voter && !r.inPool && r.obs != nil {
			b.must(b.add(&Step{Action: AddToPool, Target: spec.MasterName(b.spec.Metadata.Name), Replica: r.name, Zone: r.zone, Phase: "load balancer",
				Reason: "a master missing from the target pool"}, b.poolStep, b.lastStepOf(r.name)))
			r.inPool = true
		}
	}
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

// demoteLB removes the load balancer when one master is left and puts the
// static IP back on it (the HA-masters guide: "after removal of the penultimate master
// replica, the load balancer will be removed and its IP address will be
// assigned to the last remaining replica").
func (b *builder) demoteLB() {
	name := b.spec.Metadata.Name
	var after []string
	for _, s := range b.steps {
		if s.Action == RemoveFromPool || s.Action == AddToPool || s.Action == RemoveMember || s.Action == PromoteMember ||
			s.Action == CreateForwardingRule || s.Action == CreateTargetPool || s.Action == CreateHealthCheck {
			after = append(after, s.ID)
		}
	}
	last := b.kept()[0]
	ruleGone := ""
	if b.obs.ForwardingRule != nil || b.ruleStep != "" {
		ruleGone = b.must(b.add(&Step{Action: DeleteForwardingRule, Target: spec.MasterName(name), Phase: "load balancer",
			Reason: "one master is left: the static IP goes back to it"}, after...))
	}
	if !last.staticIP {
		b.must(b.add(&Step{Action: AttachStaticIP, Target: last.name, Zone: last.zone, Replica: last.name, Phase: "load balancer",
			Reason: "the static IP routes to the last master"}, ruleGone, b.staticStep, b.lastStepOf(last.name)))
		last.staticIP = true
	}
	poolGone := ""
	if b.obs.TargetPool != nil || b.poolStep != "" {
		poolGone = b.must(b.add(&Step{Action: DeleteTargetPool, Target: spec.MasterName(name), Phase: "load balancer",
			Reason: "no load balancer with one master"}, append(after, ruleGone)...))
	}
	if b.obs.HealthCheck != nil || b.hcStep != "" {
		b.must(b.add(&Step{Action: DeleteHealthCheck, Target: spec.HealthCheckName(name), Phase: "load balancer",
			Reason: "no load balancer with one master"}, poolGone))
	}
	b.lb = false
	b.warnings = append(b.warnings, "the load balancer is removed: GCE may take about 20 minutes to propagate the change (the Kubernetes guide \"Set up High-Availability Kubernetes Masters\")")
}

// finish fills in the summary, warnings and memberships.
func (b *builder) finish() *Plan {
	p := &Plan{FormatVersion: FormatVersion, Cluster: b.spec.Metadata.Name, Project: b.spec.Spec.GCE.Project, Region: b.spec.Spec.GCE.Region,
		Steps: b.steps, Before: b.obs.Membership(), After: b.membership(), Warnings: []string{}}
	if p.Steps == nil {
		p.Steps = []*Step{}
	}
	for _, s := range b.steps {
		switch s.Change {
		case Create:
			p.Summary.Create++
		case Update:
			p.Summary.Update++
		case Delete:
			p.Summary.Delete++
		}
	}
	p.NoChanges = len(b.steps) == 0
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

func masters(n int) string {
	if n == 1 {
		return "1 master"
	}
	return strconv.Itoa(n) + " masters"
}
