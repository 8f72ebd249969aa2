package executor

import (
	"context"
	"fmt"
	"strings"

	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// Bootstrap of several members at once: every member starts with the same
// static initial cluster, read from their reserved internal addresses, and
// the cluster forms when a quorum of them runs.

// memberIPs reads the internal IP of each named member.
func (x *executor) memberIPs(ctx context.Context, names []string) ([]string, error) {
	ips := make([]string, len(names))
	for i, n := range names {
		ip, err := x.addressIP(ctx, spec.InternalAddressName(n))
		if err != nil {
			return nil, fmt.Errorf("read the address of member %s of the new cluster: %w", n, err)
		}
		ips[i] = ip
	}
	return ips, nil
}

// staticCluster is the --initial-cluster every member of a new cluster
// starts with: each member's name and the peer URL on its address, in the
// plan's order, so that every member, whoever creates it, computes the same
// cluster ID.
func (x *executor) staticCluster(ctx context.Context, names []string) (string, error) {
	ips, err := x.memberIPs(ctx, names)
	if err != nil {
		return "", err
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + x.peerURL(ips[i])
	}
	return strings.Join(parts, ","), nil
}

// etcdOf runs f once the etcd client knows the client URLs of the new
// cluster's members.
func (x *executor) etcdOf(names []string, f func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		ips, err := x.memberIPs(ctx, names)
		if err != nil {
			return err
		}
		var eps []string
		for _, ip := range ips {
			eps = append(eps, x.clientURL(ip))
		}
		if !x.etcd.connected() {
			if _, err := x.etcd.client(eps); err != nil {
				return err
			}
		}
		return f(ctx)
	}
}

// formCluster waits until a quorum of the new cluster's members are
// healthy voters, then takes the apply lock: from then on the cluster is
// changed as any other.
func (x *executor) formCluster(ctx context.Context, s *planner.Step) error {
	return x.etcdOf(s.Members, func(ctx context.Context) error {
		if err := x.gate(ctx, s, state.Quorum(len(s.Members)), 0); err != nil {
			return fmt.Errorf("the new etcd cluster of %s did not form: %w", strings.Join(s.Members, ", "), err)
		}
		return x.takeLock(ctx)
	})(ctx)
}
