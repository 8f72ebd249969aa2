package planner

import (
	"fmt"
	"strings"

	"github.com/kubeha/kubeha/state"
)

// Format is the plan's canonical text: one line per step (id, change,
// action, target, zone, dependencies, the membership it leaves) with its
// reason below, then the warnings. Planner scenarios compare it.
func Format(p *Plan) string {
	var b strings.Builder
	if p.NoChanges {
		b.WriteString("no changes\n")
	}
	for _, s := range p.Steps {
		zone := s.Zone
		if zone == "" {
			zone = "-"
		}
		deps := "-"
		if len(s.DependsOn) > 0 {
			deps = strings.Join(s.DependsOn, ",")
		}
		fmt.Fprintf(&b, "%s %s %s %s %s after=%s etcd=%s\n", s.ID, s.Change.Symbol(), s.Action, s.Target, zone, deps, MembershipString(s.Etcd))
		fmt.Fprintf(&b, "    # %s\n", s.Reason)
		if s.Runs != nil {
			fmt.Fprintf(&b, "    = runs %s\n", RunsString(s.Runs))
		}
	}
	fmt.Fprintf(&b, "summary: %d to create, %d to update, %d to delete; etcd %s -> %s\n", p.Summary.Create, p.Summary.Update, p.Summary.Delete,
		MembershipString(p.Before), MembershipString(p.After))
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return b.String()
}

// MembershipString is a membership in short form: voters/learners, quorum,
// healthy voters, fault tolerance.
func MembershipString(m state.Membership) string {
	return fmt.Sprintf("%dv+%dl/q%d/h%d/ft%d", m.Voters, m.Learners, m.Quorum, m.HealthyVoters, m.FaultTolerance)
}
