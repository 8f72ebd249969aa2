package observe

import (
	"context"

	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// WithHealth observes the cluster of a spec and applies the health record
// kept beside its PKI (src.PKIDir): how long each member has been
// unhealthy, across runs of kubeha, which remediation.unhealthyAfter
// counts. It writes nothing: record saves the record (and writes nothing
// for a cluster that does not exist). apply and watch share it, so both
// count the same time and report the same errors.
func WithHealth(ctx context.Context, src Source, c *spec.Cluster) (obs *state.Cluster, record func() error, err error) {
	obs, err = Cluster(ctx, src, c)
	if err != nil {
		return nil, nil, err
	}
	path := state.HealthPath(src.PKIDir, c.Metadata.Name)
	h, err := state.LoadHealth(path)
	if err != nil {
		return nil, nil, err
	}
	h.Apply(obs)
	return obs, func() error {
		if obs.Empty() {
			return nil
		}
		return h.Save(path)
	}, nil
}
