package planner

import (
	"fmt"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/spec"
)

// The load balancer: created before a second master, removed when one is
// left (the HA-masters guide), and its pool kept in step with the masters.

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
		b.hcStep = b.add(&Step{Action: CreateHealthCheck, Target: spec.HealthCheckName(name), Phase: "load balancer",
			Reason: "the load balancer's HTTP health check of the masters"})
		created = true
	} else if hc := b.obs.HealthCheck; hc.Port != metadata.HealthCheckPort || hc.Path != metadata.HealthCheckPath {
		b.hcStep = b.add(&Step{Action: UpdateHealthCheck, Target: hc.Name, Phase: "load balancer",
			Reason: fmt.Sprintf("it probes port %d, path %q, where the masters' health endpoint is not: want port %d, path %s",
				hc.Port, hc.Path, metadata.HealthCheckPort, metadata.HealthCheckPath)})
	}
	if b.obs.TargetPool == nil {
		var members []string
		for _, r := range b.kept() {
			if r.voter {
				members = append(members, r.name)
				r.inPool = true
			}
		}
		b.poolStep = b.add(&Step{Action: CreateTargetPool, Target: spec.MasterName(name), Phase: "load balancer", PoolMembers: members,
			Reason: "the masters behind the load balancer: " + orNone(members)}, b.hcStep)
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
			deps = append(deps, b.add(&Step{Action: DetachStaticIP, Target: r.name, Zone: r.zone, Replica: r.name, Phase: "load balancer",
				Reason: "move the static IP from the single master to the load balancer; the master gets an ephemeral IP"}, b.poolStep))
			r.staticIP = false
		}
	}
	if rule != nil && b.staticStep == "" && rule.IPAddress != staticIP {
		deps = append(deps, b.add(&Step{Action: DeleteForwardingRule, Target: rule.Name, Phase: "load balancer",
			Reason: fmt.Sprintf("it holds %s, not the static IP %s", rule.IPAddress, staticIP)}))
		rule = nil
	}
	if rule == nil || b.staticStep != "" {
		b.ruleStep = b.add(&Step{Action: CreateForwardingRule, Target: spec.MasterName(name), Phase: "load balancer",
			Reason: "the static IP routes to the masters through the load balancer (tcp 443)"}, append(deps, b.poolStep, b.staticStep)...)
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
	b.add(&Step{Action: AttachStaticIP, Target: r.name, Zone: r.zone, Replica: r.name, Phase: "network",
		Reason: "the static IP must route to the single master"}, b.staticStep)
	r.staticIP = true
}

// poolDrift adds kept voters missing from the target pool.
func (b *builder) poolDrift() {
	if !b.lb {
		return
	}
	for _, r := range b.kept() {
		if r.voter && !r.inPool && r.obs != nil {
			b.add(&Step{Action: AddToPool, Target: spec.MasterName(b.spec.Metadata.Name), Replica: r.name, Zone: r.zone, Phase: "load balancer",
				Reason: "a master missing from the target pool"}, b.poolStep, b.lastStepOf(r.name))
			r.inPool = true
		}
	}
}

// demoteLB removes the load balancer when one master is left and puts the
// static IP back on it (the HA-masters guide: "after removal of the penultimate master
// replica, the load balancer will be removed and its IP address will be
// assigned to the last remaining replica").
func (b *builder) demoteLB() {
	name := b.spec.Metadata.Name
	after := b.lbWork
	last := b.kept()[0]
	ruleGone := ""
	if b.obs.ForwardingRule != nil || b.ruleStep != "" {
		ruleGone = b.add(&Step{Action: DeleteForwardingRule, Target: spec.MasterName(name), Phase: "load balancer",
			Reason: "one master is left: the static IP goes back to it"}, after...)
	}
	if !last.staticIP {
		b.add(&Step{Action: AttachStaticIP, Target: last.name, Zone: last.zone, Replica: last.name, Phase: "load balancer",
			Reason: "the static IP routes to the last master"}, ruleGone, b.staticStep, b.lastStepOf(last.name))
		last.staticIP = true
	}
	poolGone := ""
	if b.obs.TargetPool != nil || b.poolStep != "" {
		poolGone = b.add(&Step{Action: DeleteTargetPool, Target: spec.MasterName(name), Phase: "load balancer",
			Reason: "no load balancer with one master"}, append(after, ruleGone)...)
	}
	if b.obs.HealthCheck != nil || b.hcStep != "" {
		b.add(&Step{Action: DeleteHealthCheck, Target: spec.HealthCheckName(name), Phase: "load balancer",
			Reason: "no load balancer with one master"}, poolGone)
	}
	b.lb = false
	b.warnings = append(b.warnings, "the load balancer is removed: GCE may take about 20 minutes to propagate the change (the Kubernetes guide \"Set up High-Availability Kubernetes Masters\")")
}
