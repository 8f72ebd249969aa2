package planner

import (
	"errors"
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
	b := newBuilder(sp, obs, Options{})
	_, err := b.add(&Step{Action: RemoveMember, Target: "prod-master-a", Replica: "prod-master-a"})
	if err == nil || !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "would leave 1 healthy voters of 2, below quorum 2") {
		t.Fatalf("removing a healthy voter beside an unhealthy one: %v", err)
	}
	if len(b.steps) != 0 {
		t.Error("a refused step was kept")
	}
	// Removing the unhealthy one is fine.
	if _, err := b.add(&Step{Action: RemoveMember, Target: "prod-master-b", Replica: "prod-master-b"}); err != nil {
		t.Fatal(err)
	}
}
