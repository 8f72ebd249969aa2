package cli

import (
	"context"
	"fmt"

	"github.com/kubeha/kubeha/kubeapi"
	"github.com/kubeha/kubeha/pki"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
	"github.com/kubeha/kubeha/state/observe"
)

// loadAndObserve loads the spec at file, connects the backend and observes
// the cluster, as the read-only commands do. The caller closes the backend.
func loadAndObserve(ctx context.Context, streams IOStreams, file string, o *backendOptions) (*spec.Cluster, *backend, *state.Cluster, error) {
	c, _, err := loadSpec(streams, file)
	if err != nil {
		return nil, nil, nil, err
	}
	b, obs, record, err := connectAndObserve(ctx, o, c)
	if err == nil {
		err = record()
	}
	if err != nil {
		if b != nil {
			b.Close()
		}
		return nil, nil, nil, err
	}
	return c, b, obs, nil
}

// connectAndObserve connects the backend and observes the cluster of c,
// writing nothing: record saves the health record. The caller closes the
// backend.
func connectAndObserve(ctx context.Context, o *backendOptions, c *spec.Cluster) (*backend, *state.Cluster, func() error, error) {
	b, err := o.connect(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	obs, record, err := observeOnly(ctx, b, c)
	if err != nil {
		b.Close()
		return nil, nil, nil, err
	}
	return b, obs, record, nil
}

// observeOnly reads the cluster of a spec, with how long each member has
// been unhealthy, and writes nothing: record saves the health record.
func observeOnly(ctx context.Context, b *backend, c *spec.Cluster) (obs *state.Cluster, record func() error, err error) {
	tlsCfg, err := pki.LoadClientTLS(c.PKIDir())
	if err != nil {
		return nil, nil, err
	}
	obs, record, err = observe.WithHealth(ctx, observe.Source{Compute: b.Compute, IAM: b.IAM, Secrets: b.Secrets, EtcdTLS: tlsCfg, PKIDir: c.PKIDir(),
		Kube: kubeapi.Admin(c.PKIDir(), c.Metadata.Name, b.apiPort(ctx))}, c)
	if err != nil {
		return nil, nil, fmt.Errorf("observe cluster %s through %s: %w", c.Metadata.Name, b.kind, err)
	}
	return obs, record, nil
}
