package executor

import (
	"context"
	"fmt"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
)

// AddonsDigest is the digest of the add-ons c gives its masters
// (metadata.AddonsDigest of spec.addons), for planner.Options.Addons.
func AddonsDigest(c *spec.Cluster) (string, error) {
	user, err := metadata.ReadUserAddons(c.AddonsDir())
	if err != nil {
		return "", fmt.Errorf("read the add-ons of cluster %s: %w", c.Metadata.Name, err)
	}
	return metadata.AddonsDigest(user, c.Spec.Addons.CheckInterval.Duration), nil
}

// updateAddons writes a running master's add-ons as spec.addons says now:
// kubeha-addons, the digest in kubeha-config and the add-on manager's
// interval in kube-env; every other item stays. The master's add-on sync
// writes them to its add-on directory; nothing restarts.
func (x *executor) updateAddons(ctx context.Context, s *planner.Step) error {
	in, err := x.instance(ctx, s.Zone, s.Target)
	if err != nil {
		return err
	}
	cfg, err := metadata.ParseConfig(itemOf(in, metadata.KeyConfig))
	if err != nil {
		return fmt.Errorf("update-addons %s: %w", s.Target, err)
	}
	static, err := x.staticIP(ctx)
	if err != nil {
		return err
	}
	user, err := metadata.ReadUserAddons(x.o.Spec.AddonsDir())
	if err != nil {
		return fmt.Errorf("update-addons %s: %w", s.Target, err)
	}
	interval := x.o.Spec.Spec.Addons.CheckInterval.Duration
	files, err := metadata.Addons(metadata.Boot{Cluster: x.cluster(), Name: s.Target, StaticIP: static, Config: *cfg,
		TLS: &metadata.TLS{ClusterCA: x.o.PKI.ClusterCA.CertPEM}, UserAddons: user})
	if err != nil {
		return err
	}
	archive, err := metadata.ArchiveAddons(files)
	if err != nil {
		return fmt.Errorf("update-addons %s: %w", s.Target, err)
	}
	cfg.Addons = metadata.AddonsDigest(user, interval)
	env := metadata.SetKubeEnv(itemOf(in, metadata.KeyKubeEnv), "ADDON_CHECK_INTERVAL_SEC", metadata.AddonCheckIntervalSec(interval))
	cfgValue := metadata.Encode(cfg)
	return x.setMetadata(ctx, s, in, []*compute.MetadataItems{
		{Key: metadata.KeyAddons, Value: &archive}, {Key: metadata.KeyConfig, Value: &cfgValue}, {Key: metadata.KeyKubeEnv, Value: &env}})
}
