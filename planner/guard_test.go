package planner

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// TestStepBelowQuorumIsRefused checks the backstop every step passes: the
// ordering rules keep plans above quorum (the property test shows no plan
// needs the backstop), and a step that would still go below is refused.
func TestStepBelowQuorumIsRefused(t *testing.T) {
	sp := &spec.Cluster{Metadata: spec.Metadata{Name: "prod"}}
	obs := &state.Cluster{Etcd: state.Etcd{Members: []*state.Member{
		{ID: 1, Instance: "prod-master", Healthy: true},
		{ID: 2, Instance: "prod-master-a", Healthy: true},
		{ID: 3, Instance: "prod-master-b", Healthy: false},
	}}}
	// Removing the unhealthy one is fine.
	b := newBuilder(sp, obs, Options{})
	if id := b.add(&Step{Action: RemoveMember, Target: "prod-master-b", Replica: "prod-master-b"}); id != "1" || b.err != nil {
		t.Fatalf("removing the unhealthy voter: step %q, %v", id, b.err)
	}
	b = newBuilder(sp, obs, Options{})
	before := b.etcdModel.clone()
	id := b.add(&Step{Action: RemoveMember, Target: "prod-master-a", Replica: "prod-master-a"})
	err := b.err
	if id != "" || err == nil || !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "would leave 1 healthy voters of 2, below quorum 2") {
		t.Fatalf("removing a healthy voter beside an unhealthy one: step %q, %v", id, err)
	}
	if len(b.steps) != 0 {
		t.Error("a refused step was kept")
	}
	if !maps.Equal(b.voters, before.voters) || !maps.Equal(b.healthy, before.healthy) {
		t.Error("a refused step changed the membership model")
	}
	// The refusal sticks: nothing is added after it.
	if id := b.add(&Step{Action: RemoveMember, Target: "prod-master-b", Replica: "prod-master-b"}); id != "" || b.err != err || len(b.steps) != 0 {
		t.Errorf("a step was added after a refusal: %q, %v", id, b.err)
	}
}
