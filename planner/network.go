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
			id = b.add(&Step{Action: CreateFirewall, Target: want.Name, Phase: "network", Firewall: want,
				Reason: "missing: " + firewallPurpose(want)})
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
	if b.obs.StaticIP == nil {
		b.staticStep = b.add(&Step{Action: ReserveStaticIP, Target: spec.StaticIPName(b.spec.Metadata.Name), Phase: "network",
			Reason: "missing: the external IP that always routes to the masters"})
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
