package executor

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
)

// Membership: resolving the etcd member a step acts on, and adding a
// learner.

func (x *executor) addLearner(ctx context.Context, s *planner.Step) error {
	ip, err := x.addressIP(ctx, spec.InternalAddressName(s.Replica))
	if err != nil {
		return err
	}
	id, err := x.etcd.addLearner(ctx, x.peerURL(ip))
	if err != nil {
		return err
	}
	x.mu.Lock()
	x.learners[s.Replica] = id
	x.mu.Unlock()
	return nil
}

// initialCluster is what a joining member boots with: every member, read
// when its VM is created. etcd checks it against the cluster by peer URL
// but keys it by name, so a learner that has not started yet (it has no
// name) is listed under a unique placeholder; it publishes its own name
// when it starts.
func (x *executor) initialCluster(ctx context.Context, name, peerURL string) (string, error) {
	members, err := x.etcd.members(ctx)
	if err != nil {
		return "", err
	}
	var parts []string
	found := false
	for _, m := range members {
		n := m.Name
		if slices.Contains(m.PeerURLs, peerURL) {
			n, found = name, true
		} else if n == "" {
			n = fmt.Sprintf("unstarted-%x", m.ID)
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, n+"="+u)
		}
	}
	if !found {
		return "", fmt.Errorf("create %s: etcd has no learner at %s: plan again", name, peerURL)
	}
	return strings.Join(parts, ","), nil
}

// memberID resolves the member a step acts on: the plan's ID for an
// existing member, else the learner this apply added, else the member
// whose peer URL is on the replica's address.
func (x *executor) memberID(ctx context.Context, s *planner.Step) (uint64, error) {
	if s.MemberID != 0 {
		return s.MemberID, nil
	}
	x.mu.Lock()
	id, ok := x.learners[s.Replica]
	x.mu.Unlock()
	if ok {
		return id, nil
	}
	members, err := x.etcd.members(ctx)
	if err != nil {
		return 0, err
	}
	for _, m := range members {
		if m.Name == s.Replica {
			return m.ID, nil
		}
	}
	ip, err := x.addressIP(ctx, spec.InternalAddressName(s.Replica))
	if httpCode(err) == http.StatusNotFound {
		// No address and no member by name or learner: there is no
		// member of this replica to find (its address is released last).
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find the etcd member of %s: %w", s.Replica, err)
	}
	for _, m := range members {
		if slices.Contains(m.PeerURLs, x.peerURL(ip)) {
			return m.ID, nil
		}
	}
	return 0, nil
}

func (x *executor) memberByName(ctx context.Context, name string) (uint64, error) {
	members, err := x.etcd.members(ctx)
	if err != nil {
		return 0, err
	}
	for _, m := range members {
		if m.Name == name {
			return m.ID, nil
		}
	}
	return 0, fmt.Errorf("no etcd member named %s to hand leadership to", name)
}
