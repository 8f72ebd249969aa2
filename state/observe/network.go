package observe

import (
	"context"
	"path"
	"regexp"
	"sort"
	"strings"

	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/secretmanager/v1"

	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// observeNetwork reads the network the spec names (in its own project: a
// Shared VPC's host project) and the subnetwork it names, if any.
func observeNetwork(ctx context.Context, svc *compute.Service, g spec.GCE) (*state.Network, error) {
	out := &state.Network{Path: g.NetworkPath()}
	np := strings.Split(out.Path, "/") // projects/P/global/networks/N
	n, err := ignoreNotFound(svc.Networks.Get(np[1], np[4]).Context(ctx).Do())
	if err != nil {
		return nil, err
	}
	if n != nil {
		out.Exists, out.AutoMode = true, n.AutoCreateSubnetworks
	}
	if g.Subnetwork == "" {
		return out, nil
	}
	out.Subnetwork = g.SubnetworkPath()
	sp := strings.Split(out.Subnetwork, "/") // projects/P/regions/R/subnetworks/S
	sn, err := ignoreNotFound(svc.Subnetworks.Get(sp[1], sp[3], sp[5]).Context(ctx).Do())
	if err != nil {
		return nil, err
	}
	if sn != nil {
		out.SubnetworkOf = sn.Network[strings.Index(sn.Network, "projects/"):]
	}
	return out, nil
}

// observeIdentity reads the masters' service account and this cluster's
// key secrets (INSTANCE-keys of a master's name, labelled as this
// cluster's).
func observeIdentity(ctx context.Context, src Source, c *spec.Cluster) (*state.Identity, error) {
	out := &state.Identity{ServiceAccount: c.MasterServiceAccount(), Managed: c.Spec.Masters.ServiceAccount == "", Secrets: []string{}}
	project := c.Spec.GCE.Project
	sa, err := ignoreNotFound(src.IAM.Projects.ServiceAccounts.Get("projects/" + project + "/serviceAccounts/" + out.ServiceAccount).Context(ctx).Do())
	if err != nil {
		return nil, err
	}
	out.Exists = sa != nil
	re := regexp.MustCompile("^" + masterNameRe(c.Metadata.Name) + "-keys$")
	err = src.Secrets.Projects.Secrets.List("projects/"+project).Pages(ctx, func(l *secretmanager.ListSecretsResponse) error {
		for _, s := range l.Secrets {
			name := path.Base(s.Name)
			if v, ok := s.Labels[spec.LabelCluster]; re.MatchString(name) && (!ok || v == c.Metadata.Name) {
				out.Secrets = append(out.Secrets, name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(out.Secrets)
	return out, nil
}
