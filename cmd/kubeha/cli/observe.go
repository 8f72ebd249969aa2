package cli

import (
	"context"
	"fmt"

	"github.com/kubeha/kubeha/pki"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// observe reads the cluster of a spec and records member health (so that
// remediation.unhealthyAfter spans runs of kubeha).
func observe(ctx context.Context, b *backend, c *spec.Cluster) (*state.Cluster, error) {
	tlsCfg, err := pki.LoadClientTLS(c.PKIDir())
	if err != nil {
		return nil, err
	}
	obs, err := state.Observe(ctx, state.Source{Compute: b.compute, EtcdTLS: tlsCfg}, c)
	if err != nil {
		return nil, fmt.Errorf("observe cluster %s through %s: %w", c.Metadata.Name, b.kind, err)
	}
	healthPath := state.HealthPath(c.PKIDir(), c.Metadata.Name)
	h, err := state.LoadHealth(healthPath)
	if err != nil {
		return nil, err
	}
	h.Apply(obs)
	if !obs.Empty() {
		if err := h.Save(healthPath); err != nil {
			return nil, err
		}
	}
	return obs, nil
}
