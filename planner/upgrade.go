package planner

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// Upgrades: a change of spec.kubernetes.version is drift, and the masters
// are replaced one at a time (by member or by disk) like any other drift.
// Every master runs one release's etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kubelet together, and each
// of them talks to its own master's API server, so a roll one master at a
// time keeps each component where Kubernetes' version skew policy allows:
// the API servers at most one minor version apart (one minor per apply),
// a controller manager, scheduler or kubelet never newer than the API
// server it talks to. What this file adds is the refusal of what no roll
// makes safe, and the versions each step leaves running.

// running is what the masters run: by Kubernetes version, their names.
func running(obs *state.Cluster) map[string][]string {
	out := map[string][]string{}
	for _, in := range obs.Instances {
		if in.Config != nil && in.Config.KubernetesVersion != "" {
			out[in.Config.KubernetesVersion] = append(out[in.Config.KubernetesVersion], in.Name)
		}
	}
	return out
}

// versionPreflight refuses a Kubernetes version the masters cannot reach
// by replacement: a skipped minor version, a control plane's minor version
// rolled back once every master left it, and an etcd minor version lower
// than every member's (etcd refuses a member older than its cluster's
// version). A rollback of an upgrade cut short is allowed: the masters
// still on the old release keep the cluster's versions where they were.
func versionPreflight(desired *spec.Cluster, observed *state.Cluster) error {
	want := desired.Spec.Kubernetes.Version
	wantMinor, ok := spec.MinorOf(want)
	runs := running(observed)
	if !ok || len(runs) == 0 {
		return nil
	}
	versions := make([]string, 0, len(runs))
	for v := range runs {
		versions = append(versions, v)
	}
	slices.SortFunc(versions, spec.CompareVersions)
	oldest := versions[0]
	oldestMinor, ok := spec.MinorOf(oldest)
	if !ok {
		return nil
	}
	if next := oldestMinor.Next(); next.Less(wantMinor) {
		to := "a " + next.String() + " release"
		if r, ok := spec.ReleaseOfMinor(next); ok {
			to = r.Kubernetes
		}
		return refuse("spec.kubernetes.version %s skips Kubernetes %s: %s run %s, and the version skew policy allows API servers of one cluster only one minor version apart, so kubeha upgrades one minor version per apply: set spec.kubernetes.version to %s, apply, then to %s",
			want, next, strings.Join(runs[oldest], ", "), oldest, to, want)
	}
	if err := etcdDowngrade(want, versions[len(versions)-1], observed, runs); err != nil {
		return err
	}
	if wantMinor.Less(oldestMinor) {
		return refuse("spec.kubernetes.version %s is older than the %s every master runs: Kubernetes does not roll a control plane back a minor version (objects the newer API servers wrote may be stored in versions the older ones cannot read): set spec.kubernetes.version back to %s, or restore a snapshot taken before the upgrade (kubeha restore)",
			want, oldest, versions[len(versions)-1])
	}
	return nil
}

// etcdDowngrade refuses an etcd minor version below every member's: the
// cluster's version is then the members' (etcd sets it to the lowest of
// theirs), and a member of a lower minor version is refused by the
// cluster, or by its own data if it is a disk moved to it.
func etcdDowngrade(want, newest string, observed *state.Cluster, runs map[string][]string) error {
	r, ok := spec.ReleaseOf(want)
	if !ok {
		return nil
	}
	wantEtcd, _ := spec.MinorOf(r.Etcd)
	var lowest string
	consider := func(v string) {
		if _, ok := spec.MinorOf(v); ok && (lowest == "" || spec.CompareVersions(v, lowest) < 0) {
			lowest = v
		}
	}
	for _, m := range observed.Etcd.Members {
		if !m.IsLearner {
			consider(memberEtcd(m, observed))
		}
	}
	if len(observed.Etcd.Members) == 0 {
		// etcd unobserved: the releases the masters run say which etcd
		// they run.
		for v := range runs {
			if rel, ok := spec.ReleaseOf(v); ok {
				consider(rel.Etcd)
			}
		}
	}
	if lowest == "" {
		return nil
	}
	if lowestMinor, _ := spec.MinorOf(lowest); wantEtcd.Less(lowestMinor) {
		return refuse("spec.kubernetes.version %s runs etcd %s, and every etcd member runs %s or newer: a downgrade of etcd's minor version (%s → %s) is refused, as etcd does not let a member older than its cluster's version join it or open its data; set spec.kubernetes.version back to %s, or restore a snapshot taken before the upgrade (kubeha restore)",
			want, strings.TrimPrefix(r.Etcd, "v"), strings.TrimPrefix(lowest, "v"), lowestMinor, wantEtcd, newest)
	}
	return nil
}

