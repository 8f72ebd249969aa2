package planner

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/kubeha/kubeha/internal/strs"
	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// Network: the firewalls and the static IP every master needs.

func (b *builder) wantFirewalls() []*FirewallSpec {
	name := b.spec.Metadata.Name
	tag := spec.MasterTag(name)
	peer, client := strconv.Itoa(b.spec.Spec.Etcd.PeerPort), strconv.Itoa(b.spec.Spec.Etcd.ClientPort)
	health := strconv.Itoa(metadata.HealthCheckPort)
	out := []*FirewallSpec{
		{Name: spec.EtcdFirewallName(name), Ports: []string{peer}, SourceTags: []string{tag}, TargetTags: []string{tag},
			purpose: "etcd peers talk between masters only (tcp " + peer + ")"},
		{Name: spec.HTTPSFirewallName(name), Ports: []string{"443"}, Sources: []string{"0.0.0.0/0"}, TargetTags: []string{tag},
			purpose: "the API server is reached on tcp 443"},
		{Name: spec.HealthFirewallName(name), Ports: []string{health}, Sources: metadata.HealthCheckProbeRanges, TargetTags: []string{tag},
			purpose: "the load balancer's health checks reach the masters' health endpoint (tcp " + health + ")"},
	}
	if a := b.spec.Spec.Access; len(a.SourceRanges)+len(a.SourceTags) > 0 {
		out = append(out, &FirewallSpec{Name: spec.EtcdClientFirewallName(name), Ports: []string{client}, Sources: a.SourceRanges, SourceTags: a.SourceTags,
			TargetTags: []string{tag}, purpose: "kubeha reaches etcd's client port from spec.access (tcp " + client + ")"})
	}
	return out
}

func (b *builder) network() {
	for _, want := range b.wantFirewalls() {
		got := b.observedFirewall(want.Name)
		var id string
		switch {
		case got == nil:
			id = b.add(&Step{Action: CreateFirewall, Target: want.Name, Phase: "network", Firewall: want,
				Reason: "missing: " + want.purpose})
		case !strs.SameSet(got.Ports, want.Ports) || !strs.SameSet(got.SourceTags, want.SourceTags) || !strs.SameSet(got.TargetTags, want.TargetTags) ||
			(len(want.Sources) > 0 && !strs.SameSet(got.Sources, want.Sources)):
			id = b.add(&Step{Action: UpdateFirewall, Target: want.Name, Phase: "network", Firewall: want,
				Reason: fmt.Sprintf("changed out of band: allows tcp %s from %s to %s; want tcp %s from %s to %s",
					strings.Join(got.Ports, ","), orNone(append(got.SourceTags, got.Sources...)), orNone(got.TargetTags),
					strings.Join(want.Ports, ","), orNone(append(want.SourceTags, want.Sources...)), strings.Join(want.TargetTags, ","))})
		}
		if want.Name == spec.EtcdFirewallName(b.spec.Metadata.Name) {
			b.fwEtcd = id
		}
	}
	// The etcd client rule is the one kubeha makes only when asked: with
	// spec.access gone, it goes too.
	if f := b.observedFirewall(spec.EtcdClientFirewallName(b.spec.Metadata.Name)); f != nil && len(b.spec.Spec.Access.SourceRanges)+len(b.spec.Spec.Access.SourceTags) == 0 {
		b.add(&Step{Action: DeleteFirewall, Target: f.Name, Phase: "network",
			Reason: "spec.access names no machine any more: nothing is admitted to etcd's client port"})
	}
	if b.obs.StaticIP == nil {
		b.staticStep = b.add(&Step{Action: ReserveStaticIP, Target: spec.StaticIPName(b.spec.Metadata.Name), Phase: "network",
			Reason: "missing: the external IP that always routes to the masters"})
	}
}

func (b *builder) observedFirewall(name string) *state.Firewall {
	for _, f := range b.obs.Firewalls {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// identity creates the service account kubeha manages for the masters when
// it is missing; a missing account the spec names is refused in preflight.
func (b *builder) identity() {
	id := b.obs.Identity
	if id == nil || id.Exists || !id.Managed {
		return
	}
	b.saStep = b.add(&Step{Action: CreateServiceAccount, Target: id.ServiceAccount, Phase: "network",
		Reason: "the masters run as their own account, with no project role, never the Compute Engine default one"})
}

// hasReplica says a master of this name exists, or is created or removed
// by the plan (which deletes its keys after it).
func (b *builder) hasReplica(name string) bool {
	for _, r := range b.replicas {
		if r.name == name {
			return true
		}
	}
	return false
}