// memberEtcd is the etcd version a member runs: what it answered, else
// the etcd of the release its master runs ("" when neither is known).
func memberEtcd(m *state.Member, observed *state.Cluster) string {
	if m.Version != "" {
		return m.Version
	}
	for _, in := range observed.Instances {
		if in.Name == m.Instance && in.Config != nil {
			if rel, ok := spec.ReleaseOf(in.Config.KubernetesVersion); ok {
				return rel.Etcd
			}
		}
	}
	return ""
}

// Running is one release the masters run once a step is done, with the
// masters that run it.
type Running struct {
	Kubernetes string   `json:"kubernetes"` // "" for masters that run etcd only
	Etcd       string   `json:"etcd,omitempty"`
	Masters    []string `json:"masters"`
}

// annotateRuns sets Step.Runs on each step that creates or deletes a
// master, when the plan runs more than one release at any point (an
// upgrade, or the rest of one cut short).
func (b *builder) annotateRuns() {
	at := map[string]string{} // master → Kubernetes version ("": etcd only)
	for _, in := range b.obs.Instances {
		if in.Config != nil {
			at[in.Name] = in.Config.KubernetesVersion
		}
	}
	mixed := len(distinct(at)) > 1
	var changes []*Step
	for _, s := range b.steps {
		switch {
		case s.Action == CreateInstance && s.Instance != nil:
			v := s.Instance.Config.KubernetesVersion
			if len(at) > 0 && !slices.Contains(distinct(at), v) {
				mixed = true
			}
			at[s.Instance.Name] = v
		case s.Action == DeleteInstance:
			delete(at, s.Target)
		default:
			continue
		}
		s.Runs = runsOf(at)
		changes = append(changes, s)
	}
	if !mixed {
		for _, s := range changes {
			s.Runs = nil
		}
	}
}

func distinct(at map[string]string) []string {
	var out []string
	for _, v := range at {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func runsOf(at map[string]string) []Running {
	versions := distinct(at)
	slices.SortFunc(versions, spec.CompareVersions)
	out := []Running{}
	for _, v := range versions {
		r := Running{Kubernetes: v}
		if rel, ok := spec.ReleaseOf(v); ok {
			r.Etcd = rel.Etcd
		}
		for name, mv := range at {
			if mv == v {
				r.Masters = append(r.Masters, name)
			}
		}
		slices.Sort(r.Masters)
		out = append(out, r)
	}
	return out
}

// RunsString is Step.Runs in short form: "v1.36.3 (etcd v3.6.8): a, b;
// v1.37.2 (etcd v3.7.3): c".
func RunsString(runs []Running) string {
	var parts []string
	for _, r := range runs {
		etcd := ""
		if r.Etcd != "" {
			etcd = fmt.Sprintf(" (etcd %s)", r.Etcd)
		}
		parts = append(parts, fmt.Sprintf("%s%s: %s", cmp.Or(r.Kubernetes, "etcd only"), etcd, strings.Join(r.Masters, ", ")))
	}
	if len(parts) == 0 {
		return "no master"
	}
	return strings.Join(parts, "; ")
}

// rollbackGuard refuses a rollback of an upgrade cut short (the spec's
// etcd older than some members') whose plan removes the last member of
// the spec's etcd minor version before one of the spec's release joins:
// etcd then raises the cluster's version to that of the members left, and
// the spec's etcd can no longer join it.
func (b *builder) rollbackGuard() {
	if b.err != nil {
		return
	}
	rel, ok := spec.ReleaseOf(b.spec.Spec.Kubernetes.Version)
	if !ok {
		return
	}
	want, _ := spec.MinorOf(rel.Etcd)
	low := map[uint64]bool{} // voters of the spec's etcd minor or older
	newer := 0
	for _, m := range b.obs.Etcd.Members {
		if m.IsLearner {
			continue
		}
		if mm, ok := spec.MinorOf(memberEtcd(m, b.obs)); ok && want.Less(mm) {
			newer++
		} else {
			low[m.ID] = true
		}
	}
	if newer == 0 || len(low) == 0 {
		return
	}
	lows := len(low)
	for _, s := range b.steps {
		switch s.Action {
		case PromoteMember:
			lows++ // a member this plan added runs the spec's release
		case RemoveMember:
			if !low[s.MemberID] {
				continue
			}
			if lows--; lows == 0 {
				b.err = refuse("rolling back to Kubernetes %s (etcd %s) needs a member of etcd %s in the cluster until one of %s joins, and this plan removes %s, the last, first (step %s: %s): etcd would then raise the cluster's version and refuse etcd %s. Keep %s for this apply (its zone in spec.masters.zones, spec.masters.replicas as they are) and apply the rollback first, or finish the upgrade (set spec.kubernetes.version to the release the other masters run)",
					b.spec.Spec.Kubernetes.Version, strings.TrimPrefix(rel.Etcd, "v"), want, b.spec.Spec.Kubernetes.Version, s.Target, s.ID, s.Reason, want, s.Target)
				return
			}
		}
	}
}
